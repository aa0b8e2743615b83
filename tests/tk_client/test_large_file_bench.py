"""``bench/large_file.py`` itself works, at a small size, so the demonstration cannot rot."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench.large_file import BenchFailed, check_progress, parse_size

PROJECT_DIR = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.gui


def test_the_script_sends_a_file_between_two_windows_and_reports(display, tmp_path):
    output = tmp_path / "large_file.md"
    env = {k: v for k, v in os.environ.items() if k != "XDG_CONFIG_HOME"}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.large_file",
            "--size",
            "8MiB",
            "--display",
            display,
            "--output",
            str(output),
            "--workdir",
            str(tmp_path),
            "--timeout",
            "300",
        ],
        cwd=PROJECT_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )

    assert result.returncode == 0, result.stderr[-3000:]
    report = output.read_text(encoding="utf-8")
    assert report in result.stdout
    assert "`python -m bench.large_file --size 8MiB`" in report
    assert "| size | 8.0 MiB (8,388,608 bytes) |" in report
    assert "| throughput | " in report and " MB/s |" in report
    for name in ("sender", "receiver", "server"):
        assert f"| peak RSS growth, {name} | " in report
    assert "received file identical: SHA-256 " in report
    assert report.count("progress bar advanced through") == 2
    assert list(tmp_path.iterdir()) == [output]  # the generated and received files are gone


def test_sizes_are_read_as_people_write_them():
    assert parse_size("4GiB") == 4 * 2**30
    assert parse_size("8MiB") == 8 * 2**20
    assert parse_size("500MB") == 500 * 10**6
    assert parse_size("1234") == 1234


def test_a_bar_that_never_moves_or_goes_back_fails_the_check():
    def reports(*values):
        return [{"value": v, "maximum": 1000.0} for v in values]

    assert "2 intermediate" in check_progress("x", reports(0, 300, 700, 1000), 5.0)
    with pytest.raises(BenchFailed, match="without showing progress"):
        check_progress("x", reports(0, 1000), 5.0)
    with pytest.raises(BenchFailed, match="backwards"):
        check_progress("x", reports(0, 500, 400, 1000), 5.0)
    with pytest.raises(BenchFailed, match="ended at"):
        check_progress("x", reports(0, 500), 5.0)


def test_the_senders_hashing_pass_is_not_counted_as_the_transfer():
    hashing = [{"value": v, "maximum": 1000.0, "stage": "preparing"} for v in (0, 400, 990)]
    sending = [{"value": v, "maximum": 1000.0, "stage": "running"} for v in (0, 500, 1000)]

    assert "1 intermediate" in check_progress("x", hashing + sending, 5.0)
    assert "3 reports of its hashing pass" in check_progress("x", hashing + sending, 5.0)
