"""``SessionProcess``, the supervisor's handle on one writer, with stand-in commands:
restart backoff and its reset, the stop sequence (SIGINT, second SIGINT, SIGKILL),
and a new writer of a session waiting for the previous one to exit."""

from __future__ import annotations

import sys
import time

import pytest

from nexus_writer.service import config as cfg
from nexus_writer.service import supervisor
from nexus_writer.service.supervisor import SessionProcess

pytestmark = pytest.mark.timeout(60)

EXITS = [sys.executable, "-c", "import sys; sys.exit(3)"]
#: Stands for a writer: first SIGINT "finishes scans" for ``sys.argv[1]`` s, the
#: second one aborts at once (exit 1); creates the file ``sys.argv[2]`` when ready.
WRITER = [sys.executable, "-c", """
import signal, sys, time
hits = []
def on_int(*_):
    hits.append(time.monotonic())
    if len(hits) > 1:
        sys.exit(1)
signal.signal(signal.SIGINT, on_int)
open(sys.argv[2], "w").close()
while not hits or time.monotonic() - hits[0] < float(sys.argv[1]):
    time.sleep(0.01)
"""]
#: Ignores SIGINT altogether (a hung writer); creates ``sys.argv[1]`` when ready.
STUBBORN = [sys.executable, "-c", "import signal, sys, time\nsignal.signal(signal.SIGINT, "
            "signal.SIG_IGN)\nopen(sys.argv[1], 'w').close()\ntime.sleep(60)"]


_started: list[SessionProcess] = []


@pytest.fixture(autouse=True)
def _kill_leftovers():
    """A failed test must not leave its stand-in running."""
    yield
    for p in _started:
        if p.process is not None and p.process.poll() is None:
            p.process.kill()
            p.process.wait()
    _started.clear()


def process(command: list[str]) -> SessionProcess:
    p = SessionProcess(cfg.SessionConfig("s"), "redis://127.0.0.1:1", "info")
    p.command = command
    _started.append(p)
    return p


def poll_until(p: SessionProcess, predicate, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"not within {timeout} s: {p.info()}"
        p.poll()
        time.sleep(0.02)


@pytest.fixture
def ready(tmp_path):
    """``ready(name)`` -> the path a stand-in creates once its SIGINT handler is set;
    ``ready.wait(name)`` waits for it."""
    class Ready:
        def __call__(self, name: str) -> str:
            return str(tmp_path / name)

        def wait(self, name: str) -> None:
            deadline = time.monotonic() + 15
            while not (tmp_path / name).exists():
                assert time.monotonic() < deadline, f"stand-in {name} never ready"
                time.sleep(0.02)

    return Ready()


def test_crash_loop_backs_off_and_counts_restarts(monkeypatch):
    monkeypatch.setattr(supervisor, "BACKOFF", (0.1, 0.3, 0.6))
    p = process(EXITS)
    starts = []
    original = p.start

    def start():
        starts.append(time.monotonic())
        original()

    p.start = start
    poll_until(p, lambda: len(starts) >= 4, 20)
    assert p.restarts == 3 and p.last_exit == 3
    gaps = [b - a for a, b in zip(starts, starts[1:])]
    assert gaps[0] >= 0.1 and gaps[1] >= 0.3 and gaps[2] >= 0.6, gaps
    p.stop()


def test_backoff_starts_anew_after_a_stable_run(monkeypatch, ready):
    monkeypatch.setattr(supervisor, "BACKOFF", (0.1, 5.0))
    monkeypatch.setattr(supervisor, "STABLE_AFTER", 0.3)
    p = process(WRITER + ["0", ready("a")])
    p.poll()
    first = p.process
    assert first is not None
    time.sleep(0.5)
    p.poll()  # ran longer than STABLE_AFTER: no crash loop
    first.kill()
    poll_until(p, lambda: p.process is not None and p.process is not first, 5)
    second = p.process
    assert p.restarts == 1
    second.kill()  # died young: the next delay is the second one
    poll_until(p, lambda: p.process is None, 5)
    assert p.next_start - time.monotonic() > 3
    assert p.restarts == 2
    p.stop()


def test_stop_lets_the_writer_finish(ready):
    p = process(WRITER + ["0.3", ready("a")])
    p.poll()
    ready.wait("a")
    t0 = time.monotonic()
    p.stop(timeout=5)
    assert p.last_exit == 0 and 0.25 < time.monotonic() - t0 < 4
    p.poll()  # a stopped writer is not restarted
    assert p.process is not None and p.process.poll() is not None and p.restarts == 0


def test_stop_aborts_after_the_timeout_and_on_request(ready):
    p = process(WRITER + ["30", ready("a")])
    p.poll()
    ready.wait("a")
    p.stop(timeout=0.3)  # finishing takes too long: second SIGINT
    assert p.last_exit == 1
    q = process(WRITER + ["30", ready("b")])
    q.poll()
    ready.wait("b")
    q.begin_stop(timeout=30)
    # a second stop request of the service, not in the same instant (two SIGINTs sent
    # back to back may reach the process as one: signals are not queued)
    time.sleep(0.3)
    q.abort()
    poll_until(q, lambda: q.stopped, 5)
    assert q.last_exit == 1


def test_hung_writer_is_killed(monkeypatch, ready):
    monkeypatch.setattr(supervisor, "ABORT_TIMEOUT", 0.3)
    p = process(STUBBORN + [ready("a")])
    p.poll()
    ready.wait("a")
    p.stop(timeout=0.3)
    assert p.last_exit == -9


def test_new_writer_waits_for_the_previous_one(ready):
    old = process(WRITER + ["0.5", ready("a")])
    old.poll()
    ready.wait("a")
    old.begin_stop()
    new = SessionProcess(cfg.SessionConfig("s"), None, "info", after=old)
    new.command = WRITER + ["0", ready("b")]
    _started.append(new)
    new.poll()
    assert new.process is None  # the old one still finishes its scans
    deadline = time.monotonic() + 10
    while new.process is None:
        assert time.monotonic() < deadline
        old.poll()
        new.poll()
        time.sleep(0.02)
    assert old.stopped and old.process is not None and old.process.returncode == 0
    new.stop()
