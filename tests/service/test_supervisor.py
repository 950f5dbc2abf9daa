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
from tests.waiting import wait_for

pytestmark = pytest.mark.timeout(60)

EXITS = [sys.executable, "-c", "import sys; sys.exit(3)"]
#: Stands for a writer: creates the file ``{sys.argv[2]}`` when ready; the first SIGINT
#: (file ``{sys.argv[2]}.int``) "finishes scans" for ``sys.argv[1]`` s or until the file
#: ``{sys.argv[2]}.release`` appears, then exits 0; a second SIGINT aborts (exit 1).
WRITER = [sys.executable, "-c", """
import os, signal, sys, time
hits = []
def on_int(*_):
    hits.append(time.monotonic())
    if len(hits) > 1:
        sys.exit(1)
    open(sys.argv[2] + ".int", "w").close()
signal.signal(signal.SIGINT, on_int)
open(sys.argv[2], "w").close()
while not hits or (time.monotonic() - hits[0] < float(sys.argv[1])
                   and not os.path.exists(sys.argv[2] + ".release")):
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


def poll_until(p: SessionProcess, predicate, timeout: float, what: str) -> None:
    """Poll the supervisor's handle until ``predicate()``, as the service loop does."""
    def check() -> bool:
        if predicate():
            return True
        p.poll()
        return False

    wait_for(check, timeout, what, lambda: p.info())


@pytest.fixture
def ready(tmp_path):
    """``ready(name)`` -> the path a stand-in creates once its SIGINT handler is set;
    ``ready.wait(name)`` waits for it."""
    class Ready:
        def __call__(self, name: str) -> str:
            return str(tmp_path / name)

        def wait(self, name: str) -> None:
            wait_for((tmp_path / name).exists, 30, f"the stand-in's file {name}")

        def release(self, name: str) -> None:
            (tmp_path / f"{name}.release").touch()

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
    poll_until(p, lambda: len(starts) >= 4, 30, "the fourth start of a crashing writer")
    assert p.restarts == 3 and p.last_exit == 3
    gaps = [b - a for a, b in zip(starts, starts[1:])]
    assert gaps[0] >= 0.1 and gaps[1] >= 0.3 and gaps[2] >= 0.6, gaps
    p.stop()


def test_backoff_starts_anew_after_a_stable_run(monkeypatch):
    """Deaths after short runs walk up the backoff; a run longer than STABLE_AFTER
    starts it anew.  BACKOFF's second step is an hour: which step applied shows in
    ``next_start`` without measuring any delay."""
    monkeypatch.setattr(supervisor, "BACKOFF", (0.1, 3600.0))
    monkeypatch.setattr(supervisor, "STABLE_AFTER", 3600.0)  # every run short

    def restarted(previous) -> None:
        poll_until(p, lambda: p.process is not None and p.process is not previous, 30,
                   "the writer restarted")

    p = process(WRITER + ["0", "/dev/null"])
    p.poll()
    first = p.process
    assert first is not None
    first.kill()  # died young, first time: the first delay
    poll_until(p, lambda: p.process is None, 30, "the death noticed")
    assert p.next_start - time.monotonic() < 1800 and p.restarts == 1
    restarted(first)
    monkeypatch.setattr(supervisor, "STABLE_AFTER", 0.0)  # from now on, a stable run
    p.poll()  # seen running longer than STABLE_AFTER: no crash loop any more
    second = p.process
    monkeypatch.setattr(supervisor, "STABLE_AFTER", 3600.0)
    second.kill()
    poll_until(p, lambda: p.process is None, 30, "the death noticed")
    assert p.next_start - time.monotonic() < 1800, "the backoff did not start anew"
    assert p.restarts == 2
    restarted(second)
    third = p.process
    third.kill()  # died young after a young death: the second delay
    poll_until(p, lambda: p.process is None, 30, "the death noticed")
    assert p.next_start - time.monotonic() > 1800
    assert p.restarts == 3
    p.stop()


def test_stop_lets_the_writer_finish(ready):
    p = process(WRITER + ["0.3", ready("a")])
    p.poll()
    ready.wait("a")
    p.stop(timeout=600)
    # exit 0: it finished by itself after the first SIGINT (a second one makes it 1)
    assert p.last_exit == 0 and p.process is not None and p.process.poll() == 0
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
    q.begin_stop(timeout=600)
    # a second stop request of the service once the first SIGINT was handled (two
    # SIGINTs sent back to back may reach the process as one: signals are not queued)
    ready.wait("b.int")
    q.abort()
    poll_until(q, lambda: q.stopped, 30, "the writer aborted")
    assert q.last_exit == 1


def test_hung_writer_is_killed(monkeypatch, ready):
    monkeypatch.setattr(supervisor, "ABORT_TIMEOUT", 0.3)
    p = process(STUBBORN + [ready("a")])
    p.poll()
    ready.wait("a")
    p.stop(timeout=0.3)
    assert p.last_exit == -9


def test_new_writer_waits_for_the_previous_one(ready):
    old = process(WRITER + ["600", ready("a")])
    old.poll()
    ready.wait("a")
    old.begin_stop(timeout=600)
    ready.wait("a.int")  # the old one finishes its scans until released
    new = SessionProcess(cfg.SessionConfig("s"), None, "info", after=old)
    new.command = WRITER + ["0", ready("b")]
    _started.append(new)
    new.poll()
    old.poll()
    new.poll()
    assert new.process is None, "started while the previous writer still runs"
    ready.release("a")

    def both() -> bool:
        old.poll()
        new.poll()
        return new.process is not None

    wait_for(both, 30, "the new writer started after the old one exited",
             lambda: (old.info(), new.info()))
    assert old.stopped and old.process is not None and old.process.returncode == 0
    new.stop()
