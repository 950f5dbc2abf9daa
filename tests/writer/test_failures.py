"""Never overwrite; refuse what cannot be saved, with a clear reason; a bad channel
does not take the scan down; scans not meant for this writer are skipped."""

from __future__ import annotations

import os

import h5py
import numpy as np
import pytest
import redis

from nexus_writer.sim import TopMaster
from nexus_writer.writer import ScanState
from tests.waiting import wait_for

from .helpers import assert_channel, check_scan, decode, manual_scan_info, wait_written


def _snapshot(group: h5py.Group) -> dict:
    """Everything under ``group``: paths, attributes and values."""
    out = {"attrs": {k: str(v) for k, v in group.attrs.items()}}

    def visit(name: str, obj: h5py.HLObject) -> None:
        value = obj[()] if isinstance(obj, h5py.Dataset) else None
        value = value.tobytes() if isinstance(value, np.ndarray) else value
        out[name] = (value, {k: str(v) for k, v in obj.attrs.items()})

    group.visititems(visit)
    return out


def test_existing_entry_is_never_overwritten(sim_session, writer_factory, store):
    filename = sim_session.scan_saving.filename
    sim_session.scan_saving.create_dataset_path()
    with h5py.File(filename, "w") as f:
        entry = f.create_group("1.1")
        entry.attrs["NX_class"] = "NXentry"
        entry["title"] = "precious data of an earlier session"
        entry.create_dataset("data", data=np.arange(10.0))
        before = _snapshot(entry)
    writer = writer_factory()
    clash = sim_session.loopscan(3, 0.1, "diode")
    later = sim_session.loopscan(4, 0.1, "diode")
    failed, ok = wait_written(writer, [clash, later])
    assert failed.state == ScanState.FAILED
    reason = failed.saving.reason
    assert "scan 1 of session 'test_session'" in reason, reason
    assert "entry 1.1" in reason and filename in reason
    check_scan(store, ok)
    with h5py.File(filename, "r", locking=False) as f:
        assert _snapshot(f["1.1"]) == before
        assert "writer" not in f["1.1"]
        assert sorted(f) == ["1.1", "2.1"]


def test_second_entry_exists(sim_session, writer_factory, store):
    """A scan with two top masters: one entry taken is enough to refuse the scan."""
    filename = sim_session.scan_saving.filename
    sim_session.scan_saving.create_dataset_path()
    with h5py.File(filename, "w") as f:
        f.create_group("1.2").attrs["NX_class"] = "NXentry"
    writer = writer_factory()
    scan = sim_session.multi_top_master_scan([TopMaster.timer(2, 0.1, "diode"),
                                              TopMaster.timer(3, 0.1, "diode2")])
    [sw] = wait_written(writer, [scan])
    assert sw.state == ScanState.FAILED and "entry 1.2" in sw.saving.reason
    with h5py.File(filename, "r", locking=False) as f:
        assert sorted(f) == ["1.2"] and len(f["1.2"]) == 0


def test_directory_cannot_be_created(sim_session, writer_factory, store, tmp_path):
    """The dataset directory would be below a regular file: nobody can create it."""
    blocker = tmp_path / "a_regular_file"
    blocker.write_text("not a directory")
    filename = str(blocker / "sample" / "sample_0001.h5")
    writer = writer_factory()
    refused = sim_session.loopscan(3, 0.1, "diode", scan_info={"filename": filename})
    later = sim_session.loopscan(3, 0.1, "diode")
    failed, ok = wait_written(writer, [refused, later])
    assert failed.state == ScanState.FAILED
    reason = failed.saving.reason
    assert "cannot create directory" in reason and str(blocker / "sample") in reason, reason
    assert "scan 1 of session 'test_session'" in reason
    check_scan(store, ok)


def test_read_only_directory(sim_session, writer_factory, store, tmp_path, redis_url):
    """chmod 0o500 on the dataset directory: FAILED with a reason naming it; later scans
    are written.  Root ignores permission bits, so as root the writer runs as ``nobody``
    in its own process (``nexus-writer write``)."""
    if os.geteuid() != 0:
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        try:
            writer = writer_factory()
            refused = sim_session.loopscan(3, 0.1, "diode",
                                           scan_info={"filename": str(locked / "x.h5")})
            later = sim_session.loopscan(3, 0.1, "diode")
            failed, ok = wait_written(writer, [refused, later])
        finally:
            locked.chmod(0o700)
        assert failed.state == ScanState.FAILED
        assert "not writable" in failed.saving.reason and str(locked) in failed.saving.reason
        check_scan(store, ok)
        return
    _read_only_directory_as_nobody(sim_session, redis_url)


def _read_only_directory_as_nobody(sim_session, redis_url):
    """The writer in a forked child that dropped root for ``nobody`` (the interpreter
    itself may not be readable by ``nobody``, so no exec: a fork of this process)."""
    import json
    import pwd
    import shutil
    import tempfile
    import warnings

    from nexus_writer.writer import SessionWriter

    try:
        nobody = pwd.getpwnam("nobody")
    except KeyError:
        pytest.skip("running as root and there is no 'nobody' user to drop privileges to")
    base = tempfile.mkdtemp(prefix="nxw_readonly_", dir="/tmp")
    locked, free = os.path.join(base, "locked"), os.path.join(base, "free")
    os.chmod(base, 0o755)
    for d in (locked, free):
        os.mkdir(d)
        os.chown(d, nobody.pw_uid, nobody.pw_gid)
    os.chmod(locked, 0o500)  # nobody owns it and may not write in it
    rfd, wfd = os.pipe()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # fork with threads (3.12+)
        pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        code = 0
        try:
            os.setgroups([])
            os.setgid(nobody.pw_gid)
            os.setuid(nobody.pw_uid)
            writer = SessionWriter("test_session", redis_url, flush_period=0.2).start()
            os.write(wfd, b"ready\n")
            wait_for(lambda: len(writer.scans()) >= 2, 30, "the writer taking both scans",
                     lambda: writer.scans())
            assert writer.wait_idle(30), "scans still being written after 30 s"
            result = [[w.source.number, w.state.name, w.saving.reason] for w in writer.scans()]
            writer.stop(10)
            os.write(wfd, json.dumps(result).encode() + b"\n")
        except BaseException as e:  # noqa: BLE001 - reported to the parent
            os.write(wfd, json.dumps({"error": repr(e)}).encode() + b"\n")
            code = 1
        finally:
            os._exit(code)
    os.close(wfd)
    try:
        with os.fdopen(rfd) as pipe:
            first = pipe.readline()
            if first.strip() != "ready":
                pytest.skip(f"cannot run a writer as 'nobody' here: {first.strip()}")
            refused = sim_session.loopscan(3, 0.1, "diode",
                                           scan_info={"filename": os.path.join(locked, "x.h5")})
            ok = sim_session.loopscan(3, 0.1, "diode",
                                      scan_info={"filename": os.path.join(free, "x.h5")})
            result = json.loads(pipe.readline())
        os.waitpid(pid, 0)
        assert isinstance(result, list), result
        states = {number: (state, reason) for number, state, reason in result}
        state, reason = states[refused.scan_number]
        assert state == "FAILED"
        assert f"directory {locked} is not writable by this writer (uid {nobody.pw_uid})" \
            in reason, reason
        assert states[ok.scan_number][0] == "SUCCEEDED", states
        assert not os.path.exists(os.path.join(locked, "x.h5"))
        with h5py.File(os.path.join(free, "x.h5"), "r", locking=False) as f:
            assert decode(f[f"{ok.scan_number}.1/writer/status"][()]) == "SUCCEEDED"
            assert f[f"{ok.scan_number}.1/measurement/diode"].shape == (3,)
    finally:
        os.chmod(locked, 0o700)
        shutil.rmtree(base, ignore_errors=True)


def test_dataset_path_is_a_directory(sim_session, writer_factory, store, tmp_path):
    """The file cannot be opened at all: FAILED with the cause and the path, told to
    the producer too; the writer goes on with the next scan."""
    target = tmp_path / "taken.h5"
    target.mkdir()
    writer = writer_factory()
    scan = sim_session.loopscan(3, 0.1, "diode", scan_info={"filename": str(target)})
    after = sim_session.loopscan(3, 0.1, "diode")
    sw, ok = wait_written(writer, [scan, after])
    assert sw.state == ScanState.FAILED
    reason = sw.saving.reason
    assert "Is a directory" in reason and str(target) in reason, reason
    saved = scan.wait_saved(timeout=10)
    assert saved.state == "FAILED" and saved.reason == reason
    assert list(target.iterdir()) == []  # nothing written into the directory
    check_scan(store, ok)


def test_not_enough_disk_space(sim_session, writer_factory):
    writer = writer_factory(required_disk_space=1e12)
    scan = sim_session.loopscan(3, 0.1, "diode")
    [sw] = wait_written(writer, [scan])
    assert sw.state == ScanState.FAILED
    reason = sw.saving.reason
    assert "MB free" in reason and "1e+12 MB required" in reason, reason
    assert "scan 1 of session 'test_session'" in reason
    assert not os.path.exists(sim_session.scan_saving.filename)


def test_scans_not_for_this_writer_are_skipped(sim_session, writer_factory, store):
    writer = writer_factory()
    unsaved = sim_session.loopscan(3, 0.1, "diode", save=False)
    sim_session.scan_saving.writer = "null"
    null = sim_session.loopscan(3, 0.1, "diode")
    sim_session.scan_saving.writer = "nexus"
    saved = sim_session.loopscan(3, 0.1, "diode")
    a, b, c = wait_written(writer, [unsaved, null, saved])
    assert a.state == b.state == ScanState.SKIPPED
    assert "save=False" in a.saving.reason and "'null'" in b.saving.reason
    check_scan(store, c)
    with h5py.File(sim_session.scan_saving.filename, "r", locking=False) as f:
        assert list(f) == ["3.1"]
    assert writer.summary() == {"SKIPPED": 2, "SUCCEEDED": 1}


def test_malformed_entries_flag_one_channel(store, redis_url, data_dir, writer_factory):
    """Garbage in one channel's stream: that channel is flagged, the others are written,
    the scan is FAILED and the reason names the channel and the points missing."""
    filename = str(data_dir / "manual" / "manual.h5")
    channels = {"timer:elapsed_time": {"device": "timer", "dim": 0, "unit": "s"},
                "ctrl:good": {"device": "good", "dim": 0, "unit": ""},
                "ctrl:bad": {"device": "bad", "dim": 0, "unit": ""}}
    info = manual_scan_info("test_session", 1, filename, channels, npoints=9)
    writer = writer_factory()
    pub = store.create_scan("test_session", info)
    pub.start()
    pubs = {name: pub.create_channel(name, "float64", (), c["unit"], device=c["device"],
                                     top_master="timer")
            for name, c in channels.items()}
    for i in range(3):
        for p in pubs.values():
            p.send(float(i))
    # a raw client writes an entry the protocol cannot decode, where points 3..5 should be
    bad_key = next(n.key for n in store.get_scan_node(pub.key).nodes() if n.name == "ctrl:bad")
    raw = redis.Redis.from_url(redis_url)
    raw.xadd(bad_key, {b"n": b"3", b"d": b"not 24 bytes"}, id="3-1")
    raw.close()
    pubs["ctrl:bad"].count += 3
    for i in range(3, 9):
        pubs["timer:elapsed_time"].send(float(i))
        pubs["ctrl:good"].send(float(i))
        if i >= 6:
            pubs["ctrl:bad"].send(float(i))
    pub.end("SUCCESS")
    [sw] = wait_written(writer, [pub])
    assert sw.state == ScanState.FAILED
    reason = sw.saving.reason
    assert "ctrl:bad" in reason and "3..5" in reason, reason
    assert "ctrl:good" not in reason and "elapsed_time" not in reason
    nodes = {n.name: n for n in store.get_scan_node(pub.key).nodes()}
    with h5py.File(filename, "r", locking=False) as f:
        entry = f["1.1"]
        assert decode(entry["writer/status"][()]) == "FAILED"
        assert decode(entry["writer/reason"][()]) == reason
        assert "end_time" in entry
        assert_channel(entry["instrument/good/data"], nodes["ctrl:good"])
        assert_channel(entry["instrument/elapsed_time/value"], nodes["timer:elapsed_time"])
        bad = entry["instrument/bad/data"][()]
        np.testing.assert_array_equal(bad[[0, 1, 2, 6, 7, 8]], [0, 1, 2, 6, 7, 8])
        assert np.isnan(bad[3:6]).all()
        channels_written = dict(zip(decode(entry["writer/channels"][()]),
                                    entry["writer/points_written"][()].tolist()))
        assert channels_written["ctrl:good"] == 9
        # the gap is not counted as written
        assert channels_written["ctrl:bad"] < 9
        problems = decode(entry["writer/problems"][()])
        assert any("ctrl:bad" in p for p in problems)


def test_producer_failure_keeps_its_points(store, data_dir, writer_factory):
    """A scan the producer ends with FAILURE: what it published is all written, so the
    saving SUCCEEDED; the file says how the scan ended."""
    filename = str(data_dir / "manual.h5")
    channels = {"timer:elapsed_time": {"device": "timer", "dim": 0, "unit": "s"},
                "ctrl:diode": {"device": "diode", "dim": 0, "unit": "V"}}
    writer = writer_factory()
    pub = store.create_scan("test_session", manual_scan_info("test_session", 7, filename,
                                                              channels, npoints=10))
    pub.start()
    for name, c in channels.items():
        p = pub.create_channel(name, "float64", (), c["unit"], device=c["device"])
        p.send(np.arange(4.0))
    pub.end("FAILURE")
    [sw] = wait_written(writer, [pub])
    check_scan(store, sw)
    with h5py.File(filename, "r", locking=False) as f:
        assert decode(f["7.1/writer/end_reason"][()]) == "FAILURE"
        assert f["7.1/instrument/diode/data"].attrs["units"] == "V"
        assert f["7.1/instrument/diode/data"].shape == (4,)
