"""A private X display for the GUI tests: Xvfb on a display number it picks itself.

``-displayfd`` makes Xvfb choose a free display and write its number to a pipe,
so parallel test runs never race for ``:99``.
"""

from __future__ import annotations

import contextlib
import os
import select
import shutil
import subprocess
import time

START_TIMEOUT = 30.0


class Xvfb:
    def __init__(self, width: int = 1280, height: int = 800) -> None:
        self.width, self.height = width, height
        self.process: subprocess.Popen | None = None
        self.display: str | None = None

    def start(self) -> Xvfb:
        binary = shutil.which("Xvfb")
        if binary is None:
            raise FileNotFoundError("Xvfb")
        read_end, write_end = os.pipe()
        try:
            self.process = subprocess.Popen(
                [
                    binary,
                    "-displayfd",
                    str(write_end),
                    "-screen",
                    "0",
                    f"{self.width}x{self.height}x24",
                    "-nolisten",
                    "tcp",
                    "-noreset",
                ],
                pass_fds=(write_end,),
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            os.close(write_end)
            write_end = -1
            number = b""
            deadline = time.monotonic() + START_TIMEOUT
            while not number.endswith(b"\n"):
                remaining = deadline - time.monotonic()
                ready, _, _ = select.select([read_end], [], [], max(0.0, remaining))
                if not ready:
                    raise RuntimeError("Xvfb did not report a display in time")
                chunk = os.read(read_end, 16)
                if not chunk:
                    raise RuntimeError("Xvfb exited before reporting its display")
                number += chunk
            self.display = f":{number.decode().strip()}"
        except BaseException:
            self.stop()
            raise
        finally:
            os.close(read_end)
            if write_end >= 0:
                os.close(write_end)
        return self

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=10)
            if self.process.poll() is None:
                self.process.kill()
                self.process.wait(timeout=10)
        self.process = None
