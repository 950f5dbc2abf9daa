"""Walking a session's scans and a scan's events, with the seed's names.

A walk reads with blocking ``XREAD`` over the scan's event stream and every data
stream at once, a bounded number of entries at a time, so memory stays flat in the
scan length.  It can start from a saved position (the next point index per node),
which is how a restarted writer goes on without gap or duplicate.
"""

from __future__ import annotations

import contextlib
import enum
import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Iterator, Mapping

import numpy as np
import redis

from ..errors import MalformedEntryError, NexusWriterError
from . import protocol as P
from .nodes import DataNode, ScanNode, SessionNode, make_node

logger = logging.getLogger(__name__)

#: Bytes one read may bring back, spread over the streams read.  A few MiB: bigger
#: replies are slower to receive (fresh memory page-faulted for every reply) and
#: the listener holds two of them at worst.
READ_BUDGET = 8 * 2**20


class EventType(str, enum.Enum):
    """What happened."""

    NEW_NODE = "NEW_NODE"
    NEW_DATA_IN_CHANNEL = "NEW_DATA_IN_CHANNEL"
    END_SCAN = "END_SCAN"
    #: A malformed entry or missing data; ``EventData.description`` says what and where.
    ERROR = "ERROR"

    NEW_DATA = NEW_DATA_IN_CHANNEL


class RedisConnectionLost(NexusWriterError, ConnectionError):
    """Redis went away during a walk; walk again from ``iterator.position`` to go on."""


_NEW_DATA = EventType.NEW_DATA_IN_CHANNEL


@contextlib.contextmanager
def connection_lost(what: str) -> Iterator[None]:
    """Turn Redis connection errors into :class:`RedisConnectionLost` naming ``what``:
    callers that never import redis (the writer) retry on ``ConnectionError``."""
    try:
        yield
    except (redis.ConnectionError, redis.TimeoutError) as e:
        raise RedisConnectionLost(f"{what}: lost Redis ({e})") from e


class ScanTimeoutError(NexusWriterError, TimeoutError):
    """Nothing arrived for a scan within the walk's inactivity timeout."""


@dataclass(frozen=True)
class EventData:
    """What ``walk_events(with_data=True)`` yields beside a data or error event.

    ``data`` is an array ``(n, *shape)`` (a list of arrays for a variable-shape
    channel), a list of :class:`LimaReference` for a lima node, or a list of child
    :class:`ScanNode` for a sequence.
    """

    first_index: int
    data: Any
    description: Mapping[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.data)


class SessionIterator:
    """Walks the scans of a session."""

    def __init__(self, session: SessionNode):
        self.session = session
        #: Stream ID of the last session event yielded, to resume with ``since``.
        self.last_id: str = "0-0"

    def walk_on_new_events(
        self,
        filter: str | tuple[str, ...] | None = None,  # noqa: A002 - the seed's name
        from_next: bool = True,
        since: str | None = None,
        timeout: float | None = None,
        block: float = 0.5,
        stop: threading.Event | None = None,
    ) -> Iterator[tuple[EventType, ScanNode]]:
        """Yield ``(NEW_NODE | END_SCAN, scan_node)`` as scans start and end.

        ``filter``: node type(s) to keep ("scan", "scan_group"); None keeps both.
        ``from_next``: only scans announced from now on; False replays the retained
        ones first.  ``since``: resume after that session-stream ID (overrides
        ``from_next``).  ``timeout``: return after that many seconds without an
        event.  ``stop``: an event that ends the walk when set.

        The starting point is fixed by this call, not by the first ``next()``: a scan
        announced in between is not lost.
        """
        r = self.session.store.redis
        key = self.session.key
        if since is not None:
            self.last_id = since
        elif from_next:
            with connection_lost(f"session {self.session.name!r}"):
                last = r.xrevrange(key, count=1)
            self.last_id = last[0][0].decode() if last else "0-0"
        else:
            self.last_id = "0-0"
        types = (filter,) if isinstance(filter, str) else filter
        return self._walk(types, timeout, block, stop)

    def _walk(self, types: tuple[str, ...] | None, timeout: float | None, block: float,
              stop: threading.Event | None) -> Iterator[tuple[EventType, ScanNode]]:
        r = self.session.store.redis
        key = self.session.key
        idle_since = time.monotonic()
        while not (stop is not None and stop.is_set()):
            try:
                resp = r.xread({key: self.last_id}, count=100, block=max(1, int(block * 1000)))
            except (redis.ConnectionError, redis.TimeoutError) as e:
                raise RedisConnectionLost(
                    f"session {self.session.name!r}: lost Redis ({e}); resume after "
                    f"{self.last_id}") from e
            if not resp:
                if timeout is not None and time.monotonic() - idle_since > timeout:
                    return
                continue
            idle_since = time.monotonic()
            for entry_id, fields in resp[0][1]:
                previous, self.last_id = self.last_id, entry_id.decode()
                event = fields.get(P.F_EVENT, b"").decode()
                if event not in ("NEW_NODE", "END_SCAN"):
                    continue
                if P.F_SCAN not in fields:
                    logger.error("session %s: entry %s without a scan key, skipped",
                                 self.session.name, self.last_id)
                    continue
                scan = ScanNode(self.session.store, fields[P.F_SCAN].decode())
                try:
                    scan_type = scan.type
                except KeyError:
                    logger.debug("session %s: scan %s expired, skipped", self.session.name,
                                 scan.key)
                    continue
                except (redis.ConnectionError, redis.TimeoutError) as e:
                    self.last_id = previous  # this scan is not yielded yet
                    raise RedisConnectionLost(
                        f"session {self.session.name!r}: lost Redis ({e}); resume after "
                        f"{self.last_id}") from e
                if types is None or scan_type in types:
                    yield EventType(event), scan


class ScanIterator:
    """Walks the events of one scan."""

    def __init__(self, scan: ScanNode):
        self.scan = scan
        #: Next point index per node name: a resumable position (JSON-able).
        self.position: dict[str, int] = {}
        #: Points the producer announced per node at the end (set at END_SCAN).
        self.published: dict[str, int] | None = None
        self.end_reason: str | None = None
        #: Nodes announced in earlier walks (stream key -> node): a later walk follows
        #: them even when Redis lost their definitions (restarted empty).
        self.known: dict[str, DataNode] = {}

    def walk_events(
        self,
        with_data: bool = False,
        position: Mapping[str, int] | None = None,
        timeout: float | None = None,
        block: float = 0.5,
        stop: threading.Event | None = None,
    ) -> Iterator[tuple]:
        """Yield the scan's events from its first one, ``END_SCAN`` last.

        Yields ``(event_type, node)``, or with ``with_data=True``
        ``(event_type, node, event_data)`` where ``event_data`` is an
        :class:`EventData` for data and error events and None otherwise.

        ``position``: next point index per node name, from ``self.position`` of an
        earlier walk; data before it is skipped, nodes are announced again.
        ``timeout``: raise :class:`ScanTimeoutError` after that many seconds without
        any new entry.  ``stop``: an event that ends the walk when set.
        """
        scan = self.scan
        r = scan.store.redis
        events_key = P.scan_events_key(scan.key)
        self.position = dict(position or {})
        names: set[str] = set()  # node names announced so far
        last_ids: dict[str, str] = {events_key: "0-0"}
        nodes: dict[str, DataNode] = {}
        max_entry = 0  # bytes of the largest data entry seen; 0 before the first one
        seen: set[str] = {events_key}  # streams whose entry sizes are known
        ended = False
        idle_since = time.monotonic()
        seeded: set[str] = set()  # known nodes whose announcement may come again

        def out(event: EventType, node: Any, data: EventData | None = None) -> tuple:
            return (event, node, data) if with_data else (event, node)

        def error(node: Any, message: str, **desc: Any) -> tuple:
            logger.error("%s: %s", scan.label, message)
            first = int(desc.pop("first_index", -1))
            return out(EventType.ERROR, node, EventData(first, None, dict(desc, error=message)))

        if self.known:
            # A walk again (a reconnection): the nodes of earlier walks are followed
            # from the position given, whether or not Redis still has their definitions.
            with connection_lost(scan.label):
                first = r.xrange(events_key, count=1)
            # the stream starts with CREATED; without it, Redis lost it (an END_SCAN
            # retried by the producer may have started a new one)
            if not first or first[0][1].get(P.F_EVENT) != b"CREATED":
                # not an error by itself: points lost meanwhile show as gaps (errors
                # naming them) and in the END_SCAN counts
                logger.warning("%s: its events are gone from Redis (restarted without "
                               "persistence?); following the %d node(s) known", scan.label,
                               len(self.known))
            for known in list(self.known.values()):
                names.add(known.name)
                nodes[known.key] = known
                seeded.add(known.key)
                yield out(EventType.NEW_NODE, known)
                start = self.position.setdefault(known.name, 0)
                last_ids[known.key] = "0-0"
                if start > 0:
                    yield from self._seek(known, start, last_ids, with_data, out, error)

        while True:
            if stop is not None and stop.is_set():
                return
            # Until an entry size is known, assume big entries: a first read of 1024
            # camera-sized entries would blow the budget.
            entry_size = max(1, max_entry)
            if len(seen) < len(last_ids):  # a stream not read yet may hold big entries
                entry_size = max(entry_size, READ_BUDGET // 4)
            count = max(1, min(1024, READ_BUDGET // max(1, len(last_ids)) // entry_size))
            try:
                resp = r.xread(last_ids, count=count,
                               block=None if ended else max(1, int(block * 1000)))
            except (redis.ConnectionError, redis.TimeoutError) as e:
                raise RedisConnectionLost(f"{scan.label}: lost Redis ({e})") from e
            except redis.ResponseError as e:
                raise NexusWriterError(f"{scan.label}: reading its streams failed: {e}") from e
            if not resp:
                if ended:
                    break
                if timeout is not None and time.monotonic() - idle_since > timeout:
                    raise ScanTimeoutError(
                        f"{scan.label}: no new event for {timeout:g} s (no end of scan received)")
                continue
            idle_since = time.monotonic()
            resp.sort(key=lambda item: item[0] != events_key.encode())
            for stream, entries in resp:
                stream = stream.decode()
                if stream == events_key:
                    for entry_id, fields in entries:
                        last_ids[events_key] = entry_id.decode()
                        event = fields.get(P.F_EVENT, b"")
                        if event == b"NEW_NODE":
                            try:
                                definition = P.NodeDef.from_json(fields.get(P.F_NODE, b""))
                                node = make_node(scan, definition)
                            except MalformedEntryError as e:
                                yield error(scan, str(e), stream=stream, id=entry_id.decode())
                                continue
                            if (node.key in seeded and nodes[node.key].name == node.name
                                    and nodes[node.key].definition == definition):
                                seeded.discard(node.key)  # followed already (known)
                                continue
                            if (node.key == events_key or node.key in nodes
                                    or node.name in names):
                                # A repeated announcement would replay the node's data.
                                yield error(scan, f"node {node.name!r} (stream {node.key}) "
                                                  "announced twice or on a stream in use, "
                                                  "ignored",
                                            stream=stream, id=entry_id.decode())
                                continue
                            names.add(node.name)
                            nodes[node.key] = node
                            self.known[node.key] = node
                            yield out(EventType.NEW_NODE, node)
                            start = self.position.setdefault(node.name, 0)
                            last_ids[node.key] = "0-0"
                            if start > 0:  # resuming
                                yield from self._seek(node, start, last_ids, with_data, out,
                                                      error)
                        elif event == b"END_SCAN":
                            ended = True
                            self.end_reason = fields.get(P.F_REASON, b"").decode() or None
                            try:
                                self.published = {str(k): int(v) for k, v in
                                                  P.loads(fields.get(P.F_COUNTS, b"{}")).items()}
                            except (ValueError, AttributeError) as e:
                                self.published = None
                                yield error(scan, f"bad END_SCAN counts: {e}", stream=stream)
                    continue
                node = nodes[stream]
                last_ids[stream] = entries[-1][0].decode()
                definition = node.definition
                if with_data and definition.type == "channel" and not definition.variable:
                    # The bulk of the data: fixed-shape channels, decoded inline.  An
                    # entry that does not check out goes the general way (its error).
                    name, shape = definition.name, definition.shape
                    dtype, point_nbytes = definition.np_dtype, definition.point_nbytes
                    position = self.position
                    seen.add(stream)
                    for entry_id, fields in entries:
                        raw = fields.get(P.F_DATA)
                        n_field = fields.get(P.F_COUNT)
                        n = int(n_field) if n_field is not None and n_field.isdigit() else -1
                        if raw is None or n < 0 or len(raw) != n * point_nbytes:
                            yield from self._entry(node, entry_id, fields, with_data, out, error)
                            continue
                        if len(raw) > max_entry:
                            max_entry = len(raw)
                        first = int(entry_id[:entry_id.index(b"-")])
                        expected = position.get(name, 0)
                        if first > expected:
                            yield error(node, f"{name!r}: points {expected}..{first - 1} are "
                                              "missing", first_index=expected,
                                        missing=[expected, first])
                        position[name] = first + n
                        yield (_NEW_DATA, node,
                               EventData(first, np.frombuffer(raw, dtype).reshape((n, *shape))))
                    continue
                seen.add(stream)
                for entry_id, fields in entries:
                    size = len(fields.get(P.F_DATA, b"")) or sum(map(len, fields.values()))
                    if size > max_entry:
                        max_entry = size
                    yield from self._entry(node, entry_id, fields, with_data, out, error)
            # Free this read before the next one: else two reads' worth are held.
            resp = entries = None
        for name, published in (self.published or {}).items():
            got = self.position.get(name, 0)
            if got < published:
                owner = next((n for n in nodes.values() if n.name == name), scan)
                yield error(owner, f"{name!r}: {published} points published, {got} received "
                                   "(expired or malformed entries)",
                            first_index=got, missing=[got, published])
        yield out(EventType.END_SCAN, scan)

    def _entry(self, node: DataNode, entry_id: bytes, fields: dict, with_data: bool, out, error,
               skip: int = 0) -> Iterator[tuple]:
        """Events for one data entry; ``skip`` drops its first points (resume)."""
        first = P.first_index_of(entry_id)
        expected = self.position.get(node.name, 0)
        try:
            n = node._entry_count(entry_id, fields)
            if with_data:
                payload = self._decode(node, first, n, fields)
            else:
                payload = None
        except MalformedEntryError as e:
            yield error(node, f"{node.name!r}: {e}", stream=node.key, id=entry_id.decode(),
                        first_index=first)
            return
        if first + skip > expected:
            yield error(node, f"{node.name!r}: points {expected}..{first + skip - 1} are missing",
                        first_index=expected, missing=[expected, first + skip])
        self.position[node.name] = first + n
        if skip:
            payload = None if payload is None else payload[skip:]
        yield out(EventType.NEW_DATA_IN_CHANNEL, node,
                  EventData(first + skip, payload) if with_data else None)

    @staticmethod
    def _decode(node: DataNode, first: int, n: int, fields: dict) -> Any:
        definition = node.definition
        kind = definition.type
        if kind == "channel":
            points = P.decode_points(definition, fields)
            if definition.variable:
                # The entry's byte count matches the shapes it gives; those must match
                # the declared ones too (only the -1 dimensions vary), else the dataset
                # cannot take them and the whole channel would stop.
                declared = definition.shape
                for k, point in enumerate(points):
                    if len(point.shape) != len(declared) or any(
                            d >= 0 and d != s for d, s in zip(declared, point.shape)):
                        raise MalformedEntryError(
                            f"channel {definition.name!r}: point {k} of shape "
                            f"{list(point.shape)}, declared {list(declared)}")
            return points
        if kind == "lima":
            return [P.lima_reference(node.definition.info, i) for i in range(first, first + n)]
        try:
            return [ScanNode(node.scan.store, fields[P.F_REF].decode())]
        except KeyError as e:
            raise MalformedEntryError("node_ref entry without 'ref'") from e

    def _seek(self, node: DataNode, start: int, last_ids: dict, with_data: bool, out,
              error) -> Iterator[tuple]:
        """Resume ``node`` at point ``start``: later reads take entries from ``start`` on,
        and the tail of an entry straddling ``start`` is yielded here."""
        last_ids[node.key] = f"{start}-0"  # just below entry_id(start)
        r = self.scan.store.redis
        with connection_lost(self.scan.label):
            before = r.xrevrange(node.key, max="(" + P.entry_id(start), min="-", count=1)
        if not before:
            return
        entry_id, fields = before[0]
        first = P.first_index_of(entry_id)
        try:
            n = node._entry_count(entry_id, fields)
        except MalformedEntryError:
            return
        if first + n > start:
            yield from self._entry(node, entry_id, fields, with_data, out, error,
                                   skip=start - first)
