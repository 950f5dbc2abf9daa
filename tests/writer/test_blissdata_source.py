"""The blissdata source under trouble, on the real server: data trimmed before it is
read, a malformed entry, two sessions in one Redis, scans created while no writer
runs, a writer killed (``kill -9``) mid-scan, and which protocol a server speaks."""

from __future__ import annotations

import copy
import logging

import h5py
import pytest
import redis

from nexus_writer.data import DataStore
from nexus_writer.errors import ProtocolVersionError
from nexus_writer.nexus import h5map
from nexus_writer.writer import SessionWriter
from nexus_writer.writer.blissdata_source import UnsupportedServerError, detect_protocol

from ..blissdata_replay import ScanReplay, load_fixture, stream_points
from .bliss_helpers import (SESSION, assert_materialised, assert_scan_file, assert_stream_at,
                            wait_final, wait_progress)
from .helpers import assert_same_bytes, decode
from .test_crash import WriterProcess

DIODE = "simulation_diode_sampling_controller:diode"


def _stream(replay: ScanReplay, name: str) -> dict:
    return next(s for s in replay.fixture["streams"] if s["name"] == name)


def test_points_trimmed_before_read_are_counted(bliss_store, nxw_store, bliss_writer,
                                                tmp_path, caplog):
    """The scan is published while no writer runs and Redis trims 3 points of one
    stream and all of another: the file, the report and the log say exactly which
    points are missing; every other point is written bit-exact."""
    replay = ScanReplay(bliss_store, load_fixture("ascan"), tmp_path).run()
    scan = bliss_store.load_scan(replay.key)
    r = bliss_store._redis
    r.xtrim(scan.streams[DIODE].key, minid="3-0", approximate=False)  # points 0..2
    r.xtrim(scan.streams["timer:epoch"].key, minid=f"{2**64 - 1}-0", approximate=False)
    caplog.set_level(logging.WARNING)
    bliss_writer()
    report = wait_final(nxw_store, replay.key)
    assert report.state == "FAILED"
    assert f"{DIODE} 8/11 points" in report.reason
    assert "timer:epoch 0/11 points" in report.reason
    assert f"'{DIODE}': points 0..2 (3) trimmed from Redis before they were read" \
        in report.reason
    assert report.detail["channels"][DIODE] == {"written": 8, "published": 11}
    assert any("points 0..2 (3) trimmed" in rec.getMessage() for rec in caplog.records)
    with h5py.File(replay.fixture["info"]["filename"], "r", locking=False) as f:
        assert_stream_at(f, _stream(replay, DIODE), missing=(0, 3))
        assert_stream_at(f, _stream(replay, "axis:roby"))
        status = f["2.1/writer"]
        assert decode(status["status"][()]) == "FAILED"
        assert "8/11 points" in decode(status["reason"][()])
        assert any("trimmed" in p for p in decode(status["problems"][()]))


def test_malformed_entry_named_and_counted_other_scans_go_on(bliss_store, nxw_store,
                                                              bliss_writer, tmp_path):
    """An entry that does not decode (3 bytes for a float64 point): named with its
    point index, counted missing; the rest of the stream and the next scan are
    written."""
    bliss_writer()
    replay = ScanReplay(bliss_store, load_fixture("ascan"), tmp_path).create()
    replay.started(2)
    diode = replay.streams[DIODE]
    diode.join()  # the producer's sink has sent points 0 and 1
    bliss_store._redis.xadd(diode.key, {"payload": b"xyz"}, id="2-1")
    diode.event_stream._write_index += 1  # the producer goes on after the bad entry
    replay.finish()
    report = wait_final(nxw_store, replay.key)
    assert report.state == "FAILED"
    assert f"stream '{DIODE}': entry of points 2..2 undecodable" in report.reason
    assert report.detail["channels"][DIODE] == {"written": 11, "published": 12}
    recorded = stream_points(_stream(replay, DIODE))
    with h5py.File(replay.fixture["info"]["filename"], "r", locking=False) as f:
        data = f[_stream(replay, DIODE)["info"]["data_path"]][()]
        assert_same_bytes(data[:2], recorded[:2], "before")
        assert data[2] != data[2], "the undecodable point is not NaN"
        assert_same_bytes(data[3:], recorded[2:], "after")
        assert_stream_at(f, _stream(replay, "axis:roby"))
    nxt = ScanReplay(bliss_store, load_fixture("loopscan"), tmp_path / "next").run()
    assert wait_final(nxw_store, nxt.key).state == "SUCCEEDED"
    assert_scan_file(nxt)


def _in_session(name: str, session: str) -> dict:
    fixture = copy.deepcopy(load_fixture(name))
    fixture["identity"]["session"] = session
    fixture["info"]["session_name"] = session
    return fixture


def test_two_sessions_in_one_redis(bliss_store, nxw_store, bliss_writer, tmp_path):
    mine, other = bliss_writer(SESSION), bliss_writer("other_session")
    a = ScanReplay(bliss_store, _in_session("loopscan", SESSION), tmp_path / "a").run()
    b = ScanReplay(bliss_store, _in_session("ascan", "other_session"), tmp_path / "b").run()
    for scan in (a, b):
        assert wait_final(nxw_store, scan.key).state == "SUCCEEDED"
        assert_scan_file(scan)
    assert [w.source.key for w in mine.scans()] == [a.key]
    assert [w.source.key for w in other.scans()] == [b.key]


def test_unreadable_scan_announced_is_named_and_skipped(bliss_store, nxw_store, bliss_writer,
                                                        tmp_path, caplog):
    """A key announced as a new scan with no scan document behind it: the writer names
    it and goes on with the next scan; asked for it (Tango's SaveScan), it says why."""
    from blissdata.redis_engine.scan import scan_creation_stream

    writer = bliss_writer()
    bogus = "esrf:scan:NOTASCANDOCUMENT"
    bliss_store._redis.set(bogus, "plain string")
    with caplog.at_level(logging.WARNING):
        bliss_store._redis.xadd(scan_creation_stream, {"key": bogus})
        replay = ScanReplay(bliss_store, load_fixture("loopscan"), tmp_path).run()
        assert wait_final(nxw_store, replay.key).state == "SUCCEEDED"
    assert any(bogus in r.getMessage() and "not readable" in r.getMessage()
               for r in caplog.records)
    with pytest.raises(ValueError, match="not a blissdata scan document"):
        writer.save_scan(bogus)
    with pytest.raises(KeyError, match="does not exist"):
        writer.save_scan("esrf:scan:NEVERCREATED")


def test_scans_created_while_the_writer_is_down(bliss_store, nxw_store, bliss_url, tmp_path):
    """A writer starting later writes the session's retained scans no writer finished,
    and not those a writer finished already; ``from_next`` skips them all."""
    with SessionWriter(SESSION, bliss_url, flush_period=0.2) as first:
        done = ScanReplay(bliss_store, load_fixture("loopscan"), tmp_path / "done").run()
        assert wait_final(nxw_store, done.key).state == "SUCCEEDED"
    assert first.summary() == {"SUCCEEDED": 1}
    down = ScanReplay(bliss_store, load_fixture("ascan"), tmp_path / "down").run()
    seq = ScanReplay(bliss_store, load_fixture("sequence"), tmp_path / "seq").run()
    with SessionWriter(SESSION, bliss_url, from_next=True, flush_period=0.2) as skipping:
        assert skipping.wait_idle(5)
        assert skipping.scans() == []
    with SessionWriter(SESSION, bliss_url, flush_period=0.2) as later:
        for scan in [down, seq] + seq.children:
            assert wait_final(nxw_store, scan.key).state == "SUCCEEDED"
        assert later.wait_idle(30)
        assert done.key not in {w.source.key for w in later.scans()}
    for scan in [down, seq] + seq.children:
        assert_scan_file(scan)


@pytest.mark.parametrize("h5maps", [False, True], ids=["declared_paths", "h5maps"])
def test_kill_9_mid_scan_then_restart(h5maps, bliss_store, nxw_store, bliss_url, tmp_path):
    """A writer process killed mid-scan; the scan goes on; a new writer resumes the
    file from the durable progress: every point once, bit-exact (and the producer's
    layout complete)."""
    writer = WriterProcess(bliss_url, tmp_path / "writer.log")
    try:
        writer.start(nxw_store)
        replay = ScanReplay(bliss_store, load_fixture("ascan"), tmp_path / "data",
                            h5maps=h5maps).create()
        replay.started(5)
        wait_progress(nxw_store, replay.key, "axis:roby", 5)
        writer.kill()
        replay.finish()
        writer.start(nxw_store)
        report = wait_final(nxw_store, replay.key)
        assert report.state == "SUCCEEDED", report
        assert writer.stop() == 0
    finally:
        writer.close()
    assert "resuming 2.1" in writer.text()
    if not h5maps:
        assert_scan_file(replay)
        return
    filename = replay.fixture["info"]["filename"]
    root = h5map.for_file(replay.fixture["h5maps_standin"]["CLOSED"], filename)
    with h5py.File(filename, "r", locking=False) as f:
        streams = {s["name"]: s for s in replay.fixture["streams"]}
        assert assert_materialised(f, root, streams) > 10
        assert decode(f["2.1/writer/status"][()]) == "SUCCEEDED"


# -- which protocol a server speaks --------------------------------------------------
def test_detects_blissdata_even_with_native_key(bliss_url):
    assert detect_protocol(bliss_url) == "blissdata"
    DataStore(bliss_url).close()  # a native client sets nxw:protocol_version
    assert detect_protocol(bliss_url) == "blissdata"
    assert detect_protocol(bliss_url, "native") == "native"


def test_detects_native(redis_url):
    assert detect_protocol(redis_url) == "native"  # an empty plain Redis
    DataStore(redis_url).close()
    assert detect_protocol(redis_url) == "native"


def test_blissdata_refused_without_modules(redis_url):
    with pytest.raises(UnsupportedServerError) as e:
        SessionWriter(SESSION, redis_url, protocol="blissdata")
    message = str(e.value)
    assert "RedisJSON (rejson.so)" in message and "RediSearch (redisearch.so)" in message
    assert "--loadmodule" in message


def test_unknown_blissdata_version_refused(bliss_url):
    client = redis.Redis.from_url(bliss_url)
    client.set("_PROTOCOL_VERSION_", 99)
    client.close()
    with pytest.raises(ProtocolVersionError, match="blissdata protocol version '99'"):
        SessionWriter(SESSION, bliss_url)


def test_uninitialised_module_server_needs_a_choice(bliss_url):
    client = redis.Redis.from_url(bliss_url)
    client.flushall()
    client.close()
    with pytest.raises(UnsupportedServerError, match="--protocol blissdata"):
        detect_protocol(bliss_url)
    with pytest.raises(UnsupportedServerError, match="init_db=True"):
        detect_protocol(bliss_url, "blissdata")
    assert detect_protocol(bliss_url, "native") == "native"


@pytest.mark.timeout(90)
def test_redis_killed_and_restarted_between_scans(tmp_path):
    """Valkey (with an fsynced append-only file) is killed after a scan and comes back on
    the same port: the writer reconnects, writes the next scan, and does not write the
    first one again (its record survived)."""
    from blissdata.redis_engine.store import DataStore as BlissDataStore

    from nexus_writer.data.server import BlissdataServer, free_port

    server = BlissdataServer(port=free_port(), dir=str(tmp_path / "redis"),
                             extra_args=("--appendonly", "yes", "--appendfsync", "always"))
    server.start()
    try:
        BlissDataStore(server.url, init_db=True)
        nxw = DataStore(server.url)
        with SessionWriter(SESSION, server.url, flush_period=0.1) as writer:
            first = ScanReplay(BlissDataStore(server.url), load_fixture("loopscan"),
                               tmp_path / "a").run()
            assert wait_final(nxw, first.key).state == "SUCCEEDED"
            server.restart(kill=True, downtime=1.0)
            second = ScanReplay(BlissDataStore(server.url), load_fixture("ascan"),
                                tmp_path / "b").run()
            assert wait_final(nxw, second.key).state == "SUCCEEDED"
            assert writer.wait_idle(30)
            assert [w.source.key for w in writer.scans()] == [first.key, second.key]
        assert_scan_file(first)
        assert_scan_file(second)
        nxw.close()
    finally:
        server.stop()


def test_sources_add_no_class_per_scan(bliss_store, nxw_store, tmp_path):
    """blissdata makes a class for each ``Scan`` object it loads; a source that kept
    one per scan made every full garbage collection of a long session slower (up to
    hundreds of milliseconds in the middle of a scan)."""
    import gc

    from nexus_writer.writer.blissdata_source import BlissdataScanSource

    replay = ScanReplay(bliss_store, load_fixture("ct"), tmp_path).run()
    gc.collect()
    before = sum(isinstance(o, type) for o in gc.get_objects())
    sources = [BlissdataScanSource(bliss_store, replay.key, nxw_store) for _ in range(20)]
    assert {s.number for s in sources} == {replay.number}
    assert sources[0].info()["title"] == replay.fixture["info"]["title"]
    gc.collect()
    assert sum(isinstance(o, type) for o in gc.get_objects()) < before + 5
