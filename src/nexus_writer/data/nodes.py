"""Listener side: read-only views of sessions, scans and data nodes in Redis."""

from __future__ import annotations

import logging
from functools import cached_property
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import MalformedEntryError
from . import protocol as P

if TYPE_CHECKING:
    from .store import DataStore
    from .walk import ScanIterator, SessionIterator

logger = logging.getLogger(__name__)


def _s(value: bytes | None) -> str | None:
    return None if value is None else value.decode()


class SessionNode:
    """A session: the root of its scans.  ``iterator.walk_on_new_events`` follows them."""

    type = "session"

    def __init__(self, store: "DataStore", name: str):
        self.store = store
        self.name = name
        self.key = P.session_stream_key(name)

    @property
    def iterator(self) -> "SessionIterator":
        from .walk import SessionIterator

        return SessionIterator(self)

    def walk_on_new_events(self, *args: Any, **kwargs: Any):  # noqa: ANN201 - see SessionIterator
        """Shortcut for ``iterator.walk_on_new_events``."""
        return self.iterator.walk_on_new_events(*args, **kwargs)

    def __repr__(self) -> str:
        return f"SessionNode({self.name!r})"


class ScanNode:
    """A scan (``type`` "scan") or a sequence (``type`` "scan_group").

    Identity fields are read once; ``info`` and ``state`` are read anew at each access
    because the producer completes them while the scan runs.
    """

    def __init__(self, store: "DataStore", key: str):
        self.store = store
        self.key = key

    @cached_property
    def _identity(self) -> dict[str, str]:
        fields = self.store.redis.hmget(self.key, "name", "number", "session", "type", "parent")
        if fields[1] is None:
            raise KeyError(f"scan {self.key!r} does not exist (expired or never created)")
        name, number, session, type_, parent = (_s(f) for f in fields)
        return {"name": name or "", "number": number or "0", "session": session or "",
                "type": type_ or "scan", "parent": parent or ""}

    def exists(self) -> bool:
        return bool(self.store.redis.exists(self.key))

    @property
    def name(self) -> str:
        """BLISS-like node name, ``"{number}_{name}"``."""
        return f"{self.number}_{self._identity['name']}"

    @property
    def number(self) -> int:
        return int(self._identity["number"])

    @property
    def session(self) -> str:
        return self._identity["session"]

    @property
    def type(self) -> str:
        return self._identity["type"]

    @property
    def parent_key(self) -> str | None:
        """Key of the sequence this scan belongs to, if any."""
        return self._identity["parent"] or None

    @property
    def label(self) -> str:
        """How messages name this scan (its key once the scan has expired)."""
        try:
            return f"scan {self.number} of session {self.session!r}"
        except KeyError:  # an error message about a gone scan must not fail itself
            return f"scan {self.key} (expired or never created)"

    @property
    def info(self) -> dict[str, Any]:
        """The current scan_info."""
        raw = self.store.redis.hget(self.key, "info")
        if raw is None:
            raise KeyError(f"{self.label}: scan_info is gone (key {self.key} expired)")
        try:
            info = P.loads(raw)
        except ValueError as e:
            raise MalformedEntryError(f"{self.label}: scan_info is not valid JSON: {e}") from e
        if not isinstance(info, dict):
            raise MalformedEntryError(f"{self.label}: scan_info is not a dict")
        return info

    @property
    def state(self) -> str:
        """CREATED, STARTED or ENDED ("EXPIRED" once the keys are gone)."""
        return _s(self.store.redis.hget(self.key, "state")) or "EXPIRED"

    @property
    def end_reason(self) -> str | None:
        return _s(self.store.redis.hget(self.key, "end_reason"))

    @property
    def iterator(self) -> "ScanIterator":
        from .walk import ScanIterator

        return ScanIterator(self)

    def walk_events(self, *args: Any, **kwargs: Any):  # noqa: ANN201 - see ScanIterator
        """Shortcut for ``iterator.walk_events``."""
        return self.iterator.walk_events(*args, **kwargs)

    def nodes(self) -> list["DataNode"]:
        """The data nodes created so far, in creation order.

        A malformed node definition is logged and left out: the rest stays readable.
        """
        out = []
        for entry_id, fields in self.store.redis.xrange(P.scan_events_key(self.key)):
            if fields.get(P.F_EVENT) == b"NEW_NODE":
                try:
                    out.append(make_node(self, P.NodeDef.from_json(fields.get(P.F_NODE, b""))))
                except MalformedEntryError as e:
                    logger.error("%s: entry %s skipped: %s", self.label, entry_id.decode(), e)
        return out

    def __repr__(self) -> str:
        return f"ScanNode({self.key!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ScanNode) and other.key == self.key

    def __hash__(self) -> int:
        return hash(self.key)


class DataNode:
    """Common part of channel, lima and node_ref_channel nodes."""

    def __init__(self, scan: ScanNode, definition: P.NodeDef):
        self.scan = scan
        self.definition = definition

    name = property(lambda self: self.definition.name)
    type = property(lambda self: self.definition.type)
    key = property(lambda self: self.definition.key)
    shape = property(lambda self: self.definition.shape)
    unit = property(lambda self: self.definition.unit)
    info = property(lambda self: dict(self.definition.info))

    @property
    def dtype(self) -> np.dtype | None:
        return np.dtype(self.definition.dtype) if self.definition.dtype else None

    @property
    def _redis(self):  # noqa: ANN202
        return self.scan.store.redis

    def count(self) -> int:
        """Points (frames, child scans) published so far."""
        last = self._redis.xrevrange(self.key, count=1)
        if not last:
            return 0
        entry_id, fields = last[0]
        return P.first_index_of(entry_id) + self._entry_count(entry_id, fields)

    def _entry_count(self, entry_id: bytes, fields: dict) -> int:
        return P.decode_count(fields)

    def _entries(self, start: int, stop: int) -> list[tuple[int, dict]]:
        """Entries holding points ``start .. stop-1`` (``stop`` < 0: to the end)."""
        r = self._redis
        out: list[tuple[int, dict]] = []
        if start > 0:
            before = r.xrevrange(self.key, max=P.entry_id(start), min="-", count=1)
            if before:
                first = P.first_index_of(before[0][0])
                if first + self._entry_count(before[0][0], before[0][1]) > start:
                    out.append((first, before[0][1]))
            low = "(" + P.entry_id(start)
        else:
            low = "-"
        high = "+" if stop < 0 else P.entry_id(max(stop - 1, 0))
        if stop < 0 or stop > start:
            for entry_id, fields in r.xrange(self.key, min=low, max=high):
                out.append((P.first_index_of(entry_id), fields))
        return out

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r}, scan={self.scan.key!r})"


class ChannelNode(DataNode):
    """Numeric data kept in Redis."""

    def get(self, start: int = 0, stop: int = -1) -> np.ndarray | list[np.ndarray]:
        """Points ``start <= i < stop`` (``stop=-1``: up to the last one published).

        An array of shape ``(n, *shape)``; a list of arrays for a variable-shape channel.
        """
        parts = []
        for first, fields in self._entries(start, stop):
            points = P.decode_points(self.definition, fields)
            lo = max(start - first, 0)
            hi = len(points) if stop < 0 else min(stop - first, len(points))
            parts.append(points[lo:hi])
        if self.definition.variable:
            return [p for part in parts for p in part]
        if not parts:
            return np.empty((0,) + self.shape, dtype=self.dtype)
        return np.concatenate(parts) if len(parts) > 1 else np.array(parts[0])


class LimaNode(DataNode):
    """References to camera frames saved in the camera's own files."""

    def _entry_count(self, entry_id: bytes, fields: dict) -> int:
        try:
            n = int(fields[P.F_LAST]) + 1 - P.first_index_of(entry_id)
        except (KeyError, ValueError) as e:
            raise MalformedEntryError(f"lima {self.name!r}: entry without 'last'") from e
        if n < 1:
            raise MalformedEntryError(f"lima {self.name!r}: entry at frame "
                                      f"{P.first_index_of(entry_id)} announces no frame")
        return n

    @property
    def last_index_saved(self) -> int:
        """Index of the last frame saved, -1 when none."""
        return self.count() - 1

    def get_references(self, start: int = 0, stop: int = -1) -> list[P.LimaReference]:
        """(file path, data path, frame index, format) of frames ``start <= i < stop``."""
        saved = self.count()
        stop = saved if stop < 0 else min(stop, saved)
        return [P.lima_reference(self.definition.info, i) for i in range(start, stop)]

    get = get_references


class NodeRefNode(DataNode):
    """The child scans of a sequence."""

    def _entry_count(self, entry_id: bytes, fields: dict) -> int:
        return 1

    def get(self, start: int = 0, stop: int = -1) -> list[ScanNode]:
        return [ScanNode(self.scan.store, fields[P.F_REF].decode())
                for _, fields in self._entries(start, stop)]


_NODE_CLASSES = {"channel": ChannelNode, "lima": LimaNode, "node_ref_channel": NodeRefNode}


def make_node(scan: ScanNode, definition: P.NodeDef) -> DataNode:
    """The listener node for a published definition; :class:`MalformedEntryError` for a
    type that is not a data node type (a scan is not a node of another scan)."""
    try:
        cls = _NODE_CLASSES[definition.type]
    except KeyError:
        raise MalformedEntryError(
            f"node {definition.name!r}: {definition.type!r} is not a data node type") from None
    return cls(scan, definition)
