"""The blissdata simulated session written by this project's writer (blissdata
source): every stream's data is in the file at the data path the stream declares
(``hdf5_fallback``), bit-exact, and blissdata reads it from there once Redis has
lost it."""

from __future__ import annotations

import numpy as np
import redis
from blissdata.redis_engine.memory_tracker import SEAL_ID
from blissdata.redis_engine.store import DataStore

from nexus_writer.nexus.validate import validate_file
from nexus_writer.sim import run_some_scans
from nexus_writer.writer import ScanState, SessionWriter
from tests.writer.helpers import wait_written


def test_some_scans_written_at_declared_paths(bliss_session, bliss_url):
    import h5py

    writer = SessionWriter("test_session", bliss_url, protocol="blissdata",
                           flush_period=0.2).start()
    try:
        scans = run_some_scans(bliss_session, extra=True)
        written = wait_written(writer, scans, timeout=120)
    finally:
        writer.stop(timeout=30)
    states = {w.label: w.state for w in written}
    assert len(states) == len(scans)
    assert set(states.values()) == {ScanState.SUCCEEDED}, states
    filename = bliss_session.scan_saving.filename
    report = validate_file(filename)
    assert report.ok, report.messages
    reader = DataStore(bliss_url)
    checked = 0
    with h5py.File(filename, "r", locking=False) as f:
        for scan in scans:
            bscan = reader.load_scan(scan.key)
            for name, stream in bscan.streams.items():
                if stream.plugin != "hdf5_fallback":
                    continue
                data_path = stream.info["data_path"]
                assert data_path in f, f"scan {scan.scan_number}: {name} not at {data_path}"
                sent = stream[:]
                written = f[data_path][()]
                if -1 in stream.info["shape"]:  # variable length: padded in the file
                    assert written.shape[0] == len(sent), data_path
                    for row, point in zip(written, sent, strict=True):
                        assert np.array_equal(row[:len(point)], point), data_path
                else:
                    assert written.dtype == stream.dtype, data_path
                    assert np.array_equal(written, sent), data_path
                checked += 1
    assert checked > 100


def test_blissdata_falls_back_to_the_file(bliss_session, bliss_url):
    """Once the scan's stream keys are gone from Redis, blissdata's hdf5_fallback
    reads the same data from the written file."""
    writer = SessionWriter("test_session", bliss_url, protocol="blissdata",
                           flush_period=0.2).start()
    try:
        scan = bliss_session.ascan("roby", 0, 1, 10, 0.01, "diode", "simu1")
        [written] = wait_written(writer, [scan], timeout=60)
    finally:
        writer.stop(timeout=30)
    assert written.state == ScanState.SUCCEEDED
    reader = DataStore(bliss_url)
    before = {name: s[:] for name, s in reader.load_scan(scan.key).streams.items()}
    bscan = reader.load_scan(scan.key)
    client = redis.Redis.from_url(bliss_url)
    try:
        # trim every point as blissdata's memory tracker does (the seal entry stays)
        for stream in bscan.streams.values():
            assert client.xlen(stream.key) > 1
            client.xtrim(stream.key, minid=SEAL_ID, approximate=False)
            assert client.xlen(stream.key) == 1
    finally:
        client.close()
    after = reader.load_scan(scan.key)
    for name, data in before.items():
        assert np.array_equal(after.streams[name][:], data), name
