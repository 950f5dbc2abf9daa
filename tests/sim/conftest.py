"""Fixtures of the simulation tests: a SimSession on the test Redis, without sleeps."""

from __future__ import annotations

import pytest

from nexus_writer.sim import SimSession


@pytest.fixture
def session(redis_url, data_dir):
    """A simulated ``test_session`` saving under ``data_dir``, with ``time_scale=0``."""
    with SimSession("test_session", redis_url=redis_url, base_path=data_dir, time_scale=0) as s:
        yield s



@pytest.fixture
def bliss_session(bliss_url, data_dir):
    """A simulated ``test_session`` publishing with blissdata (as BLISS 2.4), no sleeps."""
    with SimSession("test_session", redis_url=bliss_url, base_path=data_dir, time_scale=0,
                    protocol="blissdata") as s:
        yield s
