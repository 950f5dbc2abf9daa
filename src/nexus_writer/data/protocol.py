"""The wire format: Redis key names and the encoding of stream entries.

Pure functions only (no Redis calls), so that the producer, the listener, the
tests and ``docs/protocol.md`` agree on one definition.

Data streams use explicit entry IDs ``"{first_index}-1"``: the ID of a batch is the
index of its first point.  That gives random access by point index (``XREVRANGE``
to the batch holding point *p*), exact resume after a crash (no duplicates, no gap)
and makes a retried ``XADD`` of the same batch fail instead of duplicating it.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Mapping

import numpy as np

from ..errors import MalformedEntryError

#: Bumped whenever a listener of the previous version would misread the data.
PROTOCOL_VERSION = 1
PREFIX = "nxw"
VERSION_KEY = f"{PREFIX}:protocol_version"

#: Default time a scan's keys are kept after its end, seconds.
DEFAULT_RETENTION = 24 * 3600
#: Cap on the time an ended scan waits in Redis for a writer's acknowledgment, seconds.
DEFAULT_UNACKED_RETENTION = 72 * 3600

NODE_TYPES = ("scan", "scan_group", "channel", "lima", "node_ref_channel")
END_REASONS = ("SUCCESS", "FAILURE", "USER_ABORT", "DELETION")

# Field names of stream entries (short: they are repeated in every entry).
F_EVENT = b"event"
F_NODE = b"node"
F_SCAN = b"scan"
F_COUNT = b"n"
F_DATA = b"d"
F_SHAPES = b"s"
F_LAST = b"last"
F_REF = b"ref"
F_REASON = b"reason"
F_COUNTS = b"counts"


def session_stream_key(session: str) -> str:
    """Stream announcing the scans of a session (``NEW_NODE`` and ``END_SCAN``)."""
    return f"{PREFIX}:session:{session}"


def scan_key(uid: str) -> str:
    """Hash holding a scan's identity, state and ``scan_info`` (JSON)."""
    return f"{PREFIX}:scan:{uid}"


def scan_events_key(key: str) -> str:
    """Stream of a scan's structural events: new nodes, end of scan."""
    return f"{key}:events"


def node_stream_key(key: str, index: int) -> str:
    """Data stream of the ``index``-th node created in the scan ``key``."""
    return f"{key}:node:{index}"


def entry_id(first_index: int) -> str:
    """Stream ID of the batch whose first point has index ``first_index``."""
    return f"{first_index}-1"


def first_index_of(stream_id: bytes | str) -> int:
    """Inverse of :func:`entry_id`."""
    if isinstance(stream_id, bytes):
        return int(stream_id[:stream_id.index(b"-")])
    return int(stream_id.split("-", 1)[0])


class _JSONEncoder(json.JSONEncoder):
    """scan_info may hold numpy values; they are stored as plain JSON."""

    def default(self, o: Any) -> Any:
        if isinstance(o, np.ndarray):
            return o.tolist()
        if isinstance(o, np.generic):
            return o.item()
        if isinstance(o, (set, frozenset, tuple)):
            return list(o)
        if isinstance(o, bytes):
            return o.decode(errors="replace")
        return super().default(o)


def dumps(obj: Any) -> str:
    """JSON text of ``obj`` (numpy values converted)."""
    return json.dumps(obj, cls=_JSONEncoder, allow_nan=True)


def loads(text: bytes | str) -> Any:
    return json.loads(text)


@dataclass(frozen=True)
class NodeDef:
    """Definition of a data node, published once in the scan's event stream.

    ``shape`` is the shape of one point; ``-1`` marks a dimension whose length
    varies from point to point (SAMPLES mode counters, variable spectra).
    """

    name: str
    type: str
    key: str
    dtype: str = ""
    shape: tuple[int, ...] = ()
    unit: str | None = None
    info: Mapping[str, Any] = field(default_factory=dict)

    # Cached (the listener asks for them for every entry it decodes); a frozen
    # dataclass without __slots__ accepts cached_property.
    @cached_property
    def variable(self) -> bool:
        """Whether points may have different shapes."""
        return any(d < 0 for d in self.shape)

    @cached_property
    def np_dtype(self) -> np.dtype:
        return np.dtype(self.dtype)

    @cached_property
    def point_nbytes(self) -> int:
        """Bytes of one point (fixed-shape channels only)."""
        return int(math.prod(self.shape)) * self.np_dtype.itemsize

    def to_json(self) -> str:
        return dumps(
            {
                "name": self.name,
                "type": self.type,
                "key": self.key,
                "dtype": self.dtype,
                "shape": list(self.shape),
                "unit": self.unit,
                "info": dict(self.info),
            }
        )

    @classmethod
    def from_json(cls, text: bytes | str) -> "NodeDef":
        try:
            d = loads(text)
            node = cls(
                name=str(d["name"]),
                type=str(d["type"]),
                key=str(d["key"]),
                dtype=str(d.get("dtype") or ""),
                shape=tuple(int(x) for x in d.get("shape") or ()),
                unit=d.get("unit"),
                info=dict(d.get("info") or {}),
            )
        except (ValueError, KeyError, TypeError) as e:
            raise MalformedEntryError(f"bad node definition {text!r}: {e}") from e
        if node.type not in NODE_TYPES:
            raise MalformedEntryError(f"node {node.name!r}: unknown node type {node.type!r}")
        if node.type == "channel":
            try:
                kind = np.dtype(node.dtype).kind
            except TypeError as e:
                raise MalformedEntryError(f"node {node.name!r}: bad dtype {node.dtype!r}") from e
            if kind not in "biuf":  # object or text data cannot be read from bytes
                raise MalformedEntryError(f"node {node.name!r}: dtype {node.dtype!r} "
                                          "is not numeric")
        return node


def encode_points(points: np.ndarray | list[np.ndarray], variable: bool) -> dict[bytes, bytes]:
    """Fields of one data entry holding a batch of points.

    ``points`` is an array of shape ``(n, *point_shape)``, or for variable-shape
    channels a list of arrays.  The caller has already validated dtype and shape.
    """
    if not variable:
        arr = np.ascontiguousarray(points)
        return {F_COUNT: str(arr.shape[0]).encode(), F_DATA: arr.tobytes()}
    shapes = np.array([p.shape for p in points], dtype=np.int64)
    data = b"".join(np.ascontiguousarray(p).tobytes() for p in points)
    return {F_COUNT: str(len(points)).encode(), F_DATA: data, F_SHAPES: shapes.tobytes()}


def decode_points(node: NodeDef, fields: Mapping[bytes, bytes]) -> np.ndarray | list[np.ndarray]:
    """Inverse of :func:`encode_points`; raises :class:`MalformedEntryError`."""
    try:
        n = decode_count(fields)
    except MalformedEntryError as e:
        raise MalformedEntryError(f"channel {node.name!r}: {e}") from e
    raw = fields.get(F_DATA)
    if raw is None:
        raise MalformedEntryError(f"channel {node.name!r}: entry without data")
    dtype = node.np_dtype
    if not node.variable:
        expected = n * node.point_nbytes
        if len(raw) != expected:
            raise MalformedEntryError(
                f"channel {node.name!r}: {len(raw)} bytes for {n} points of "
                f"{node.dtype}{list(node.shape)}, expected {expected}"
            )
        return np.frombuffer(raw, dtype=dtype).reshape((n,) + node.shape)
    try:
        shapes = np.frombuffer(fields[F_SHAPES], dtype=np.int64).reshape(n, len(node.shape))
    except (KeyError, ValueError) as e:
        raise MalformedEntryError(f"channel {node.name!r}: bad point shapes in entry") from e
    sizes = np.prod(shapes, axis=1, dtype=np.int64) * dtype.itemsize
    if int(sizes.sum()) != len(raw) or (shapes < 0).any():
        raise MalformedEntryError(
            f"channel {node.name!r}: {len(raw)} bytes do not match point shapes "
            f"{shapes.tolist()} of {node.dtype}"
        )
    out = []
    offset = 0
    for shape, size in zip(shapes, sizes):
        out.append(np.frombuffer(raw, dtype=dtype, count=int(size) // dtype.itemsize,
                                 offset=offset).reshape(tuple(shape)))
        offset += int(size)
    return out


def decode_count(fields: Mapping[bytes, bytes]) -> int:
    """Number of points of a data entry without decoding its payload."""
    try:
        n = int(fields[F_COUNT])
    except (KeyError, ValueError) as e:
        raise MalformedEntryError("entry without point count") from e
    if n < 0:
        raise MalformedEntryError(f"entry with a negative point count {n}")
    return n


@dataclass(frozen=True)
class LimaReference:
    """Where one camera frame lives: the camera's own file, not Redis."""

    file_path: str
    data_path: str
    frame_index: int
    file_format: str


def lima_reference(info: Mapping[str, Any], frame: int) -> LimaReference:
    """Reference of frame number ``frame`` (0-based, counted over the scan).

    ``info`` is a lima node's info: ``file_template`` (a ``str.format`` template
    with a ``file_index`` field), ``data_path``, ``file_format``,
    ``frames_per_file`` and ``file_offset``.
    """
    per_file = int(info["frames_per_file"])
    file_index = frame // per_file + int(info.get("file_offset", 0))
    return LimaReference(
        file_path=str(info["file_template"]).format(file_index=file_index),
        data_path=str(info.get("data_path", "")),
        frame_index=frame % per_file,
        file_format=str(info["file_format"]),
    )
