"""The device server (the real ``nexus-writer tango run`` command) killed with
``kill -9`` in the middle of a scan BLISS asked it to save; the scan goes on.  The
server started again reports the scan's true state to BLISS's next checks and completes
the file from its last flush: no gap, no duplicate, NeXus-valid."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import hdf5plugin  # noqa: F401 - the spectrum is compressed
import numpy as np
import pytest
from tango import Database, DevFailed, DeviceProxy, DevState

from nexus_writer.data.saving import SavingReporter, reports
from nexus_writer.data.server import free_port
from nexus_writer.nexus.validate import validate_file
from nexus_writer.writer import ScanState

from ..writer.helpers import check_scan
from ..writer.test_crash import as_written
from .conftest import Bliss, wait_for
from .test_device import CHANNELS, create_scan, send

DEVICE = "test/blisswriter/kill9"
NPOINTS = 120


class DeviceServer:
    """``nexus-writer tango run kill9`` without a Tango database (a file database)."""

    def __init__(self, db_file: Path, log: Path):
        self.db_file = db_file
        self.log = log
        self.proc: subprocess.Popen | None = None

    def start(self) -> DeviceProxy:
        port = free_port()
        with open(self.log, "a") as log:
            log.write("--- start\n")
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "nexus_writer.cli.main", "tango", "run", "kill9",
                 "--log", "info", "--", "-ORBendPoint", f"giop:tcp:127.0.0.1:{port}",
                 f"-file={self.db_file}"],
                stdout=log, stderr=subprocess.STDOUT)
        device = DeviceProxy(f"tango://127.0.0.1:{port}/{DEVICE}#dbase=no")
        deadline = time.monotonic() + 30
        while True:
            try:
                if device.state() == DevState.ON:
                    return device
            except DevFailed:
                pass  # not up yet
            assert self.proc.poll() is None, f"the server exited: {self.log.read_text()}"
            assert time.monotonic() < deadline, f"the server never came ON: {self.text()}"
            time.sleep(0.05)

    def kill(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)
        self.proc = None

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.proc = None

    def text(self) -> str:
        return self.log.read_text() if self.log.exists() else ""


@pytest.fixture
def device_server(tmp_path):
    """``make(redis_url)`` -> the server of a BlissWriter device on that Redis."""
    servers = []

    def make(url: str) -> DeviceServer:
        db_file = tmp_path / "tango.db"
        db_file.write_text(f"BlissWriter/kill9/DEVICE/BlissWriter: {DEVICE}\n")
        db = Database(str(db_file))
        db.put_device_property(DEVICE, {"redis_url": url, "session": "test_session",
                                        "writer_options": json.dumps({"flush_period": 0.1})})
        servers.append(DeviceServer(db_file, tmp_path / "server.log"))
        return servers[-1]

    yield make
    for server in servers:
        server.close()


@pytest.mark.timeout(120)
def test_kill_9_mid_scan_then_restart(device_server, redis_url, store, data_dir):
    """A native scan."""
    device_server = device_server(redis_url)
    filename = str(data_dir / "killed.h5")
    pub, channels = create_scan(store, filename)
    device = device_server.start()
    bliss = Bliss(device, pub.key)
    pub.start()
    bliss.prepare()
    send(channels, range(40))
    wait_for("40 points of every channel durably in the file",
             lambda: (p := SavingReporter(store, pub.key).saved_progress())
             and len(p) == len(CHANNELS) and min(p.values()) >= 40)
    device_server.kill()
    send(channels, range(40, NPOINTS))  # the scan goes on while the writer is down
    with pytest.raises(DevFailed):
        device.state()
    pub.end()

    device = device_server.start()
    bliss.device = device
    # BLISS's next check: warnings first, then the state: the scan is not UNKNOWN
    assert bliss.check() in (DevState.INIT, DevState.ON, DevState.OFF)
    assert bliss.finished() == DevState.OFF
    assert device.scan_state_reason(pub.key) == "" and bliss.warnings == []
    saved = pub.wait_saved(10)
    assert saved.state == "SUCCEEDED", saved
    assert saved.detail["channels"] == {n: {"written": NPOINTS, "published": NPOINTS}
                                        for n in CHANNELS}
    check_scan(store, as_written(store, pub.key, ScanState.SUCCEEDED))
    with h5py.File(filename, "r", locking=False) as f:
        np.testing.assert_array_equal(f["1.1/instrument/diode/data"][()],
                                      np.arange(NPOINTS, dtype=float))
    report = validate_file(filename)
    assert report.ok, report.messages
    states = [r.state for r in reports(store, pub.key)]
    assert states.count("SUCCEEDED") == 1 and states[-1] == "SUCCEEDED", states
    log = device_server.text()
    assert "was left unfinished" in log and "resuming 1.1" in log, log[-3000:]


@pytest.mark.timeout(120)
def test_kill_9_mid_blissdata_scan_then_restart(device_server, bliss_url, nxw_store,
                                                replays):
    """A BLISS 2.4 scan (the recorded ascan, replayed): killed after some points are
    durable, the rest published meanwhile; restarted, the file is completed."""
    from ..writer.bliss_helpers import assert_scan_file, wait_final, wait_progress

    server = device_server(bliss_url)
    device = server.start()
    replay = replays("ascan").create()
    bliss = Bliss(device, replay.key)
    bliss.prepare()
    replay.started(4)
    wait_progress(nxw_store, replay.key, "axis:roby", 4)
    server.kill()
    replay.finish()
    device = server.start()
    bliss.device = device
    assert bliss.check() in (DevState.INIT, DevState.ON, DevState.OFF)
    assert bliss.finished() == DevState.OFF, device.scan_state_reason(replay.key)
    report = wait_final(nxw_store, replay.key)
    assert report.state == "SUCCEEDED", report
    assert_scan_file(replay)
    assert "was left unfinished" in server.text()
