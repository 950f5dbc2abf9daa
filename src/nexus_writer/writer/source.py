"""What the scan writer consumes: a small source interface, and its Redis implementation.

The writer never talks to Redis itself; it reads a :class:`ScanSource`.  The
native Redis protocol (``nexus_writer.data``) is one implementation; a blissdata
source (BLISS 2.x) is another, without touching the NeXus code.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any, Iterator, Mapping, Protocol, Union

import numpy as np

from ..data import DataStore, EventType, SavingReporter, ScanNode, ScanTimeoutError
from ..data.walk import connection_lost
from ..nexus.camera import FrameRef


@dataclass(frozen=True)
class NodeInfo:
    """A data node's definition: ``type`` is channel, lima or node_ref_channel."""

    name: str
    type: str
    dtype: np.dtype | None
    shape: tuple[int, ...]
    unit: str | None = None
    info: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class NodeAdded:
    node: NodeInfo


@dataclass(frozen=True)
class DataBatch:
    """Points ``first_index ..`` of a channel: an array, or a list for ragged points."""

    node: str
    first_index: int
    data: Any


@dataclass(frozen=True)
class FramesSaved:
    """Camera frames saved from ``first_index`` on; ``refs`` one per frame."""

    node: str
    first_index: int
    refs: list[FrameRef]
    file_format: str


@dataclass(frozen=True)
class ChildScans:
    """Scans of a sequence: ``(scan number, key)`` each."""

    first_index: int
    scans: list[tuple[int, str]]


@dataclass(frozen=True)
class SourceError:
    """A malformed entry or missing data; the scan goes on."""

    node: str | None
    message: str
    first_index: int = -1
    missing: tuple[int, int] | None = None


@dataclass(frozen=True)
class ScanEnded:
    """The producer ended the scan; ``published`` are its point counts per node."""

    reason: str | None
    published: Mapping[str, int] | None


SourceEvent = Union[NodeAdded, DataBatch, FramesSaved, ChildScans, SourceError, ScanEnded]


class ScanSource(Protocol):
    """A scan as the writer sees it."""

    key: str
    number: int
    session: str

    @property
    def label(self) -> str: ...

    def info(self) -> dict[str, Any]:
        """The current scan_info."""

    def events(self, position: Mapping[str, int] | None = None,
               stop: threading.Event | None = None,
               timeout: float | None = None) -> Iterator[SourceEvent]:
        """Events from ``position`` (next index per node) on, :class:`ScanEnded` last.

        Raises :class:`TimeoutError` after ``timeout`` seconds without any event.
        """

    @property
    def position(self) -> dict[str, int]:
        """Next point index per node name, after the last event yielded."""

    def skip_reason(self, info: Mapping[str, Any]) -> str | None:
        """Why this writer does not save the scan of ``info`` (None: it does)."""

    def report(self, state: str, reason: str = "", **detail: Any) -> None:
        """Tell the acquisition side how saving goes (READY, RUNNING, SUCCEEDED...)."""

    def save_progress(self, flushed: Mapping[str, int]) -> None:
        """Record the points durably in the file per channel (for resume)."""

    def saved_progress(self) -> dict[str, int]:
        """What :meth:`save_progress` recorded last (empty when nothing)."""

    def release(self) -> None:
        """The scan is written: let go of what reading it needed."""


class RedisScanSource:
    """A scan of the native Redis protocol."""

    def __init__(self, scan: ScanNode):
        self.scan = scan
        self.key = scan.key
        self.number = scan.number
        self.session = scan.session
        self._iterator = scan.iterator
        self._reporter = SavingReporter(scan.store, scan.key)

    def report(self, state: str, reason: str = "", **detail: Any) -> None:
        self._reporter.report(state, reason, **detail)

    def skip_reason(self, info: Mapping[str, Any]) -> str | None:
        if not info.get("save", True) or str(info.get("data_writer", "nexus")) != "nexus":
            return (f"not saved by this writer (save={info.get('save', True)}, "
                    f"data_writer={info.get('data_writer')!r})")
        return None

    def save_progress(self, flushed: Mapping[str, int]) -> None:
        self._reporter.progress(flushed)

    def saved_progress(self) -> dict[str, int]:
        return self._reporter.saved_progress()

    def release(self) -> None:
        return None  # the node reads Redis on demand: it holds nothing

    @classmethod
    def from_key(cls, store: DataStore, key: str) -> "RedisScanSource":
        return cls(store.get_scan_node(key))

    @property
    def label(self) -> str:
        return self.scan.label

    def info(self) -> dict[str, Any]:
        with connection_lost(self.label):
            return self.scan.info

    @property
    def position(self) -> dict[str, int]:
        return dict(self._iterator.position)

    def events(self, position: Mapping[str, int] | None = None,
               stop: threading.Event | None = None,
               timeout: float | None = None) -> Iterator[SourceEvent]:
        walk = self._iterator.walk_events(with_data=True, position=position, timeout=timeout,
                                          block=0.2, stop=stop)
        formats: dict[str, str] = {}
        try:
            for event, node, data in walk:
                if event == EventType.NEW_NODE and node is not self.scan:
                    d = node.definition
                    dtype = np.dtype(d.dtype) if d.dtype else None
                    if d.type == "lima":
                        formats[d.name] = str(d.info.get("file_format", "hdf5"))
                    yield NodeAdded(NodeInfo(d.name, d.type, dtype, d.shape, d.unit, dict(d.info)))
                elif event == EventType.NEW_DATA_IN_CHANNEL:
                    if node.type == "channel":
                        yield DataBatch(node.name, data.first_index, data.data)
                    elif node.type == "lima":
                        refs = [FrameRef(r.file_path, r.data_path, r.frame_index)
                                for r in data.data]
                        yield FramesSaved(node.name, data.first_index, refs, formats[node.name])
                    else:
                        with connection_lost(self.label):  # the child's number: a read
                            children = [(s.number, s.key) for s in data.data]
                        yield ChildScans(data.first_index, children)
                elif event == EventType.ERROR:
                    desc = dict(data.description) if data is not None else {}
                    missing = desc.get("missing")
                    name = getattr(node, "name", None) if node is not self.scan else None
                    yield SourceError(name,
                                      str(desc.get("error", "malformed entry")),
                                      data.first_index if data is not None else -1,
                                      tuple(missing) if missing else None)
                elif event == EventType.END_SCAN:
                    yield ScanEnded(self._iterator.end_reason, self._iterator.published)
        except ScanTimeoutError as e:
            raise TimeoutError(str(e)) from e
