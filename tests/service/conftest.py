"""Fixtures of the service tests: ``service_factory`` starts ``nexus-writer service
run`` subprocesses on the test Redis and stops them after the test."""

from __future__ import annotations

from typing import Any

import pytest

from .helpers import ServiceProcess


@pytest.fixture
def service_factory(tmp_path, redis_url):
    """``make({"session": {options}}, start=True)`` -> a :class:`ServiceProcess`."""
    services: list[ServiceProcess] = []

    def make(sessions: dict[str, dict[str, Any]], start: bool = True,
             name: str = "service") -> ServiceProcess:
        directory = tmp_path / name
        directory.mkdir()
        service = ServiceProcess(directory, redis_url, sessions)
        services.append(service)
        return service.start() if start else service

    yield make
    for service in services:
        service.close()
