"""Fixtures of the writer tests."""

from __future__ import annotations

import pytest

from .test_crash import SESSION, WriterProcess


@pytest.fixture
def writer_process(redis_url, tmp_path):
    """``make(session)`` -> a :class:`WriterProcess` (the real command), closed after."""
    processes: list[WriterProcess] = []

    def make(session: str = SESSION) -> WriterProcess:
        wp = WriterProcess(redis_url, tmp_path / f"writer_{len(processes)}.log", session)
        processes.append(wp)
        return wp

    yield make
    for wp in processes:
        wp.close()
