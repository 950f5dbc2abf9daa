"""Shared fixtures: a real redis-server (session scope, flushed per test), a data
directory, and a simulated session."""

from __future__ import annotations

import pytest
import redis

from nexus_writer.data import DataStore
from nexus_writer.data.server import RedisServer


@pytest.fixture(scope="session")
def redis_server():
    """A real redis-server on a free loopback port, for the whole test run."""
    with RedisServer() as server:
        yield server


@pytest.fixture
def redis_url(redis_server) -> str:
    """URL of the test server, flushed before each test."""
    client = redis.Redis.from_url(redis_server.url)
    client.flushall()
    client.close()
    return redis_server.url


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
