"""Every recorded BLISS 2.4 scan, replayed with blissdata's producer API on a real
Valkey with RedisJSON/RediSearch, written by the session writer (protocol detected):
every stream bit-exact at the data path it declared, NeXus-valid, with plots; and
blissdata's own readers read our file once Redis no longer has the data."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from nexus_writer.data import saving
from nexus_writer.writer.blissdata_source import record_key

from ..blissdata_replay import FIXTURE_NAMES, ScanReplay, load_fixture, stream_points
from .bliss_helpers import assert_scan_file, wait_final
from .helpers import assert_same_bytes, decode

NOT_SAVED = {"ct": "save=False", "loopscan_save_false": "save=False",
             "loopscan_writer_null": "data_writer='null'"}
SAVED = [n for n in FIXTURE_NAMES if n not in NOT_SAVED]


def _all_scans(replay: ScanReplay) -> list[ScanReplay]:
    return [replay] + replay.children


def test_every_fixture_is_covered():
    """The 14 recorded files: none left out of the tests below."""
    assert len(FIXTURE_NAMES) == 14
    assert set(SAVED) | set(NOT_SAVED) == set(FIXTURE_NAMES)


@pytest.mark.parametrize("name", SAVED)
def test_fixture_written_bit_exact_at_declared_paths(name, bliss_store, nxw_store,
                                                     bliss_writer, tmp_path):
    writer = bliss_writer()
    assert writer.protocol == "blissdata"
    replay = ScanReplay(bliss_store, load_fixture(name), tmp_path).run()
    reports = {scan.key: wait_final(nxw_store, scan.key) for scan in _all_scans(replay)}
    for scan in _all_scans(replay):  # the file is closed once every scan of it is final
        report = reports[scan.key]
        assert report.state == "SUCCEEDED", f"{name} scan {scan.number}: {report}"
        assert report.detail["end_reason"] == scan.fixture["info"]["end_reason"]
        channels = report.detail["channels"]
        for stream in scan.fixture["streams"]:
            if stream["plugin"] == "hdf5_fallback":
                n = len(stream["data"])
                assert channels[stream["name"]] == {"written": n, "published": n}
        assert_scan_file(scan)


def test_sequence_links_its_children(bliss_store, nxw_store, bliss_writer, tmp_path):
    """SUBSCANS events -> ``/{seq}.1/subscans/scan_{n}`` links to the children's entries."""
    bliss_writer()
    replay = ScanReplay(bliss_store, load_fixture("sequence"), tmp_path).run()
    for scan in _all_scans(replay):
        wait_final(nxw_store, scan.key)
    with h5py.File(replay.fixture["info"]["filename"], "r", locking=False) as f:
        subscans = f[f"{replay.number}.1/subscans"]
        assert sorted(subscans) == sorted(f"scan_{c.number}" for c in replay.children)
        for child in replay.children:
            assert subscans.get(f"scan_{child.number}", getlink=True).path == \
                f"/{child.number}.1"
        # the sequence's own 2D channel (float32 (2, 3) points, not an image)
        matrix = next(s for s in replay.fixture["streams"] if s["name"] == "seq_matrix")
        assert f[matrix["info"]["data_path"]].shape == (2, 2, 3)


def test_aborted_timescan_records_user_abort(bliss_store, nxw_store, bliss_writer, tmp_path):
    """No STOPPED state, streams of 39/39/38 points: all written, USER_ABORT recorded,
    the plot still valid (the shorter channel does not break it)."""
    bliss_writer()
    replay = ScanReplay(bliss_store, load_fixture("timescan_aborted"), tmp_path).run()
    assert "STOPPED" not in replay.states
    report = wait_final(nxw_store, replay.key)
    assert report.state == "SUCCEEDED"
    assert report.detail["end_reason"] == "USER_ABORT"
    filename = assert_scan_file(replay)
    with h5py.File(filename, "r", locking=False) as f:
        assert decode(f["9.1/writer/end_reason"][()]) == "USER_ABORT"
        assert sorted(f["9.1/writer/points_written"][()].tolist()) == [38, 39, 39]


@pytest.mark.parametrize("name", sorted(NOT_SAVED))
def test_unsaved_scans_skipped_with_reason(name, bliss_store, nxw_store, bliss_writer,
                                           tmp_path):
    bliss_writer()
    replay = ScanReplay(bliss_store, load_fixture(name), tmp_path).run()
    report = wait_final(nxw_store, replay.key)
    assert report.state == "SKIPPED"
    assert NOT_SAVED[name] in report.reason
    assert not list(tmp_path.rglob("*.h5")), "a file was written for an unsaved scan"


@pytest.mark.parametrize("name", ["loopscan_mca", "loopscan_samples", "amesh"])
def test_blissdata_reads_trimmed_points_from_our_file(name, bliss_store, nxw_store,
                                                      bliss_writer, tmp_path):
    """blissdata's hdf5_fallback: once Redis has no data left, ``stream[:]`` reads
    the points from ``file_path``/``data_path``, i.e. from the file we wrote."""
    bliss_writer()
    replay = ScanReplay(bliss_store, load_fixture(name), tmp_path).run()
    wait_final(nxw_store, replay.key)
    redis = bliss_store._redis
    scan = bliss_store.load_scan(replay.key)
    for stream in replay.fixture["streams"]:
        key = scan.streams[stream["name"]].key
        redis.xtrim(key, minid=f"{2**64 - 1}-0", approximate=False)  # all but the seal
        assert redis.xlen(key) == 1
    scan = bliss_store.load_scan(replay.key)  # a new reader, nothing cached
    for stream in replay.fixture["streams"]:
        bstream = scan.streams[stream["name"]]
        assert bstream.plugin == "hdf5_fallback"
        expected = stream_points(stream)
        got = bstream[:]
        if isinstance(expected, list):  # variable length: the file's rows, padded
            for i, p in enumerate(expected):
                assert_same_bytes(np.asarray(got[i])[:len(p)], p, f"{stream['name']}[{i}]")
        else:
            assert_same_bytes(np.asarray(got), expected, stream["name"])
        assert_same_bytes(np.asarray(bstream[1]), expected[1], f"{stream['name']}[1]")


def test_records_in_own_keys_beside_blissdata(bliss_store, nxw_store, bliss_writer,
                                              tmp_path):
    """The writer's reports and progress live in ``nxw:bliss:{scan key}``; the scan's
    own JSON document is untouched (blissdata still loads it)."""
    bliss_writer()
    replay = ScanReplay(bliss_store, load_fixture("ascan"), tmp_path).run()
    wait_final(nxw_store, replay.key)
    states = [r.state for r in saving.reports(nxw_store, record_key(replay.key))]
    assert states == ["READY", "RUNNING", "SUCCEEDED"]
    record = nxw_store.redis.hgetall(record_key(replay.key))
    assert record[b"saving_state"] == b"SUCCEEDED"
    assert record[b"scan"].decode() == replay.key
    assert 0 < nxw_store.redis.ttl(record_key(replay.key)) <= nxw_store.retention
    assert bliss_store._redis.type(replay.key) == b"ReJSON-RL"
    assert bliss_store.load_scan(replay.key).info["end_reason"] == "SUCCESS"


def test_mesh_with_keepshape_keeps_declared_paths_flat(bliss_store, nxw_store, bliss_writer,
                                                      tmp_path):
    """``--keepshape`` stores ESRF-layout meshes as grids, but data at a declared path
    stays flat (blissdata readers index it point by point); the plot shows the grid."""
    bliss_writer(keepshape=True)
    replay = ScanReplay(bliss_store, load_fixture("amesh"), tmp_path).run()
    assert wait_final(nxw_store, replay.key).state == "SUCCEEDED"
    filename = assert_scan_file(replay)
    with h5py.File(filename, "r", locking=False) as f:
        assert f["6.1/instrument/diode/signal"].shape == (20,)
        plot = f[f"6.1/{decode(f['6.1'].attrs['default'])}"]
        signal = plot[decode(plot.attrs["signal"])]
        assert signal.shape == (4, 5)  # npoints2 x npoints1: slow, fast
        diode = stream_points(next(s for s in replay.fixture["streams"]
                                   if s["name"].endswith(":diode")))
        assert_same_bytes(signal[()].reshape(-1), diode, "grid view")
