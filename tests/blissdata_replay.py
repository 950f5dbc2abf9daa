"""Replaying the recorded BLISS 2.4 scans with blissdata's producer API.

Exactly as ``fixtures/bliss-2.4/README.md`` says: the scan is created with its
identity and CREATED info, each stream from its plugin's ``make_definition``, the
recorded states are walked with that state's info set before each transition, the
data is sent batch by batch once STARTED, the streams are sealed, then STOPPED (if
recorded) and CLOSED with the final info.  A sequence's children are replayed while
it is STARTED, their new keys in ``info.group`` and in the SUBSCANS events.

``{base}`` in the fixtures (paths) is replaced by a directory of the caller's.
:class:`ScanReplay` also runs a scan step by step (kill a writer mid-scan, trim a
stream before it is read...).
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any, Iterator

import numpy as np

FIXTURES = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "bliss-2.4"
if not FIXTURES.is_dir():  # the worktrees and the main checkout live side by side
    FIXTURES = Path("/work/shared/fixtures/bliss-2.4")

#: Every fixture file, by name without ``.json``.
FIXTURE_NAMES = sorted(p.stem for p in FIXTURES.glob("*.json"))
STATES = ("CREATED", "PREPARED", "STARTED", "STOPPED", "CLOSED")
_CONSTANTS = {"NaN": float("nan"), "Infinity": float("inf"), "-Infinity": float("-inf")}


def load_fixture(name: str) -> dict[str, Any]:
    """The fixture ``name`` (e.g. ``"ascan"``) as recorded."""
    with open(FIXTURES / f"{name}.json") as f:
        return json.load(f)


def with_base(obj: Any, base: str | Path) -> Any:
    """``obj`` with ``{base}`` replaced by ``base`` in every string and key."""
    if isinstance(obj, str):
        return obj.replace("{base}", str(base))
    if isinstance(obj, dict):
        return {with_base(k, base): with_base(v, base) for k, v in obj.items()}
    if isinstance(obj, list):
        return [with_base(v, base) for v in obj]
    return obj


def _numbers(obj: Any) -> Any:
    """Non-finite floats recorded as strings, back to floats."""
    if isinstance(obj, str) and obj in _CONSTANTS:
        return _CONSTANTS[obj]
    if isinstance(obj, list):
        return [_numbers(v) for v in obj]
    return obj


def stream_points(stream: dict[str, Any]) -> Any:
    """All points of a recorded stream: an array ``(n, *shape)`` (a list of arrays for
    variable-length points), or the list of JSON events."""
    if stream["encoding"]["type"] != "numeric":
        return list(stream["data"])
    dtype = np.dtype(stream["encoding"]["dtype_str"])
    if -1 in stream["encoding"]["shape"]:
        return [np.asarray(_numbers(p), dtype=dtype) for p in stream["data"]]
    shape = tuple(stream["encoding"]["shape"])
    return np.asarray(_numbers(stream["data"]), dtype=dtype).reshape((-1,) + shape)


class ScanReplay:
    """One recorded scan replayed into blissdata's ``store`` (a ``DataStore``).

    ``group``: the key of the sequence this scan is a child of (replaces the
    recorded ``info.group``); ``h5maps``: put the fixture's ``h5maps_standin`` in
    ``info["h5maps"]`` (PREPARED's until STOPPED, CLOSED's at CLOSED).
    """

    def __init__(self, store: Any, scan: dict[str, Any], base: str | Path,
                 group: str | None = None, h5maps: bool = False):
        self.store = store
        self.fixture = with_base(scan, base)
        self.group = group
        self.h5maps = h5maps
        self.scan: Any = None
        self.streams: dict[str, Any] = {}
        self._sent: dict[str, int] = {}  # batches sent per stream
        self.states = [s["state"] for s in self.fixture["states"]]

    @property
    def key(self) -> str:
        return self.scan.key

    @property
    def number(self) -> int:
        return int(self.fixture["identity"]["number"])

    def info_at(self, state: str) -> dict[str, Any]:
        """The scan info at ``state``: the final info minus ``unset``, plus ``set``."""
        info = copy.deepcopy(self.fixture["info"])
        change = self.fixture.get("info_changes", {}).get(state)
        if change and state != "CLOSED":
            for key in change.get("unset", ()):
                info.pop(key, None)
            info.update(copy.deepcopy(change.get("set", {})))
        if self.group is not None and "group" in info:
            info["group"] = self.group
        maps = self.fixture.get("h5maps_standin")
        if self.h5maps and maps and state != "CREATED":
            info["h5maps"] = copy.deepcopy(maps["CLOSED" if state == "CLOSED" else "PREPARED"])
        return info

    def create(self) -> "ScanReplay":
        """The scan (CREATED) and its streams."""
        from blissdata.streams.default import Stream
        from blissdata.streams.hdf5_fallback import Hdf5BackedStream
        from blissdata.streams.scan_sequence import ScanStream

        self.scan = self.store.create_scan(self.fixture["identity"],
                                           info=self.info_at("CREATED"))
        for s in self.fixture["streams"]:
            info = s["info"]
            if s["plugin"] == "hdf5_fallback":
                definition = Hdf5BackedStream.make_definition(
                    s["name"], info["file_path"], info["data_path"], info["dtype"],
                    tuple(info["shape"]))
            elif s["plugin"] == "scan_sequence":
                definition = ScanStream.make_definition(s["name"])
            elif s["plugin"] is None:
                definition = Stream.make_definition(s["name"], info["dtype"], tuple(info["shape"]))
            else:
                raise ValueError(f"stream {s['name']}: plugin {s['plugin']!r} not replayed")
            self.streams[s["name"]] = self.scan.create_stream(definition)
            self._sent[s["name"]] = 0
        return self

    def to(self, state: str) -> None:
        """Set ``state``'s info and make the transition (sealing before STOPPED)."""
        self.scan.info = self.info_at(state)
        if state == "PREPARED":
            self.scan.prepare()
        elif state == "STARTED":
            self.scan.start()
        elif state == "STOPPED":
            self.scan.stop()
        elif state == "CLOSED":
            self.scan.close()
        else:
            raise ValueError(state)

    def batches(self, name: str) -> Iterator[Any]:
        """The recorded batches of stream ``name`` still to send, in order."""
        s = next(s for s in self.fixture["streams"] if s["name"] == name)
        points = stream_points(s)
        start = sum(s["batches"][:self._sent[name]])
        for n in s["batches"][self._sent[name]:]:
            yield points[start:start + n]
            start += n

    def send(self, name: str, count: int | None = None) -> int:
        """Send the next ``count`` batches (all by default) of stream ``name``."""
        s = next(s for s in self.fixture["streams"] if s["name"] == name)
        sent = 0
        for batch in self.batches(name):
            if count is not None and sent >= count:
                break
            if s["encoding"]["type"] == "numeric":
                self.streams[name].send(np.asarray(batch, dtype=s["info"]["dtype"]))
            else:
                for event in batch:
                    self.streams[name].send(event)
            self._sent[name] += 1
            sent += 1
        return sent

    def step(self, skip: tuple[str, ...] = ("SUBSCANS",)) -> bool:
        """Send one more batch of every stream (as points arrive); False when none left."""
        sent = 0
        for name in self.streams:
            if name not in skip:
                sent += self.send(name, 1)
        return sent > 0

    def started(self, steps: int) -> "ScanReplay":
        """PREPARED, STARTED, then ``steps`` batches of every stream (a scan under way)."""
        self.to("PREPARED")
        self.to("STARTED")
        for _ in range(steps):
            self.step()
        return self

    def seal(self) -> None:
        for stream in self.streams.values():
            if not stream.is_sealed():
                stream.seal()

    def finish(self) -> None:
        """Everything left: data, seals, STOPPED (if recorded), CLOSED."""
        while self.step():
            pass
        for name in self.streams:  # SUBSCANS of a sequence replayed without children
            self.send(name)
        self.seal()
        for state in self.states[self.states.index("STARTED") + 1:]:
            self.to(state)

    def run(self) -> "ScanReplay":
        """The whole scan (a sequence with its children)."""
        self.create().started(0)
        children = self.fixture.get("children") or []
        for i, child in enumerate(children):
            replay = ScanReplay(self.store, child, "", group=self.key, h5maps=self.h5maps)
            replay.fixture = child  # {base} already replaced with the parent
            replay.run()
            self.streams["SUBSCANS"].send({"key": replay.key, "scan_number": replay.number})
            self._sent["SUBSCANS"] = i + 1
            self.step()
            self.children.append(replay)
        self.finish()
        return self

    @property
    def children(self) -> list["ScanReplay"]:
        if not hasattr(self, "_children"):
            self._children: list[ScanReplay] = []
        return self._children


def replay(url: str, name: str, base: str | Path, h5maps: bool = False) -> ScanReplay:
    """Replay fixture ``name`` into the blissdata server at ``url`` (initialised)."""
    from blissdata.redis_engine.store import DataStore

    return ScanReplay(DataStore(url), load_fixture(name), base, h5maps=h5maps).run()
