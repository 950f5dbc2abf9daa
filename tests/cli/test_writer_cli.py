"""The commands: help lists the seed's options, ``validate`` exit codes, and
``nexus-writer write`` in its own process writing a scan, then stopping on SIGINT
only once the scan in progress is saved."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading

import h5py
import numpy as np
import pytest

from tests.waiting import wait_for
from tests.writer.helpers import assert_channel, publish_by_hand

BIN = os.path.dirname(sys.executable)
SEED_OPTIONS = ("--keepshape", "--multivalue_positioners", "--enable_external_nonhdf5",
                "--disable_external_hdf5", "--copy_non_external", "--required_disk_space",
                "--log", "--logfile")


def _run(*args: str, timeout: float = 60, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(list(args), capture_output=True, text=True, timeout=timeout, **kw)


def test_help_lists_options():
    out = _run(os.path.join(BIN, "nexus-writer"), "--help")
    assert out.returncode == 0
    for command in ("demo", "write", "validate"):
        assert command in out.stdout
    for args in ([os.path.join(BIN, "nexus-writer"), "write", "--help"],
                 [os.path.join(BIN, "NexusSessionWriter"), "--help"]):
        out = _run(*args)
        assert out.returncode == 0, out.stderr
        for option in SEED_OPTIONS + ("--redis", "--flush-period", "--compression", "--no-live"):
            assert option in out.stdout, f"{option} missing from {' '.join(args)} --help"
        assert "SESSION" in out.stdout


def _nexus_file(path, broken: bool = False) -> None:
    with h5py.File(path, "w") as f:
        f.attrs.update(NX_class="NXroot", default="1.1")
        entry = f.create_group("1.1")
        entry.attrs.update(NX_class="NXentry", default="plot")
        plot = entry.create_group("plot")
        plot.attrs.update(NX_class="NXdata", signal="y", axes=["x"])
        plot.create_dataset("y", data=np.arange(3.0)).attrs["units"] = "counts"
        plot.create_dataset("x", data=np.arange(3.0)).attrs["units"] = "mm"
        if broken:
            entry.create_group("no_class")


def test_validate_exit_codes(tmp_path):
    good, bad = tmp_path / "good.h5", tmp_path / "bad.h5"
    _nexus_file(good)
    _nexus_file(bad, broken=True)
    exe = os.path.join(BIN, "nexus-writer")
    out = _run(exe, "validate", str(good))
    assert out.returncode == 0, out.stdout + out.stderr
    assert "0 errors, 0 warnings" in out.stdout and "/1.1/plot" in out.stdout
    out = _run(exe, "validate", str(bad))
    assert out.returncode == 1
    assert "no NeXus base class" in out.stdout  # the finding is printed
    out = _run(exe, "validate", str(good), str(bad))
    assert out.returncode == 1
    missing = tmp_path / "missing.h5"
    out = _run(exe, "validate", str(missing))
    assert out.returncode == 1, out.stdout + out.stderr  # a finding, not a crash
    assert f'File "{missing}" does not exist' in out.stdout, out.stdout
    assert "Traceback" not in out.stderr, out.stderr
    out = _run(exe, "validate")
    assert out.returncode == 2  # usage error


def _status(path: str, entry: str) -> str | None:
    """The entry's writer status as a reader sees it now (None: not there yet, or the
    read caught a flush half-way: without SWMR, HDF5 then raises OSError or RuntimeError
    ("addr overflow"), and the next poll reads again)."""
    try:
        with h5py.File(path, "r", locking=False) as f:
            if entry not in f:
                return None
            return f[entry]["writer/status"].asstr()[()]
    except (OSError, KeyError, RuntimeError):
        return None


@contextlib.contextmanager
def _writer(redis_url: str, tmp_path, *extra: str):
    """``nexus-writer write test_session`` in its own process (stderr in a file)."""
    log = tmp_path / "writer.log"
    with open(log, "w") as err:
        proc = subprocess.Popen(
            [os.path.join(BIN, "nexus-writer"), "write", "test_session", "--redis", redis_url,
             "--no-live", "--flush-period", "0.2", "--log", "info", *extra],
            stdout=subprocess.DEVNULL, stderr=err, cwd=tmp_path)
    try:
        wait_for(lambda: "to stop" in log.read_text() or proc.poll() is not None, 30,
                  "the writer to listen")
        assert proc.poll() is None, log.read_text()
        yield proc, log
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.fixture
def writer_process(redis_url, tmp_path):
    with _writer(redis_url, tmp_path) as (proc, log):
        yield proc, log


def test_write_command_saves_scans_and_stops_cleanly(writer_process, sim_session, store):
    proc, log = writer_process
    filename = sim_session.scan_saving.filename
    quick = sim_session.loopscan(5, 0.1, "diode")
    assert wait_for(lambda: _status(filename, "1.1") == "SUCCEEDED", 30, "scan 1 saved")
    # a scan in progress when Ctrl-C comes is finished, then the writer exits 0
    sim_session.time_scale = 1.0
    slow = sim_session.loopscan(30, 0.05, "diode", run=False)
    thread = threading.Thread(target=slow.run)
    thread.start()
    try:
        wait_for(lambda: _status(filename, "2.1") == "RUNNING", 30, "scan 2 running")
        proc.send_signal(signal.SIGINT)
        assert proc.wait(60) == 0, log.read_text()
    finally:
        thread.join(30)
    assert _status(filename, "2.1") == "SUCCEEDED"
    text = log.read_text()
    assert "finishing 1 scan(s) in progress" in text
    assert "SUCCEEDED" in text
    with h5py.File(filename, "r", locking=False) as f:
        for scan, n in ((quick, 5), (slow, 30)):
            entry = f[f"{scan.scan_number}.1"]
            nodes = {node.name: node for node in scan.node.nodes()}
            assert entry["measurement/diode"].shape == (n,)
            assert_channel(entry["instrument/diode/data"],
                           nodes["simulation_diode_sampling_controller:diode"])
            assert "end_time" in entry


def test_write_command_unreachable_redis(tmp_path):
    out = _run(os.path.join(BIN, "nexus-writer"), "write", "test_session", "--redis",
               "redis://127.0.0.1:1", "--no-live", timeout=60)
    assert out.returncode == 2
    assert "redis://127.0.0.1:1" in out.stderr


def _scan_in_progress(store, tmp_path, points: int):
    """A scan published by hand, left open with ``points`` points; (publisher,
    channel publishers, file name)."""
    filename = str(tmp_path / "data" / "sigterm.h5")
    pub, chans = publish_by_hand(store, filename, points)
    wait_for(lambda: _status(filename, "1.1") == "RUNNING", 30, "the scan running")
    return pub, chans, filename


def _final(filename: str) -> tuple[str, list[int], bool]:
    with h5py.File(filename, "r", locking=False) as f:
        writer = f["1.1/writer"]
        return (writer["status"].asstr()[()], writer["points_written"][()].tolist(),
                "end_time" in f["1.1"])


def test_sigterm_finishes_the_scans_in_progress(redis_url, tmp_path, store):
    """SIGTERM is a Ctrl-C: no new scan, the scan in progress is finished (its last
    points arrive after the signal), every state recorded, exit 0."""
    with _writer(redis_url, tmp_path, "--stop-timeout", "120") as (proc, log):
        pub, chans, filename = _scan_in_progress(store, tmp_path, 3)
        proc.send_signal(signal.SIGTERM)
        wait_for(lambda: "finishing 1 scan(s) in progress" in log.read_text()
                  or proc.poll() is not None, 30, "the writer to finish its scan")
        assert proc.poll() is None, log.read_text()
        for i in range(3, 7):
            for c in chans:
                c.send(float(i))
        pub.end("SUCCESS")
        assert proc.wait(60) == 0, log.read_text()
    assert _final(filename) == ("SUCCEEDED", [7, 7], True)
    assert pub.wait_saved(5).state == "SUCCEEDED"


@pytest.mark.parametrize("how", ["deadline", "second SIGTERM"])
def test_sigterm_deadline_or_second_sigterm_ends_scans(redis_url, tmp_path, store, how):
    """The --stop-timeout deadline, or a second SIGTERM, ends the scans in progress at
    once: recorded FAILED (file and Redis) with what was received."""
    timeout = "0.5" if how == "deadline" else "600"
    with _writer(redis_url, tmp_path, "--stop-timeout", timeout) as (proc, log):
        pub, _, filename = _scan_in_progress(store, tmp_path, 4)
        proc.send_signal(signal.SIGTERM)
        if how == "second SIGTERM":
            wait_for(lambda: "finishing 1 scan(s) in progress" in log.read_text(), 30,
                      "the writer to finish its scan")
            proc.send_signal(signal.SIGTERM)
        code = proc.wait(60)
        text = log.read_text()
    assert code == 1, text  # a scan FAILED: said by the exit code too
    if how == "deadline":
        assert "after 0.5 s (--stop-timeout): aborting them" in text
    status, written, ended = _final(filename)
    assert (status, written, ended) == ("FAILED", [4, 4], True)
    report = pub.wait_saved(5)
    assert report.state == "FAILED" and "stopped" in report.reason, report
