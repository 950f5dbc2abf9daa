"""The web page's server: uvicorn running the ASGI app in a thread of the process that
serves it (the session writer, the service or the demo).

Binds 127.0.0.1 unless told otherwise; a token (``$NEXUS_WRITER_WEB_TOKEN``, never a
command-line argument) is then required from other hosts.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from typing import Any, Callable, Iterable

import uvicorn

from .app import WebApp
from .files import DataRoots, DirectReader, PoolReader
from .sources import SessionSource, SupervisorSource

logger = logging.getLogger(__name__)

TOKEN_ENV = "NEXUS_WRITER_WEB_TOKEN"


def parse_address(value: str) -> tuple[str, int]:
    """``PORT`` or ``HOST:PORT`` (``[::1]:PORT``) -> (host, port); host 127.0.0.1 by
    default.  Raises ValueError for anything else."""
    host, _, port = str(value).rpartition(":")
    host = host.strip("[]") or "127.0.0.1"
    if not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"--http: a port (0-65535) or HOST:PORT, not {value!r}")
    return host, int(port)


class WebServer:
    """Serves a :class:`WebApp` on ``host:port`` (port 0: a free one) until stopped."""

    def __init__(self, web: WebApp, port: int = 0, host: str = "127.0.0.1",
                 on_url: Callable[[str | None], None] | None = None):
        self.web = web
        self.host = host
        self.on_url = on_url  # told the address once listening, None once stopped
        config = uvicorn.Config(web.app, host=host, port=port, log_level="warning",
                                access_log=False, lifespan="off", timeout_graceful_shutdown=2,
                                ws="none")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, name="web", daemon=True)
        self.port = port

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/"

    def start(self, timeout: float = 10.0) -> "WebServer":
        """Start serving; returns once the socket listens.  Raises OSError if it cannot
        (port taken...)."""
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive():
                raise OSError(f"web page: cannot listen on {self.host}:{self.port}")
            if time.monotonic() > deadline:
                raise OSError(f"web page: not listening on {self.host}:{self.port} after "
                              f"{timeout} s")
            time.sleep(0.02)
        sockets = [s for server in self._server.servers for s in server.sockets]
        self.port = sockets[0].getsockname()[1]
        if self.on_url is not None:
            self.on_url(self.url)
        if self.web.token is None and self.host not in ("127.0.0.1", "localhost", "::1"):
            logger.warning("web page on %s without a token ($%s): any host can read it",
                           self.host, TOKEN_ENV)
        return self

    def stop(self) -> None:
        if self.on_url is not None:
            self.on_url(None)
        self.web.closing.set()
        self._server.should_exit = True
        self._thread.join(10)


def for_session_writer(writer: Any, port: int = 0, host: str = "127.0.0.1",
                       roots: Iterable[str] = ()) -> WebServer:
    """The page of a session writer of this process; files read in its file threads.
    Without ``roots``, the directories of the files it writes are served."""
    source = SessionSource(writer)
    roots = list(roots)
    data_roots = DataRoots(roots, None if roots else
                           (lambda: {os.path.dirname(f) for f in source.files()}))
    web = WebApp(source, PoolReader(writer.pool), data_roots, os.environ.get(TOKEN_ENV))
    return WebServer(web, port, host, on_url=lambda url: setattr(writer, "web_url", url))


def for_service(supervisor: Any, port: int = 0, host: str = "127.0.0.1",
                roots: Iterable[str] = ()) -> WebServer:
    """The page of the service: status from its writers; a file's data asked of the
    page of the writer that writes it (which reads it in its own file thread), or,
    when no writer serves it, read from this process (retried when a read meets a
    flush in progress)."""
    source = SupervisorSource(supervisor)
    roots = list(roots)
    data_roots = DataRoots(roots, None if roots else
                           (lambda: {os.path.dirname(f) for f in source.files()}))
    web = WebApp(source, DirectReader(), data_roots, os.environ.get(TOKEN_ENV))
    web.forward = lambda path: writer_page_of(web.status(), path)
    return WebServer(web, port, host)


def writer_page_of(status: dict[str, Any], path: str) -> str | None:
    """The page of the session writer whose recent scans write or wrote ``path``,
    the most recent first; None when no such writer has a page."""
    found = None
    for entry in status.get("sessions", {}).values():
        writer = entry.get("writer") or {}
        if not writer.get("web") or not (entry.get("process") or {}).get("alive", True):
            continue
        for scan in writer.get("scans", []):
            if scan.get("file") and os.path.realpath(scan["file"]) == path:
                started = scan.get("started") or 0.0
                if found is None or started >= found[0]:
                    found = (started, writer["web"])
    return found[1] if found else None
