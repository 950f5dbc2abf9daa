"""DataStore: protocol version check, connection errors, retention of ended scans."""

from __future__ import annotations

import pytest
import redis

from nexus_writer.data import PROTOCOL_VERSION, DataStore, EventType, ScanTimeoutError
from nexus_writer.data import protocol as P
from nexus_writer.data.server import free_port
from nexus_writer.errors import NexusWriterError, ProtocolVersionError
from tests.waiting import returns_within, wait_for

pytestmark = pytest.mark.timeout(20)


def test_version_key_written_on_first_connect(redis_url, raw):
    assert raw.get(P.VERSION_KEY) is None
    store = DataStore(redis_url)
    try:
        assert raw.get(P.VERSION_KEY) == str(PROTOCOL_VERSION).encode()
        DataStore(redis_url).close()  # a second client agrees
    finally:
        store.close()


@pytest.mark.parametrize("other", ["99", "0", "not-a-number"])
def test_protocol_version_mismatch(redis_url, raw, other):
    raw.set(P.VERSION_KEY, other)
    with pytest.raises(ProtocolVersionError) as exc:
        DataStore(redis_url)
    msg = str(exc.value)
    assert f"version '{other}'" in msg
    assert f"speaks version {PROTOCOL_VERSION}" in msg
    assert P.VERSION_KEY in msg and redis_url in msg
    assert isinstance(exc.value, RuntimeError) and isinstance(exc.value, NexusWriterError)
    assert raw.get(P.VERSION_KEY) == other.encode()  # never overwritten


def test_unreachable_redis(monkeypatch):
    url = f"redis://127.0.0.1:{free_port()}"
    def connect() -> BaseException:
        with pytest.raises(ConnectionError) as exc:
            DataStore(url)
        return exc.value

    # no retrying for ever: the error comes by itself
    error = returns_within(connect, 60, "DataStore() on a port where nothing listens")
    msg = str(error)
    assert url in msg
    assert "redis-server" in msg and "REDIS_URL" in msg
    assert isinstance(error.__cause__, redis.ConnectionError)
    # The URL also comes from the environment.
    monkeypatch.setenv("REDIS_URL", url)
    with pytest.raises(ConnectionError, match=url):
        DataStore()


def test_url_from_environment(redis_url, monkeypatch):
    monkeypatch.setenv("REDIS_URL", redis_url)
    store = DataStore()
    try:
        assert store.url == redis_url
        assert redis_url in repr(store)
    finally:
        store.close()


@pytest.mark.timeout(15)
def test_retention_expires_ended_scans_only(redis_url, raw):
    store = DataStore(redis_url, retention=1, unacked_retention=1)
    try:
        ended = store.create_scan("ret", {"scan_nb": 1})
        ch = ended.create_channel("x", "f8")
        ch.send([1.0, 2.0])
        lima = ended.create_lima_channel("cam", "u2", (2, 2), "f{file_index}.h5", "", "hdf5", 1)
        lima.send(0)
        running = store.create_scan("ret", {"scan_nb": 2})
        rch = running.create_channel("y", "i4")
        rch.send([1, 2, 3])
        ended.end()
        ended_keys = [ended.key, P.scan_events_key(ended.key), ch.node.key, lima.node.key]
        running_keys = [running.key, P.scan_events_key(running.key), rch.node.key]
        ttls = [raw.pttl(k) for k in ended_keys]  # -2: expired already
        assert all(t <= 1000 and t != -1 for t in ttls), ttls
        assert all(raw.ttl(k) == -1 for k in running_keys)  # no expiry while running

        wait_for(lambda: raw.exists(*ended_keys) == 0, 30, "the ended scan's keys to expire")
        assert raw.exists(*running_keys) == len(running_keys)

        node = store.get_scan_node(ended.key)
        assert node.state == "EXPIRED" and not node.exists()
        session = store.get_session_node("ret")
        got = [(e, n.number) for e, n in session.walk_on_new_events(from_next=False,
                                                                   timeout=0.2, block=0.05)]
        assert got == [(EventType.NEW_NODE, 2)]
        with pytest.raises(ScanTimeoutError):
            list(node.walk_events(timeout=0.2, block=0.05))
        # The running scan is whole.
        assert store.get_scan_node(running.key).nodes()[0].get().tolist() == [1, 2, 3]
    finally:
        store.close()


@pytest.mark.timeout(15)
def test_unacknowledged_scans_wait_for_a_writer_up_to_the_cap(redis_url, raw):
    """Ended but unsaved: kept for the cap; acknowledged: normal retention from then on."""
    from nexus_writer.data import SavingReporter

    store = DataStore(redis_url, retention=1, unacked_retention=3600)
    try:
        scan = store.create_scan("ack", {"scan_nb": 1})
        ch = scan.create_channel("x", "f8")
        ch.send([1.0])
        scan.end()
        keys = [scan.key, P.scan_events_key(scan.key), ch.node.key]
        assert all(raw.ttl(k) > 3000 for k in keys)
        SavingReporter(store, scan.key).report("SUCCEEDED")
        assert all(0 < raw.pttl(k) <= 1000 for k in keys)
        assert 0 < raw.pttl(scan.key + ":saving") <= 1000

        unsaved = store.create_scan("ack", {"scan_nb": 2, "save": False})
        unsaved.end()
        assert 0 < raw.pttl(unsaved.key) <= 1000  # no writer expected: normal retention
    finally:
        store.close()
