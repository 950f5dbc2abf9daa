"""Where each channel of a scan goes in the file: entries, instrument groups,
measurement names and plots.  Pure logic on scan_info and node definitions."""

from __future__ import annotations

import dataclasses
import os
import re
from dataclasses import dataclass, field
from typing import Any, Mapping

from ..nexus import h5map
from ..nexus.datasets import Grid
from ..nexus.groups import entry_name, nexus_name, unique_name
from ..nexus.metadata import instrument_names
from ..nexus.plots import PlotSpec
from .options import WriterOptions
from .source import NodeInfo

_DET = re.compile(r"_(det\d+)$")


@dataclass
class ChannelPlan:
    """One channel's place: ``/{entry}/instrument/{group}[/{subgroup}]/{field}``."""

    node: NodeInfo
    entry: str
    kind: str  # positioner, detector or camera
    group: str
    field: str
    subgroup: str | None
    measurement: str
    nx_class: str
    motor: bool = False
    #: Where the producer declared the data (blissdata ``hdf5_fallback`` ``data_path``,
    #: relative to the file's root): the channel's data goes exactly there.
    fixed: str | None = None
    #: Attributes the producer's layout (h5maps) gives the dataset.
    attrs: dict[str, Any] = dataclasses.field(default_factory=dict)  # ("field" is taken)

    @property
    def path(self) -> str:
        if self.fixed is not None:
            return "/" + self.fixed
        parts = [self.entry, "instrument", self.group] + ([self.subgroup] if self.subgroup else [])
        return "/" + "/".join(parts + [self.field])

    @property
    def ndim(self) -> int:
        return len(self.node.shape)


@dataclass
class EntryPlan:
    name: str
    top_master: str
    masters: set[str] = field(default_factory=set)
    channels: list[ChannelPlan] = field(default_factory=list)
    # (kind, device or channel) -> (group name, NX_class)
    groups: dict[tuple[str, str], tuple[str, str]] = field(default_factory=dict)
    group_names: set[str] = field(default_factory=set)
    #: Channel groups not named after their channel or device: name -> that name.
    renamed: dict[str, str] = field(default_factory=dict)
    measurement_names: set[str] = field(default_factory=set)
    grid: Grid | None = None
    npoints: int = 0


def _plotselect(info: Mapping[str, Any]) -> list[str]:
    for key in ("_display_extra", "display_extra"):
        extra = info.get(key)
        if isinstance(extra, Mapping):
            for sub in ("plotselect", "displayed_channels"):
                if extra.get(sub):
                    return [str(c) for c in extra[sub]]
    plots = info.get("plotselect")
    return [str(c) for c in plots] if isinstance(plots, (list, tuple)) else []


class ScanPlan:
    """Built from scan_info at the start; channels added as their nodes appear."""

    def __init__(self, scan_nb: int, info: Mapping[str, Any], options: WriterOptions):
        self.info = info
        self.options = options
        self.channels_info: Mapping[str, Any] = info.get("channels") or {}
        self.devices: Mapping[str, Any] = info.get("devices") or {}
        chain = info.get("acquisition_chain") or {}
        top_masters = list(chain) or ["top_master"]
        npoints = int(info.get("npoints") or 0)
        grid = None
        if int(info.get("data_dim") or 1) == 2 and info.get("npoints1") and info.get("npoints2"):
            grid = Grid(slow=int(info["npoints2"]), fast=int(info["npoints1"]))
        #: Names of NXinstrument that are the layout's (positioner snapshots, metadata).
        self.reserved = instrument_names(info.get("instrument"))
        self.entries: dict[str, EntryPlan] = {}
        for k, tm in enumerate(top_masters, 1):
            plan = EntryPlan(entry_name(scan_nb, k), tm)
            sub = chain.get(tm) or {}
            master = sub.get("master") or {}
            for key in ("scalars", "spectra", "images"):
                plan.masters.update(str(c) for c in master.get(key) or ())
            plan.npoints = int(sub.get("npoints") or npoints)
            plan.grid = grid if k == 1 else None
            # channel groups never take a name of the layout (renamed name_2...)
            plan.group_names.update(self.reserved)
            self.entries[tm] = plan
        self._chain = chain
        self.plotselect = _plotselect(info)
        self.by_name: dict[str, ChannelPlan] = {}
        #: The finished layout the producer gave for this file (BLISS ``h5maps``):
        #: materialised as it is, each stream's data where it says.
        self.h5map: Any = None
        self.h5map_streams: dict[str, tuple[str, dict[str, Any]]] = {}
        #: Names the layout gives in each entry (the writer adds nothing of those).
        self.h5map_names: dict[str, set[str]] = {}
        filename = info.get("filename")
        if info.get("h5maps") and filename:
            self.h5map = h5map.for_file(info["h5maps"], str(filename))
        if self.h5map is not None:
            self.h5map_streams = h5map.stream_paths(self.h5map)
            for name, item in getattr(self.h5map, "children", {}).items():
                self.h5map_names[name] = set(getattr(item, "children", {}))

    # -- classification ------------------------------------------------------------
    def entry_for(self, node: NodeInfo) -> EntryPlan:
        tm = node.info.get("top_master")
        if tm in self.entries:
            return self.entries[tm]
        for name, sub in self._chain.items():
            lists = [sub.get(k) or () for k in ("scalars", "spectra", "images")]
            lists += [(sub.get("master") or {}).get(k) or () for k in ("scalars", "spectra",
                                                                       "images")]
            if any(node.name in lst for lst in lists):
                return self.entries[name]
        return next(iter(self.entries.values()))

    @staticmethod
    def device_of(node: NodeInfo) -> str:
        return str(node.info.get("device") or (node.name.split(":")[0] if ":" in node.name
                                                else node.name))

    @staticmethod
    def display_of(node: NodeInfo) -> str:
        return str(node.info.get("display_name") or node.name.split(":")[-1])

    def _device_type(self, device: str) -> str:
        d = self.devices.get(device)
        return str(d.get("type", "")) if isinstance(d, Mapping) else ""

    def _is_motor(self, node: NodeInfo) -> bool:
        return (node.info.get("axis_kind") == "positioner"
                or self._device_type(self.device_of(node)) == "axis")

    def _is_timer(self, chan: ChannelPlan) -> bool:
        return (chan.node.info.get("device_type") == "timer"
                or self._device_type(self.device_of(chan.node)) == "timer")

    def declared_path(self, node: NodeInfo) -> str | None:
        """The path the producer declared for the node's data in this scan's file
        (blissdata ``hdf5_fallback``: its readers read trimmed points from there)."""
        info = node.info
        if info.get("plugin") != "hdf5_fallback" or not info.get("data_path"):
            return None
        filename = self.info.get("filename")
        file_path = info.get("file_path")
        if file_path and filename and (os.path.normpath(str(file_path))
                                       != os.path.normpath(str(filename))):
            return None  # another file: not this writer's to honour
        path = str(info["data_path"]).strip("/")
        return path if path and "/" in path else None

    def _device_has_spectra(self, device: str) -> bool:
        for ch in self.channels_info.values():
            if (isinstance(ch, Mapping) and ch.get("device") == device
                    and int(ch.get("dim") or 0) > 0):
                return True
        return False

    def add(self, node: NodeInfo) -> ChannelPlan:
        """Place a new channel or camera node."""
        entry = self.entry_for(node)
        mapped = self.h5map_streams.get(node.name)
        fixed = mapped[0] if mapped else self.declared_path(node)
        if fixed is not None:
            top, _, rest = fixed.partition("/")
            entry = next((e for e in self.entries.values() if e.name == top), entry)
            if rest.startswith("instrument/"):
                entry.group_names.add(rest.split("/")[1])
        device, display = self.device_of(node), self.display_of(node)
        subgroup = None
        motor = False
        if node.type == "json":
            # events (JSON documents) are no detector data: a plain collection
            kind, nx_class, fld = "json", "NXcollection", "data"
            key, base, meas = ("json", node.name), display, display
        elif node.type == "lima":
            # references kept as strings are no detector data: a plain collection
            strings = self.options.camera_mode(str(node.info.get("file_format"))) == "strings"
            kind, nx_class, fld = "camera", "NXcollection" if strings else "NXdetector", "data"
            key, base, meas = ("det", device), device, f"{device}_{display}"
        elif len(node.shape) == 0 and (node.name in entry.masters or self._is_motor(node)):
            kind, nx_class, fld = "positioner", "NXpositioner", "value"
            motor = self._is_motor(node)
            if self.options.multivalue_positioners and motor:
                key, base = ("pos", device), device
            else:
                key, base = ("pos", node.name), display
            meas = display
        else:
            kind, nx_class, fld = "detector", "NXdetector", "data"
            m = _DET.search(display)
            if self._device_has_spectra(device) or len(node.shape) > 0:
                base = device + (f"_{m.group(1)}" if m else "")
                key = ("det", base)
                meas = display if display.startswith(device) else f"{device}_{display}"
            else:
                key, base, meas = ("det", node.name), display, display
                if node.dtype is not None and node.dtype.kind == "b":
                    # NXdetector data is NX_NUMBER: a flag (shutter open...) is no detector
                    nx_class = "NXcollection"
        if key not in entry.groups:
            name = unique_name(nexus_name(base), entry.group_names)
            entry.groups[key] = (name, nx_class)
            if name != nexus_name(base) and fixed is None:
                # taken by the layout or another channel (a declared path is as given)
                entry.renamed[name] = str(key[1])
        group = entry.groups[key][0]
        main_taken = any(c.group == group and c.subgroup is None for c in entry.channels)
        spectra_group = kind == "detector" and key[1] != node.name and len(node.shape) == 0
        if main_taken or spectra_group:
            # statistics of an MCA, more channels of one motor: beside the main field
            subgroup = "values" if kind == "positioner" else "statistics"
            fld = nexus_name(display)
        plan = ChannelPlan(node, entry.name, kind, group, fld, subgroup,
                           unique_name(nexus_name(meas), entry.measurement_names), nx_class, motor,
                           fixed, dict(mapped[1]) if mapped else {})
        entry.channels.append(plan)
        self.by_name[node.name] = plan
        return plan

    # -- plots ---------------------------------------------------------------------
    def axes(self, entry: EntryPlan) -> list[ChannelPlan]:
        """Scanned motors of the entry (fast axis first), else the elapsed time."""
        motors = [c for c in entry.channels if c.kind == "positioner" and c.motor
                  and c.subgroup is None]
        if motors:
            return motors
        timers = [c for c in entry.channels if c.kind == "positioner" and c.subgroup is None
                  and self.display_of(c.node) == "elapsed_time"]
        return timers[:1]

    def plots(self, entry: EntryPlan) -> list[PlotSpec]:
        """The entry's NXdata, in order of preference for ``@default``."""
        counters = [c for c in entry.channels if c.kind == "detector" and c.ndim == 0]
        # Below motors, the timer's elapsed_time and epoch are 0D detectors too; the
        # signal a user wants to see is a real counter, so timers go last.
        counters.sort(key=lambda c: (self._is_timer(c), c.nx_class != "NXdetector"))
        spectra = [c for c in entry.channels if c.kind == "detector" and c.ndim == 1]
        images = [c for c in entry.channels if (c.kind == "camera" and c.nx_class == "NXdetector")
                  or (c.kind == "detector" and c.ndim == 2)]
        axes = self.axes(entry)
        specs: list[PlotSpec] = []
        selected = [self.by_name[n] for n in self.plotselect
                    if n in self.by_name and self.by_name[n].entry == entry.name
                    and self.by_name[n].ndim == 0 and self.by_name[n].kind == "detector"]
        for name, chans in (("plotselect", selected), ("plot0D", counters)):
            if chans:
                specs.append(self._spec(name, chans, axes, entry.grid))
        for prefix, chans, interpretation in (("plot1D", spectra, "spectrum"),
                                              ("plot2D", images, "image")):
            for i, same in enumerate(self._by_shape(chans)):
                name = prefix if i == 0 else f"{prefix}_{i + 1}"
                specs.append(PlotSpec(name, [(c.measurement, c.path) for c in same],
                                      interpretation=interpretation))
        return specs

    @staticmethod
    def _by_shape(chans: list[ChannelPlan]) -> list[list[ChannelPlan]]:
        """Channels grouped by point shape: auxiliary signals must match the signal."""
        groups: dict[tuple[int, ...], list[ChannelPlan]] = {}
        for c in chans:
            groups.setdefault(tuple(c.node.shape), []).append(c)
        return list(groups.values())

    @staticmethod
    def _spec(name: str, chans: list[ChannelPlan], axes: list[ChannelPlan],
              grid: Grid | None) -> PlotSpec:
        signals = [(c.measurement, c.path) for c in chans]
        if grid is not None:
            return PlotSpec(name, signals, grid=grid)
        return PlotSpec(name, signals, axes=[(a.measurement, a.path) for a in axes[:1]])
