"""The session lease (issue 9.1): one active writer per session, on a real Redis."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading

import pytest

from nexus_writer.data.lease import LeaseHeldError, SessionLease, lease_holder, lease_key


def _foreign_lease(raw, session: str, ttl_ms: int, host: str = "another-host",
                   pid: int = 4242) -> None:
    """A lease held by a writer on another host (nothing here can tell it is dead)."""
    raw.set(lease_key(session), json.dumps({"id": "foreign", "host": host, "pid": pid,
                                            "since": 1.0e9, "started": 1.0e9}), px=ttl_ms)


def test_second_writer_is_refused_naming_the_holder(store):
    first = SessionLease(store, "s1")
    first.acquire()
    try:
        second = SessionLease(store, "s1")
        with pytest.raises(LeaseHeldError) as info:
            second.acquire()
        message = str(info.value)
        assert f"host {socket.gethostname()}" in message
        assert f"pid {first.me.pid}" in message and "since " in message
        assert "--standby" in message
        assert not second.held
        # another session is independent
        other = SessionLease(store, "s2")
        other.acquire()
        other.release()
    finally:
        first.release()
    assert lease_holder(store, "s1") is None


def test_release_frees_the_session(store):
    first = SessionLease(store, "s1")
    first.acquire()
    first.release()
    second = SessionLease(store, "s1")
    second.acquire()
    assert lease_holder(store, "s1").id == second.me.id
    second.release()


def test_a_live_foreign_lease_is_respected(store, raw):
    """A lease always expires, and a writer that is refused leaves it untouched."""
    _foreign_lease(raw, "s1", 60_000)
    assert 0 < raw.pttl(lease_key("s1")) <= 60_000, "a lease must always expire"
    mine = SessionLease(store, "s1", ttl=5)
    with pytest.raises(LeaseHeldError, match="another-host, pid 4242"):
        mine.acquire()
    holder = mine.try_acquire()
    assert holder is not None and holder.host == "another-host"
    assert raw.pttl(lease_key("s1")) > 5_000, "the holder's lease was changed"
    assert lease_holder(store, "s1").id == "foreign"


def test_standby_takes_over_when_the_lease_lapses(store, raw):
    _foreign_lease(raw, "s1", 800)
    standby = SessionLease(store, "s1", ttl=2.0)
    seen = []
    stop = threading.Event()
    result: list[bool] = []
    thread = threading.Thread(target=lambda: result.append(
        standby.wait_acquire(stop, poll=0.05, on_wait=seen.append)))
    thread.start()
    thread.join(30)
    stop.set()
    assert result == [True], "the standby never took the session over"
    assert [h.host for h in seen] == ["another-host"], "the holder is named once"
    assert lease_holder(store, "s1").id == standby.me.id
    standby.release()


def test_dead_holder_on_this_host_is_taken_over_at_once(store, raw, redis_url):
    """A writer killed with kill -9 on this host: its lease need not be waited out."""
    code = ("import sys,time; from nexus_writer.data import DataStore; "
            "from nexus_writer.data.lease import SessionLease; "
            f"l=SessionLease(DataStore({redis_url!r}), 's1', ttl=60); l.acquire(); "
            "print('held', flush=True); time.sleep(120)")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
        with pytest.raises(LeaseHeldError, match=f"pid {proc.pid}"):
            SessionLease(store, "s1").acquire()  # alive: refused
        proc.kill()
        proc.wait(10)
        mine = SessionLease(store, "s1")
        mine.acquire()  # dead: taken over without waiting 60 s
        assert lease_holder(store, "s1").id == mine.me.id
        mine.release()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        assert proc.stdout is not None
        proc.stdout.close()


def test_lease_lost_to_another_writer_is_noticed(store, raw):
    lost = []
    mine = SessionLease(store, "s1", on_lost=lost.append)
    mine.acquire()
    _foreign_lease(raw, "s1", 10_000)  # e.g. we were cut off longer than the TTL
    assert mine.renew() is False
    assert mine.lost.is_set() and not mine.held
    assert [h.host for h in lost] == ["another-host"]
    mine.release()
    assert lease_holder(store, "s1").host == "another-host", "never delete another's lease"


def test_lease_taken_back_after_an_empty_redis_restart(store, raw):
    mine = SessionLease(store, "s1")
    mine.acquire()
    raw.flushall()  # what a restart without persistence leaves
    assert mine.renew() is True
    assert lease_holder(store, "s1").id == mine.me.id
    mine.release()
