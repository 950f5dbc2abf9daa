"""The ASGI application (Starlette): the page, its live updates, the status, and the
files through h5grove's API.

Routes (all read-only: any other method than GET and HEAD is refused with 405):

- ``/``: the page; ``/static/...``: its script, style and uPlot;
- ``/status`` (JSON) and ``/metrics`` (Prometheus text), as the service always served;
- ``/api/snapshot``: sessions and scans as the page shows them; ``/events``: the same,
  pushed as server-sent events whenever it changes (one stream per page, no polling);
- ``/api/plot?file=F&entry=E[&nxdata=N]``: the data of an entry's default plot;
- ``/h5grove/{attr,data,meta,stats,paths}/?file=F&path=P``: h5grove's API (the one
  h5web and jupyterlab-h5web speak), on the files under the data roots only.
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import json
import logging
import os
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Callable

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.middleware.base import BaseHTTPMiddleware, RequestResponseEndpoint
from starlette.requests import Request
from starlette.responses import (FileResponse, JSONResponse, PlainTextResponse, Response,
                                 StreamingResponse)
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from .files import DataRoots, FileReader, NotServedError
from .metrics import metrics
from .plot import read_plot
from .sources import StatusSource, mask, snapshot

logger = logging.getLogger(__name__)

STATIC = Path(__file__).parent / "static"
#: Seconds between checks for a change of the snapshot pushed to the pages.
EVENT_PERIOD = 0.25
#: Seconds after which a snapshot is pushed even if only ages and durations changed.
EVENT_REFRESH = 2.0
TOKEN_COOKIE = "nxw_token"
#: Response header naming the process that read the file (the writer's, under the service).
READ_BY = "X-Nexus-Writer-Read-By"


def read_by() -> dict[str, str]:
    return {READ_BY: f"pid {os.getpid()}"}


class WebApp:
    """The page's state shared by requests: the status source, the file reader, the
    data roots and the optional access token (required from hosts other than this
    one)."""

    def __init__(self, source: StatusSource, reader: FileReader, roots: DataRoots,
                 token: str | None = None):
        self.source = source
        self.reader = reader
        self.roots = roots
        self.token = token or None
        #: For a served file's real path: the base address of the page that reads it
        #: best (the page of the writer process that writes it), or None to read it here.
        self.forward: Callable[[str], str | None] | None = None
        #: Whether a request comes from a client that needs no token (this host).
        self.trusted: Callable[[Request], bool] = _loopback
        self.closing = threading.Event()
        self._cache: tuple[float, dict[str, Any]] | None = None
        self._cache_lock = threading.Lock()
        self.app = self._build()

    # -- data ----------------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        """The source's status, computed at most every EVENT_PERIOD s for all clients."""
        with self._cache_lock:
            now = time.monotonic()
            if self._cache is None or now - self._cache[0] >= EVENT_PERIOD:
                self._cache = (now, self.source.status())
            return self._cache[1]

    def snapshot(self) -> dict[str, Any]:
        return snapshot(self.status())

    def forwarded(self, request: Request) -> Response | None:
        """The answer of the page that reads the requested file best (see
        :attr:`forward`), or None when it is read here.  Raises NotServedError for a
        file outside the data roots."""
        if self.forward is None:
            return None
        base = self.forward(self.roots.resolve(request.query_params.get("file", "")))
        if base is None:
            return None
        url = base.rstrip("/") + request.url.path
        if request.url.query:
            url += "?" + request.url.query
        try:
            with urllib.request.urlopen(url, timeout=30) as r:
                return Response(r.read(), status_code=r.status,
                                media_type=r.headers.get("Content-Type"),
                                headers={READ_BY: r.headers.get(READ_BY, "")})
        except urllib.error.HTTPError as e:
            return Response(e.read(), status_code=e.code,
                            media_type=e.headers.get("Content-Type"))
        except OSError as e:  # the writer's page went away: read here
            logger.debug("web: %s not reached (%s); reading here", base, e)
            return None

    def read(self, file: str, fn: Callable[[Any], Any]) -> Any:
        path = self.roots.resolve(file)
        if not Path(path).is_file():
            raise FileNotFoundError(f"{file}: no such file")
        return self.reader.read(path, fn)

    # -- routes --------------------------------------------------------------------
    def _build(self) -> Starlette:
        from . import grove

        routes = [
            Route("/", self.page),
            Route("/status", self.status_route),
            Route("/metrics", self.metrics_route),
            Route("/api/snapshot", self.snapshot_route),
            Route("/api/plot", self.plot_route),
            Route("/events", self.events_route),
            Mount("/h5grove", routes=grove.routes(self)),
            Mount("/static", StaticFiles(directory=STATIC), name="static"),
        ]
        middleware = [Middleware(BaseHTTPMiddleware, dispatch=self.guard)]
        return Starlette(routes=routes, middleware=middleware)

    async def guard(self, request: Request, call_next: RequestResponseEndpoint) -> Response:
        """Read-only, and the token for clients on other hosts."""
        if request.method not in ("GET", "HEAD"):
            return PlainTextResponse("read-only: GET and HEAD only", status_code=405,
                                     headers={"Allow": "GET, HEAD"})
        if self.token is not None and not self.trusted(request):
            given = (request.query_params.get("token") or request.cookies.get(TOKEN_COOKIE)
                     or request.headers.get("authorization", "").removeprefix("Bearer "))
            if not hmac.compare_digest(given.encode(), self.token.encode()):
                return PlainTextResponse("a token is needed from this host (?token=...)",
                                         status_code=401)
            response = await call_next(request)
            if request.query_params.get("token"):
                response.set_cookie(TOKEN_COOKIE, self.token, httponly=True, samesite="strict")
            return response
        return await call_next(request)

    async def page(self, request: Request) -> Response:
        return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-store"})

    async def status_route(self, request: Request) -> Response:
        doc = mask(await run_in_threadpool(self.status))
        return Response(json.dumps(doc, indent=1, default=str), media_type="application/json")

    async def metrics_route(self, request: Request) -> Response:
        text = metrics(await run_in_threadpool(self.status))
        return Response(text, media_type="text/plain; version=0.0.4")

    async def snapshot_route(self, request: Request) -> Response:
        return JSONResponse(await run_in_threadpool(self.snapshot))

    async def plot_route(self, request: Request) -> Response:
        q = request.query_params
        file, entry = q.get("file", ""), q.get("entry", "")
        if not entry:
            return JSONResponse({"message": "give file= and entry="}, status_code=422)
        try:
            forwarded = await run_in_threadpool(self.forwarded, request)
            if forwarded is not None:
                return forwarded
            data = await run_in_threadpool(
                self.read, file, lambda f: read_plot(f, entry, q.get("nxdata") or None))
        except Exception as e:  # noqa: BLE001 - every failure answers with its cause
            return error_response(e)
        return JSONResponse(data, headers=read_by())

    async def events_route(self, request: Request) -> Response:
        """Server-sent events: the snapshot when it changes (at most every
        EVENT_PERIOD s), and at least every EVENT_REFRESH s (ages, durations)."""

        async def stream() -> Any:
            last_key, last_sent = None, 0.0
            while not self.closing.is_set():
                if await request.is_disconnected():
                    return
                snap = await run_in_threadpool(self.snapshot)
                key = json.dumps(_stable(snap), sort_keys=True, default=str)
                now = time.monotonic()
                if key != last_key or now - last_sent >= EVENT_REFRESH:
                    last_key, last_sent = key, now
                    yield f"event: snapshot\ndata: {json.dumps(snap, default=str)}\n\n"
                await asyncio.sleep(EVENT_PERIOD)

        return StreamingResponse(stream(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-store",
                                          "X-Accel-Buffering": "no"})


def _stable(snap: dict[str, Any]) -> dict[str, Any]:
    """The snapshot without what changes with the clock alone."""
    return {"sessions": [{k: v for k, v in s.items() if k != "heartbeat_age"}
                         for s in snap["sessions"]],
            "scans": [{k: v for k, v in s.items() if k != "duration"} for s in snap["scans"]]}


def _loopback(request: Request) -> bool:
    host = request.client.host if request.client else ""
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def error_response(exc: BaseException) -> Response:
    """An error as h5grove's clients expect it: JSON ``{"message"}`` with its status."""
    from h5grove.utils import NotFoundError, QueryArgumentError

    if isinstance(exc, NotServedError):
        code = 403
    elif isinstance(exc, (FileNotFoundError, NotFoundError, KeyError)):
        code = 404
    elif isinstance(exc, (QueryArgumentError, ValueError, TypeError)):
        code = 422
    else:
        logger.warning("web: %s: %s", type(exc).__name__, exc)
        code = 500
    message = exc.args[0] if isinstance(exc, KeyError) and exc.args else str(exc)
    return JSONResponse({"message": mask(str(message))}, status_code=code)
