"""Shared fixtures: a real redis-server (session scope, flushed per test), a data
directory, and a simulated session."""

from __future__ import annotations

import os

import pytest
import redis

import nexus_writer
from nexus_writer.data import DataStore
from nexus_writer.data.server import BlissdataServer, RedisServer


def pytest_configure(config) -> None:
    """Subprocesses (console scripts, writers, readers) import the nexus_writer under
    test from any working directory: its root first in PYTHONPATH, every entry made
    absolute (``PYTHONPATH=src`` would not reach it from a test's tmp_path)."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(nexus_writer.__file__)))
    paths = [os.path.abspath(p) for p in os.environ.get("PYTHONPATH", "").split(os.pathsep)
             if p]
    os.environ["PYTHONPATH"] = os.pathsep.join([root] + [p for p in paths if p != root])


def pytest_terminal_summary(terminalreporter) -> None:
    """Which variant ran, for tests that have more than one way to set up their case
    (they record it with ``record_property("variant", ...)``)."""
    seen: dict[str, str] = {}
    for reports in terminalreporter.stats.values():
        for report in reports:
            for name, value in getattr(report, "user_properties", ()):
                if name == "variant":
                    seen[report.nodeid] = str(value)
    if seen:
        terminalreporter.section("test variants")
        for nodeid, variant in sorted(seen.items()):
            terminalreporter.line(f"{nodeid}: {variant}")


@pytest.fixture(scope="session")
def redis_server():
    """A real redis-server on a free loopback port, for the whole test run."""
    with RedisServer() as server:
        yield server


#: Secrets of the ``secured_redis`` server (tests assert they never show).
REDIS_PASSWORD = "Pw-7f1c9e-secret"
ACL_USER, ACL_PASSWORD = "beamline_writer", "acl-pw-42ab"


@pytest.fixture(scope="session")
def secured_redis():
    """A real redis-server with a password (``--requirepass``) and an ACL user, for the
    tests of secrets; flushed per test by ``secured_url``."""
    args = ("--requirepass", REDIS_PASSWORD,
            "--user", ACL_USER, "on", f">{ACL_PASSWORD}", "~*", "&*", "+@all")
    with RedisServer(extra_args=args) as server:
        yield server


@pytest.fixture
def secured_url(secured_redis) -> str:
    """URL of ``secured_redis`` with its password (``redis://:PW@host:port``), flushed."""
    return _flushed(f"redis://:{REDIS_PASSWORD}@127.0.0.1:{secured_redis.port}")


def _flushed(url: str) -> str:
    """``url``, its server emptied (each test starts from an empty Redis)."""
    client = redis.Redis.from_url(url)
    client.flushall()
    client.close()
    return url


@pytest.fixture
def redis_url(redis_server) -> str:
    """URL of the test server, flushed before each test."""
    return _flushed(redis_server.url)


@pytest.fixture(scope="session")
def bliss_server():
    """A real Valkey 8.1 with RedisJSON and RediSearch (blissdata's server), for the run."""
    with BlissdataServer() as server:
        yield server


@pytest.fixture
def bliss_url(bliss_server) -> str:
    """URL of the blissdata test server, flushed and prepared (``init_db``) per test."""
    from blissdata.redis_engine.store import DataStore as BlissDataStore

    BlissDataStore(_flushed(bliss_server.url), init_db=True)
    return bliss_server.url


@pytest.fixture
def bliss_store(bliss_url):
    """blissdata's DataStore on the prepared blissdata server (the producer's side)."""
    from blissdata.redis_engine.store import DataStore as BlissDataStore

    return BlissDataStore(bliss_url)


@pytest.fixture
def nxw_store(bliss_url):
    """This project's DataStore on the blissdata server (the writer's own records)."""
    s = DataStore(bliss_url)
    yield s
    s.close()


@pytest.fixture
def bliss_writer(bliss_url):
    """``make(session="test_session", **options)`` -> a started SessionWriter following
    the blissdata server, stopped after the test."""
    yield from _session_writers(bliss_url)


@pytest.fixture
def raw(redis_url):
    """A plain redis-py client on the test server (to inject or inspect keys)."""
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


@pytest.fixture
def store(redis_url):
    """A DataStore on the flushed test server."""
    s = DataStore(redis_url)
    yield s
    s.close()


@pytest.fixture
def data_dir(tmp_path):
    """Where a test's dataset and camera files go."""
    d = tmp_path / "data"
    d.mkdir()
    return d


@pytest.fixture
def sim_session(redis_url, data_dir):
    """A simulated ``test_session`` saving under ``data_dir``, scans without sleeping."""
    from nexus_writer.sim import SimSession

    with SimSession("test_session", redis_url=redis_url, base_path=data_dir, time_scale=0) as s:
        yield s


@pytest.fixture
def writer_factory(redis_url):
    """``make(session="test_session", **options)`` -> a started SessionWriter, stopped after."""
    yield from _session_writers(redis_url)


def _session_writers(url: str):
    """The ``make`` of the writer fixtures, on ``url``; every writer made is stopped
    after the test."""
    from nexus_writer.writer import SessionWriter

    writers = []

    def make(session: str = "test_session", **options):
        options.setdefault("flush_period", 0.2)
        writer = SessionWriter(session, url, **options).start()
        writers.append(writer)
        return writer

    yield make
    for writer in writers:
        writer.stop(timeout=10)
