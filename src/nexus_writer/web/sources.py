"""Where the page's status comes from: a session writer in this process, or the
service's supervisor (its writers' status documents in Redis).

Both give the service's status document (``{"sessions": {name: {"process",
"writer", "error"}}}``), which ``/status`` serves as is and the page summarises
with :func:`snapshot`.
"""

from __future__ import annotations

import os
import time
from typing import Any, Iterable, Protocol

from ..data.urls import redact_url

def mask(value: Any) -> Any:
    """``value`` with the credentials of every Redis URL in it masked
    (:func:`nexus_writer.data.urls.redact_url`), in nested dicts and lists too."""
    if isinstance(value, str):
        return redact_url(value)
    if isinstance(value, dict):
        return {k: mask(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [mask(v) for v in value]
    return value


class StatusSource(Protocol):
    def status(self) -> dict[str, Any]: ...

    def files(self) -> Iterable[str]: ...


class SessionSource:
    """The status of a :class:`~nexus_writer.writer.SessionWriter` of this process:
    its scans as they are now, its heartbeat (and lease, if any) from Redis."""

    def __init__(self, writer: Any):
        self.writer = writer

    def status(self) -> dict[str, Any]:
        from ..data.status import read_status

        doc = dict(self.writer.status())
        entry: dict[str, Any] = {"process": {"session": self.writer.session,
                                             "pid": os.getpid(), "alive": True,
                                             "restarts": 0},
                                 "writer": doc}
        try:
            published = read_status(self.writer.store, self.writer.session).get(
                self.writer.session) or {}
        except Exception as e:  # noqa: BLE001 - the page must answer when Redis is away
            entry["error"] = f"Redis: {e}"
            published = {}
        for key, value in published.items():
            doc.setdefault(key, value)  # updated (heartbeat), lease...
        return {"sessions": {self.writer.session: entry}}

    def files(self) -> Iterable[str]:
        return [w.filename for w in self.writer.scans() if w.filename]


class SupervisorSource:
    """The service's status: its processes and their writers' documents in Redis."""

    def __init__(self, supervisor: Any):
        self.supervisor = supervisor

    def status(self) -> dict[str, Any]:
        return self.supervisor.status()

    def files(self) -> Iterable[str]:
        out = []
        for entry in self.status().get("sessions", {}).values():
            for scan in (entry.get("writer") or {}).get("scans", []):
                if scan.get("file"):
                    out.append(scan["file"])
        return out


def _writer_state(entry: dict[str, Any], age: float | None) -> str:
    process = entry.get("process") or {}
    if process.get("stopping"):
        return "STOPPING"
    if process and not process.get("alive"):
        return "DOWN"
    if entry.get("writer") is None:
        return "NO STATUS"
    if age is not None and age > 10:
        return "STALE"
    return "RUNNING"


def snapshot(status: dict[str, Any], now: float | None = None) -> dict[str, Any]:
    """What the page shows: one row per session (its writer) and per scan."""
    now = time.time() if now is None else now
    sessions, scans = [], []
    for name, entry in sorted(status.get("sessions", {}).items()):
        writer = entry.get("writer") or {}
        process = entry.get("process") or {}
        updated = writer.get("updated")
        age = None if updated is None else max(0.0, now - float(updated))
        sessions.append({"session": name, "host": writer.get("host"),
                         "pid": writer.get("pid") or process.get("pid"),
                         "heartbeat_age": age, "state": _writer_state(entry, age),
                         "lease": writer.get("lease"), "restarts": process.get("restarts"),
                         "error": entry.get("error")})
        for scan in writer.get("scans", []):
            channels = {}
            for ch, counts in (scan.get("channels") or {}).items():
                published = counts.get("published")
                channels[ch] = {"written": counts.get("written", 0),
                                "published": published if published is not None
                                else counts.get("received", 0)}
            started, finished = scan.get("started"), scan.get("finished")
            duration = None
            if started is not None:
                duration = max(0.0, (finished if finished is not None else now) - started)
            written = max((c["written"] for c in channels.values()), default=0)
            expected = max((c["published"] for c in channels.values()), default=0)
            scans.append({"session": name, "scan": scan.get("scan"), "key": scan.get("key"),
                          "title": scan.get("title", ""), "state": scan.get("state"),
                          "reason": scan.get("reason") if scan.get("state") == "FAILED"
                          else None,
                          "file": scan.get("file"), "entries": scan.get("entries", []),
                          "channels": channels, "written": written, "published": expected,
                          "duration": duration, "problems": scan.get("problems", [])})
    return mask({"time": now, "sessions": sessions, "scans": scans})
