"""The service's HTTP side: the web page, ``/status`` (JSON) and ``/metrics``
(Prometheus text), served by :mod:`nexus_writer.web` (Starlette on uvicorn)."""

from __future__ import annotations

from typing import Any, Iterable

from ..web import WebServer, for_service, parse_address
from ..web.metrics import STATES, metrics

__all__ = ["STATES", "StatusServer", "metrics"]


def StatusServer(supervisor: Any, port: int | str = 0,  # noqa: N802 - the former class
                 roots: Iterable[str] = ()) -> WebServer:
    """The service's web server on ``port`` or ``"HOST:PORT"`` (127.0.0.1 by default)."""
    host, number = parse_address(str(port))
    return for_service(supervisor, number, host, roots)
