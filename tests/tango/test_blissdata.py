"""The ``BlissWriter`` device on BLISS 2.x scans: the recorded BLISS 2.4 scans replayed
with blissdata's producer API on a real Valkey (RedisJSON + RediSearch), asked for as
BLISS 2.4 asks: ``SaveScan`` while the scan is only CREATED (BLISS's writer prepare
runs before the scan is PREPARED and waits for ON), checks while the data comes, OFF at
the end; every stream bit-exact at the path it declared."""

from __future__ import annotations

import json

import pytest
from tango import DevState

from ..writer.bliss_helpers import assert_scan_file, wait_final
from .conftest import Bliss

pytestmark = pytest.mark.timeout(90)


@pytest.fixture
def bliss_device(blisswriter, bliss_url):
    """A BlissWriter on the blissdata server (the protocol is detected)."""
    return blisswriter(redis_url=bliss_url, session="test_session")


@pytest.mark.parametrize("name", ["ascan", "loopscan_mca", "amesh"])
def test_bliss_call_sequence(name, bliss_device, nxw_store, replays):
    device = bliss_device
    replay = replays(name).create()
    bliss = Bliss(device, replay.key)
    bliss.prepare()  # the scan is CREATED: BLISS prepares its writer first
    replay.started(0)
    assert device.scans_in_progress == (replay.key,)
    while replay.step():
        assert bliss.check() == DevState.ON
    replay.finish()
    assert bliss.finished() == DevState.OFF
    assert device.scan_state_reason(replay.key) == "" and bliss.warnings == []
    report = wait_final(nxw_store, replay.key)
    assert report.state == "SUCCEEDED", report
    progress = json.loads(device.scan_progress)[replay.key]
    for stream in replay.fixture["streams"]:
        if stream["plugin"] == "hdf5_fallback":
            n = len(stream["data"])
            assert progress["channels"][stream["name"]] == {"written": n, "published": n}
    assert_scan_file(replay)


def test_unsaved_scan_is_off_and_unknown_key(bliss_device, replays):
    """A scan with data_writer 'null' is not to be saved: OFF at once, with the reason;
    a key blissdata does not know: refused, UNKNOWN."""
    replay = replays("loopscan_writer_null").run()
    assert bliss_device.SaveScan(replay.key) is True
    assert Bliss(bliss_device, replay.key).finished() == DevState.OFF
    assert "not saved by this writer" in bliss_device.scan_state_reason(replay.key)
    missing = "esrf:scan:01AAAAAAAAAAAAAAAAAAAAAAAA"
    assert bliss_device.SaveScan(missing) is False
    assert missing in bliss_device.last_error
    assert bliss_device.scan_state(missing) == DevState.UNKNOWN


def test_unwritable_directory(bliss_device, nxw_store, replays, tmp_path):
    """The file's directory cannot be created: FAULT while BLISS prepares, and why."""
    blocker = tmp_path / "a_regular_file"
    blocker.write_text("not a directory")
    replay = replays("loopscan", blocker).create()
    with pytest.raises(AssertionError, match="Scan writer state is FAULT"):
        Bliss(bliss_device, replay.key).prepare()
    reason = bliss_device.scan_state_reason(replay.key)
    assert "cannot create directory" in reason and str(blocker) in reason, reason
    replay.started(0)
    replay.finish()
    assert wait_final(nxw_store, replay.key).state == "FAILED"
