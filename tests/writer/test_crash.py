"""A writer killed (``kill -9``) in the middle of scans that go on being published,
then restarted: every file ends whole, bit-exact, without gap or duplicate, SUCCEEDED
and NeXus-valid.  The writer runs as the real command, in its own process."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import h5py
import numpy as np
import pytest
import redis

from nexus_writer.data import DataStore
from nexus_writer.data.saving import SavingReporter, writer_present
from nexus_writer.data.server import RedisServer, free_port
from nexus_writer.nexus.validate import validate_file
from nexus_writer.writer import ScanState

from tests.waiting import wait_for

from .helpers import check_scan, wait_written

SESSION = "test_session"


class WriterProcess:
    """``nexus-writer write SESSION`` in a subprocess, killed or stopped on demand."""

    def __init__(self, redis_url: str, log: Path, session: str = SESSION):
        self.redis_url = redis_url
        self.log = log
        self.session = session
        self.proc: subprocess.Popen | None = None
        self.starts = 0

    def start(self, store: DataStore, timeout: float = 15.0) -> "WriterProcess":
        """Start and wait for its heartbeat (a killed one's may still be there)."""
        assert self.proc is None
        with open(self.log, "a") as log:
            log.write(f"--- start {self.starts}\n")
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "nexus_writer.cli.main", "write", self.session,
                 "--redis", self.redis_url, "--no-live", "--flush-period", "0.1",
                 "--log", "info"],
                stdout=subprocess.DEVNULL, stderr=log)
        self.starts += 1
        proc = self.proc

        def announced() -> bool:
            assert proc.poll() is None, f"the writer exited: {self.text()[-2000:]}"
            seen = writer_present(store, self.session)
            return seen is not None and seen.get("pid") == str(proc.pid)

        wait_for(announced, timeout, "the writer's heartbeat with its pid",
                 lambda: self.text()[-2000:])
        return self

    def kill(self) -> None:
        """``kill -9``: no clean-up of any kind."""
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)
        self.proc = None

    def stop(self, timeout: float = 30.0) -> int:
        """Ctrl-C: finish the scans in progress, then exit; returns the exit code."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGINT)
        try:
            return self.proc.wait(timeout)
        finally:
            self.close()

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self.proc = None

    def text(self) -> str:
        return self.log.read_text() if self.log.exists() else ""


def as_written(store: DataStore, key: str, state: ScanState) -> Any:
    """What :func:`check_scan` needs of a ScanWriter, for a scan that another process
    wrote: its state, file and entries (one per top master of the scan_info's chain)."""
    scan = store.get_scan_node(key)
    info = scan.info
    chain = info.get("acquisition_chain") or {"": None}
    return SimpleNamespace(state=state, saving=SimpleNamespace(reason=""), label=scan.label,
                           source=SimpleNamespace(key=key), filename=info["filename"],
                           entries=[f"{scan.number}.{k}" for k in range(1, len(chain) + 1)])


def assert_saved_whole(store: DataStore, scans: list[Any], timeout: float = 30.0) -> None:
    """Each scan SUCCEEDED, its file bit-exact with Redis and NeXus-valid."""
    files = set()
    for scan in scans:
        saved = scan.wait_saved(timeout)
        assert saved.state == "SUCCEEDED", f"scan {scan.scan_number}: {saved}"
        assert all(c["written"] == c["published"] for c in saved.detail["channels"].values())
        check_scan(store, as_written(store, scan.key, ScanState.SUCCEEDED))
        files.add(scan.scan_info["filename"])
    for filename in files:
        report = validate_file(filename)
        assert report.ok, report.messages


def _progress(store: DataStore, key: str) -> dict[str, int]:
    return SavingReporter(store, key).saved_progress()


def _wait_progress(store: DataStore, key: str, points: int, timeout: float = 20.0) -> dict:
    """Until the writer recorded at least ``points`` durable points of every channel."""
    def reached() -> dict | None:
        progress = _progress(store, key)
        return progress if len(progress) > 3 and min(progress.values()) >= points else None

    return wait_for(reached, timeout, f"{points} durable points of every channel",
                    lambda: f"progress: {_progress(store, key)}", interval=0.01)


@pytest.mark.timeout(90)
def test_kill_9_mid_scan_then_restart(sim_session, store, writer_process):
    """Scalars, a spectrum and a camera; the writer dies at about a third of the scan;
    while it is down the scan goes on and a second scan starts and ends; the writer
    that comes back finishes the first file where the flushed data ended and writes
    the second scan."""
    sim_session.time_scale = 1.0
    writer = writer_process().start(store)
    scan = sim_session.loopscan(160, 0.005, "diode", "simu1", "lima_simulator", run=False)
    thread = scan.run_in_thread()
    wait_for(lambda: scan.key is not None, 10, "the scan published in Redis")
    assert scan.publisher.writer_ready(timeout=10).state == "READY"
    at_kill = _wait_progress(store, scan.key, 40)
    writer.kill()
    assert thread.is_alive(), "the scan ended before the writer was killed"
    meanwhile = sim_session.loopscan(7, 0.01, "diode2", "simu1")
    assert scan.publisher.wait_saved(timeout=0.2).state == "NO_WRITER"
    writer.start(store)
    thread.join(60)
    assert_saved_whole(store, [scan, meanwhile])
    assert writer.stop() == 0
    log = writer.text()
    resumed = [line for line in log.splitlines() if "resuming 1.1" in line]
    assert len(resumed) == 1, log[-3000:]
    assert at_kill["simulation_diode_sampling_controller:diode"] >= 40
    counts = {n.name: n.count() for n in scan.node.nodes()}
    assert counts["simu1:spectrum_det0"] == counts["lima_simulator:image"] == 160
    assert "SUCCEEDED" in log and "FAILED" not in log


@pytest.mark.timeout(90)
def test_kill_9_many_times_at_random_moments(sim_session, store, writer_process):
    """Seeded random kills (during scans, between them, right after a start, after the
    last one), random down times: three scans all end whole.  Other seeds:
    ``NXW_CRASH_SEED=n``."""
    rng = np.random.default_rng(int(os.environ.get("NXW_CRASH_SEED", "20240607")))
    sim_session.time_scale = 1.0
    camera = sim_session.config.get("lima_simulator")
    camera.saving_frame_per_file = 7
    scans = [sim_session.loopscan(150, 0.005, "diode", "simu1", "lima_simulator", run=False),
             sim_session.ascan("roby", 0, 1, 149, 0.005, "diode", "simu1", run=False),
             sim_session.timescan(0.005, "diode", "lima_simulator", npoints=150, run=False)]

    def produce() -> None:
        for s in scans:
            s.run()

    writer = writer_process().start(store)
    producer = threading.Thread(target=produce, daemon=True)
    producer.start()
    during = after = 0
    while after < 2 and during < 8:  # while the scans run, then twice more
        time.sleep(rng.uniform(0.05, 0.8))
        running = producer.is_alive()
        writer.kill()
        during, after = during + running, after + (not running)
        time.sleep(rng.uniform(0.0, 0.3))
        writer.start(store)
    producer.join(60)
    assert during >= 2, f"only {during} kill(s) while scans ran"
    assert_saved_whole(store, scans)
    assert writer.stop() == 0
    assert "Traceback" not in writer.text(), writer.text()[-3000:]


@pytest.mark.timeout(60)
def test_scans_created_while_the_writer_is_down_are_written(sim_session, store,
                                                            writer_process):
    """Nothing listens at all: scans end, one more is still running; the writer that
    starts writes each of them (and leaves alone what an earlier writer saved)."""
    writer = writer_process().start(store)
    saved_before = sim_session.loopscan(5, 0.01, "diode")
    assert saved_before.wait_saved(20).state == "SUCCEEDED"
    assert writer.stop() == 0
    sim_session.time_scale = 1.0
    ended = [sim_session.loopscan(10, 0.01, "diode", "simu1"),
             sim_session.ascan("roby", 0, 1, 5, 0.01, "diode", "lima_simulator")]
    running = sim_session.loopscan(100, 0.01, "diode", "simu1", run=False)
    thread = running.run_in_thread()
    wait_for(lambda: running.key is not None and running.node.nodes(), 10,
             "the running scan's first channel in Redis")
    for scan in ended + [running]:
        assert scan.publisher.writer_ready(timeout=1).state == "NO_WRITER"
    writer.start(store)
    thread.join(30)
    assert_saved_whole(store, [saved_before] + ended + [running])
    assert writer.stop() == 0
    log = writer.text().split("--- start 1")[1]
    assert "scan 1 of session" not in log  # saved already: not touched again
    for scan in ended + [running]:
        assert f"scan {scan.scan_number} of session 'test_session': SUCCEEDED" in log


# -- Redis itself crashes --------------------------------------------------------------
def _retried(fn, *args, timeout: float = 30.0, **kwargs):
    """A producer that rides out a Redis restart: the same call until it goes through."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return fn(*args, **kwargs)
        except (redis.ConnectionError, redis.TimeoutError, ConnectionError):
            assert time.monotonic() < deadline, f"Redis still unreachable after {timeout} s"
            time.sleep(0.05)


@pytest.mark.timeout(90)
def test_redis_killed_and_restarted_mid_scan(tmp_path, data_dir, caplog):
    """redis-server with an fsynced append-only file is killed mid-scan and comes back
    on the same port 2 s later.  The writer, whose every Redis call fails at once (no
    client-side retry), reconnects with its own backoff; the producer retries its sends.
    The file ends whole and bit-exact."""
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    from nexus_writer.writer import SessionWriter

    from .helpers import manual_scan_info

    caplog.set_level(logging.INFO, logger="nexus_writer")
    server = RedisServer(port=free_port(), dir=str(tmp_path / "redis"),
                         extra_args=("--appendonly", "yes", "--appendfsync", "always"))
    server.start()
    writer = producer = None
    try:
        writer = SessionWriter(SESSION, server.url, flush_period=0.1, inactivity_timeout=60)
        writer.store.redis.set_retry(Retry(NoBackoff(), 0))
        writer.start()
        producer = DataStore(server.url)
        filename = str(data_dir / "redis_restart.h5")
        channels = {"timer:elapsed_time": {"device": "timer", "dim": 0, "unit": "s"},
                    "ctrl:diode": {"device": "diode", "dim": 0, "unit": ""},
                    "mca:spectrum": {"device": "mca", "dim": 1, "unit": ""},
                    "cam:image": {"device": "cam", "dim": 2, "unit": ""}}
        npoints = 400
        pub = producer.create_scan(SESSION, manual_scan_info(SESSION, 1, filename, channels,
                                                             npoints=npoints))
        shapes = {"timer:elapsed_time": (), "ctrl:diode": (), "mca:spectrum": (128,),
                  "cam:image": (16, 24)}
        dtypes = {"timer:elapsed_time": "f8", "ctrl:diode": "f4", "mca:spectrum": "u4",
                  "cam:image": "u2"}
        pubs = {n: pub.create_channel(n, dtypes[n], shapes[n], device=c["device"])
                for n, c in channels.items()}
        pub.start()
        assert pub.writer_ready(timeout=10).state == "READY"
        rng = np.random.default_rng(11)
        restarted = threading.Event()

        def produce() -> None:
            i = 0
            while i < npoints:
                n = int(rng.integers(1, 4))
                for name, p in pubs.items():
                    batch = rng.integers(0, 2**16, (n,) + shapes[name]).astype(dtypes[name])
                    _retried(p.send, batch)
                i += n
                time.sleep(0.004)

        thread = threading.Thread(target=produce, daemon=True)
        thread.start()
        _wait_progress(producer, pub.key, 60)
        server.restart(kill=True, downtime=2.0)
        restarted.set()
        thread.join(60)
        assert not thread.is_alive()
        _retried(pub.end)
        saved = _retried(pub.wait_saved, 30)
        assert saved.state == "SUCCEEDED", saved
        [sw] = wait_written(writer, [pub])
        check_scan(producer, sw)
        assert all(c.count() == pubs[c.name].count for c in pub_nodes(producer, pub.key))
        assert validate_file(filename).ok
        lost = [r.getMessage() for r in caplog.records
                if "scan 1 of session 'test_session'" in r.getMessage()
                and "reconnecting in" in r.getMessage()]
        assert lost, "the scan writer never had to reconnect"
        assert any("session test_session:" in r.getMessage() and "reconnecting in"
                   in r.getMessage() for r in caplog.records)
    finally:
        if writer is not None:
            writer.stop(timeout=10)
        if producer is not None:
            producer.close()
        server.stop()


def _empty_restart_scan(server: RedisServer, filename: str):
    """A SessionWriter whose Redis calls fail at once (no client-side retry), a producer,
    and a scan of two float channels started on ``server``."""
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    from nexus_writer.writer import SessionWriter

    from .helpers import manual_scan_info

    writer = SessionWriter(SESSION, server.url, flush_period=0.1, inactivity_timeout=60)
    writer.store.redis.set_retry(Retry(NoBackoff(), 0))
    writer.start()
    producer = DataStore(server.url)
    channels = {"timer:elapsed_time": {"device": "timer", "dim": 0, "unit": "s"},
                "ctrl:diode": {"device": "diode", "dim": 0, "unit": ""}}
    pub = producer.create_scan(SESSION, manual_scan_info(SESSION, 1, filename, channels))
    pubs = {n: pub.create_channel(n, "f8", device=c["device"]) for n, c in channels.items()}
    pub.start()
    assert pub.writer_ready(timeout=10).state == "READY"
    values = {n: np.random.default_rng(k).random(1200) + k for k, n in enumerate(channels)}

    def send(first: int, n: int) -> None:
        for name, p in pubs.items():
            _retried(p.send, values[name][first:first + n])

    send(0, 20)
    sw = wait_for(lambda: next(iter(writer.scans()), None), 10, "the scan writer")
    wait_for(lambda: all(sw.received.get(n) == 20 for n in channels), 20,
              "the first 20 points received")
    return writer, producer, pub, sw, values, send


@pytest.mark.timeout(90)
def test_redis_restarted_empty_mid_scan(tmp_path, data_dir, caplog):
    """redis-server without persistence is killed while the writer waits for points and
    comes back empty, 0.5 s later: the scan's node definitions are gone.  The producer
    retries its sends; the writer goes on following the channels it knew and writes
    every point republished: the file is whole, SUCCEEDED."""
    from nexus_writer.data import protocol as P

    server = RedisServer(port=free_port(), dir=str(tmp_path / "redis")).start()
    writer = producer = None
    filename = str(data_dir / "redis_empty.h5")
    try:
        writer, producer, pub, sw, values, send = _empty_restart_scan(server, filename)
        server.restart(kill=True, downtime=0.5)  # no persistence: comes back empty
        assert not producer.redis.exists(P.scan_events_key(pub.key))  # definitions gone
        for i in range(20, 1200, 10):
            send(i, 10)
        _retried(pub.end)
        saved = _retried(pub.wait_saved, 30)
        assert saved.state == "SUCCEEDED", saved
        [sw] = wait_written(writer, [pub])
        with h5py.File(filename, "r", locking=False) as f:
            for name, expected in values.items():
                data = f[f"1.1/measurement/{name.split(':')[1]}"][()]
                np.testing.assert_array_equal(data, expected, err_msg=name)
        assert validate_file(filename).ok
        log = "\n".join(r.getMessage() for r in caplog.records)
        assert "its events are gone from Redis (restarted without persistence?); " \
               "following the 2 node(s) known" in log
    finally:
        if writer is not None:
            writer.stop(timeout=10)
        if producer is not None:
            producer.close()
        server.stop()


@pytest.mark.timeout(90)
def test_redis_restarted_empty_loses_unread_points(tmp_path, data_dir):
    """The same with points published before the restart that the writer had not read
    (its file thread held, it stops reading once its queue is full): those are lost
    with Redis, and the writer says exactly which ones, in the file and to the
    producer; the points republished after the restart are all written."""
    from .helpers import decode

    server = RedisServer(port=free_port(), dir=str(tmp_path / "redis")).start()
    writer = producer = None
    gate = threading.Event()
    filename = str(data_dir / "redis_empty_lost.h5")
    restart_at = 1000
    try:
        writer, producer, pub, sw, values, send = _empty_restart_scan(server, filename)
        assert sw._fw is not None
        sw._fw.submit(lambda f: gate.wait(60))
        for i in range(20, restart_at):
            send(i, 1)
        server.restart(kill=True)
        gate.set()
        for i in range(restart_at, 1200, 10):
            send(i, 10)
        _retried(pub.end)
        saved = _retried(pub.wait_saved, 30)
        [sw] = wait_written(writer, [pub])
        assert saved.state == "FAILED", saved
        with h5py.File(filename, "r", locking=False) as f:
            entry = f["1.1"]
            assert decode(entry["writer/status"][()]) == "FAILED"
            assert decode(entry["writer/reason"][()]) == sw.saving.reason == saved.reason
            assert "end_time" in entry
            for name, expected in values.items():
                data = entry[f"measurement/{name.split(':')[1]}"][()]
                assert data.shape == (1200,), name
                # read before the restart, lost with it, republished after it
                lost = int(np.argmax(np.isnan(data)))
                assert 20 <= lost < restart_at, (name, lost)
                np.testing.assert_array_equal(data[:lost], expected[:lost], err_msg=name)
                assert np.isnan(data[lost:restart_at]).all(), name
                np.testing.assert_array_equal(data[restart_at:], expected[restart_at:],
                                              err_msg=name)
                # and the status says exactly that
                assert f"{name!r}: points {lost}..{restart_at - 1} are missing" in saved.reason
        assert validate_file(filename).ok
    finally:
        gate.set()
        if writer is not None:
            writer.stop(timeout=10)
        if producer is not None:
            producer.close()
        server.stop()


def pub_nodes(store: DataStore, key: str) -> list:
    return store.get_scan_node(key).nodes()


@pytest.mark.timeout(60)
def test_died_after_finishing_the_file_before_telling(sim_session, store, redis_url,
                                                      monkeypatch):
    """The writer finished the file (end_time written) and died before its final
    report: the writer that comes back finds its own finished entry, does not refuse it
    as someone else's, and tells the producer the scan is saved."""
    from nexus_writer.data.saving import FINAL_STATES
    from nexus_writer.writer import SessionWriter
    from nexus_writer.writer.source import RedisScanSource

    from .helpers import decode

    real_report = RedisScanSource.report

    def die_before_final(self, state, reason="", **detail):
        if state in FINAL_STATES:
            raise RuntimeError("killed before the final report")
        real_report(self, state, reason, **detail)

    monkeypatch.setattr(RedisScanSource, "report", die_before_final)
    first = SessionWriter(SESSION, redis_url, flush_period=0.1).start()
    try:
        scan = sim_session.loopscan(12, 0.01, "diode", "simu1", "lima_simulator")
        [sw] = wait_written(first, [scan])
        assert sw.state == ScanState.SUCCEEDED
    finally:
        first.stop(timeout=10)
    assert SavingReporter(store, scan.key).last_state() == "RUNNING"
    with h5py.File(scan.scan_info["filename"], "r", locking=False) as f:
        assert "end_time" in f["1.1"]
        assert decode(f["1.1/writer/status"][()]) == "SUCCEEDED"
    monkeypatch.setattr(RedisScanSource, "report", real_report)
    second = SessionWriter(SESSION, redis_url, flush_period=0.1).start()
    try:
        saved = scan.wait_saved(20)
        assert saved.state == "SUCCEEDED", saved
        [sw] = wait_written(second, [scan])
        check_scan(store, sw)
    finally:
        second.stop(timeout=10)
    assert validate_file(scan.scan_info["filename"]).ok


@pytest.mark.timeout(60)
def test_resume_repairs_a_chunk_its_index_no_longer_describes(store, data_dir,
                                                              writer_process):
    """kill -9 between a compressed chunk's bytes and its index (seen in the random
    kills): the chunk no longer decodes.  Simulated by overwriting the last chunk of
    the spectra on disk; the writer that resumes replaces it and writes those points
    again from Redis."""
    from .helpers import manual_scan_info

    filename = str(data_dir / "chunk.h5")
    channels = {"timer:elapsed_time": {"device": "timer", "dim": 0, "unit": "s"},
                "mca:spectrum": {"device": "mca", "dim": 1, "unit": ""}}
    writer = writer_process().start(store)
    pub = store.create_scan(SESSION, manual_scan_info(SESSION, 1, filename, channels))
    timer = pub.create_channel("timer:elapsed_time", "f8", device="timer")
    mca = pub.create_channel("mca:spectrum", "u4", (1024,), device="mca")
    pub.start()
    rng = np.random.default_rng(3)
    for i in range(0, 100, 5):
        timer.send(np.arange(i, i + 5, dtype=float))
        mca.send(rng.integers(0, 2**20, (5, 1024), dtype=np.uint32))
    _wait_progress_of(store, pub.key, {"timer:elapsed_time": 100, "mca:spectrum": 100})
    writer.kill()
    with h5py.File(filename, "r", locking=False) as f:
        dset = f["1.1/instrument/mca/data"]
        assert dset.compression or dset.id.get_create_plist().get_nfilters()
        last = dset.id.get_chunk_info(dset.id.get_num_chunks() - 1)
        first_point = last.chunk_offset[0]
    assert 0 < first_point < 100
    with open(filename, "r+b") as raw:  # the chunk's bytes are not what its index says
        raw.seek(last.byte_offset)
        raw.write(b"\x07" * last.size)
    with h5py.File(filename, "r", locking=False) as f, pytest.raises(OSError):
        f["1.1/instrument/mca/data"][first_point:]
    writer.start(store)
    for i in range(100, 150, 5):
        timer.send(np.arange(i, i + 5, dtype=float))
        mca.send(rng.integers(0, 2**20, (5, 1024), dtype=np.uint32))
    pub.end()
    saved = pub.wait_saved(30)
    assert saved.state == "SUCCEEDED", saved
    check_scan(store, as_written(store, pub.key, ScanState.SUCCEEDED))
    assert writer.stop() == 0
    log = writer.text()
    assert f"chunk at ({first_point}, 0) unreadable after a crash" in log, log[-2000:]
    assert f"'mca:spectrum': {first_point}" in log  # resumed from the chunk's start


def _wait_progress_of(store: DataStore, key: str, points: dict[str, int],
                      timeout: float = 20.0) -> None:
    wait_for(lambda: all(_progress(store, key).get(k, 0) >= n for k, n in points.items()),
             timeout, f"durable points {points}", lambda: f"progress: {_progress(store, key)}",
             interval=0.01)


@pytest.mark.timeout(60)
def test_file_left_unreadable_is_moved_aside(sim_session, store, writer_factory, caplog):
    """kill -9 while the file was being created (seen in the random kills): its root
    never reached the disk and HDF5 cannot open it.  The writer moves it aside, never
    deletes it, and writes the scans into a new file."""
    filename = sim_session.scan_saving.filename
    sim_session.scan_saving.create_dataset_path()
    with h5py.File(filename, "w"):
        pass
    with open(filename, "r+b") as raw:  # the root group's object header, as never written
        raw.seek(96)
        raw.write(bytes(64))
    broken = Path(filename).read_bytes()
    with pytest.raises(OSError, match="bad object header"):
        h5py.File(filename, "r", locking=False)
    writer = writer_factory()
    scan = sim_session.loopscan(5, 0.01, "diode", "simu1")
    assert scan.wait_saved(20).state == "SUCCEEDED"
    [sw] = wait_written(writer, [scan])
    check_scan(store, sw)
    [aside] = Path(filename).parent.glob(Path(filename).name + ".unreadable-*")
    assert aside.read_bytes() == broken
    assert f"moved to {aside}" in caplog.text
