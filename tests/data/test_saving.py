"""The completeness protocol on the Redis side, without a writer: heartbeats, saving
reports, what the acquisition side hears when no writer answers, retention held until
a writer acknowledges, status documents."""

from __future__ import annotations

import os
import socket
import threading
import time

import numpy as np
import pytest
import redis

from nexus_writer.data import DataStore, SavingReport, SavingReporter, WriterPresence
from nexus_writer.data import protocol as P
from nexus_writer.data.saving import (FINAL_STATES, reports, saving_key, wait_report, writer_key,
                                      writer_present)
from nexus_writer.data.status import clear_status, publish_status, read_status, status_key
from nexus_writer.data.walk import EventType
from tests.waiting import returns_within, wait_for

pytestmark = pytest.mark.timeout(20)


def _scan(store: DataStore, session: str = "sav", number: int = 1, **info):
    pub = store.create_scan(session, {"scan_nb": number, "filename": "/nowhere/x.h5", **info})
    ch = pub.create_channel("diode", "f8")
    pub.start()
    return pub, ch


def _later(delay: float, fn, *args, **kwargs) -> threading.Thread:
    def run() -> None:
        time.sleep(delay)
        fn(*args, **kwargs)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


# -- writer_ready ----------------------------------------------------------------------
def test_writer_ready_without_any_writer_answers_at_once(store):
    pub, _ = _scan(store)
    # no heartbeat: no reason to wait, not even a small part of an hour
    report = returns_within(lambda: pub.writer_ready(timeout=3600), 10,
                            "writer_ready(timeout=3600) without any writer")
    assert report.state == "NO_WRITER" and not report.ok
    assert report.reason == "no writer listens to session 'sav'"


def test_writer_ready_with_a_silent_writer_times_out(store):
    """A heartbeat but no answer on this scan (writer stuck, or busy elsewhere)."""
    presence = WriterPresence(store, "sav", ttl=5)
    presence.beat()
    pub, _ = _scan(store)
    started = time.monotonic()
    report = pub.writer_ready(timeout=0.5)
    assert time.monotonic() - started >= 0.5, "gave up before its timeout"
    assert report.state == "NO_WRITER"
    assert report.reason == "no writer answered for scan 1 of session 'sav' within 0.5 s"


@pytest.mark.parametrize("state,reason", [("READY", ""),
                                          ("REFUSED", "directory /x is not writable"),
                                          ("FAILED", "entry 1.1 exists already"),
                                          ("SKIPPED", "not saved by this writer")])
def test_writer_ready_returns_the_writers_answer(store, state, reason):
    WriterPresence(store, "sav", ttl=5).beat()
    pub, _ = _scan(store)
    reporter = SavingReporter(store, pub.key)
    reporter.report("STARTING")  # not an answer to "ready?": waited past
    answer = _later(0.2, reporter.report, state, reason, file="/nowhere/x.h5", entries=["1.1"])
    report = pub.writer_ready(timeout=5)
    answer.join(5)
    assert report == SavingReport(state, reason, {"file": "/nowhere/x.h5", "entries": ["1.1"]})
    assert report.ok == (state in ("READY", "SKIPPED"))
    assert str(report) == state + (f": {reason}" if reason else "")
    # asked again later: the past answer is found at once, without waiting at all
    assert pub.writer_ready(timeout=0).state == state


# -- wait_saved ------------------------------------------------------------------------
def test_wait_saved_without_writer(store):
    pub, ch = _scan(store)
    ch.send([1.0, 2.0])
    pub.end()
    report = pub.wait_saved(timeout=0.3)
    assert report.state == "NO_WRITER" and not report.ok
    assert report.reason == ("scan 1 of session 'sav' not saved within 0.3 s: "
                             "no writer listens to session 'sav'")


def test_wait_saved_writer_did_not_finish(store):
    WriterPresence(store, "sav", ttl=5).beat()
    pub, _ = _scan(store)
    reporter = SavingReporter(store, pub.key)
    reporter.report("READY")
    reporter.report("RUNNING")
    pub.end()
    report = pub.wait_saved(timeout=0.3)
    assert report.state == "NO_WRITER"
    assert report.reason.endswith("not saved within 0.3 s: the writer did not finish")


def test_wait_saved_returns_the_final_report_with_counts(store):
    pub, ch = _scan(store)
    reporter = SavingReporter(store, pub.key)
    reporter.report("READY", file="/nowhere/x.h5")
    reporter.report("RUNNING")
    ch.send([1.0, 2.0, 3.0])
    pub.end()
    channels = {"diode": {"written": 3, "published": 3}}
    final = _later(0.2, reporter.report, "SUCCEEDED", file="/nowhere/x.h5", channels=channels)
    report = pub.wait_saved(timeout=5)
    final.join(5)
    assert report.state == "SUCCEEDED" and report.ok and report.reason == ""
    assert report.detail["channels"] == channels
    assert [r.state for r in reports(store, pub.key)] == ["READY", "RUNNING", "SUCCEEDED"]
    assert reporter.last_state() == "SUCCEEDED"


def test_wait_report_skips_other_states_and_times_out(store):
    pub, _ = _scan(store)
    reporter = SavingReporter(store, pub.key)
    for state in ("READY", "RUNNING"):
        reporter.report(state)
    assert wait_report(store, pub.key, FINAL_STATES, timeout=0.2) is None
    assert wait_report(store, pub.key, ("RUNNING",), timeout=0).state == "RUNNING"


def test_report_refuses_an_unknown_state(store):
    pub, _ = _scan(store)
    with pytest.raises(ValueError, match="'DONE' is not one of"):
        SavingReporter(store, pub.key).report("DONE")
    assert reports(store, pub.key) == []


def test_a_report_whose_detail_is_not_json_is_still_read(store, raw):
    pub, _ = _scan(store)
    raw.xadd(saving_key(pub.key), {"state": "FAILED", "reason": "x", "detail": "{not json"})
    assert reports(store, pub.key) == [SavingReport("FAILED", "x", {"raw": "{not json"})]


def test_progress_round_trip(store, raw):
    pub, _ = _scan(store)
    reporter = SavingReporter(store, pub.key)
    assert reporter.saved_progress() == {}
    reporter.progress({"diode": 12, "mca": 10})
    assert reporter.saved_progress() == {"diode": 12, "mca": 10}
    raw.hset(pub.key, "saving_progress", "[1, 2]")  # a list, not a dict: start over
    assert reporter.saved_progress() == {}
    raw.hset(pub.key, "saving_progress", "{broken")
    assert reporter.saved_progress() == {}


# -- heartbeat -------------------------------------------------------------------------
def _heartbeat(store: DataStore) -> float | None:
    seen = writer_present(store, "sav")
    return float(seen["heartbeat"]) if seen is not None else None


def test_heartbeat_is_renewed_and_removed_at_stop(store, raw):
    presence = WriterPresence(store, "sav", ttl=3, url=store.url).start()
    try:
        seen = writer_present(store, "sav")
        assert seen is not None
        assert seen["pid"] == str(os.getpid()) and seen["host"] == socket.gethostname()
        assert seen["url"] == store.url
        first = float(seen["heartbeat"])
        wait_for(lambda: (_heartbeat(store) or 0) > first, 10, "the heartbeat renewed")
        assert 0 < raw.pttl(writer_key("sav")) <= 3000  # renewed with its TTL each time
    finally:
        presence.stop()
    assert writer_present(store, "sav") is None


def test_heartbeat_of_a_dead_writer_expires(store):
    """A writer killed (no stop()) stops beating: it disappears after the TTL, and
    the acquisition side is told that no writer listens."""
    WriterPresence(store, "sav", ttl=0.5).beat()  # one beat, then the writer is gone
    assert writer_present(store, "sav") is not None
    wait_for(lambda: writer_present(store, "sav") is None, 10,
             "the dead writer's heartbeat to expire (TTL 0.5 s)")
    pub, _ = _scan(store)
    assert pub.writer_ready(timeout=5).state == "NO_WRITER"


def test_heartbeat_survives_a_failed_beat(store, caplog, monkeypatch):
    """Redis away for two beats: the heartbeat thread logs it and beats again after."""
    presence = WriterPresence(store, "sav", ttl=0.6).start()
    real = store.redis.pipeline
    failures = [0]
    lock = threading.Lock()

    def pipeline(*args, **kwargs):
        with lock:
            if failures[0] < 2:
                failures[0] += 1
                raise redis.ConnectionError("gone for a moment")
        return real(*args, **kwargs)

    try:
        before = _heartbeat(store)
        assert before is not None
        monkeypatch.setattr(store.redis, "pipeline", pipeline)
        wait_for(lambda: failures[0] == 2, 10, "two heartbeats failing")
        wait_for(lambda: (_heartbeat(store) or 0) > before, 10, "a heartbeat after the failures")
        assert caplog.text.count("session sav: heartbeat failed: gone for a moment") == 2
    finally:
        monkeypatch.undo()
        presence.stop()


# -- retention -------------------------------------------------------------------------
def _ttls(raw, keys) -> list[float]:
    return [raw.pttl(k) / 1000 for k in keys]


def test_unacknowledged_scan_outlives_the_retention(redis_url, raw):
    """Ended, not saved: its keys stay past ``retention`` (up to the cap); the writer's
    final report brings them back to ``retention``, its saving reports included."""
    store = DataStore(redis_url, retention=60, unacked_retention=3600)
    writer_side = DataStore(redis_url)  # the writer's own retention (24 h) must not apply
    try:
        pub, ch = _scan(store)
        ch.send([1.0, 2.0])
        reporter = SavingReporter(writer_side, pub.key)
        reporter.report("READY")
        pub.end()
        keys = [pub.key, P.scan_events_key(pub.key), ch.node.key]
        ttls = _ttls(raw, keys)
        assert all(60 < t <= 3600 for t in ttls), ttls  # the cap, not the retention
        assert store.get_scan_node(pub.key).nodes()[0].get().tolist() == [1.0, 2.0]
        reporter.report("SUCCEEDED")
        assert raw.hget(pub.key, "acknowledged") == b"1"
        keys.append(saving_key(pub.key))
        ttls = _ttls(raw, keys)
        assert all(0 < t <= 60 for t in ttls), ttls  # back to the retention
    finally:
        writer_side.close()
        store.close()


def test_scan_acknowledged_before_its_end_gets_the_retention(redis_url, raw):
    """A writer that gave up early (file refused) acknowledges before the end: the end
    then applies the normal retention, to the saving reports too."""
    store = DataStore(redis_url, retention=60, unacked_retention=3600)
    try:
        pub, ch = _scan(store)
        SavingReporter(store, pub.key).report("FAILED", "directory /x is not writable")
        ch.send([1.0])
        pub.end()
        keys = [pub.key, P.scan_events_key(pub.key), ch.node.key, saving_key(pub.key)]
        assert all(0 < t <= 60 for t in _ttls(raw, keys)), _ttls(raw, keys)
    finally:
        store.close()


def test_saving_reports_never_outlive_their_scan(redis_url, raw):
    """A writer that reported READY and died: its reports expire with the scan."""
    store = DataStore(redis_url, retention=1, unacked_retention=3600)
    try:
        pub, ch = _scan(store)
        ch.send([1.0])
        pub.end()
        scan_ttl = raw.pttl(pub.key)
        SavingReporter(store, pub.key).report("READY")  # the writer came late, then died
        ttl = raw.pttl(saving_key(pub.key))
        # the scan's own (unacknowledged) expiry: neither the retention nor never
        assert 60_000 < ttl <= scan_ttl, (ttl, scan_ttl)
    finally:
        store.close()


# -- status documents ------------------------------------------------------------------
def test_status_documents(store, raw):
    scans = [{"scan": 1, "state": "RUNNING", "channels": {"diode": {"received": 3,
                                                                    "written": 2}}}]
    before = time.time()
    publish_status(store, "s1", {"pid": 12, "scans": scans}, ttl=0.5)
    after = time.time()
    publish_status(store, "s2", {"pid": 13, "scans": []})
    doc = read_status(store, "s1")["s1"]
    assert doc["pid"] == 12 and doc["scans"] == scans and doc["session"] == "s1"
    assert before <= doc["updated"] <= after
    assert read_status(store, "nobody") == {}
    assert raw.pttl(status_key("s1")) <= 500
    assert raw.pttl(status_key("s2")) > 500
    # a writer gone stops renewing it
    wait_for(lambda: sorted(read_status(store)) == ["s2"], 10, "s1's status to expire")
    clear_status(store, "s2")
    assert read_status(store) == {}


# -- a producer riding out a Redis restart ---------------------------------------------
def _lose_reply_once(monkeypatch, obj, name: str, applied: bool = True) -> list:
    """``obj.name`` fails once with a lost connection, after (``applied``) or instead of
    doing its work: what a client sees when Redis dies around a command."""
    real = getattr(obj, name)
    calls: list = []

    def flaky(*args, **kwargs):
        calls.append(args)
        if len(calls) == 1:
            if applied:
                real(*args, **kwargs)
            raise redis.ConnectionError("Connection closed by server.")
        return real(*args, **kwargs)

    monkeypatch.setattr(obj, name, flaky)
    return calls


def test_a_send_retried_after_a_lost_reply_is_not_duplicated(store, monkeypatch):
    pub, ch = _scan(store)
    ch.send([0.0])
    _lose_reply_once(monkeypatch, store.redis, "xadd")
    with pytest.raises(redis.ConnectionError):
        ch.send([1.0, 2.0])
    assert ch.count == 1
    ch.send([1.0, 2.0])  # the same batch again: Redis has it already
    ch.send([3.0])
    assert ch.count == 4
    node = store.get_scan_node(pub.key).nodes()[0]
    assert node.get().tolist() == [0.0, 1.0, 2.0, 3.0]
    pub.end()
    # a listener reads the points once each, in order, no error, then the end
    events = list(store.get_scan_node(pub.key).walk_events(with_data=True, timeout=10))
    assert [e[0] for e in events if e[0] == EventType.ERROR] == []
    data = [e[2] for e in events if e[0] == EventType.NEW_DATA_IN_CHANNEL]
    assert [d.first_index for d in data] == [0, 1, 3]
    assert np.concatenate([d.data for d in data]).tolist() == [0.0, 1.0, 2.0, 3.0]
    assert events[-1][0] == EventType.END_SCAN


def test_another_batch_after_a_lost_reply_is_refused(store, monkeypatch):
    """The lost batch is in Redis; sending a different one in its place would shift
    every later point: refused."""
    pub, ch = _scan(store)
    _lose_reply_once(monkeypatch, store.redis, "xadd")
    with pytest.raises(redis.ConnectionError):
        ch.send([1.0, 2.0])
    with pytest.raises(redis.ResponseError):
        ch.send([5.0])
    assert ch.count == 0


@pytest.mark.parametrize("applied", [False, True])
def test_end_retried_after_redis_went_away(store, monkeypatch, raw, applied):
    """end() failing on a lost connection (whether or not it reached Redis) may be
    called again: the scan ends exactly once, and nothing is sent in between."""
    from redis.client import Pipeline

    from nexus_writer.errors import ScanStateError

    pub, ch = _scan(store)
    ch.send([1.0])
    _lose_reply_once(monkeypatch, Pipeline, "execute", applied=applied)
    with pytest.raises(redis.ConnectionError):
        pub.end()
    with pytest.raises(ScanStateError, match="after the end"):
        ch.send([2.0])
    assert (raw.hget(pub.key, "state") == b"ENDED") == applied
    pub.end()
    assert raw.hget(pub.key, "state") == b"ENDED"
    ends = [f for _, f in raw.xrange(P.scan_events_key(pub.key)) if f[b"event"] == b"END_SCAN"]
    assert len(ends) == 1 and P.loads(ends[0][b"counts"]) == {"diode": 1}
    assert [f[b"event"] for _, f in raw.xrange(P.session_stream_key("sav"))] == [
        b"NEW_NODE", b"END_SCAN"]
    with pytest.raises(ScanStateError, match="called twice"):
        pub.end()
