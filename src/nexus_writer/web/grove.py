"""h5grove's API on Starlette, through h5grove's content API (its own adapters are for
FastAPI, Flask and Tornado): the same endpoints and query parameters, so that h5web,
jupyterlab-h5web or any h5grove client can browse the files.

Each request runs whole inside the page's file reader (in the writer's file thread
when served by a session writer): content is created and encoded while the file is
held, never from a half-flushed file.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

import h5py
from h5grove.content import DatasetContent, GroupContent, ResolvedEntityContent, create_content
from h5grove.encoders import encode
from h5grove.utils import LinkResolution, hdf_path_join, parse_link_resolution_arg
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

if TYPE_CHECKING:
    from .app import WebApp


def _bool(value: str | None) -> bool:
    return (value or "").lower() in ("1", "true", "yes")


def _links(value: str | None) -> LinkResolution:
    return parse_link_resolution_arg(value, fallback=LinkResolution.ONLY_VALID)


def routes(web: "WebApp") -> list[Route]:
    """The h5grove endpoints, reading through ``web``."""

    def endpoint(make: Callable[[h5py.File, Any], Any]) -> Callable[[Request], Any]:
        async def handler(request: Request) -> Response:
            from .app import error_response, read_by

            q = request.query_params
            try:
                forwarded = await run_in_threadpool(web.forwarded, request)
                if forwarded is not None:
                    return forwarded

                def run(f: h5py.File) -> Any:
                    out = encode(make(f, q), q.get("format", "json"))
                    return out.content, out.headers

                content, headers = await run_in_threadpool(web.read, q.get("file", ""), run)
            except Exception as e:  # noqa: BLE001 - every failure answers with its cause
                return error_response(e)
            return Response(content, headers={**headers, **read_by()})
        return handler

    def entity(f: h5py.File, q: Any) -> Any:
        return create_content(f, q.get("path", "/"), _links(q.get("resolve_links")))

    def attr(f: h5py.File, q: Any) -> Any:
        content = entity(f, q)
        if not isinstance(content, ResolvedEntityContent):
            raise TypeError(f"{content.path} is not a resolved entity")
        return content.attributes(q.getlist("attr_keys") or None)

    def data(f: h5py.File, q: Any) -> Any:
        content = entity(f, q)
        if not isinstance(content, DatasetContent):
            raise TypeError(f"{content.path} is not a dataset")
        return content.data(q.get("selection"), _bool(q.get("flatten")),
                            q.get("dtype", "origin"))

    def meta(f: h5py.File, q: Any) -> Any:
        return entity(f, q).metadata()

    def stats(f: h5py.File, q: Any) -> Any:
        content = entity(f, q)
        if not isinstance(content, DatasetContent):
            raise TypeError(f"{content.path} is not a dataset")
        return content.data_stats(q.get("selection"))

    def paths(f: h5py.File, q: Any) -> Any:
        base = q.get("path", "/")
        resolve = _links(q.get("resolve_links"))
        content = create_content(f, base, resolve)
        if not isinstance(content, GroupContent):
            raise TypeError(f"{content.path} is not a group")
        names = [content.path]
        content._h5py_entity.id.links.visit(  # noqa: SLF001 - as h5grove's own adapters
            lambda name: names.append(create_content(
                f, hdf_path_join(base, name.decode()), resolve).path))
        return names

    async def root(request: Request) -> Response:
        return PlainTextResponse("ok")

    out = [Route("/", root)]
    for name, make in (("attr", attr), ("data", data), ("meta", meta), ("stats", stats),
                       ("paths", paths)):
        handler = endpoint(make)
        out += [Route(f"/{name}/", handler), Route(f"/{name}", handler)]
    return out
