"""The completeness protocol with a real session writer: the acquisition side asks
"is a writer ready?" and "is my scan saved?", and is told the truth, with counts,
in Redis, in the status documents and in the file."""

from __future__ import annotations

import threading

import h5py
import numpy as np
import pytest
import redis

from nexus_writer.data import DataStore
from nexus_writer.data import protocol as P
from nexus_writer.data.saving import reports, saving_key, writer_present
from nexus_writer.data.status import read_status
from nexus_writer.writer import ScanState
from tests.waiting import wait_for

from .helpers import check_scan, decode, manual_scan_info, wait_written

pytestmark = pytest.mark.timeout(60)

CHANNELS = {"timer:elapsed_time": {"device": "timer", "dim": 0, "unit": "s"},
            "ctrl:diode": {"device": "diode", "dim": 0, "unit": "V"},
            "mca:spectrum": {"device": "mca", "dim": 1, "unit": ""}}


def _publish(store: DataStore, filename: str, number: int = 1, npoints: int = 6,
             session: str = "test_session", end: bool = True, **info):
    """A manual scan: elapsed_time, diode and a 16-channel spectrum, ``npoints`` points."""
    scan_info = manual_scan_info(session, number, filename, CHANNELS, npoints=npoints)
    scan_info.update(info)
    pub = store.create_scan(session, scan_info)
    pubs = {name: pub.create_channel(name, "int32" if c["dim"] else "float64",
                                     (16,) if c["dim"] else (), c["unit"], device=c["device"])
            for name, c in CHANNELS.items()}
    pub.start()
    for p in pubs.values():
        if p.node.shape:
            p.send(np.arange(npoints * 16, dtype=np.int32).reshape(npoints, 16))
        else:
            p.send(np.arange(float(npoints)))
    if end:
        pub.end()
    return pub, pubs


def _writer_group(filename: str, entry: str) -> dict:
    with h5py.File(filename, "r", locking=False) as f:
        group = f[entry]["writer"]
        return {name: decode(group[name][()]) if group[name].dtype.kind in "OS"
                else group[name][()].tolist() for name in group}


def test_ready_running_succeeded_with_counts(store, data_dir, writer_factory):
    """READY before the data, then the final report whose counts match the file."""
    filename = str(data_dir / "ok.h5")
    writer = writer_factory()
    pub, pubs = _publish(store, filename, end=False)
    ready = pub.writer_ready(timeout=10)
    assert ready.state == "READY", ready
    assert ready.detail == {"file": filename, "entries": ["1.1"]}
    pub.end()
    saved = pub.wait_saved(timeout=20)
    assert saved.state == "SUCCEEDED" and saved.ok and saved.reason == "", saved
    assert saved.detail["file"] == filename and saved.detail["entries"] == ["1.1"]
    assert saved.detail["end_reason"] == "SUCCESS" and saved.detail["problems"] == []
    assert saved.detail["channels"] == {name: {"written": 6, "published": 6}
                                        for name in CHANNELS}
    assert [r.state for r in reports(store, pub.key)] == ["READY", "RUNNING", "SUCCEEDED"]
    [sw] = wait_written(writer, [pub])
    check_scan(store, sw)
    group = _writer_group(filename, "1.1")
    names = sorted(CHANNELS)
    assert group["status"] == "SUCCEEDED" and group["reason"] == ""
    assert group["channels"] == names
    assert group["points_written"] == group["points_published"] == [6, 6, 6]
    assert group["end_reason"] == "SUCCESS" and group["scan_key"] == pub.key


def test_writer_ready_names_why_the_file_cannot_be_written(store, data_dir, tmp_path,
                                                           writer_factory):
    """An unwritable destination and an entry taken: the producer hears it at once
    (no need to wait for the end of the scan), with the reason."""
    blocker = tmp_path / "a_file"
    blocker.write_text("not a directory")
    taken = str(data_dir / "taken.h5")
    with h5py.File(taken, "w") as f:
        f.create_group("2.1")
    writer_factory()
    unwritable, _ = _publish(store, str(blocker / "sub" / "x.h5"), number=1, end=False)
    clash, _ = _publish(store, taken, number=2, end=False)
    for pub, words in ((unwritable, ["cannot create directory", str(blocker / "sub")]),
                       (clash, ["entry 2.1 exists already", taken])):
        answer = pub.writer_ready(timeout=10)
        assert answer.state == "FAILED" and not answer.ok, answer
        assert f"scan {pub.number} of session 'test_session'" in answer.reason
        for word in words:
            assert word in answer.reason, answer.reason
        pub.end()
        final = pub.wait_saved(timeout=10)
        assert final.state == "FAILED" and final.reason == answer.reason
    with h5py.File(taken, "r", locking=False) as f:
        assert list(f) == ["2.1"] and len(f["2.1"]) == 0


def test_wait_saved_failed_says_what_is_missing(store, redis_url, data_dir, writer_factory):
    """Two points of the diode replaced by garbage: FAILED, the reason and the counts
    say which channel misses what; the other channels are complete."""
    filename = str(data_dir / "holes.h5")
    writer = writer_factory()
    scan_info = manual_scan_info("test_session", 4, filename, CHANNELS, npoints=6)
    pub = store.create_scan("test_session", scan_info)
    pubs = {name: pub.create_channel(name, "int32" if c["dim"] else "float64",
                                     (16,) if c["dim"] else (), device=c["device"])
            for name, c in CHANNELS.items()}
    pub.start()
    raw = redis.Redis.from_url(redis_url)
    try:
        for i in range(6):
            for name, p in pubs.items():
                if name == "ctrl:diode" and i in (2, 3):
                    if i == 2:  # one entry for points 2 and 3, with 3 bytes of payload
                        raw.xadd(p.node.key, {b"n": b"2", b"d": b"abc"}, id=P.entry_id(2))
                        p.count += 2
                    continue
                p.send(np.full((16,), i, np.int32) if p.node.shape else float(i))
    finally:
        raw.close()
    pub.end()
    saved = pub.wait_saved(timeout=20)
    assert saved.state == "FAILED" and not saved.ok
    assert "ctrl:diode 4/6 points" in saved.reason, saved.reason
    assert "points 2..3 are missing" in saved.reason
    assert "elapsed_time" not in saved.reason and "mca:spectrum" not in saved.reason
    channels = saved.detail["channels"]
    assert channels["ctrl:diode"] == {"written": 4, "published": 6}
    assert channels["mca:spectrum"] == channels["timer:elapsed_time"] == {"written": 6,
                                                                          "published": 6}
    assert any("ctrl:diode" in p and "3 bytes" in p for p in saved.detail["problems"])
    wait_written(writer, [pub])
    group = _writer_group(filename, "4.1")
    assert group["status"] == "FAILED" and group["reason"] == saved.reason
    assert dict(zip(group["channels"], group["points_written"])) == {
        "ctrl:diode": 4, "mca:spectrum": 6, "timer:elapsed_time": 6}
    assert group["points_published"] == [6, 6, 6]
    with h5py.File(filename, "r", locking=False) as f:
        diode = f["4.1/instrument/diode/data"][()]
    np.testing.assert_array_equal(diode[[0, 1, 4, 5]], [0, 1, 4, 5])
    assert np.isnan(diode[2:4]).all()


def test_scans_not_to_be_saved_are_skipped_and_expire_normally(redis_url, data_dir,
                                                               writer_factory):
    producer = DataStore(redis_url, retention=5, unacked_retention=600)
    raw = redis.Redis.from_url(redis_url)
    try:
        writer = writer_factory()
        pub, _ = _publish(producer, str(data_dir / "never.h5"), save=False, end=False)
        assert pub.writer_ready(timeout=10).state == "SKIPPED"
        pub.end()
        saved = pub.wait_saved(timeout=10)
        assert saved.state == "SKIPPED" and saved.ok and "save=False" in saved.reason
        assert 0 < raw.ttl(pub.key) <= 5 and 0 < raw.ttl(saving_key(pub.key)) <= 5
        [sw] = wait_written(writer, [pub])
        assert sw.state == ScanState.SKIPPED
        assert not (data_dir / "never.h5").exists()
    finally:
        raw.close()
        producer.close()


def test_simulated_scans_wait_saved(sim_session, writer_factory, store):
    """What a BLISS-like session does after each scan: wait_saved, and go on."""
    writer = writer_factory()
    sim_session.time_scale = 1.0
    scans = [sim_session.loopscan(20, 0.005, "diode", "simu1", "lima_simulator"),
             sim_session.ascan("roby", 0, 1, 9, 0.005, "diode", "simu1"),
             sim_session.amesh("roby", 0, 1, 3, "robz", 0, 1, 2, 0.005, "diode")]
    for scan in scans:
        saved = scan.wait_saved(timeout=20)
        assert saved.state == "SUCCEEDED", saved
        counts = {n.name: n.count() for n in scan.node.nodes()}
        assert saved.detail["channels"] == {name: {"written": n, "published": n}
                                            for name, n in counts.items()}
    for sw in wait_written(writer, scans):
        check_scan(store, sw)


def test_scan_ended_while_no_writer_runs_waits_for_one(redis_url, data_dir, writer_factory):
    """The scan outlives its retention in Redis until a writer saved it; then the
    producer's retention applies."""
    producer = DataStore(redis_url, retention=60, unacked_retention=3600)
    raw = redis.Redis.from_url(redis_url)
    try:
        pub, pubs = _publish(producer, str(data_dir / "late.h5"))
        keys = [pub.key, P.scan_events_key(pub.key)] + [p.node.key for p in pubs.values()]
        assert pub.writer_ready(timeout=5).state == "NO_WRITER"
        assert raw.exists(*keys) == len(keys)
        ttls = [raw.ttl(k) for k in keys]
        assert all(60 < t <= 3600 for t in ttls), ttls  # the cap, not the retention
        writer = writer_factory()
        saved = pub.wait_saved(timeout=30)
        assert saved.state == "SUCCEEDED", saved
        ttls = [raw.pttl(k) for k in keys + [saving_key(pub.key)]]
        assert all(0 < t <= 60_000 for t in ttls), ttls  # now the producer's retention
        [sw] = wait_written(writer, [pub])
        check_scan(producer, sw)
    finally:
        raw.close()
        producer.close()


def test_status_documents_follow_the_scans(store, data_dir, writer_factory):
    """``nxw:status:{session}`` shows each scan with its state and counts, while it runs
    and after; the heartbeat names the writer's process and goes with it."""
    writer = writer_factory(status_period=0.1)
    presence = writer_present(store, "test_session")
    assert presence is not None and presence["url"] == writer.url
    pub, pubs = _publish(store, str(data_dir / "status.h5"), npoints=4, end=False)

    def status_of_scan() -> dict | None:
        doc = read_status(store, "test_session").get("test_session")
        return next((s for s in (doc or {}).get("scans", []) if s["key"] == pub.key), None)

    def running_with_4_points() -> dict | None:
        scan = status_of_scan()
        if scan and scan["state"] == "RUNNING" and len(scan["channels"]) == 3 and all(
                c["received"] == 4 for c in scan["channels"].values()):
            return scan
        return None

    scan = wait_for(running_with_4_points, 30, "the status RUNNING with 4 points received",
                    status_of_scan)
    assert scan["scan"] == 1 and scan["title"] == "manual scan"
    assert scan["file"] == str(data_dir / "status.h5") and scan["entries"] == ["1.1"]
    assert all(c["published"] is None for c in scan["channels"].values())
    for p in pubs.values():
        p.send(np.zeros((2, 16), np.int32) if p.node.shape else [4.0, 5.0])
    pub.end()
    assert pub.wait_saved(timeout=20).state == "SUCCEEDED"
    scan = wait_for(lambda: (s := status_of_scan()) and s["state"] == "SUCCEEDED" and s, 30,
                    "the status SUCCEEDED", status_of_scan)
    assert scan["reason"] == "" and scan["problems"] == []
    assert scan["channels"] == {name: {"received": 6, "written": 6, "published": 6}
                                for name in CHANNELS}
    doc = read_status(store, "test_session")["test_session"]
    assert doc["pid"] == int(presence["pid"]) and doc["active"] == 0
    writer.stop(timeout=10)
    assert writer_present(store, "test_session") is None


def test_writer_stopped_while_the_producer_waits(store, data_dir, writer_factory):
    """wait_saved in one thread, the writer stopped in another: the producer hears
    FAILED with the reason at once, not a timeout."""
    writer = writer_factory()
    pub, _ = _publish(store, str(data_dir / "stopped.h5"), end=False)
    assert pub.writer_ready(timeout=10).state == "READY"
    result: list = []
    # an hour's patience: an answer means the writer's report, not the timeout
    waiter = threading.Thread(target=lambda: result.append(pub.wait_saved(timeout=3600)),
                              daemon=True)
    waiter.start()
    writer.stop(timeout=0.2)
    waiter.join(60)
    assert not waiter.is_alive(), "wait_saved still waiting 60 s after the writer stopped"
    [saved] = result
    assert saved.state == "FAILED"
    assert "writer stopped before the end of the scan" in saved.reason
    assert saved.detail["channels"]["ctrl:diode"] == {"written": 6, "published": None}
