"""The project's server helpers start real servers: Redis 6.2 for the native protocol,
Valkey with RedisJSON and RediSearch for blissdata."""

from __future__ import annotations

import redis

from nexus_writer.data.server import BlissdataServer


def test_blissdata_server_has_the_modules(bliss_server):
    client = redis.Redis.from_url(bliss_server.url)
    try:
        modules = {m[b"name"].decode().lower() for m in client.module_list()}
        assert {"rejson", "search"} <= modules, modules
        version = client.info("server").get("valkey_version") or client.info("server")[
            "redis_version"]
        assert tuple(int(p) for p in str(version).split(".")[:2]) >= (7, 2)
        assert client.config_get("maxmemory")["maxmemory"] != "0"
        client.json().set("doc", "$", {"a": 1})
        assert client.json().get("doc", "$.a") == [1]
    finally:
        client.close()


def test_blissdata_datastore_on_it(bliss_url):
    """blissdata's own DataStore accepts the server: a scan round trip."""
    from blissdata.redis_engine.store import DataStore

    store = DataStore(bliss_url)
    scan = store.create_scan({"name": "ct", "number": 1, "data_policy": "no_policy",
                              "session": "test_session"}, info={"title": "ct"})
    assert store.load_scan(scan.key).info["title"] == "ct"
    found = store.search_existing_scans(session="test_session")
    assert scan.key in found[1]


def test_blissdata_server_restart_keeps_port():
    with BlissdataServer() as server:
        port = server.port
        server.restart()
        assert server.port == port
        assert redis.Redis.from_url(server.url).ping()
