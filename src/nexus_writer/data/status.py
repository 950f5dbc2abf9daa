"""Writer status in Redis, so the acquisition side and ``nexus-writer status`` need
nothing else: one JSON document per session writer, renewed while it runs.

``nxw:status:{session}`` (string, TTL): ``{"session", "pid", "host", "url", "updated",
"scans": [{scan, key, title, state, reason, file, entries, channels: {name:
{received, written, published}}, problems, lag}]}``.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, Mapping

from . import protocol as P

if TYPE_CHECKING:
    from .store import DataStore

#: A status not renewed for this long disappears (the writer is gone).
STATUS_TTL = 30.0


def status_key(session: str) -> str:
    return f"{P.PREFIX}:status:{session}"


def publish_status(store: "DataStore", session: str, status: Mapping[str, Any],
                   ttl: float = STATUS_TTL) -> None:
    """Store a session writer's status document."""
    doc = dict(status, session=session, updated=time.time())
    store.redis.set(status_key(session), P.dumps(doc), px=int(ttl * 1000))


def read_status(store: "DataStore", session: str | None = None) -> dict[str, dict[str, Any]]:
    """Status documents by session: one session, or every session with a live writer."""
    if session is not None:
        keys: list[str | bytes] = [status_key(session)]
    else:
        keys = [*sorted(store.redis.scan_iter(match=status_key("*"), count=500))]
    out: dict[str, dict[str, Any]] = {}
    for raw in store.redis.mget(keys) if keys else []:
        if raw:
            doc = P.loads(raw)
            out[str(doc.get("session"))] = doc
    return out


def clear_status(store: "DataStore", session: str) -> None:
    store.redis.delete(status_key(session))
