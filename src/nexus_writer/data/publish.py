"""Producer side: what the acquisition publishes (scans, channels, camera references).

Write handles are separate objects from the listener's nodes, so a listener cannot
publish by accident.
"""

from __future__ import annotations

import copy
import logging
import numbers
import threading
from typing import TYPE_CHECKING, Any, Mapping, Sequence

import numpy as np
import redis

from ..errors import DataValidationError, ScanStateError
from . import protocol as P

if TYPE_CHECKING:
    from .saving import SavingReport
    from .store import DataStore

logger = logging.getLogger(__name__)


def deep_update(target: dict, update: Mapping) -> dict:
    """Merge ``update`` into ``target`` recursively (nested dicts merged, rest replaced)."""
    for k, v in update.items():
        if isinstance(v, Mapping) and isinstance(target.get(k), dict):
            deep_update(target[k], v)
        else:
            target[k] = v
    return target


class ScanPublisher:
    """A scan being published.  Created by :meth:`DataStore.create_scan`.

    States: CREATED -> STARTED -> ENDED.  Nodes may be created in any state but
    ENDED; data may be sent once the node exists.
    """

    def __init__(self, store: "DataStore", key: str, session: str, info: dict, node_type: str):
        self._store = store
        self.key = key
        self.session = session
        self.node_type = node_type
        self.info = info
        self.number = int(info["scan_nb"])
        self.state = "CREATED"
        self._nodes: list[_NodePublisher] = []
        self._names: set[str] = set()
        self._lock = threading.Lock()
        self._children: _NodeRefPublisher | None = None
        self._end_sent = False
        self._end_pending = False

    @property
    def label(self) -> str:
        """How messages name this scan."""
        return f"scan {self.number} of session {self.session!r}"

    # -- nodes ---------------------------------------------------------------------
    def _add_node(self, cls: type, name: str, type_: str, dtype: str, shape: Sequence[int],
                  unit: str | None, info: Mapping[str, Any]) -> Any:
        with self._lock:
            if self.state == "ENDED":
                raise ScanStateError(f"{self.label}: cannot add node {name!r} after the end")
            if name in self._names:
                raise ValueError(f"{self.label}: a node named {name!r} exists already")
            key = P.node_stream_key(self.key, len(self._nodes))
            node = P.NodeDef(name=name, type=type_, key=key,
                             dtype=dtype, shape=tuple(int(s) for s in shape), unit=unit,
                             info=dict(info))
            self._store.redis.xadd(P.scan_events_key(self.key),
                                   {P.F_EVENT: b"NEW_NODE", P.F_NODE: node.to_json()})
            pub = cls(self, node)
            self._nodes.append(pub)
            self._names.add(name)
            return pub

    def create_channel(self, name: str, dtype: Any, shape: Sequence[int] = (),
                       unit: str | None = None, **info: Any) -> "ChannelPublisher":
        """A numeric channel; ``shape`` is one point's shape, ``-1`` for a varying length."""
        dt = np.dtype(dtype)
        if dt.kind not in "biuf":
            raise ValueError(f"{self.label}: channel {name!r}: dtype {dt} is not numeric or bool")
        return self._add_node(ChannelPublisher, name, "channel", dt.str, shape, unit, info)

    def create_lima_channel(self, name: str, dtype: Any, shape: Sequence[int], file_template: str,
                            data_path: str, file_format: str, frames_per_file: int,
                            file_offset: int = 0, **info: Any) -> "LimaPublisher":
        """References to the images a camera saves itself (``file_format`` hdf5 or edf).

        ``file_template`` is a ``str.format`` template with a ``file_index`` field,
        e.g. ``"/data/scan0005/lima_simulator_{file_index:04d}.h5"``.
        """
        if file_format not in ("hdf5", "edf"):
            raise ValueError(f"{self.label}: lima {name!r}: file_format must be 'hdf5' or 'edf'")
        if int(frames_per_file) < 1:
            raise ValueError(f"{self.label}: lima {name!r}: frames_per_file must be >= 1")
        lima_info = dict(info, file_template=file_template, data_path=data_path,
                         file_format=file_format, frames_per_file=int(frames_per_file),
                         file_offset=int(file_offset))
        return self._add_node(LimaPublisher, name, "lima", np.dtype(dtype).str, shape, None,
                              lima_info)

    # -- life cycle ----------------------------------------------------------------
    def start(self) -> None:
        """Mark the scan as running."""
        if self.state != "CREATED":
            raise ScanStateError(f"{self.label}: start() in state {self.state}")
        self.state = "STARTED"
        self._store.redis.hset(self.key, "state", "STARTED")

    def update_info(self, update: Mapping[str, Any]) -> None:
        """Merge ``update`` into scan_info (recursively) and publish it."""
        with self._lock:
            # A copy: later updates must not write into the caller's nested dicts.
            deep_update(self.info, copy.deepcopy(dict(update)))
            self._store.redis.hset(self.key, "info", P.dumps(self.info))

    def end(self, reason: str = "SUCCESS") -> None:
        """End the scan once all its data has been sent; starts the retention clock.

        Sends are refused from the call on.  If Redis cannot be reached, the error is
        raised and ``end()`` may be called again: the scan ends exactly once.
        """
        if reason not in P.END_REASONS:
            raise ValueError(f"{self.label}: end reason must be one of {P.END_REASONS}, "
                             f"not {reason!r}")
        with self._lock:
            if self.state == "ENDED" and not self._end_pending:
                raise ScanStateError(f"{self.label}: end() called twice")
            self.state = "ENDED"  # from now on sends are refused
            # Until the end reached Redis, end() may be called again (Redis away).
            self._end_pending = True
            self._end(reason)
            self._end_pending = False
        logger.debug("%s ended (%s)", self.label, reason)

    def _end(self, reason: str) -> None:
        r = self._store.redis
        if self._end_sent and r.hget(self.key, "state") == b"ENDED":
            return  # an earlier end() reached Redis, only its reply was lost
        counts = {}
        for n in self._nodes:
            with n._lock:  # waits for a send in progress
                counts[n.node.name] = n.count
        self.info.setdefault("end_reason", reason)
        keys = [self.key, P.scan_events_key(self.key)] + [n.node.key for n in self._nodes]
        retention = self._retention_at_end()
        ttl = max(1, int(round(retention)))
        # the writer's saving reports expire with the scan
        expiring = keys + [f"{self.key}:saving"]
        with r.pipeline(transaction=True) as pipe:
            pipe.hset(self.key, mapping={"state": "ENDED", "end_reason": reason,
                                         "info": P.dumps(self.info),
                                         "keys": P.dumps(keys),
                                         # the producer's retention, applied by the
                                         # writer that acknowledges the scan
                                         "retention": repr(self._store.retention)})
            pipe.xadd(P.scan_events_key(self.key), {P.F_EVENT: b"END_SCAN",
                                                    P.F_REASON: reason,
                                                    P.F_COUNTS: P.dumps(counts)})
            pipe.xadd(P.session_stream_key(self.session),
                      {P.F_EVENT: b"END_SCAN", P.F_SCAN: self.key})
            for k in expiring:
                pipe.expire(k, ttl)
            self._end_sent = True
            pipe.execute()
        if retention > self._store.retention and r.hget(self.key, "acknowledged"):
            # A writer acknowledged between the check above and the transaction
            # (it saw no "keys" yet, so it only set the flag): normal retention.
            normal = max(1, int(round(self._store.retention)))
            with r.pipeline(transaction=False) as pipe:
                for k in expiring:
                    pipe.expire(k, normal)
                pipe.execute()

    # -- the saving-completeness protocol ------------------------------------------
    @property
    def to_be_saved(self) -> bool:
        """Whether a NeXus writer is expected to save this scan."""
        return bool(self.info.get("save", True)) and str(
            self.info.get("data_writer", "nexus")) == "nexus"

    def _retention_at_end(self) -> float:
        """Normal retention once a writer acknowledged the scan (or none will), else the
        cap that keeps unsaved data in Redis for a writer that is down."""
        store = self._store
        if not self.to_be_saved or store.redis.hget(self.key, "acknowledged"):
            return store.retention
        return max(store.retention, store.unacked_retention)

    def writer_ready(self, timeout: float = 5.0) -> "SavingReport":
        """Ask whether a writer listens to this session and can write the scan's file.

        Returns the writer's answer (``READY`` or ``REFUSED`` with the reason), or a
        ``NO_WRITER`` report when no writer listens or none answered in ``timeout`` s.
        """
        from .saving import READY_STATES, SavingReport, wait_report, writer_present

        if not writer_present(self._store, self.session):
            return SavingReport("NO_WRITER", f"no writer listens to session {self.session!r}")
        report = wait_report(self._store, self.key, READY_STATES + ("SKIPPED", "FAILED"),
                             timeout)
        if report is None:
            return SavingReport("NO_WRITER", f"no writer answered for {self.label} "
                                             f"within {timeout:g} s")
        return report

    def wait_saved(self, timeout: float = 30.0) -> "SavingReport":
        """Wait for the final saving result of this scan (call after :meth:`end`).

        ``SUCCEEDED``, ``FAILED`` (reason and per-channel counts in ``detail``),
        ``SKIPPED``, or ``NO_WRITER`` when nothing final came within ``timeout`` s.
        """
        from .saving import FINAL_STATES, SavingReport, wait_report, writer_present

        report = wait_report(self._store, self.key, FINAL_STATES, timeout)
        if report is not None:
            return report
        present = writer_present(self._store, self.session)
        why = ("the writer did not finish" if present else
               f"no writer listens to session {self.session!r}")
        return SavingReport("NO_WRITER", f"{self.label} not saved within {timeout:g} s: {why}")

    # -- sequences -----------------------------------------------------------------
    def add_child(self, child: "ScanPublisher") -> None:
        """Record ``child`` as a scan of this sequence (``node_type='scan_group'``).

        The child's ``parent`` is set to this sequence unless it was created with one.
        """
        if self.node_type != "scan_group":
            raise ScanStateError(f"{self.label} is not a scan_group")
        if self.state == "ENDED":
            raise ScanStateError(f"{self.label}: cannot add a child scan after the end")
        self._store.redis.hsetnx(child.key, "parent", self.key)
        if self._children is None:
            self._children = self._add_node(_NodeRefPublisher, "SUBSCANS", "node_ref_channel",
                                            "", (), None, {})
        self._children.send_ref(child.key)

    def __enter__(self) -> "ScanPublisher":
        if self.state == "CREATED":
            self.start()
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if self.state != "ENDED":
            self.end("SUCCESS" if exc_type is None else
                     "USER_ABORT" if exc_type is KeyboardInterrupt else "FAILURE")


class _NodePublisher:
    def __init__(self, scan: ScanPublisher, node: P.NodeDef):
        self.scan = scan
        self.node = node
        self.count = 0
        self._lock = threading.Lock()

    @property
    def name(self) -> str:
        return self.node.name

    def _xadd(self, fields: Mapping[bytes, Any], n: int) -> None:
        """Append an entry covering points ``count .. count+n-1``."""
        with self._lock:  # end() takes this lock to read the count: no send after END_SCAN
            if self.scan.state == "ENDED":
                raise ScanStateError(
                    f"{self.scan.label}: {self.node.name!r} sent data after the end")
            r = self.scan._store.redis
            entry = P.entry_id(self.count)
            try:
                r.xadd(self.node.key, fields, id=entry)
            except redis.ResponseError:
                # A retry of a batch that reached Redis, whose reply was lost with the
                # connection: the stream ends with this very entry.  Else a real error.
                last = r.xrevrange(self.node.key, count=1)
                if not last or last[0][0].decode() != entry or last[0][1] != {
                        k: v.encode() if isinstance(v, str) else v for k, v in fields.items()}:
                    raise
            self.count += n


class ChannelPublisher(_NodePublisher):
    """A numeric channel.  ``send`` one point or a batch along a new first axis."""

    def _fail(self, what: str, expected: Any, received: Any) -> None:
        raise DataValidationError(
            f"{self.scan.label}, channel {self.node.name!r}: wrong {what}: "
            f"expected {expected}, received {received}"
        )

    def _as_dtype(self, data: Any) -> np.ndarray:
        expected = self.node.np_dtype
        if isinstance(data, (np.ndarray, np.generic)):
            arr = np.asarray(data)
            if arr.dtype != expected:
                if arr.dtype.newbyteorder("=") == expected.newbyteorder("="):
                    return arr.astype(expected)
                self._fail("dtype", expected, arr.dtype)
            return arr
        try:
            original = np.asarray(data)
        except ValueError:  # ragged nested lists
            return np.asarray(data, dtype=object)
        kind = original.dtype.kind
        if kind not in "biufO":
            self._fail("dtype", expected, f"values of {original.dtype}")
        if kind == "O":  # huge Python ints, None, ...: check the exact values
            values = np.asarray(data, dtype=object)
            bad = [v for v in values.flat if not isinstance(v, numbers.Real)]
            if bad:
                self._fail("dtype", expected, f"value {bad[0]!r}")
        if expected.kind == "f":
            # Rounding Python numbers into a float channel is the intent; overflow is not.
            try:
                with np.errstate(over="raise"):
                    return original.astype(expected)
            except (OverflowError, FloatingPointError):
                self._fail("dtype", expected, f"values of {original.dtype} that do not fit")
        lo, hi = (0, 1) if expected.kind == "b" else (int(np.iinfo(expected).min),
                                                      int(np.iinfo(expected).max))
        if kind in "biu":
            if original.size and (int(original.min()) < lo or int(original.max()) > hi):
                self._fail("dtype", expected, f"values of {original.dtype} that do not fit")
            return original.astype(expected)
        # Floats or big ints into an integer channel: numpy's float64 view of the values
        # may be rounded (2**64 - 1), so check the exact Python values.
        values = np.asarray(data, dtype=object)
        for v in values.flat:
            try:
                iv = int(v)
                fits = iv == v and lo <= iv <= hi
            except (TypeError, ValueError, OverflowError):
                fits = False
            if not fits:
                self._fail("dtype", expected, f"value {v!r} that does not fit")
        return values.astype(expected)

    def _check_shape(self, shape: tuple[int, ...]) -> bool:
        decl = self.node.shape
        return len(shape) == len(decl) and all(d < 0 or d == s for d, s in zip(decl, shape))

    def send(self, data: Any) -> None:
        """Publish one point, or a batch of points stacked along a new first axis.

        A variable-shape channel also takes a list of arrays (one per point).
        Raises :class:`DataValidationError` (a ``ValueError``) on a wrong dtype or shape.
        """
        node = self.node
        if node.variable and isinstance(data, (list, tuple)) and data and all(
                isinstance(p, np.ndarray) for p in data):
            points = [self._as_dtype(p) for p in data]
            for p in points:
                if not self._check_shape(p.shape):
                    self._fail("point shape", list(node.shape), list(p.shape))
            self._xadd(P.encode_points(points, True), len(points))
            return
        arr = self._as_dtype(data)
        if arr.dtype == object:
            if node.variable:
                return self.send([self._as_dtype(p) for p in data])
            self._fail("shape", list(node.shape), "ragged data")
        if arr.ndim == len(node.shape):
            if not self._check_shape(arr.shape):
                self._fail("shape", list(node.shape), list(arr.shape))
            arr = arr[np.newaxis]
        elif arr.ndim == len(node.shape) + 1:
            if not self._check_shape(arr.shape[1:]):
                self._fail("point shape", list(node.shape), list(arr.shape[1:]))
        else:
            self._fail("shape", f"{list(node.shape)} or a batch of it", list(arr.shape))
        if arr.shape[0] == 0:
            return
        if node.variable:
            self._xadd(P.encode_points(list(arr), True), arr.shape[0])
        else:
            self._xadd(P.encode_points(arr, False), arr.shape[0])


class LimaPublisher(_NodePublisher):
    """Camera references: the camera writes the files, this announces saved frames."""

    def send(self, last_index_saved: int) -> None:
        """Announce that frames ``0 .. last_index_saved`` are saved in the camera files."""
        last = int(last_index_saved)
        if last < self.count - 1:
            raise DataValidationError(
                f"{self.scan.label}, lima {self.node.name!r}: last_index_saved went back from "
                f"{self.count - 1} to {last}"
            )
        if last == self.count - 1:
            return
        self._xadd({P.F_LAST: str(last).encode()}, last + 1 - self.count)


class _NodeRefPublisher(_NodePublisher):
    """The child scans of a sequence."""

    def send_ref(self, key: str) -> None:
        self._xadd({P.F_REF: key.encode()}, 1)
