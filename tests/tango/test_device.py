"""The ``BlissWriter`` device as BLISS 2.4 uses it, on native scans of a real Redis:
the call sequence of a scan that succeeds, fails, or has warnings; unknown scans;
Stop/Start; an internal error (FAULT until Init); the read-only attributes."""

from __future__ import annotations

import json
import os
import time

import h5py
import hdf5plugin  # noqa: F401 - the spectrum is compressed
import numpy as np
import pytest
import redis
from tango import DevFailed, DevState

from nexus_writer.data import DataStore
from nexus_writer.data import protocol as P
from nexus_writer.data.saving import reports
from nexus_writer.data.server import RedisServer, free_port
from nexus_writer.nexus.validate import validate_file
from nexus_writer.tango.device import HEARTBEAT_PERIOD
from nexus_writer.writer import ScanState

from ..writer.helpers import check_scan, decode, manual_scan_info
from ..writer.test_crash import as_written
from .conftest import Bliss, wait_for

pytestmark = pytest.mark.timeout(90)

CHANNELS = {"timer:elapsed_time": {"device": "timer", "dim": 0, "unit": "s"},
            "ctrl:diode": {"device": "diode", "dim": 0, "unit": "V"},
            "mca:spectrum": {"device": "mca", "dim": 1, "unit": ""}}
NPOINTS = 8


def create_scan(store: DataStore, filename: str, number: int = 1,
                session: str = "test_session"):
    """A scan published by hand (the test decides when points come and when it ends)."""
    info = manual_scan_info(session, number, filename, CHANNELS, npoints=NPOINTS)
    pub = store.create_scan(session, info)
    channels = {name: pub.create_channel(name, "int32" if c["dim"] else "float64",
                                         (16,) if c["dim"] else (), c["unit"],
                                         device=c["device"])
                for name, c in CHANNELS.items()}
    return pub, channels


def point(name: str, i: int):
    return np.full(16, i, np.int32) if name == "mca:spectrum" else float(i)


def send(channels, points: range) -> None:
    for i in points:
        for name, channel in channels.items():
            channel.send(point(name, i))


def test_scan_that_succeeds(blisswriter, store, data_dir):
    """BLISS's whole sequence: ON, SaveScan, known, running; checks while points come
    (no warning, ON, the attributes follow); at the end OFF with no reason, the file
    complete and bit-exact, and the final report in Redis says the same."""
    device = blisswriter()
    assert device.state() == DevState.ON
    filename = str(data_dir / "ok.h5")
    pub, channels = create_scan(store, filename)
    bliss = Bliss(device, pub.key)
    pub.start()
    bliss.prepare()
    assert device.scans_in_progress == (pub.key,)
    send(channels, range(4))
    assert bliss.check() == DevState.ON and bliss.warnings == []
    wait_for("4 points written", lambda: list(device.points_written) == [4])
    assert list(device.points_published) == [4]
    beat = wait_for("a heartbeat", lambda: device.heartbeat)
    send(channels, range(4, NPOINTS))
    pub.end()
    assert bliss.finished() == DevState.OFF
    assert device.scan_state_reason(pub.key) == "" and bliss.warnings == []
    assert not device.scans_in_progress
    progress = json.loads(device.scan_progress)[pub.key]
    assert progress["state"] == "SUCCEEDED" and progress["file"] == filename
    assert progress["channels"] == {name: {"written": NPOINTS, "published": NPOINTS}
                                    for name in CHANNELS}
    saved = pub.wait_saved(timeout=10)
    assert saved.state == "SUCCEEDED", saved
    check_scan(store, as_written(store, pub.key, ScanState.SUCCEEDED))
    report = validate_file(filename)
    assert report.ok, report.messages
    wait_for("a later heartbeat", lambda: device.heartbeat > beat)
    assert device.last_error == ""


def test_simulated_scans(blisswriter, sim_session, store):
    """The simulated session's scans (counters, an MCA, a camera; a motor scan), each
    asked for with SaveScan as soon as it is announced: all OFF, files whole."""
    device = blisswriter()
    scans = [(sim_session.loopscan(5, 0.01, "diode", "simu1", "lima_simulator", run=False),
              "vds"),
             (sim_session.ascan("roby", 0, 1, 4, 0.01, "diode", "diode2", run=False), None)]
    for scan, camera in scans:
        thread = scan.run_in_thread()
        wait_for("the scan announced", lambda s=scan: s.key is not None)
        assert device.SaveScan(scan.key) is True
        thread.join(30)
        assert Bliss(device, scan.key).finished() == DevState.OFF
        assert device.scan_state_reason(scan.key) == ""
        assert scan.wait_saved(10).state == "SUCCEEDED"
        check_scan(store, as_written(store, scan.key, ScanState.SUCCEEDED), camera=camera)
    report = validate_file(sim_session.scan_saving.filename)
    assert report.ok, report.messages


def test_unwritable_directory_is_a_fault_with_the_reason(blisswriter, store, tmp_path):
    """The dataset directory cannot be created (below a regular file, as root too):
    the scan is FAULT as soon as BLISS prepares it, and the reason names the directory."""
    device = blisswriter()
    blocker = tmp_path / "a_regular_file"
    blocker.write_text("not a directory")
    pub, channels = create_scan(store, str(blocker / "sample" / "sample_0001.h5"))
    bliss = Bliss(device, pub.key)
    with pytest.raises(AssertionError, match="Scan writer state is FAULT"):
        bliss.prepare()
    assert device.scan_state(pub.key) == DevState.FAULT
    reason = device.scan_state_reason(pub.key)
    assert "cannot create directory" in reason and str(blocker / "sample") in reason, reason
    assert "scan 1 of session 'test_session'" in reason
    assert device.state() == DevState.ON  # the device serves the next scans
    pub.start()
    send(channels, range(2))
    pub.end()
    assert pub.wait_saved(10).state == "FAILED"


def test_malformed_stream_gives_warnings_then_fault(blisswriter, store, data_dir, redis_url):
    """Garbage where points 2..3 of the diode should be: BLISS sees the warning while the
    scan runs (ON), GetWarning names the channel; at the end FAULT, the reason says
    which points are missing; the other channels are whole."""
    device = blisswriter()
    filename = str(data_dir / "holes.h5")
    pub, channels = create_scan(store, filename)
    bliss = Bliss(device, pub.key)
    pub.start()
    bliss.prepare()
    send(channels, range(2))
    raw = redis.Redis.from_url(redis_url)
    try:
        raw.xadd(channels["ctrl:diode"].node.key, {b"n": b"2", b"d": b"abc"},
                 id=P.entry_id(2))
    finally:
        raw.close()
    channels["ctrl:diode"].count += 2
    for i in range(2, 4):
        for name, channel in channels.items():
            if name != "ctrl:diode":
                channel.send(point(name, i))
    wait_for("a warning", lambda: device.GetWarningCount(pub.key) > 0)
    assert bliss.check() == DevState.ON  # warned, still writing
    assert any("ctrl:diode" in w and "3 bytes" in w for w in bliss.warnings), bliss.warnings
    with pytest.raises(DevFailed, match="no index 99"):
        device.GetWarning(json.dumps({"scan_key": pub.key, "index": 99}))
    with pytest.raises(DevFailed, match="GetWarning expects"):
        device.GetWarning("not json")
    send(channels, range(4, NPOINTS))
    pub.end()
    assert bliss.finished() == DevState.FAULT
    reason = device.scan_state_reason(pub.key)
    assert "ctrl:diode 6/8 points" in reason and "points 2..3 are missing" in reason, reason
    assert "mca:spectrum" not in reason
    progress = json.loads(device.scan_progress)[pub.key]["channels"]
    assert progress["ctrl:diode"] == {"written": 6, "published": NPOINTS}
    assert progress["mca:spectrum"] == {"written": NPOINTS, "published": NPOINTS}
    with h5py.File(filename, "r", locking=False) as f:
        assert decode(f["1.1/writer/status"][()]) == "FAILED"
        diode = f["1.1/instrument/diode/data"][()]
    np.testing.assert_array_equal(diode[[0, 1, 4, 5, 6, 7]], [0, 1, 4, 5, 6, 7])
    assert np.isnan(diode[2:4]).all()


def test_unknown_scan(blisswriter):
    """A key that is not in Redis: UNKNOWN, SaveScan refused (False) and the reason
    said; warnings of an unknown scan are an error naming it."""
    device = blisswriter()
    key = "nxw:scan:test_session:9:doesnotexist"
    assert device.scan_state(key) == DevState.UNKNOWN
    assert device.SaveScan(key) is False
    assert key in device.last_error and "does not exist" in device.last_error
    assert device.scan_state(key) == DevState.UNKNOWN
    assert "unknown to this writer" in device.scan_state_reason(key)
    with pytest.raises(DevFailed, match="unknown to this writer"):
        device.GetWarningCount(key)
    assert device.state() == DevState.ON


def test_stop_refuses_then_start_accepts(blisswriter, store, data_dir):
    """Stop: OFF, SaveScan refused (the scan stays UNKNOWN) while a scan accepted before
    is written to its end; Start: ON, the refused scan is accepted and saved."""
    device = blisswriter()
    first, first_channels = create_scan(store, str(data_dir / "a.h5"), number=1)
    second, second_channels = create_scan(store, str(data_dir / "a.h5"), number=2)
    first.start()
    Bliss(device, first.key).prepare()
    device.Stop()
    assert device.state() == DevState.OFF and "refused" in device.status()
    assert device.SaveScan(second.key) is False
    assert "must be ON" in device.last_error
    assert device.scan_state(second.key) == DevState.UNKNOWN
    send(first_channels, range(NPOINTS))
    first.end()
    assert Bliss(device, first.key).finished() == DevState.OFF
    device.Start()
    assert device.state() == DevState.ON
    second.start()
    Bliss(device, second.key).prepare()
    send(second_channels, range(NPOINTS))
    second.end()
    assert Bliss(device, second.key).finished() == DevState.OFF
    for pub in (first, second):
        check_scan(store, as_written(store, pub.key, ScanState.SUCCEEDED))


def test_internal_error_is_a_fault_until_init(blisswriter, data_dir):
    """Redis unreachable when the device starts: FAULT, the status says why without the
    password; Start and Stop refused, SaveScan False; still FAULT once Redis is back;
    Init: ON, and scans are saved."""
    port = free_port()
    url = f"redis://nxw:s3cret@127.0.0.1:{port}"
    device = blisswriter(redis_url=url)
    assert device.state() == DevState.FAULT
    status = device.status()
    assert "cannot reach Redis" in status and "Init" in status, status
    assert "s3cret" not in status and "nxw" not in status and "redis://***@" in status
    assert "s3cret" not in device.last_error
    for command in (device.Start, device.Stop):
        with pytest.raises(DevFailed, match="FAULT"):
            command()
    assert device.SaveScan("nxw:scan:test_session:1:x") is False
    with RedisServer(port=port, extra_args=("--user", "nxw", "on", ">s3cret", "~*", "&*",
                                            "+@all")):
        time.sleep(0.2)  # a device that healed by itself would do it within this time
        assert device.state() == DevState.FAULT
        device.Init()
        assert device.state() == DevState.ON
        store = DataStore(url)
        try:
            pub, channels = create_scan(store, str(data_dir / "after_init.h5"))
            pub.start()
            bliss = Bliss(device, pub.key)
            bliss.prepare()
            send(channels, range(NPOINTS))
            pub.end()
            assert bliss.finished() == DevState.OFF
            check_scan(store, as_written(store, pub.key, ScanState.SUCCEEDED))
        finally:
            store.close()


def test_follow_session(blisswriter, sim_session, store):
    """With follow_session, every scan of the session is written without SaveScan; a
    SaveScan on one of them is accepted (the same writer) and the states are reported."""
    device = blisswriter(session="test_session", follow_session=True)
    assert device.state() == DevState.ON and "followed" in device.status()
    scans = [sim_session.loopscan(4, 0.01, "diode"), sim_session.ct(0.01, "diode2")]
    for scan in scans:
        assert scan.wait_saved(20).state == "SUCCEEDED"
        assert device.scan_state(scan.key) == DevState.OFF
        assert device.SaveScan(scan.key) is True
    for scan in scans:
        check_scan(store, as_written(store, scan.key, ScanState.SUCCEEDED))
    assert device.heartbeat > 0


def test_follow_session_needs_a_session(blisswriter):
    device = blisswriter(follow_session=True)
    assert device.state() == DevState.FAULT
    assert "follow_session needs the session property" in device.status()


def test_init_while_a_scan_is_written(blisswriter, store, data_dir):
    """Init in the middle of a scan: the scan is neither dropped nor taken twice; the
    reinitialised device reports it to its end, and takes new scans."""
    device = blisswriter()
    pub, channels = create_scan(store, str(data_dir / "init.h5"), number=1)
    pub.start()
    bliss = Bliss(device, pub.key)
    bliss.prepare()
    send(channels, range(3))
    device.Init()
    assert device.state() == DevState.ON
    assert bliss.check() == DevState.ON and device.scans_in_progress == (pub.key,)
    assert device.SaveScan(pub.key) is True  # the same writer, not a second one
    send(channels, range(3, NPOINTS))
    pub.end()
    assert bliss.finished() == DevState.OFF
    later, later_channels = create_scan(store, str(data_dir / "init.h5"), number=2)
    later.start()
    Bliss(device, later.key).prepare()
    send(later_channels, range(NPOINTS))
    later.end()
    assert Bliss(device, later.key).finished() == DevState.OFF
    for scan in (pub, later):
        check_scan(store, as_written(store, scan.key, ScanState.SUCCEEDED))
    states = [r.state for r in reports(store, pub.key)]
    assert states == ["READY", "RUNNING", "SUCCEEDED"], states


def test_scan_followed_by_another_writer_is_relayed(blisswriter, writer_factory, store,
                                                     data_dir):
    """A NexusSessionWriter follows the session: SaveScan accepts the scan without
    writing it a second time, the device relays that writer's reports; the device's
    Init leaves the other writer's heartbeat alone."""
    from nexus_writer.data.saving import writer_present

    follower = writer_factory()
    device = blisswriter(session="test_session")
    pub, channels = create_scan(store, str(data_dir / "followed.h5"))
    pub.start()
    bliss = Bliss(device, pub.key)
    bliss.prepare()
    assert device.scans_in_progress == ()  # not written by the device
    send(channels, range(NPOINTS))
    pub.end()
    assert bliss.finished() == DevState.OFF
    [scan] = [w for w in follower.scans() if w.source.key == pub.key]
    check_scan(store, scan)
    assert [r.state for r in reports(store, pub.key)] == ["READY", "RUNNING", "SUCCEEDED"]
    device.Init()
    assert writer_present(store, "test_session") is not None


# the listener thread dying is the failure under test
@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_listener_failure_is_a_fault_until_init(blisswriter, sim_session, raw):
    """Following the session, the listener dies (the session's stream replaced by a
    string: Redis answers WRONGTYPE, which no retry mends): the device goes FAULT and
    says so; once the key is mended, Init: ON, following again."""
    device = blisswriter(session="test_session", follow_session=True)
    raw.delete("nxw:session:test_session")
    raw.set("nxw:session:test_session", "not a stream")
    wait_for("the device FAULT", lambda: device.state() == DevState.FAULT)
    assert "listener of session 'test_session' stopped" in device.status()
    assert "Init" in device.status()
    raw.delete("nxw:session:test_session")
    device.Init()
    assert device.state() == DevState.ON
    scan = sim_session.loopscan(3, 0.01, "diode")
    assert scan.wait_saved(20).state == "SUCCEEDED"
    assert device.scan_state(scan.key) == DevState.OFF
    assert device.state() == DevState.ON


def test_malformed_scan_refused_on_demand(blisswriter, raw):
    """SaveScan of a scan whose identity is malformed: refused, named, the device ON."""
    device = blisswriter()
    bad = "nxw:scan:test_session:1:malformed"
    raw.hset(bad, mapping={"number": "abc", "session": "test_session", "name": "x",
                           "type": "scan", "info": "{}"})
    assert device.SaveScan(bad) is False
    assert bad in device.last_error and "abc" in device.last_error
    assert device.state() == DevState.ON and device.scan_state(bad) == DevState.UNKNOWN


def test_heartbeat_stops_while_redis_is_away(blisswriter):
    """The heartbeat advances every second while Redis answers; with Redis gone it
    stops and last_error says why (no password); it goes on once Redis is back."""
    port = free_port()
    user = ("--user", "nxw", "on", ">s3cret", "~*", "&*", "+@all")
    server = RedisServer(port=port, extra_args=user).start()
    try:
        device = blisswriter(redis_url=f"redis://nxw:s3cret@127.0.0.1:{port}")
        first = wait_for("a heartbeat", lambda: device.heartbeat)
        wait_for("a later heartbeat", lambda: device.heartbeat > first)
        server._end_process()
        wait_for("the lost Redis said", lambda: "Redis unreachable" in device.last_error)
        assert "s3cret" not in device.last_error
        stopped = device.heartbeat
        time.sleep(2.5 * HEARTBEAT_PERIOD)  # two checks or more, none may beat
        assert device.heartbeat == stopped
        server.start()
        wait_for("the heartbeat going on", lambda: device.heartbeat > stopped)
        assert device.state() == DevState.ON
    finally:
        server.stop()


def test_one_server_two_sessions(redis_url, sim_session, store, data_dir):
    """One server (MultiDeviceTestContext), a device per session, each following its
    own: each writes its session's scans and knows nothing of the other's."""
    from tango.test_context import MultiDeviceTestContext

    from nexus_writer.sim import SimSession
    from nexus_writer.tango.device import BlissWriter

    def device(session: str) -> dict:
        return {"name": f"id00/blisswriter/{session}",
                "properties": {"redis_url": redis_url, "session": session,
                               "follow_session": True,
                               "writer_options": json.dumps({"flush_period": 0.1})}}

    info = [{"class": BlissWriter, "devices": [device("test_session"), device("other")]}]
    with MultiDeviceTestContext(info, timeout=30) as context, \
            SimSession("other", redis_url=redis_url, base_path=data_dir / "other",
                       time_scale=0) as other_session:
        mine = context.get_device("id00/blisswriter/test_session")
        theirs = context.get_device("id00/blisswriter/other")
        scan = sim_session.loopscan(3, 0.01, "diode")
        other = other_session.loopscan(4, 0.01, "diode")
        for s, dev, not_dev in ((scan, mine, theirs), (other, theirs, mine)):
            assert s.wait_saved(20).state == "SUCCEEDED"
            assert dev.scan_state(s.key) == DevState.OFF
            assert s.key in json.loads(dev.scan_progress)
            assert s.key not in json.loads(not_dev.scan_progress)
            check_scan(store, as_written(store, s.key, ScanState.SUCCEEDED))


def test_follow_session_taken_by_another_writer(blisswriter, writer_factory):
    """Another writer follows the session (it holds the lease): the following device is
    FAULT and names it; once that writer is gone, Init: ON, following."""
    other = writer_factory()
    device = blisswriter(session="test_session", follow_session=True)
    assert device.state() == DevState.FAULT
    status = device.status()
    assert "LeaseHeldError" in status and str(os.getpid()) in status, status
    other.stop(timeout=10)
    device.Init()
    assert device.state() == DevState.ON and "followed" in device.status()
