"""The terminal client's end-to-end encryption against the real server (section 4.7-4.8).

Alice runs the real terminal client (a subprocess with piped input, ``--remember``, as a
script would); bob is a headless peer (:mod:`.e2e_peers`) that the test drives. They
exchange private messages, then alice verifies bob: ``/verify bob`` prints the safety
number and asks bob's device, bob accepts, both see the same emoji, alice types
``/confirm`` and bob confirms with his controller's API. Last, ``/devices`` shows alice's
device with its key, approved.
"""

from __future__ import annotations

import os
import queue
import subprocess
import threading
import time
from collections.abc import Callable

import pytest

from tk_client.e2e.verification import CodesReady, VerificationRequested, Verified
from tk_client.model import pm_key

from .e2e_peers import Peer, pump
from .helpers import WAIT_SECONDS
from .test_cli import PROJECT_DIR, cli

ALICE, BOB = "tealice", "tebob"


@pytest.fixture(scope="module")
def server(live_server):
    for name in (ALICE, BOB):
        live_server.create_user(name, f"{name}-password")
    return live_server


class Terminal:
    """Alice's terminal client, left running; what it printed, line by line, so far."""

    def __init__(self, server, home) -> None:
        env = {k: v for k, v in os.environ.items() if k != "CHAT_PASSWORD"}
        env |= {
            "XDG_CONFIG_HOME": str(home),
            "PYTHONIOENCODING": "utf-8",
            "CHAT_PASSWORD": f"{ALICE}-password",
        }
        args = ["--server", server.url, "--user", ALICE, "--trust", server.fingerprint]
        self.process = subprocess.Popen(
            cli(*args, "--remember", "laptop"),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            encoding="utf-8",
            env=env,
            cwd=PROJECT_DIR,
            start_new_session=True,  # no controlling terminal, as in CI
        )
        self.out: list[str] = []
        self.err: list[str] = []
        self._lines: queue.Queue[tuple[list[str], str]] = queue.Queue()
        for stream, into in ((self.process.stdout, self.out), (self.process.stderr, self.err)):
            threading.Thread(target=self._read, args=(stream, into), daemon=True).start()

    def _read(self, stream, into: list[str]) -> None:
        for line in stream:
            self._lines.put((into, line.rstrip("\n")))

    def _collect(self) -> bool:
        got = False
        while True:
            try:
                into, line = self._lines.get_nowait()
            except queue.Empty:
                return got
            into.append(line)
            got = True

    def type(self, line: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(line + "\n")
        self.process.stdin.flush()

    def wait(self, until: Callable[[], bool], what: str, peers: list[Peer]) -> None:
        """Drive the peers and read alice's lines until ``until()``."""
        deadline = time.monotonic() + WAIT_SECONDS
        while not until():
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"never happened: {what}; alice printed {self.out[-8:]}, "
                    f"and on stderr {self.err[-8:]}"
                )
            busy = self._collect()
            busy = any([peer.pump_once() for peer in peers]) or busy
            if not busy:
                time.sleep(0.01)

    def printed(self, part: str) -> Callable[[], bool]:
        return lambda: any(part in line for line in self.out)

    def finish(self) -> int:
        assert self.process.stdin is not None
        self.process.stdin.close()
        code = self.process.wait(timeout=WAIT_SECONDS)
        self._collect()
        return code


@pytest.fixture
def alice_terminal(server, tmp_path):
    terminal = Terminal(server, tmp_path / "alice-home")
    yield terminal
    if terminal.process.poll() is None:
        terminal.process.kill()
        terminal.process.wait()


@pytest.fixture
def bob(server, tmp_path):
    peer = Peer(server, tmp_path / "bob-laptop", BOB, "laptop")
    peer.log_in(f"{BOB}-password")
    yield peer
    peer.close()


def requests(peer: Peer) -> list[VerificationRequested]:
    return [e for e in peer.view.e2e_events if isinstance(e, VerificationRequested)]


def test_alice_in_the_terminal_talks_privately_with_bob_and_verifies_him(alice_terminal, bob):
    alice = alice_terminal
    pump([bob], lambda: bob.controller.e2e is not None and bob.link.approved, "bob set up")
    alice.wait(alice.printed("Your encryption identity was created"), "alice set up", [bob])

    alice.type(f"/pm {BOB} hello bob, this is secret")
    line = (ALICE, "hello bob, this is secret")
    alice.wait(lambda: line in bob.lines(pm_key(ALICE)), "bob reads alice", [bob])
    assert bob.controller.submit(f"/pm {ALICE} hi alice")
    alice.wait(alice.printed(f"[pm] {BOB}: hi alice"), "alice reads bob", [bob])
    security = f"* the private chat with {BOB}: end-to-end encrypted; not verified: {BOB}"
    assert security in alice.err

    alice.type(f"/verify {BOB}")
    alice.wait(alice.printed(f"Safety number with {BOB}: "), "the safety number", [bob])
    number = next(line for line in alice.out if "Safety number" in line).split(": ")[1]
    assert number == bob.controller.safety_number(ALICE)  # the same 60 digits on both sides
    alice.wait(lambda: bool(requests(bob)), "bob asked to verify", [bob])
    bob.controller.accept_verification(requests(bob)[0].txn)
    alice.wait(
        lambda: (
            alice.printed(f"Type /confirm if {BOB}'s screen shows the same")()
            and any(isinstance(e, CodesReady) for e in bob.view.e2e_events)
        ),
        "the codes on both sides",
        [bob],
    )

    bobs = next(e for e in bob.view.e2e_events if isinstance(e, CodesReady))
    emoji_line = alice.out[alice.out.index(f"Compare these with the screen of {BOB}:") + 1]
    assert emoji_line.split() == " ".join(f"{s} {n}" for s, n in bobs.emoji).split()
    alice.type("/confirm")
    bob.controller.confirm_verification(bobs.txn)
    alice.wait(alice.printed(f"{BOB} is verified (the emoji matched"), "alice verified bob", [bob])
    assert any(isinstance(e, Verified) for e in bob.view.e2e_events)

    alice.type(f"/pm {BOB}")
    switched = f"* now talking in the private chat with {BOB} (end-to-end encrypted; verified)"
    alice.wait(lambda: switched in alice.err, "the lock says verified", [bob])
    alice.type("/devices")
    alice.wait(alice.printed("Sign one out with /revoke"), "alice's devices", [bob])
    row = next(i for i, line in enumerate(alice.out) if line.endswith("this device, online"))
    assert alice.out[row + 1].startswith("      key ")
    assert alice.out[row + 1].endswith("(approved)")
    assert alice.finish() == 0, alice.err
