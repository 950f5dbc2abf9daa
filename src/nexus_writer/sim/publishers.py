"""How a simulated session publishes: this project's data API, or blissdata as BLISS 2.4.

The scans, chains and devices are the same for both protocols; they talk to a
:class:`SessionPublisher`, which makes one scan handle per scan.  A handle has the
methods the scans use (those of :class:`nexus_writer.data.ScanPublisher`):
``create_channel``, ``create_lima_channel``, ``start``, ``update_info``, ``end``,
``add_child``, plus ``key`` and ``info``.

- :class:`NativePublisher`: this project's protocol (``nexus_writer.data``).
- :class:`BlissdataPublisher`: blissdata 2.4's producer API, as BLISS 2.4 uses it
  (``DataStore.create_scan``, ``Scan.create_stream`` with the ``hdf5_fallback``,
  ``lima`` and ``scan_sequence`` plugins, ``prepare``/``start``/``stop``/``close``):
  the identity, info and stream definitions come from :mod:`.bliss_info`.
"""

from __future__ import annotations

import copy
import re
import threading
from typing import TYPE_CHECKING, Any, Mapping, Protocol, Sequence

import numpy as np

from .bliss_info import bliss_layout, end_update

if TYPE_CHECKING:
    from ..data import DataStore
    from .scans import Scan

PROTOCOLS = ("native", "blissdata")


class ScanHandle(Protocol):
    """What a simulated scan needs from its publication (see the module docstring)."""

    key: str
    info: dict[str, Any]

    def create_channel(self, name: str, dtype: Any, shape: Sequence[int] = (),
                       unit: str | None = None, **info: Any) -> Any: ...

    def create_lima_channel(self, name: str, dtype: Any, shape: Sequence[int],
                            file_template: str, data_path: str, file_format: str,
                            frames_per_file: int, file_offset: int = 0,
                            **info: Any) -> Any: ...

    def start(self) -> None: ...

    def update_info(self, update: Mapping[str, Any]) -> None: ...

    def end(self, reason: str = "SUCCESS") -> None: ...

    def add_child(self, child: Any) -> None: ...

    def wait_saved(self, timeout: float = 30.0) -> Any: ...


class SessionPublisher(Protocol):
    """Makes the scan handles of a session for one protocol."""

    protocol: str
    store: Any

    def create_scan(self, scan: "Scan", parent: Any | None) -> ScanHandle: ...

    def close(self) -> None: ...


class NativePublisher:
    """This project's protocol, through :class:`nexus_writer.data.DataStore`."""

    protocol = "native"

    def __init__(self, store: "DataStore", own: bool = False):
        self.store = store
        self._own = own

    def create_scan(self, scan: "Scan", parent: Any | None) -> ScanHandle:
        return self.store.create_scan(scan.session.name, scan.scan_info,
                                      node_type=scan.node_type, parent=parent)

    def close(self) -> None:
        if self._own:
            self.store.close()


class BlissdataPublisher:
    """blissdata 2.4's producer API, as BLISS 2.4 publishes.

    ``store`` is a ``blissdata.redis_engine.store.DataStore`` on a prepared Redis
    (``DataStore(url, init_db=True)`` prepares an empty one, as BLISS's Beacon does).
    """

    protocol = "blissdata"

    def __init__(self, store: Any):
        self.store = store

    @classmethod
    def from_url(cls, url: str) -> "BlissdataPublisher":
        """A publisher on the blissdata Redis at ``url``; raises RuntimeError naming
        the fix when that Redis is not prepared for blissdata."""
        from blissdata.redis_engine.store import DataStore as BlissDataStore

        try:
            return cls(BlissDataStore(url))
        except RuntimeError as e:
            raise RuntimeError(f"{url} is not a blissdata Redis: {e} (prepare an empty Redis "
                               "with blissdata's DataStore(url, init_db=True))") from e

    def create_scan(self, scan: "Scan", parent: Any | None) -> "BlissdataScanPublisher":
        return BlissdataScanPublisher(self.store, scan)

    def close(self) -> None:
        """Nothing to do: blissdata's DataStore closes its connections when collected."""


def prepare_blissdata(url: str) -> None:
    """Prepare an empty Redis for blissdata (its search indexes and protocol key), as
    BLISS's Beacon does; blissdata refuses a Redis that is not empty."""
    from blissdata.redis_engine.store import DataStore as BlissDataStore

    BlissDataStore(url, init_db=True)


def _percent_template(template: str) -> str:
    """The simulated camera's ``str.format`` file template (``{file_index:04d}``) as
    the ``%`` template blissdata's Lima plugin expects (``%04d``)."""
    escaped = template.replace("%", "%%")
    out, n = re.subn(r"\{file_index(?::([^}]*))?\}",
                     lambda m: "%" + (m.group(1) or "d"), escaped)
    if n != 1:
        raise ValueError(f"camera file template {template!r} needs one {{file_index}} field")
    return out


class BlissChannel:
    """A numeric blissdata stream: ``send`` one point or a batch, cast to its dtype
    (blissdata refuses any other dtype)."""

    def __init__(self, stream: Any, dtype: np.dtype):
        self.stream = stream
        self.dtype = dtype

    @property
    def name(self) -> str:
        return self.stream.name

    def send(self, data: Any) -> None:
        self.stream.send(np.asarray(data, dtype=self.dtype))


class BlissLimaChannel:
    """A blissdata Lima stream: ``send(last_index_saved=n)`` once frame ``n`` is on disk."""

    def __init__(self, stream: Any):
        self.stream = stream

    @property
    def name(self) -> str:
        return self.stream.name

    def send(self, last_index_saved: int) -> None:
        n = int(last_index_saved)
        self.stream.send({"last_index": n, "last_index_saved": n})


class BlissdataScanPublisher:
    """One scan published with blissdata's producer API, states as BLISS 2.4:
    CREATED at construction, PREPARED and STARTED at :meth:`start`, STOPPED (only
    after a successful scan) and CLOSED at :meth:`end`.

    The info is frozen from PREPARED to STOPPED (blissdata asserts it): updates
    made meanwhile (``end_time``, ``end_reason``, end positioners, comments) are
    kept and published at CLOSED, as BLISS does.
    """

    def __init__(self, store: Any, scan: "Scan"):
        from blissdata.redis_engine.scan import ScanState as BlissState

        self._states = BlissState
        self._layout = bliss_layout(scan)
        self._scan = store.create_scan(self._layout.identity, info=self._layout.info_created)
        self.key: str = self._scan.key
        self.number: int = int(scan.scan_number)
        self.info: dict[str, Any] = copy.deepcopy(self._layout.info)
        self._filename = scan.filename
        self._lock = threading.Lock()
        self._frames = {tm.name: tm.npoints for tm in scan.masters}
        self._subscans: Any = None
        if scan.node_type == "scan_group":
            from blissdata.streams.scan_sequence import ScanStream

            self._subscans = self._scan.create_stream(ScanStream.make_definition("SUBSCANS"))

    @property
    def state(self) -> str:
        """The blissdata state name (CREATED ... CLOSED)."""
        return self._scan.state.name

    @property
    def scan(self) -> Any:
        """The blissdata ``Scan`` (write side)."""
        return self._scan

    def create_channel(self, name: str, dtype: Any, shape: Sequence[int] = (),
                       unit: str | None = None, **info: Any) -> BlissChannel:
        """A numeric stream: ``hdf5_fallback`` at the channel's data path when the
        scan is saved, plain otherwise (BLISS's ``unit`` etc. are in scan_info)."""
        from blissdata.streams.default import Stream
        from blissdata.streams.hdf5_fallback import Hdf5BackedStream

        dt = np.dtype(dtype)
        point = tuple(int(n) for n in shape)
        data_path = self._layout.data_paths.get(name)
        if data_path is not None:
            definition = Hdf5BackedStream.make_definition(name, self._filename, data_path, dt,
                                                          point)
        else:
            definition = Stream.make_definition(name, dt, point)
        return BlissChannel(self._scan.create_stream(definition), dt)

    def create_lima_channel(self, name: str, dtype: Any, shape: Sequence[int],
                            file_template: str, data_path: str, file_format: str,
                            frames_per_file: int, file_offset: int = 0,
                            **info: Any) -> BlissLimaChannel:
        """A Lima stream (blissdata's ``lima`` plugin, protocol 1) whose frames are in
        the camera's files; ``buffer_max_number`` 0: no frame is read from a server."""
        from blissdata.streams.lima import LimaStream

        camera = name.split(":", 1)[0]
        frames = int(self._frames.get(str(info.get("top_master", "")), 0))
        saving = {"file_path": _percent_template(file_template), "data_path": data_path,
                  "file_format": file_format, "file_offset": int(file_offset),
                  "frames_per_file": int(frames_per_file)}
        definition = LimaStream.make_definition(
            name, dtype, tuple(int(n) for n in shape), server_url=f"id00/limaccds/{camera}",
            buffer_max_number=0, frames_per_acquisition=frames, acquisition_offset=0,
            saving=saving)
        return BlissLimaChannel(self._scan.create_stream(definition))

    def start(self) -> None:
        """PREPARED with the complete info, then STARTED."""
        with self._lock:
            self._scan.info = copy.deepcopy(self.info)
            self._scan.prepare()
            self._scan.start()

    def update_info(self, update: Mapping[str, Any]) -> None:
        """Keep an update for CLOSED (see the class docstring); before PREPARED it
        applies at once."""
        with self._lock:
            end_update(self.info, dict(update))
            if self._scan.state == self._states.CREATED:
                self._scan.info = copy.deepcopy(self.info)

    def end(self, reason: str = "SUCCESS") -> None:
        """Seal every stream; STOPPED after a successful scan; the final info
        (``end_reason`` = ``reason``) and CLOSED."""
        with self._lock:
            if self._scan.state == self._states.CLOSED:
                return
            self.info["end_reason"] = reason
            if reason == "SUCCESS" and self._scan.state == self._states.STARTED:
                self._scan.stop()
            self._scan.info = copy.deepcopy(self.info)
            self._scan.close()

    def add_child(self, child: Any) -> None:
        """Announce a child scan in the ``SUBSCANS`` stream (sequences only)."""
        if self._subscans is None:
            raise RuntimeError(f"scan {self.number} is not a sequence: it has no children")
        self._subscans.send({"key": child.key, "scan_number": int(child.number)})

    def wait_saved(self, timeout: float = 30.0) -> Any:
        raise RuntimeError(f"scan {self.number}: blissdata has no saving report; ask the "
                           "writer (nexus-writer status) instead")
