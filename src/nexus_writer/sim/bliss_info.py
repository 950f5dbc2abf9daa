"""What BLISS 2.4 publishes about a scan through blissdata, made from a simulated scan.

:func:`bliss_layout` gives the scan's identity, its ``scan_info`` at CREATED and
from PREPARED on, and the ``hdf5_fallback`` data path of each channel, with BLISS
2.4's keys and structure (checked against the recorded scans in the BLISS 2.4
fixtures): devices keyed ``"{id}:{name}"`` and grouped by controller, ``channels``
pointing at them, ``acquisition_chain`` with ``top_master``, ``positioners``,
``nexuswriter``, ``writer_options``, ``display_extra``, ``plots``, ``start``/``stop``
of motor scans, ``npoints1``/``npoints2``/``data_dim`` of meshes, and for
sequences ``is_scan_sequence`` with the ``SUBSCANS`` channel of a ``GroupingMaster``.

Data paths follow BLISS 2.4 with blisswriter's device names
(``"{scan_nb}.1/instrument/{device}/{name}"``): a motor's ``value``; the timer's
``elapsed_time/value`` when the timer is the top master, ``elapsed_time/data``
below motors; a sampling counter's ``signal`` (``samples`` for its samples); an MCA
element's ``simu1_det0/spectrum``, ``.../live_time``...; other counters' ``data``.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..data import deep_update
from .camera import SimCamera
from .devices import DIODE_CONTROLLER, Axis, SamplesCounter, SamplingCounter, SimDiode, SimMca

if TYPE_CHECKING:
    from .chain import TopMaster
    from .scans import Scan

#: blisswriter's names of the MCA statistics in an NXdetector.
MCA_STAT_NAMES = {"realtime": "elapsed_time", "livetime": "live_time",
                  "trigger_livetime": "trigger_live_time", "energy_livetime": "live_time",
                  "triggers": "triggers", "events": "events", "icr": "trigger_count_rate",
                  "ocr": "event_count_rate", "deadtime": "fractional_dead_time"}

#: The keys of the final info a scan's end may change (BLISS freezes the rest).
END_KEYS = ("end_time", "end_reason", "positioners", "comments")


@dataclass
class BlissLayout:
    """A scan as BLISS 2.4 publishes it: ``identity`` (for ``create_scan``),
    ``info_created``, ``info`` (from PREPARED to STOPPED) and ``data_paths``
    (channel name -> hdf5_fallback data path, for saved scans)."""

    identity: dict[str, Any]
    info_created: dict[str, Any]
    info: dict[str, Any]
    data_paths: dict[str, str] = field(default_factory=dict)


def _key(obj: Any, name: str) -> str:
    """BLISS names a device in scan_info by the id of its Python object and its name."""
    return f"{id(obj)}:{name}"


def _device_name(dev: Any) -> str:
    """The name of a counter's device in scan_info (its controller's)."""
    if isinstance(dev, (SimMca, SimCamera)):
        return dev.name
    return dev.controller


def _counter_path(dev: Any, channel: str, display_name: str) -> tuple[str, str]:
    """(device, dataset) of a counter channel in blisswriter's layout."""
    if isinstance(dev, SimMca):
        _, _, local = channel.partition(":")
        stat, _, det = local.rpartition("_")
        if stat == "spectrum":
            return f"{dev.name}_{det}", "spectrum"
        return f"{dev.name}_{det}", MCA_STAT_NAMES.get(stat, stat)
    if isinstance(dev, SamplingCounter):
        if channel == dev.fullname:
            return dev.name, "signal"
        return dev.name, channel[len(dev.fullname) + 1:]
    if isinstance(dev, SamplesCounter):
        if channel == dev.fullname:
            return dev.name, "samples"
        return dev.name, "signal"
    if isinstance(dev, SimDiode) or getattr(dev, "controller", "") == DIODE_CONTROLLER:
        return dev.name, "signal"
    return display_name, "data"


def _nexuswriter_devices(devices: list[Any]) -> dict[str, Any]:
    """``info["nexuswriter"]["devices"]``: how blisswriter classifies each channel of
    the session's counters."""
    out: dict[str, Any] = {}
    for dev in devices:
        if isinstance(dev, Axis):
            continue
        for spec in dev.channels():
            if isinstance(dev, SimMca):
                out[spec.name] = {"device_info": {"type": "mca"}, "device_type": "mca"}
            elif isinstance(dev, SimCamera):
                out[spec.name] = {"device_info": {"type": "lima"}, "device_type": "lima"}
            elif isinstance(dev, SamplesCounter):
                entry: dict[str, Any] = {"device_info": {"type": "samplingcounter",
                                                         "mode": "SAMPLES"},
                                         "device_type": "samplingcounter"}
                if spec.name != dev.fullname:
                    entry["data_type"] = "signal"
                out[spec.name] = entry
            elif isinstance(dev, SamplingCounter):
                entry = {"device_info": {"type": "samplingcounter", "mode": dev.mode},
                         "device_type": "samplingcounter"}
                if spec.name == dev.fullname:
                    entry["data_type"] = "signal"
                out[spec.name] = entry
            elif isinstance(dev, SimDiode):
                out[spec.name] = {"device_info": {"type": "samplingcounter", "mode": "MEAN"},
                                  "device_type": "samplingcounter", "data_type": "signal"}
            else:
                out[spec.name] = {}
    return out


def _device_metadata(dev: Any) -> dict[str, Any] | None:
    """The ``metadata`` BLISS adds to a device entry before PREPARED (None: none)."""
    if isinstance(dev, SimMca):
        return {"type": "mca"}
    if isinstance(dev, SimCamera):
        return {"type": "lima"}
    if isinstance(dev, (SimDiode, SamplesCounter, SamplingCounter)):
        return {}
    return None


class _ChainBuilder:
    """devices / channels / acquisition_chain / data paths of a scan's top masters."""

    def __init__(self, scan: "Scan"):
        self.scan = scan
        self.mesh = scan.data_dim == 2
        self.devices: dict[str, Any] = {}
        self.metadata: dict[str, dict[str, Any]] = {}
        self.channels: dict[str, Any] = {}
        self.chain: dict[str, Any] = {}
        self.paths: dict[str, str] = {}

    def _path(self, channel: str, device: str, dataset: str) -> None:
        self.paths[channel] = f"{self.scan.scan_number}.1/instrument/{device}/{dataset}"

    def add(self, k: int, tm: "TopMaster") -> None:
        timer_key = _key(tm, tm.timer_name)
        timer_specs = tm.timer_channels()
        # One device per counter object, named by its controller (as BLISS: each
        # simulated diode has a controller of its own, all of the same name).
        counter_keys: list[str] = []
        for dev in tm.counters:
            key = _key(dev, _device_name(dev))
            counter_keys.append(key)
            entry: dict[str, Any] = {"name": _device_name(dev)}
            if isinstance(dev, SimMca):
                entry["type"] = "mca"
            entry["channels"] = [spec.name for spec in dev.channels()]
            self.devices[key] = entry
            meta = _device_metadata(dev)
            if meta is not None:
                self.metadata[key] = meta
        master_specs = timer_specs
        master_key = timer_key
        below_timer: list[Any] = []
        if tm.motors:
            master_key = _key(tm.motors, tm.name)
            master_specs = [m.channel_spec() for m in tm.motors]
            self.devices[master_key] = {"name": tm.name, "triggered_devices": [timer_key],
                                        "channels": [s.name for s in master_specs]}
            below_timer = list(timer_specs)
            for i, m in enumerate(tm.motors):
                start, stop = tm.ranges.get(m.name, (m.position, m.position))
                info: dict[str, Any] = {"start": start, "stop": stop, "points": tm.npoints}
                if self.mesh:
                    info.update(axis_points=int(tm.axis_points[i]), axis_id=int(tm.axis_ids[i]),
                                axis_kind="forth", group="scatter")
                info.update(device=master_key, display_name=m.name, dim=0, decimals=5)
                if m.unit:
                    info["unit"] = m.unit
                self.channels[m.fullname] = info
                self._path(m.fullname, m.name, "value")
        self.devices[timer_key] = {"name": tm.timer_name, "triggered_devices": counter_keys,
                                   "channels": [s.name for s in timer_specs]}
        prefix = "" if k == 0 else f"{tm.timer_name}_"
        for spec in timer_specs:
            self.channels[spec.name] = {"device": timer_key, "display_name": spec.display_name,
                                        "dim": 0, "unit": spec.unit}
            self._path(spec.name, prefix + spec.display_name, "data" if tm.motors else "value")
        counter_specs = []
        for dev, key in zip(tm.counters, counter_keys, strict=True):
            for spec in dev.channels():
                counter_specs.append(spec)
                info = {"device": key, "display_name": spec.display_name, "dim": spec.dim}
                if spec.unit:
                    info["unit"] = spec.unit
                if self.mesh and spec.dim == 0:
                    info["group"] = "scatter"
                self.channels[spec.name] = info
                if not isinstance(dev, SimCamera):
                    self._path(spec.name, *_counter_path(dev, spec.name, spec.display_name))
        below = below_timer + counter_specs
        self.chain[tm.name] = {
            "master": {"scalars": [s.name for s in master_specs], "spectra": [], "images": []},
            "scalars": [s.name for s in below if s.dim == 0],
            "spectra": [s.name for s in below if s.dim == 1],
            "images": [s.name for s in below if s.dim >= 2],
            "top_master": master_key,
            "devices": [master_key] + ([timer_key] if tm.motors else []) + counter_keys,
        }

    def add_grouping_master(self, specs: list[Any]) -> None:
        """A sequence's ``GroupingMaster``, its ``SUBSCANS`` channel and the sequence's
        own channels ``specs`` (device ``channels``), as BLISS's ScanSequence."""
        key = _key(self.scan, "GroupingMaster")
        self.devices[key] = {"name": "GroupingMaster", "channels": ["SUBSCANS"]}
        self.channels["SUBSCANS"] = {"group": "subscans", "device": key,
                                     "display_name": "SUBSCANS", "dim": 0}
        devices = [key]
        if specs:
            ch_key = _key(specs, "channels")
            devices.append(ch_key)
            self.devices[key]["triggered_devices"] = [ch_key]
            self.devices[ch_key] = {"name": "channels", "channels": [s.name for s in specs]}
            for spec in specs:
                info: dict[str, Any] = {"device": ch_key, "display_name": spec.display_name,
                                        "dim": spec.dim}
                if spec.unit:
                    info["unit"] = spec.unit
                self.channels[spec.name] = info
                self._path(spec.name, spec.display_name, "data")
        self.chain["GroupingMaster"] = {
            "master": {"scalars": ["SUBSCANS"], "spectra": [], "images": []},
            "scalars": [s.name for s in specs if s.dim == 0],
            "spectra": [s.name for s in specs if s.dim == 1],
            "images": [s.name for s in specs if s.dim >= 2],
            "top_master": key, "devices": devices}


def _plots(scan: "Scan") -> list[dict[str, Any]]:
    tm = scan.masters[0]
    if scan.data_dim == 2 and len(tm.motors) >= 2:
        return [{"kind": "scatter-plot", "items": [
            {"kind": "scatter", "x": tm.motors[0].fullname, "y": tm.motors[1].fullname}]}]
    x = tm.motors[0].fullname if tm.motors else tm.timer_channels()[0].name
    selected = [n for n in scan.session.plotselected if n in scan.scan_info["channels"]]
    items: list[dict[str, Any]] = [{"kind": "curve", "x": x}]
    if selected:
        items = [{"kind": "curve", "x": x, "y": y} for y in selected]
    return [{"kind": "curve-plot", "items": items}]


def bliss_layout(scan: "Scan") -> BlissLayout:
    """BLISS 2.4's identity, scan_info (CREATED, PREPARED) and data paths of ``scan``,
    which has been through ``Scan._start`` up to the publication (``start_time``
    and ``positioners`` set in its native scan_info)."""
    s = scan.session
    saving = s.scan_saving
    native = scan.scan_info
    sequence = scan.node_type == "scan_group"
    nb = scan.scan_number
    identity: dict[str, Any] = {"name": scan.type, "number": nb,
                                "data_policy": saving.data_policy, "session": s.name}
    if saving.data_policy == "ESRF":
        identity.update(proposal=saving.proposal, collection=saving.collection,
                        dataset=saving.dataset)
    if saving.writer == "null":  # BLISS: a path of None, info save true, no file
        identity["path"] = None
    elif scan.save:
        identity["path"] = scan.filename

    builder = _ChainBuilder(scan)
    if sequence:
        builder.add_grouping_master(list(getattr(scan, "channel_specs", ())))
    for k, tm in enumerate(scan.masters):
        builder.add(k, tm)

    info: dict[str, Any] = {}
    if sequence:
        info.update(title=native["title"], is_scan_sequence=True)
    else:
        first = scan.masters[0]
        info.update(type=scan.type, save=scan.save_requested, npoints=scan.npoints,
                    count_time=first.count_time, title=native["title"])
        if scan.data_dim == 2:
            info["data_dim"] = 2
        motors = [m for tm in scan.masters for m in tm.motors]
        if motors and scan.type != "ct":
            info["start"] = [first.ranges.get(m.name, (m.position,) * 2)[0] for m in motors]
            info["stop"] = [first.ranges.get(m.name, (m.position,) * 2)[1] for m in motors]
    info["channels"] = builder.channels
    if not sequence and scan.type != "ct":
        info["plots"] = _plots(scan)
    info.update(session_name=s.name, user_name=s.user_name,
                data_writer=saving.writer,
                writer_options={"chunk_options": {}, "separate_scan_files": None},
                data_policy=saving.data_policy, publisher="nexus_writer.sim",
                publisher_version=s.publisher_version)
    if sequence:
        info["save"] = scan.save_requested
    info.update(devices=builder.devices, acquisition_chain=builder.chain, scan_nb=nb,
                name=f"{nb}_{scan.type}" if scan.save_requested else f"_{nb}_{scan.type}",
                filename=scan.filename if scan.save else None,
                images_path=str(Path(scan.images_path) / "{img_acq_device}_"),
                start_time=native["start_time"])
    if scan.parent is not None:
        info["group"] = scan.parent.key
    selected = [n for n in s.plotselected if n in builder.channels]
    info["display_extra"] = {"plotselect": selected}
    if selected:
        info["display_extra"]["displayed_channels"] = selected
    if scan.type != "ct":
        meta = s.scan_metadata()
        info.update(meta)
        info["positioners"] = copy.deepcopy(native["positioners"])
        info.setdefault("technique", {"@NX_class": "NXcollection"})
        info["nexuswriter"] = {
            "instrument_info": {"name": "", "name@short_name": ""},
            "devices": _nexuswriter_devices([s.config.get(n) for n in s.config.names()]),
            "masterfiles": {}}
        info["scan_meta_categories"] = (["positioners"] + [c for c in meta if c != "technique"]
                                        + ["technique", "nexuswriter"])
    comments = native.get("comments")
    if comments:
        info["comments"] = copy.deepcopy(comments)
    for extra in (scan.extra_info, scan.user_info):
        if extra:
            deep_update(info, copy.deepcopy(dict(extra)))

    created = copy.deepcopy(info)
    for key, meta in builder.metadata.items():
        info["devices"][key]["metadata"] = meta
    return BlissLayout(identity, created, info, builder.paths if scan.save else {})


def end_update(info: dict[str, Any], update: dict[str, Any]) -> None:
    """Merge the end of a scan (``Scan._finish``'s update, native keys) into BLISS's
    final info: ``end_time``, ``end_reason``, ``positioners_end``/``_dial_end`` and
    comments; the rest stays as it was from PREPARED on, as BLISS does."""
    for key in END_KEYS:
        if key not in update:
            continue
        if key == "positioners":
            if "positioners" in info:  # not in a ct's info
                deep_update(info["positioners"], copy.deepcopy(update["positioners"]))
        else:
            info[key] = copy.deepcopy(update[key])


__all__ = ["END_KEYS", "MCA_STAT_NAMES", "BlissLayout", "bliss_layout", "end_update"]
