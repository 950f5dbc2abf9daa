"""``NexusSessionWriter SESSION --log=info`` on a terminal: log lines and the live
table share the screen; the table is drawn once, updated in place, never printed
again below each log line.  The terminal is a real pseudo-terminal (tmux), read
back with ``capture-pane``."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time

import pytest

TITLE = "nexus-writer: scans"


def _tmux(socket: str, *args: str) -> str:
    return subprocess.run(["tmux", "-L", socket, *args], check=True, capture_output=True,
                          text=True, timeout=30).stdout


@pytest.fixture
def terminal(tmp_path):
    """``run(command)`` in a detached tmux window of 150 x 50; ``screen()`` gives its
    whole history and screen as text."""
    if shutil.which("tmux") is None:
        if os.environ.get("CI"):
            pytest.fail("tmux is not installed (.ci/run installs it)")
        pytest.skip("tmux is needed (apt-get install tmux)")
    socket = f"nxw-test-{os.getpid()}-{tmp_path.name}"
    started = []

    class Terminal:
        def run(self, command: list[str], env: dict[str, str]) -> None:
            exports = " ".join(f"{k}={v}" for k, v in env.items())
            line = f"env {exports} " + " ".join(command)
            _tmux(socket, "new-session", "-d", "-x", "150", "-y", "50", "-s", "w", line)
            _tmux(socket, "set-option", "-t", "w", "remain-on-exit", "on")
            started.append(True)

        def screen(self) -> str:
            return _tmux(socket, "capture-pane", "-p", "-J", "-S", "-", "-t", "w")

        def keys(self, *keys: str) -> None:
            _tmux(socket, "send-keys", "-t", "w", *keys)

    yield Terminal()
    if started:
        subprocess.run(["tmux", "-L", socket, "kill-server"], capture_output=True, timeout=30)


def _wait_screen(terminal, predicate, timeout: float, what: str) -> str:
    deadline = time.monotonic() + timeout
    while True:
        screen = terminal.screen()
        if predicate(screen):
            return screen
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}; "
                                 f"screen:\n{screen}")
        time.sleep(0.1)


def test_log_lines_and_live_table_share_the_terminal(terminal, redis_url, sim_session):
    src = os.path.join(os.path.dirname(__file__), "..", "..", "src")
    env = {"PYTHONPATH": os.path.abspath(src), "TERM": "xterm-256color", "COLUMNS": "150"}
    terminal.run([sys.executable, "-m", "nexus_writer.cli.main", "write", "test_session",
                  "--redis", redis_url, "--log=info", "--flush-period", "0.2",
                  "--only-new"], env)
    _wait_screen(terminal, lambda s: "writer listening" in s and TITLE in s, 30,
                 "the writer listening, with its table")
    scans = [sim_session.loopscan(3, 0.01, "diode") for _ in range(10)]
    numbers = [s.scan_number for s in scans]
    _wait_screen(
        terminal, lambda s: s.count("SUCCEEDED") >= 10 and "scan 10 of" in s, 60,
        "the ten scans SUCCEEDED in the table, and their log lines")
    time.sleep(1.0)  # a few more refreshes of the table (4 per second): none may reprint it
    screen = terminal.screen()
    assert screen.count(TITLE) == 1, f"the table was printed {screen.count(TITLE)} times:\n" \
        + screen
    for n in numbers:  # each scan's log line, once
        assert screen.count(f"scan {n} of session 'test_session': new scan") == 1, screen
    # the log lines are above the table, the table at the bottom with every scan
    table = screen[screen.index(TITLE):]
    assert "new scan" not in table
    assert all(f" {n} " in table for n in numbers)
    terminal.keys("C-c")
    _wait_screen(terminal, lambda s: "NexusSessionWriter: {'SUCCEEDED': 10}" in s, 30,
                 "the writer's summary after Ctrl-C")
