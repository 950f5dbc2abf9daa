"""ESRF master files: the collection file ``{proposal}_{collection}.h5`` in the
collection folder and the proposal file ``{proposal}_{beamline}.h5`` one folder up
(the seed-era ESRF writer's names and places, docs/masterfiles.md), holding external
links ``{collection}_{dataset}_{scan}.{sub}`` with relative paths to every entry."""

from __future__ import annotations

import fcntl
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

from nexus_writer.data import DataStore
from nexus_writer.data.saving import writer_present
from nexus_writer.nexus.validate import validate_file
from nexus_writer.sim import SimSession
from nexus_writer.writer import ScanState, masterfiles

from .helpers import check_scan, decode, nx_class, wait_written


def _raw_data(session: SimSession) -> Path:
    s = session.scan_saving
    return Path(s.base_path) / s.proposal / s.beamline / s.session / "RAW_DATA"


def _links(master: Path) -> dict[str, tuple[str, str]]:
    out = {}
    with h5py.File(master, "r", locking=False) as f:
        for name in f:
            link = f.get(name, getlink=True)
            assert isinstance(link, h5py.ExternalLink), f"{master}: {name} is {link}"
            out[name] = (link.filename, link.path)
    return out


def test_master_file_places_and_names():
    dataset = "/data/blc123/id99/20261201/RAW_DATA/cube/cube_0007/cube_0007.h5"
    info = {"proposal": "blc123", "beamline": "id99", "collection": "cube", "dataset": "0007"}
    masters = masterfiles.master_files(info, dataset)
    assert [(m.kind, m.path) for m in masters] == [
        ("collection", "/data/blc123/id99/20261201/RAW_DATA/cube/blc123_cube.h5"),
        ("proposal", "/data/blc123/id99/20261201/RAW_DATA/blc123_id99.h5")]
    assert masterfiles.link_name(dataset, "12.2") == "cube_0007_12.2"
    for missing in ("proposal", "collection", "dataset"):
        assert masterfiles.master_files(dict(info, **{missing: ""}), dataset) == []
    no_beamline = dict(info)
    del no_beamline["beamline"]
    assert [m.kind for m in masterfiles.master_files(no_beamline, dataset)] == ["collection"]


def test_links_resolve_to_every_entry(sim_session, writer_factory, store):
    writer = writer_factory()
    s = sim_session
    scans = [s.ascan("roby", 0, 1, 4, 0.1, "diode")]
    s.scan_saving.newdataset(2)
    scans.append(s.loopscan(3, 0.1, "diode2"))
    scans.append(s.amesh("roby", 0, 1, 2, "robz", 0, 1, 1, 0.1, "diode"))
    s.scan_saving.newcollection("cube")
    scans.append(s.ct(0.1, "diode"))
    written = wait_written(writer, scans)
    for sw in written:
        check_scan(store, sw)
        assert sw.warnings == [], sw.warnings
    raw = _raw_data(s)
    expected = {  # link name -> (dataset file relative to RAW_DATA, entry)
        "sample_0001_1.1": ("sample/sample_0001/sample_0001.h5", "/1.1"),
        "sample_0002_2.1": ("sample/sample_0002/sample_0002.h5", "/2.1"),
        "sample_0002_3.1": ("sample/sample_0002/sample_0002.h5", "/3.1"),
        "cube_0001_4.1": ("cube/cube_0001/cube_0001.h5", "/4.1"),
    }
    masters = {raw / "testproposal_id00.h5": expected,
               raw / "sample" / "testproposal_sample.h5":
                   {k: (v[0][len("sample/"):], v[1]) for k, v in expected.items()
                    if k.startswith("sample_")},
               raw / "cube" / "testproposal_cube.h5":
                   {"cube_0001_4.1": ("cube_0001/cube_0001.h5", "/4.1")}}
    for master, links in masters.items():
        assert _links(master) == links, master
        keys = {scan.key: scan for scan in scans}
        with h5py.File(master, "r", locking=False) as f:
            assert nx_class(f) == "NXroot"
            latest = max(links, key=lambda n: int(links[n][1][1:].split(".")[0]))
            assert decode(f.attrs["default"]) == latest
            for name, (_, entry) in links.items():
                linked = f[name]
                assert nx_class(linked) == "NXentry"
                scan = keys[decode(linked["writer/scan_key"][()])]
                assert entry == f"/{scan.scan_number}.1"
                assert decode(linked["title"][()]) == scan.scan_info["title"]
                assert decode(linked["writer/status"][()]) == "SUCCEEDED"
            del linked  # an object of the linked file keeps that file open
        report = validate_file(master)
        assert (report.errors, report.warnings) == (0, 0), report.messages
        assert report.default_plot is not None and report.default_plot.endswith("plot0D")


def test_relative_links_survive_moving_the_proposal(sim_session, writer_factory, tmp_path,
                                                    monkeypatch):
    writer = writer_factory()
    scans = [sim_session.ascan("roby", 0, 1, 5, 0.1, "diode", "simu1")]
    wait_written(writer, scans)
    writer.stop(timeout=10)
    s = sim_session.scan_saving
    with h5py.File(s.filename, "r", locking=False) as f:
        expected = {name: f[f"1.1/measurement/{name}"][()] for name in f["1.1/measurement"]}
    moved = tmp_path / "archive" / "2026"
    moved.mkdir(parents=True)
    shutil.move(str(Path(s.base_path) / s.proposal), str(moved / s.proposal))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # links resolve from the master's folder, not the cwd
    raw = moved / s.proposal / s.beamline / s.session / "RAW_DATA"
    for master in (raw / "testproposal_id00.h5", raw / "sample" / "testproposal_sample.h5"):
        with h5py.File(master, "r", locking=False) as f:
            measurement = f["sample_0001_1.1/measurement"]
            assert set(measurement) == set(expected)
            for name, values in expected.items():
                assert np.array_equal(measurement[name][()], values), f"{master}: {name}"


def test_link_appears_when_the_entry_starts(sim_session, writer_factory):
    writer_factory()
    sim_session.time_scale = 1.0
    scan = sim_session.timescan(0.05, "diode", run=False)
    thread = scan.run_in_thread()
    master = _raw_data(sim_session) / "sample" / "testproposal_sample.h5"
    try:
        deadline = time.monotonic() + 30
        while not (master.exists() and "sample_0001_1.1" in _links(master)):
            assert time.monotonic() < deadline, f"no link in {master} after 30 s"
            time.sleep(0.02)
        with h5py.File(master, "r", locking=False) as f:
            entry = f["sample_0001_1.1"]
            assert nx_class(entry) == "NXentry"
            assert "end_time" not in entry  # the scan is still running
        assert scan.state.name == "RUNNING"
    finally:
        scan.abort()
        thread.join(10)
    assert scan.wait_saved(30).state == "SUCCEEDED"


def test_no_master_file_outside_the_data_policy(sim_session, writer_factory):
    sim_session.scan_saving.data_policy = "none"
    writer = writer_factory()
    (sw,) = wait_written(writer, [sim_session.ct(0.1, "diode")])
    assert sw.state == ScanState.SUCCEEDED
    assert "proposal" not in sw.info and "collection" not in sw.info
    assert [p.name for p in _raw_data(sim_session).rglob("*.h5")] == ["sample_0001.h5"]


def test_no_master_files_option(sim_session, writer_factory):
    writer = writer_factory(master_files=False)
    (sw,) = wait_written(writer, [sim_session.ct(0.1, "diode")])
    assert sw.state == ScanState.SUCCEEDED
    assert (sw.info["proposal"], sw.info["collection"]) == ("testproposal", "sample")
    assert [p.name for p in _raw_data(sim_session).rglob("*.h5")] == ["sample_0001.h5"]


def test_a_locked_master_gives_a_warning_not_a_failure(sim_session, writer_factory,
                                                       monkeypatch):
    monkeypatch.setattr(masterfiles, "LOCK_TIMEOUT", 0.3)
    collection = _raw_data(sim_session) / "sample" / "testproposal_sample.h5"
    collection.parent.mkdir(parents=True)
    with open(f"{collection}.lock", "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)  # another writer stuck with the lock
        writer = writer_factory()
        scans = [sim_session.ct(0.1, "diode")]
        (sw,) = wait_written(writer, scans)
    assert sw.state == ScanState.SUCCEEDED, sw.saving.reason
    assert len(sw.warnings) == 1 and "collection master file" in sw.warnings[0]
    assert "still held" in sw.warnings[0]
    report = scans[0].wait_saved(10)
    assert report.detail["warnings"] == sw.warnings
    assert not collection.exists()
    assert set(_links(_raw_data(sim_session) / "testproposal_id00.h5")) == {"sample_0001_1.1"}
    with h5py.File(sim_session.scan_saving.filename, "r", locking=False) as f:
        assert decode(f["1.1/writer/warnings"][()]) == sw.warnings


# -- several writer processes, readers -------------------------------------------------
READER = """
import sys, h5py
f = h5py.File(sys.argv[1], "r")  # HDF5's default: a file lock, as a user's viewer takes
print(len(f), flush=True)
sys.stdin.read()
f.close()
"""


def _writer_process(session: str, url: str, log: Path) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(Path(__file__).resolve().parents[2] / "src"), os.environ.get("PYTHONPATH", "")]))
    return subprocess.Popen(
        [sys.executable, "-m", "nexus_writer.cli.main", "write", session, "--redis", url,
         "--no-live", "--flush-period", "0.2", "--logfile", str(log)],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def _wait_writer(store: DataStore, session: str, proc: subprocess.Popen) -> None:
    deadline = time.monotonic() + 30
    while not writer_present(store, session):
        assert proc.poll() is None, f"writer of {session} exited: {proc.stderr.read()}"
        assert time.monotonic() < deadline, f"no writer listening to {session} after 30 s"
        time.sleep(0.05)


def _stop(proc: subprocess.Popen) -> tuple[int, str]:
    """SIGINT (the scans in progress are finished), then the exit code and stderr."""
    proc.send_signal(signal.SIGINT)
    try:
        _, err = proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate(timeout=10)
        raise
    return proc.returncode, err


@pytest.mark.timeout(300)
def test_two_writer_processes_add_to_one_master_concurrently(redis_url, data_dir, store,
                                                             tmp_path):
    sessions = [SimSession(name, redis_url=redis_url, base_path=data_dir, time_scale=0)
                for name in ("session_a", "session_b")]
    for k, s in enumerate(sessions, 1):
        s.scan_saving.session = "20261201"  # one proposal folder for the day, as at the ESRF
        s.scan_saving.newdataset(k)  # a dataset file of its own
    procs = [_writer_process(s.name, redis_url, tmp_path / f"{s.name}.log") for s in sessions]
    nscans = 25
    try:
        for s, proc in zip(sessions, procs):
            _wait_writer(store, s.name, proc)
        done: dict[str, list] = {}

        def run(s: SimSession) -> None:
            done[s.name] = [s.loopscan(2, 0.1, "diode") for _ in range(nscans)]

        threads = [threading.Thread(target=run, args=(s,)) for s in sessions]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        for s in sessions:
            assert len(done.get(s.name, [])) == nscans, f"{s.name} did not run its scans"
            for scan in done[s.name]:
                report = scan.wait_saved(60)
                assert report.state == "SUCCEEDED", report
                assert not report.detail.get("warnings"), report.detail
    finally:
        stopped = [_stop(p) for p in procs]
        for s in sessions:
            s.close()
    assert [code for code, _ in stopped] == [0, 0], stopped
    raw = _raw_data(sessions[0])
    expected = {f"sample_{k:04d}_{n}.1" for k in (1, 2) for n in range(1, nscans + 1)}
    for master in (raw / "testproposal_id00.h5", raw / "sample" / "testproposal_sample.h5"):
        links = _links(master)
        assert set(links) == expected, f"{master}: lost {sorted(expected - set(links))}"
        with h5py.File(master, "r", locking=False) as f:
            for name in links:
                assert nx_class(f[name]) == "NXentry", f"{master}: {name} does not resolve"
        report = validate_file(master)
        assert (report.errors, report.warnings) == (0, 0), report.messages


def test_a_reader_holding_the_master_does_not_stop_the_writer(sim_session, writer_factory):
    writer = writer_factory()
    first = sim_session.ct(0.1, "diode")
    wait_written(writer, [first])
    master = _raw_data(sim_session) / "sample" / "testproposal_sample.h5"
    reader = subprocess.Popen([sys.executable, "-c", READER, str(master)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert reader.stdout.readline().strip() == "1"  # open, with its lock
        second = sim_session.ct(0.1, "diode")
        (sw,) = wait_written(writer, [second])
        assert sw.state == ScanState.SUCCEEDED and sw.warnings == []
        assert reader.poll() is None, "the reader is still there"
        assert set(_links(master)) == {"sample_0001_1.1", "sample_0001_2.1"}
    finally:
        reader.communicate("", timeout=10)
    assert reader.returncode == 0
