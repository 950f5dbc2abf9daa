"""Where the documented layout (docs/layout.md) puts each channel of a scan: the tests'
own table.

Written from the ESRF file convention (one ``NXentry`` ``{scan_nb}.{k}`` per top master
of ``acquisition_chain``; in it ``instrument`` with one ``NXpositioner`` per motor,
main field ``value``, and one ``NXdetector`` per detector, main field ``data``;
``measurement`` with a link to every channel under a short unique name) and from the
simulated session's device definitions (``nexus_writer.sim.session.default_devices``).
It never asks the writer's own plan (``nexus_writer.writer.plan``): a wrong path or
name there must make the tests fail, not be copied by them.

For the simulated devices the places are a literal table (:data:`SIM_PLACES`); for
channels that tests publish by hand the same documented rules apply:

- a scalar channel of a motor (device of type ``axis``), or one of the top master's
  own channels (a timer's ``elapsed_time`` when the timer is the top master), is a
  positioner: ``instrument/{short name}/value``, measurement ``{short name}``;
- a device that publishes spectra or ragged points (an MCA, a SAMPLES counter) is one
  detector ``instrument/{device}[_detN]``: its spectrum in ``data``, its scalars in
  ``statistics/{short name}``; measurement ``{device}_{short name}`` (or the short
  name itself when it already starts with the device name);
- a camera is ``instrument/{device}/data``, measurement ``{device}_{short name}``;
- any other scalar is a detector ``instrument/{short name}/data`` (an ``NXcollection``
  for booleans: NXdetector data is a number), measurement ``{short name}``.

Names that are no NeXus names, or that collide, are not guessed: such tests give the
expected places themselves.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Iterable, Mapping

import numpy as np


@dataclass(frozen=True)
class Place:
    """Where one channel is: ``/{entry}/instrument/{group}/{field}`` and its link
    ``/{entry}/measurement/{measurement}``."""

    entry: str
    group: str
    field: str
    measurement: str
    nx_class: str

    @property
    def path(self) -> str:
        return f"/{self.entry}/instrument/{self.group}/{self.field}"

    @property
    def group_path(self) -> str:
        return f"/{self.entry}/instrument/{self.group}"


#: The simulated session's channels: full name -> (group, field, measurement, NX_class).
SIM_PLACES: dict[str, tuple[str, str, str, str]] = {
    "axis:roby": ("roby", "value", "roby", "NXpositioner"),
    "axis:robz": ("robz", "value", "robz", "NXpositioner"),
    "axis:robu": ("robu", "value", "robu", "NXpositioner"),
    "axis:soft_axis": ("soft_axis", "value", "soft_axis", "NXpositioner"),
    "simulation_diode_sampling_controller:diode": ("diode", "data", "diode", "NXdetector"),
    "simulation_diode_sampling_controller:diode2": ("diode2", "data", "diode2", "NXdetector"),
    "simulation_diode_sampling_controller:diode4": ("diode4", "data", "diode4", "NXdetector"),
    "simulation_counter_controller:sim_ct_gauss": ("sim_ct_gauss", "data", "sim_ct_gauss",
                                                   "NXdetector"),
    # SAMPLES mode: the ragged samples are the detector's data, their mean a statistic
    "simulation_diode_sampling_controller:diode9": ("diode9", "data", "diode9", "NXdetector"),
    "simulation_diode_sampling_controller:diode9_mean": ("diode9", "statistics/diode9_mean",
                                                         "diode9_mean", "NXdetector"),
    "simulation_counter_controller:sim_var_samples": ("sim_var_samples", "data",
                                                      "sim_var_samples", "NXdetector"),
    # BLISS 2.4's SAMPLES counter: its samples are the detector's data, the mean a statistic
    "simulation_diode_sampling_controller:diode_samples": (
        "diode_samples", "statistics/diode_samples", "diode_samples", "NXdetector"),
    "simulation_diode_sampling_controller:diode_samples_samples": (
        "diode_samples", "data", "diode_samples_samples", "NXdetector"),
    # BLISS 2.4's STATS counter: scalars only, each a detector of its own
    **{f"simulation_diode_sampling_controller:{name}": (name, "data", name, "NXdetector")
       for name in ("diode_stats", "diode_stats_N", "diode_stats_std", "diode_stats_var",
                    "diode_stats_min", "diode_stats_max", "diode_stats_p2v")},
    # the MCA's element det0: spectrum and statistics in one detector
    "simu1:spectrum_det0": ("simu1_det0", "data", "simu1_spectrum_det0", "NXdetector"),
    **{f"simu1:{stat}_det0": ("simu1_det0", f"statistics/{stat}_det0", f"simu1_{stat}_det0",
                              "NXdetector")
       for stat in ("realtime", "livetime", "triggers", "events", "icr", "ocr", "deadtime")},
    "lima_simulator:image": ("lima_simulator", "data", "lima_simulator_image", "NXdetector"),
}

#: The simulated timers' channels: a positioner when the timer is the top master
#: (its elapsed time is the scan's axis), else a detector below a motor master.
SIM_TIMER_CHANNELS = {f"{timer}:{name}" for timer in ("timer", "timer2")
                      for name in ("elapsed_time", "epoch")}

_DET = re.compile(r"_(det\d+)$")


def _chain_lists(sub: Mapping[str, Any]) -> tuple[set[str], set[str]]:
    """(the top master's own channels, every channel) of one acquisition chain item."""
    master = sub.get("master") or {}
    own = {str(c) for k in ("scalars", "spectra", "images") for c in master.get(k) or ()}
    below = {str(c) for k in ("scalars", "spectra", "images") for c in sub.get(k) or ()}
    return own, own | below


def expected_places(info: Mapping[str, Any], nodes: Iterable[Any]) -> dict[str, Place]:
    """Each channel node's documented place (see the module docstring).

    ``nodes``: the scan's data nodes as the listeners give them (``name``, ``type``,
    ``shape``, ``dtype``, ``definition.info``); sequence references are skipped.
    """
    nodes = [n for n in nodes if n.type != "node_ref_channel"]
    chain = info.get("acquisition_chain") or {}
    channels_info: Mapping[str, Any] = info.get("channels") or {}
    devices: Mapping[str, Any] = info.get("devices") or {}
    scan_nb = int(info["scan_nb"])

    def about(node: Any) -> dict[str, Any]:
        out = dict(getattr(node.definition, "info", None) or {})
        out.update(channels_info.get(node.name) or {})
        return out

    def device_of(node: Any) -> str:
        return str(about(node).get("device") or node.name.split(":")[0])

    spectra_devices = {device_of(n) for n in nodes if n.type != "lima" and len(n.shape) > 0}
    places: dict[str, Place] = {}
    for node in nodes:
        entry_index, own = 1, False
        for k, (tm, sub) in enumerate(chain.items(), 1):
            mine, every = _chain_lists(sub or {})
            if node.name in every or about(node).get("top_master") == tm:
                entry_index, own = k, node.name in mine
                break
        entry = f"{scan_nb}.{entry_index}"
        short = str(about(node).get("display_name") or node.name.split(":")[-1])
        device = device_of(node)
        device_type = str((devices.get(device) or {}).get("type", ""))
        if node.name in SIM_PLACES:
            group, field, measurement, nx_class = SIM_PLACES[node.name]
        elif node.name in SIM_TIMER_CHANNELS or (node.type != "lima" and not node.shape
                                                 and (own or device_type == "axis")):
            group, field, measurement, nx_class = short, "value", short, "NXpositioner"
        elif node.type == "lima":
            group, field, measurement, nx_class = device, "data", f"{device}_{short}", \
                "NXdetector"
        elif device in spectra_devices:
            m = _DET.search(short)
            group = device + (f"_{m.group(1)}" if m else "")
            field = "data" if len(node.shape) > 0 else f"statistics/{short}"
            measurement = short if short.startswith(device) else f"{device}_{short}"
            nx_class = "NXdetector"
        else:
            dtype = np.dtype(node.dtype) if node.dtype is not None else None
            boolean = dtype is not None and dtype.kind == "b"
            group, field, measurement = short, "data", short
            nx_class = "NXcollection" if boolean else "NXdetector"
        if node.name in SIM_TIMER_CHANNELS and not own:
            field, nx_class = "data", "NXdetector"
        places[node.name] = Place(entry, group, field, measurement, nx_class)
    taken: dict[tuple[str, str], str] = {}
    for name, p in places.items():
        for key in ((p.entry, p.path), (p.entry, "measurement/" + p.measurement)):
            assert key not in taken, \
                f"layout table: {name} and {taken[key]} both at {key}: give the places"
            taken[key] = name
    return places
