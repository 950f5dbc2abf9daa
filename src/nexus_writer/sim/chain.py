"""Acquisition chains: top masters and what runs below them.

A scan has one or more *top masters*.  Each is a timer (``ct``, ``loopscan``,
``timescan``) or a set of motors stepping through positions (``ascan``, ``amesh``,
...), with a timer and counters below it.  :class:`TopMaster` describes one (plain
data, so scan commands and users can build chains); :class:`MasterRun` runs it:
creates its data nodes, steps through the points and publishes them.

Channel names follow BLISS: ``axis:roby``, ``timer:elapsed_time``, ``timer:epoch``,
``{controller}:{counter}``.  The k-th top master (k >= 1) of a scan is named
``timer{k+1}`` / ``axis{k+1}`` and so is its timer, so that channel names stay
unique in the scan.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence

import numpy as np

from .camera import SimCamera
from .devices import Axis, ChannelSpec, Counter, PointContext, device_rng

#: Shortest time per point of an unbounded scan (``npoints == 0``), seconds, so that
#: a ``timescan`` at ``time_scale=0`` does not flood Redis until it is aborted.
MIN_UNBOUNDED_PERIOD = 0.001

Device = Counter | SimCamera


@dataclass
class TopMaster:
    """One top master of a scan: ``npoints`` points (0 = until aborted) of ``count_time``.

    ``motors`` step through ``positions`` (shape ``(npoints, len(motors))``);
    without motors it is a timer.  ``axis_ids`` gives each motor's scan dimension
    (0 = fast axis) and ``axis_points`` its number of positions.  ``name`` is set
    by the scan ("timer", "axis", "timer2", ...).
    """

    npoints: int
    count_time: float
    counters: Sequence[Any] = ()  # devices (names are resolved by the scan commands)
    motors: Sequence[Axis] = ()
    positions: np.ndarray | None = None
    sleep_time: float = 0.0
    axis_ids: Sequence[int] = ()
    axis_points: Sequence[int] = ()
    name: str = ""
    timer_name: str = ""
    ranges: dict[str, tuple[float, float]] = field(default_factory=dict)

    @classmethod
    def timer(cls, npoints: int, count_time: float, *counters: Device | str,
              sleep_time: float = 0.0) -> "TopMaster":
        """A timer top master (``loopscan``-like)."""
        return cls(int(npoints), float(count_time), list(counters), sleep_time=float(sleep_time))

    @classmethod
    def line(cls, ranges: Sequence[tuple[Axis, float, float]], intervals: int, count_time: float,
             *counters: Device | str) -> "TopMaster":
        """Motors moving together from start to stop in ``intervals`` steps (``ascan``-like)."""
        n = int(intervals) + 1
        if intervals < 1:
            raise ValueError(f"a scan needs at least 1 interval, got {intervals}")
        positions = np.stack([np.linspace(s, e, n) for _, s, e in ranges], axis=1)
        return cls(n, float(count_time), list(counters), [m for m, _, _ in ranges], positions,
                   axis_ids=[0] * len(ranges), axis_points=[n] * len(ranges),
                   ranges={m.name: (float(s), float(e)) for m, s, e in ranges})

    @classmethod
    def mesh(cls, fast: tuple[Axis, float, float, int], slow: tuple[Axis, float, float, int],
             count_time: float, *counters: Device | str, backnforth: bool = False) -> "TopMaster":
        """A grid, ``fast`` motor varying first (``amesh``-like); sizes are intervals."""
        (m1, s1, e1, n1), (m2, s2, e2, n2) = fast, slow
        if n1 < 1 or n2 < 1:
            raise ValueError(f"a mesh needs at least 1 interval per axis, got {n1} and {n2}")
        x = np.linspace(s1, e1, n1 + 1)
        y = np.linspace(s2, e2, n2 + 1)
        rows = [x[::-1] if backnforth and j % 2 else x for j in range(n2 + 1)]
        positions = np.stack([np.concatenate(rows), np.repeat(y, n1 + 1)], axis=1)
        return cls((n1 + 1) * (n2 + 1), float(count_time), list(counters), [m1, m2], positions,
                   axis_ids=[0, 1], axis_points=[n1 + 1, n2 + 1],
                   ranges={m1.name: (float(s1), float(e1)), m2.name: (float(s2), float(e2))})

    @property
    def kind(self) -> str:
        return "axis" if self.motors else "timer"

    def timer_channels(self) -> list[ChannelSpec]:
        t = self.timer_name or "timer"
        return [ChannelSpec(f"{t}:elapsed_time", "elapsed_time", "float64", (), "s"),
                ChannelSpec(f"{t}:epoch", "epoch", "float64", (), "s")]

    def counter_channels(self) -> list[tuple[Device, ChannelSpec]]:
        return [(c, spec) for c in self.counters for spec in c.channels()]

    def all_channels(self) -> list[tuple[str, ChannelSpec]]:
        """(device name, channel) of every node of this top master, in creation order."""
        out = [(m.name, m.channel_spec()) for m in self.motors]
        out += [(self.timer_name, spec) for spec in self.timer_channels()]
        out += [(c.name, spec) for c, spec in self.counter_channels()]
        return out

    def chain_info(self) -> dict[str, Any]:
        """This top master's entry of ``scan_info["acquisition_chain"]``."""
        master = [m.fullname for m in self.motors] or [s.name for s in self.timer_channels()]
        below = [] if not self.motors else self.timer_channels()
        below = below + [spec for _, spec in self.counter_channels()]
        return {
            "master": {"scalars": master, "spectra": [], "images": []},
            "scalars": [s.name for s in below if s.kind == "scalars"],
            "spectra": [s.name for s in below if s.kind == "spectra"],
            "images": [s.name for s in below if s.kind == "images"],
            "devices": [m.name for m in self.motors] + [self.timer_name]
                       + [c.name for c in self.counters],
        }

    def node_info(self, device: str, spec: ChannelSpec) -> dict[str, Any]:
        """The info attached to a data node (the writer relies on these keys)."""
        info: dict[str, Any] = {"top_master": self.name, "device": device,
                                "display_name": spec.display_name, "dim": spec.dim}
        for i, m in enumerate(self.motors):
            if m.name == device:
                start, stop = self.ranges.get(m.name, (m.position, m.position))
                axis_id = int(self.axis_ids[i]) if i < len(self.axis_ids) else 0
                points = int(self.axis_points[i]) if i < len(self.axis_points) else self.npoints
                info.update(axis_kind="positioner", start=start, stop=stop, axis_id=axis_id,
                            axis_points=points)
        return info


def name_masters(masters: Sequence[TopMaster]) -> None:
    """Give each top master and its timer a name unique in the scan.

    Raises ValueError when two top masters would publish a channel of the same name.
    """
    seen: dict[str, str] = {}
    for k, tm in enumerate(masters):
        suffix = "" if k == 0 else str(k + 1)
        tm.name = tm.kind + suffix
        tm.timer_name = "timer" + suffix
        for _, spec in tm.all_channels():
            if spec.name in seen:
                raise ValueError(f"channel {spec.name!r} would be published by top masters "
                                 f"{seen[spec.name]!r} and {tm.name!r}; use distinct devices")
            seen[spec.name] = tm.name


class _CounterAcquisition:
    """A counter's part of one top master: reads it and sends its channels."""

    def __init__(self, counter: Counter, rng: np.random.Generator):
        self.counter = counter
        self.rng = rng
        self.channels: dict[str, Any] = {}

    def prepare(self, scan: Any, info_of: Any) -> None:
        for spec in self.counter.channels():
            self.channels[spec.name] = scan.create_channel(
                spec.name, spec.dtype, spec.shape, spec.unit, **info_of(spec))

    def read(self, index: int, ctx: PointContext) -> dict[str, Any]:
        return self.counter.read(ctx, self.rng)

    def send(self, values: dict[str, Any]) -> None:
        for name, value in values.items():
            self.channels[name].send(value)

    def finish(self) -> None:
        pass


class MasterRun:
    """Runs one top master of a scan: nodes, point loop, end of acquisition."""

    def __init__(self, tm: TopMaster, index: int, seed: int, images_path: str,
                 time_scale: float, abort: threading.Event):
        self.tm = tm
        self.index = index
        self.time_scale = float(time_scale)
        self.abort = abort
        self.points_done = 0
        self._channels: dict[str, Any] = {}
        self._acqs: list[Any] = []
        for dev in tm.counters:
            if isinstance(dev, SimCamera):
                self._acqs.append(dev.acquisition(images_path, seed))
            else:
                self._acqs.append(_CounterAcquisition(dev, device_rng(seed, index, dev.name)))

    def prepare(self, scan: Any) -> None:
        """Create this top master's data nodes in ``scan`` (a ``ScanPublisher``)."""
        tm = self.tm
        for m in tm.motors:
            spec = m.channel_spec()
            self._channels[spec.name] = scan.create_channel(
                spec.name, spec.dtype, spec.shape, spec.unit, **tm.node_info(m.name, spec))
        for spec in tm.timer_channels():
            self._channels[spec.name] = scan.create_channel(
                spec.name, spec.dtype, spec.shape, spec.unit, **tm.node_info(tm.timer_name, spec))
        for dev, acq in zip(tm.counters, self._acqs, strict=True):
            if isinstance(dev, SimCamera):
                acq.prepare(scan, **tm.node_info(dev.name, dev.channels()[0]))
            else:
                acq.prepare(scan, lambda spec, d=dev: tm.node_info(d.name, spec))

    def _wait(self, seconds: float) -> bool:
        """Sleep unless aborted; True when aborted."""
        if seconds > 0:
            return self.abort.wait(seconds)
        return self.abort.is_set()

    def run(self) -> None:
        """Step through the points until done or aborted; flush the camera files."""
        tm = self.tm
        t_elapsed, t_epoch = (s.name for s in tm.timer_channels())
        period = tm.count_time * self.time_scale
        if tm.npoints == 0:
            period = max(period, MIN_UNBOUNDED_PERIOD)
        t0 = time.monotonic()
        try:
            i = 0
            while tm.npoints == 0 or i < tm.npoints:
                if self.abort.is_set():
                    break
                positions: dict[str, float] = {}
                for j, m in enumerate(tm.motors):
                    m.move(float(tm.positions[i, j]))  # type: ignore[index]
                    positions[m.name] = m.position
                # An abort while counting drops the point: every channel keeps the
                # same number of points.
                if self._wait(period):
                    break
                ctx = PointContext(i, tm.npoints, tm.count_time, positions, tm.ranges,
                                   tuple(m.name for m in tm.motors))
                # Read every device before sending anything: a device failing leaves
                # every channel with the same number of points.
                values = [acq.read(i, ctx) for acq in self._acqs]
                for m in tm.motors:
                    self._channels[m.fullname].send(positions[m.name])
                self._channels[t_elapsed].send(time.monotonic() - t0)
                self._channels[t_epoch].send(time.time())
                for acq, value in zip(self._acqs, values, strict=True):
                    acq.send(value)
                i += 1
                self.points_done = i
                if tm.sleep_time and self._wait(tm.sleep_time * self.time_scale):
                    break
        finally:
            for acq in self._acqs:
                acq.finish()


def resolve_devices(items: Iterable[Any], lookup: Any) -> list[Any]:
    """Devices from objects or names (``lookup(name)``), duplicates dropped, order kept."""
    out: list[Any] = []
    for item in items:
        dev = lookup(item) if isinstance(item, str) else item
        if not any(dev is d for d in out):
            out.append(dev)
    return out
