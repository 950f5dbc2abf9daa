"""Bad days: a full disk, a file another process holds, a producer's malformed
scan_info or payloads, Redis away when a scan starts or ends.  Each fault ends its
scan FAILED with a clear reason in the log, in Redis (the saving report) and in the
file where there is one; the rest of the session goes on."""

from __future__ import annotations

import errno
import logging
import os
import shutil
import subprocess
import sys
import time

import h5py
import numpy as np
import pytest
import redis

from nexus_writer.data import DataStore, RedisConnectionLost
from nexus_writer.data import protocol as P
from nexus_writer.nexus.datasets import ChannelDataset
from nexus_writer.writer import ScanState
from nexus_writer.writer.source import RedisScanSource

from .helpers import assert_channel, assert_same_bytes, check_scan, decode, manual_scan_info, \
    wait_written

pytestmark = pytest.mark.timeout(60)

SESSION = "test_session"
SCALARS = {"timer:elapsed_time": {"device": "timer", "dim": 0, "unit": "s"},
           "ctrl:diode": {"device": "diode", "dim": 0, "unit": ""}}


def _scalar_scan(store: DataStore, filename: str, number: int, npoints: int = 5):
    """A small complete scan (elapsed_time and diode)."""
    pub = store.create_scan(SESSION, manual_scan_info(SESSION, number, filename, SCALARS,
                                                      npoints=npoints))
    chans = [pub.create_channel(n, "f8", device=c["device"]) for n, c in SCALARS.items()]
    pub.start()
    for ch in chans:
        ch.send(np.arange(float(npoints)))
    pub.end()
    return pub


def _messages(caplog, level: int = logging.WARNING) -> str:
    return "\n".join(r.getMessage() for r in caplog.records if r.levelno >= level)


# -- disk full -------------------------------------------------------------------------
SMALL_DISK = 3 << 20


def _used(path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


@pytest.fixture
def small_disk(tmp_path, monkeypatch, record_property):
    """A 3 MB tmpfs; where mounting is not allowed, a simulated 3 MB device: the free
    space of its directory is 3 MB less the size of its files, and a dataset append
    that would go past it raises ENOSPC.  ``kind`` says which one runs, and so does the
    "test variants" section of pytest's summary."""
    path = tmp_path / "small"
    path.mkdir()
    try:
        mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={SMALL_DISK}", "tmpfs",
                                  str(path)], capture_output=True).returncode == 0
    except OSError:  # no mount command
        mounted = False
    if not mounted:
        real_append, real_usage = ChannelDataset.append, shutil.disk_usage

        def append(self, first_index, data):
            if self.dset.file.filename.startswith(str(path)) and \
                    _used(path) + np.asarray(data).nbytes > SMALL_DISK:
                raise OSError(errno.ENOSPC, "No space left on device (simulated)")
            return real_append(self, first_index, data)

        def disk_usage(directory):
            usage = real_usage(directory)
            if not os.path.abspath(directory).startswith(str(path)):
                return usage
            used = _used(path)
            return usage._replace(total=SMALL_DISK, used=used, free=max(SMALL_DISK - used, 0))

        monkeypatch.setattr(ChannelDataset, "append", append)
        monkeypatch.setattr(shutil, "disk_usage", disk_usage)
    record_property("variant", "a real full disk (3 MB tmpfs)" if mounted else
                    "a simulated full disk (no tmpfs mount allowed here: disk usage and "
                    "the dataset append patched for a 3 MB device)")
    yield path, "tmpfs" if mounted else "simulated"
    if mounted:
        subprocess.run(["umount", "-l", str(path)], check=False)


def test_disk_full_mid_scan(store, data_dir, small_disk, writer_factory, caplog):
    """A scan writing 6 MB of incompressible spectra to a 3 MB disk FAILS with
    "No space left" and keeps a readable file with what fitted, bit-exact; a scan of the
    same session writing elsewhere at the same time SUCCEEDS."""
    disk, kind = small_disk
    caplog.set_level(logging.INFO, logger="nexus_writer")
    writer = writer_factory(required_disk_space=0.5, flush_period=0.1)
    channels = dict(SCALARS, **{"mca:spectrum": {"device": "mca", "dim": 1, "unit": ""}})
    full_file, other_file = str(disk / "full.h5"), str(data_dir / "other.h5")
    pubs, chans = [], []
    for number, filename in ((1, full_file), (2, other_file)):
        pub = store.create_scan(SESSION, manual_scan_info(SESSION, number, filename, channels,
                                                          npoints=1500))
        chans.append([pub.create_channel(n, "u4" if c["dim"] else "f8",
                                         (1024,) if c["dim"] else (), device=c["device"])
                      for n, c in channels.items()])
        pub.start()
        pubs.append(pub)
    rng = np.random.default_rng(5)
    for i in range(0, 1500, 10):
        for pub_chans in chans:
            for ch in pub_chans:
                if ch.node.shape:
                    ch.send(rng.integers(0, 2**32, (10, 1024), dtype=np.uint32))
                else:
                    ch.send(np.arange(i, i + 10, dtype=float))
        time.sleep(0.002)
    for pub in pubs:
        pub.end()
    full, other = pubs[0].wait_saved(30), pubs[1].wait_saved(30)
    assert other.state == "SUCCEEDED", other
    assert full.state == "FAILED", full
    assert "No space left" in full.reason, full.reason
    assert full.reason.count("No space left") == 1, "named once, not once per channel"
    counts = full.detail["channels"]
    assert all(0 < c["written"] < c["published"] == 1500 for c in counts.values()), counts
    sw_full, sw_other = wait_written(writer, pubs)
    check_scan(store, sw_other)
    assert sw_full.state == ScanState.FAILED and sw_full.saving.reason == full.reason
    assert "No space left" in _messages(caplog, logging.ERROR)
    # the writer stopped before the device was full
    if kind == "tmpfs":
        assert os.statvfs(disk).f_bavail * os.statvfs(disk).f_frsize > 1 << 20
    else:
        assert SMALL_DISK - _used(disk) > 1 << 20
    nodes = {n.name: n for n in store.get_scan_node(pubs[0].key).nodes()}
    with h5py.File(full_file, "r", locking=False) as f:  # what fitted is there, readable
        entry = f["1.1"]
        assert decode(entry["writer/status"][()]) == "FAILED"
        assert decode(entry["writer/reason"][()]) == full.reason
        assert "end_time" in entry
        written = dict(zip(decode(entry["writer/channels"][()]),
                           entry["writer/points_written"][()].tolist()))
        assert written == {name: c["written"] for name, c in counts.items()}
        spectra = entry["instrument/mca/data"][()]
        n = written["mca:spectrum"]
        assert spectra.shape[0] >= n
        assert_same_bytes(spectra[:n], nodes["mca:spectrum"].get(0, n), "spectra written")
        diode = entry["instrument/diode/data"][()]
        assert_same_bytes(diode[:written["ctrl:diode"]],
                          nodes["ctrl:diode"].get(0, written["ctrl:diode"]), "diode written")


# -- a file another process holds ------------------------------------------------------
HOLDER = """
import sys, h5py
f = h5py.File(sys.argv[1], "a")
print("holding", flush=True)
sys.stdin.read()
f.close()
"""


def test_file_locked_by_another_process(store, data_dir, writer_factory, caplog):
    filename = str(data_dir / "held.h5")
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, filename], text=True,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        assert holder.stdout.readline().strip() == "holding"
        writer = writer_factory()
        pub = store.create_scan(SESSION, manual_scan_info(SESSION, 1, filename, SCALARS))
        ch = pub.create_channel("timer:elapsed_time", "f8")
        pub.start()
        answer = pub.writer_ready(timeout=10)
        assert answer.state == "FAILED", answer
        assert f"locked for writing by another process (pid {holder.pid} " in answer.reason
        assert "python" in answer.reason and filename in answer.reason
        ch.send([1.0, 2.0])
        pub.end()
        assert pub.wait_saved(10).reason == answer.reason
        [sw] = wait_written(writer, [pub])
        assert sw.state == ScanState.FAILED and sw.saving.reason == answer.reason
        assert f"pid {holder.pid}" in _messages(caplog, logging.ERROR)
    finally:
        holder.stdin.close()
        holder.wait(10)
        holder.stdout.close()
    with h5py.File(filename, "r", locking=False) as f:
        assert list(f) == []  # nothing written behind the holder's back
    later = _scalar_scan(store, filename, 2)
    assert later.wait_saved(20).state == "SUCCEEDED"


# -- malformed scan_info ---------------------------------------------------------------
@pytest.mark.parametrize("bad", [
    {"acquisition_chain": ["timer", "diode"]},
    {"npoints": "ten"},
    {"acquisition_chain": {"timer": "not a dict"}},
    {"data_dim": 2, "npoints1": "3", "npoints2": [2]},
], ids=["chain_is_a_list", "npoints_is_text", "top_master_is_text", "mesh_shape_is_junk"])
def test_malformed_scan_info(store, data_dir, writer_factory, caplog, bad):
    writer = writer_factory()
    filename = str(data_dir / "malformed.h5")
    info = manual_scan_info(SESSION, 3, filename, SCALARS, npoints=5)
    info.update(bad)
    pub = store.create_scan(SESSION, info)
    chans = [pub.create_channel(n, "f8", device=c["device"]) for n, c in SCALARS.items()]
    pub.start()
    for ch in chans:
        ch.send(np.arange(5.0))
    pub.end()
    saved = pub.wait_saved(10)
    assert saved.state == "FAILED", saved
    assert saved.reason.startswith("scan 3 of session 'test_session': malformed scan_info ("), \
        saved.reason
    assert "malformed scan_info" in _messages(caplog, logging.ERROR)
    assert "Traceback" not in caplog.text
    good = _scalar_scan(store, str(data_dir / "good.h5"), 4)
    assert good.wait_saved(10).state == "SUCCEEDED"
    assert [w.state for w in wait_written(writer, [pub, good])] == [ScanState.FAILED,
                                                                    ScanState.SUCCEEDED]


# -- payloads that do not match their channel ------------------------------------------
def test_payloads_not_matching_their_channel(store, redis_url, data_dir, writer_factory,
                                             caplog):
    """Raw entries whose bytes are another dtype (spectrum), another frame shape
    (image), or ragged shapes of the wrong rank: each channel is flagged with what was
    wrong and where, its other points are written; the well-formed channels are
    complete and bit-exact."""
    filename = str(data_dir / "payloads.h5")
    channels = dict(SCALARS, **{"mca:spectrum": {"device": "mca", "dim": 1, "unit": ""},
                                "cam:image": {"device": "cam", "dim": 2, "unit": ""},
                                "ctrl:samples": {"device": "samples", "dim": 1, "unit": ""},
                                "ctrl:rows": {"device": "rows", "dim": 2, "unit": ""}})
    writer = writer_factory()
    pub = store.create_scan(SESSION, manual_scan_info(SESSION, 5, filename, channels,
                                                      npoints=6))
    spec = {"timer:elapsed_time": ("f8", ()), "ctrl:diode": ("f8", ()),
            "mca:spectrum": ("u4", (16,)), "cam:image": ("u2", (4, 5)),
            "ctrl:samples": ("f4", (-1,)), "ctrl:rows": ("i2", (-1, 4))}
    chans = {n: pub.create_channel(n, d, s, device=channels[n]["device"])
             for n, (d, s) in spec.items()}
    pub.start()
    raw = redis.Redis.from_url(redis_url)
    bad_at = {"mca:spectrum": 1, "cam:image": 3, "ctrl:samples": 4, "ctrl:rows": 2}
    try:
        for i in range(6):
            for name, ch in chans.items():
                if bad_at.get(name) == i:
                    if name == "mca:spectrum":  # float64 bytes in a uint32 channel
                        fields = {b"n": b"1", b"d": np.arange(16.0).tobytes()}
                    elif name == "cam:image":  # a 4x6 frame in a 4x5 channel
                        fields = {b"n": b"1", b"d": np.zeros((4, 6), "u2").tobytes()}
                    elif name == "ctrl:samples":  # a 2-d point in a 1-d ragged channel
                        fields = {b"n": b"1", b"d": np.zeros(6, "f4").tobytes(),
                                  b"s": np.array([2, 3], np.int64).tobytes()}
                    else:  # rows of 5 in a channel of rows of 4
                        fields = {b"n": b"1", b"d": np.zeros((3, 5), "i2").tobytes(),
                                  b"s": np.array([3, 5], np.int64).tobytes()}
                    raw.xadd(ch.node.key, fields, id=P.entry_id(i))
                    ch.count += 1
                    continue
                dtype, shape = spec[name]
                if shape == (-1,):
                    ch.send([np.full(i + 1, i, "f4")])
                elif shape == (-1, 4):
                    ch.send([np.full((i + 1, 4), i, "i2")])
                else:
                    ch.send(np.full(shape, i, dtype))
    finally:
        raw.close()
    pub.end()
    saved = pub.wait_saved(20)
    assert saved.state == "FAILED"
    reason = saved.reason
    assert "mca:spectrum 5/6 points" in reason and "cam:image 5/6" in reason
    assert "ctrl:samples 5/6" in reason
    assert "128 bytes for 1 points of <u4[16], expected 64" in reason, reason
    assert "48 bytes for 1 points of <u2[4, 5], expected 40" in reason
    assert "bad point shapes" in reason
    assert "ctrl:rows 5/6" in reason and "point 0 of shape [3, 5], declared [-1, 4]" in reason
    assert "elapsed_time" not in reason and "ctrl:diode" not in reason
    [sw] = wait_written(writer, [pub])
    assert sw.saving.reason == reason
    log = _messages(caplog)
    for name in bad_at:
        assert f"'{name}'" in log
    nodes = {n.name: n for n in store.get_scan_node(pub.key).nodes()}
    with h5py.File(filename, "r", locking=False) as f:
        entry = f["5.1"]
        assert decode(entry["writer/status"][()]) == "FAILED"
        problems = decode(entry["writer/problems"][()])
        for name in bad_at:
            assert any(name in p for p in problems), (name, problems)
        assert_channel(entry["instrument/elapsed_time/value"], nodes["timer:elapsed_time"])
        assert_channel(entry["instrument/diode/data"], nodes["ctrl:diode"])
        spectra = entry["instrument/mca/data"][()]
        assert (spectra[[0, 2, 3, 4, 5], 0] == [0, 2, 3, 4, 5]).all()
        assert (spectra[1] == 0).all()  # the bad point: fill value
        images = entry["instrument/cam/data"][()]
        assert images.shape == (6, 4, 5)
        assert (images[[0, 1, 2, 4, 5], 0, 0] == [0, 1, 2, 4, 5]).all()
        samples = entry["instrument/samples/data"][()]
        for i in (0, 1, 2, 3, 5):
            assert (samples[i, :i + 1] == i).all()
        assert np.isnan(samples[4]).all()
        rows = entry["instrument/rows/data"][()]
        assert rows.shape == (6, 6, 4)
        for i in (0, 1, 3, 4, 5):
            assert (rows[i, :i + 1] == i).all() and (rows[i, i + 1:] == 0).all()
        assert (rows[2] == 0).all()


# -- Redis away when a scan starts or ends ---------------------------------------------
def test_redis_away_at_the_start_and_at_the_final_report(store, data_dir, writer_factory,
                                                         monkeypatch, caplog):
    """scan_info unreadable and the final report refused for a while: the writer
    retries both, and the producer hears SUCCEEDED."""
    failures = {"info": 2, "report": 3}
    real_info, real_report = RedisScanSource.info, RedisScanSource.report

    def info(self):
        if failures["info"]:
            failures["info"] -= 1
            raise RedisConnectionLost(f"{self.label}: lost Redis (Connection refused)")
        return real_info(self)

    def report(self, state, reason="", **detail):
        if state == "SUCCEEDED" and failures["report"]:
            failures["report"] -= 1
            raise RedisConnectionLost(f"{self.label}: lost Redis (Connection refused)")
        return real_report(self, state, reason, **detail)

    monkeypatch.setattr(RedisScanSource, "info", info)
    monkeypatch.setattr(RedisScanSource, "report", report)
    writer = writer_factory()
    pub = _scalar_scan(store, str(data_dir / "away.h5"), 1)
    saved = pub.wait_saved(20)
    assert saved.state == "SUCCEEDED", saved
    [sw] = wait_written(writer, [pub])
    check_scan(store, sw)
    assert failures == {"info": 0, "report": 0}
    log = _messages(caplog)
    assert log.count("scan_info not read") == 2
    assert log.count("saving state SUCCEEDED not reported yet") == 3
