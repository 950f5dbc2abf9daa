"""``SimSession``: the stand-in for a BLISS session, publishing through the data API.

It holds the devices (``session.config.get("roby")``), the saving parameters
(``session.scan_saving``, which make each scan's ``filename`` and ``images_path``
with the ESRF layout), a thread-safe scan counter and the scan commands
(``session.ascan(...)`` or ``session.scans.ascan(...)``).  ``time_scale`` multiplies
every count and sleep time: 0 runs scans without sleeping.
"""

from __future__ import annotations

import copy
import getpass
import itertools
import os
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

from .. import __version__
from ..data import DataStore
from .camera import SimCamera
from .chain import resolve_devices
from .commands import ScanCommands
from .devices import (
    SIM_CONTROLLER,
    Axis,
    GaussCounter,
    SamplesCounter,
    SamplingCounter,
    SimDiode,
    SimMca,
    SoftAxis,
)
from .publishers import PROTOCOLS, BlissdataPublisher, NativePublisher, SessionPublisher


@dataclass
class ScanSaving:
    """Where scans are saved (BLISS ``SCAN_SAVING`` with the ESRF data policy).

    ``filename`` = ``{base_path}/{proposal}/{beamline}/{session}/RAW_DATA/{collection}/
    {collection}_{dataset}/{collection}_{dataset}.h5``; camera files go to
    ``images_path(scan_nb)`` = ``.../{collection}_{dataset}/scan{scan_nb:04d}``.
    ``writer`` is "nexus" or "null" (null: scans are marked not to be saved).
    ``data_policy`` "ESRF" puts ``proposal``, ``beamline``, ``collection`` and
    ``dataset`` in each scan_info (the writer then adds the scans to the ESRF master
    files); any other value (e.g. "none") leaves them out.
    """

    base_path: str
    session: str
    proposal: str = "testproposal"
    beamline: str = "id00"
    collection: str = "sample"
    dataset: str = "0001"
    writer: str = "nexus"
    data_policy: str = "ESRF"

    def __setattr__(self, name: str, value: Any) -> None:
        if name == "writer" and value not in ("nexus", "null"):
            raise ValueError(f"scan_saving.writer must be 'nexus' or 'null', not {value!r}")
        super().__setattr__(name, str(value) if name != "base_path" else os.fspath(value))

    @property
    def root_path(self) -> str:
        """The session's RAW_DATA directory."""
        return str(Path(self.base_path) / self.proposal / self.beamline / self.session / "RAW_DATA")

    @property
    def collection_path(self) -> str:
        return str(Path(self.root_path) / self.collection)

    @property
    def dataset_name(self) -> str:
        return f"{self.collection}_{self.dataset}"

    @property
    def dataset_path(self) -> str:
        """The directory of the dataset file and of the scans' camera directories."""
        return str(Path(self.collection_path) / self.dataset_name)

    @property
    def filename(self) -> str:
        """Absolute path of the dataset's HDF5 file (written by the writer, not here)."""
        return str(Path(self.dataset_path) / f"{self.dataset_name}.h5")

    def images_path(self, scan_nb: int) -> str:
        """Directory where the cameras of scan ``scan_nb`` write their files."""
        return str(Path(self.dataset_path) / f"scan{int(scan_nb):04d}")

    def create_dataset_path(self) -> None:
        """Make the dataset directory (as BLISS does before a saved scan)."""
        Path(self.dataset_path).mkdir(parents=True, exist_ok=True)

    def newcollection(self, collection: str, dataset: str = "0001") -> None:
        """Switch to another collection (sample), starting at ``dataset``."""
        self.collection, self.dataset = collection, dataset

    def newdataset(self, dataset: str | int) -> None:
        """Switch to another dataset of the current collection."""
        self.dataset = f"{dataset:04d}" if isinstance(dataset, int) else dataset


class SimConfig:
    """The session's objects by name (BLISS ``config.get``)."""

    def __init__(self, objects: Iterable[Any] = ()):
        self._objects: dict[str, Any] = {}
        for obj in objects:
            self.add(obj)

    def add(self, obj: Any) -> Any:
        """Register ``obj`` under ``obj.name``; raises ValueError on a duplicate name."""
        if obj.name in self._objects:
            raise ValueError(f"config has an object named {obj.name!r} already")
        self._objects[obj.name] = obj
        return obj

    def get(self, name: str) -> Any:
        """The object ``name``; raises KeyError listing the names known."""
        try:
            return self._objects[name]
        except KeyError:
            raise KeyError(f"no object {name!r} in the session config; known: "
                           f"{', '.join(sorted(self._objects))}") from None

    def names(self) -> list[str]:
        return list(self._objects)

    def __contains__(self, name: object) -> bool:
        return name in self._objects

    def __getitem__(self, name: str) -> Any:
        return self.get(name)


def default_devices(protocol: str = "native") -> list[Any]:
    """The devices of BLISS's test session that the simulation provides.

    With ``protocol="blissdata"`` the MCA ``simu1`` is BLISS 2.4's (4 elements,
    uint32 spectra, its statistics: :meth:`SimMca.bliss24`); the seed's one-element
    MCA otherwise.
    """
    return [
        Axis("roby"), Axis("robz"), Axis("robu", position=0.0, offset=0.5),
        SoftAxis("soft_axis"),
        SimDiode("diode"), SimDiode("diode2"), SimDiode("diode4"),
        GaussCounter("sim_ct_gauss"),
        SamplesCounter("diode9", min_samples=2, max_samples=9),
        SamplesCounter("sim_var_samples", controller=SIM_CONTROLLER, min_samples=1,
                       max_samples=6, with_mean=False),
        SamplingCounter("diode_samples", "SAMPLES"), SamplingCounter("diode_stats", "STATS"),
        SimMca.bliss24("simu1") if protocol == "blissdata" else SimMca("simu1"),
        SimCamera("lima_simulator"),
    ]


def _user_name() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry in some containers
        return os.environ.get("USER", "unknown")


class SimSession(ScanCommands):
    """A simulated acquisition session publishing scans to Redis.

    ``redis_url``: the Redis of the data API (None: ``REDIS_URL`` or localhost);
    ``store`` may be given instead.  ``base_path``: root of the saved data (default
    ``{tmp}/scans``).  ``time_scale``: factor on count and sleep times (0: no sleep).
    ``first_scan_number``: the number of the first scan (numbers then increase by one).
    ``protocol``: "native" (this project's data API, the default) or "blissdata"
    (blissdata's producer API, as BLISS 2.4 publishes: the Redis must be prepared
    for blissdata; ``store`` is then a blissdata ``DataStore``).  The scans and
    devices are the same; :mod:`.publishers` holds the difference.
    """

    def __init__(self, name: str = "test_session", redis_url: str | None = None,
                 base_path: str | os.PathLike | None = None, time_scale: float = 1.0,
                 store: Any = None, devices: Iterable[Any] | None = None,
                 first_scan_number: int = 1, protocol: str = "native"):
        if protocol not in PROTOCOLS:
            raise ValueError(f"protocol must be one of {', '.join(PROTOCOLS)}, not {protocol!r}")
        self.name = name
        self.protocol = protocol
        self.publisher: SessionPublisher
        if protocol == "blissdata":
            if store is not None:
                self.publisher = BlissdataPublisher(store)
            else:
                url = redis_url or os.environ.get("REDIS_URL", "redis://localhost:6379")
                self.publisher = BlissdataPublisher.from_url(url)
        else:
            self.publisher = NativePublisher(store if store is not None else DataStore(redis_url),
                                             own=store is None)
        #: The protocol's store: ``nexus_writer.data.DataStore`` or blissdata's.
        self.store = self.publisher.store
        base = base_path if base_path is not None else Path(tempfile.gettempdir()) / "scans"
        self.scan_saving = ScanSaving(os.fspath(base), name)
        self.config = SimConfig(default_devices(protocol) if devices is None else devices)
        self.time_scale = float(time_scale)
        self.user_name = _user_name()
        self.publisher_version = __version__
        #: Counters used when a scan is given none (BLISS's active measurement group).
        self.default_counters: list[Any] = [self.config.get(n) for n in ("diode", "diode2")
                                            if n in self.config]
        #: Metadata categories added to every scan_info (``scan_meta_categories``).
        self.metadata: dict[str, dict[str, Any]] = {
            "instrument": {"@NX_class": "NXinstrument", "name": "id00",
                           "source": {"@NX_class": "NXsource", "name": "ESRF",
                                      "type": "Synchrotron X-ray Source", "probe": "x-ray"}},
            "sample": {"@NX_class": "NXsample"},
        }
        #: Channel full names selected for plotting (see :meth:`plotselect`).
        self.plotselected: list[str] = []
        self._numbers = itertools.count(int(first_scan_number))
        self._number_lock = threading.Lock()

    # -- helpers used by scans -----------------------------------------------------
    def _next_scan_number(self) -> int:
        with self._number_lock:
            return next(self._numbers)

    def _counters(self, counters: Iterable[Any]) -> list[Any]:
        items = list(counters) or list(self.default_counters)
        devices = resolve_devices(items, self.config.get)
        for dev in devices:
            if isinstance(dev, Axis):
                raise TypeError(f"{dev.name!r} is a motor, not a counter")
        return devices

    def _motor(self, motor: Any) -> Axis:
        axis = self.config.get(motor) if isinstance(motor, str) else motor
        if not isinstance(axis, Axis):
            raise TypeError(f"{getattr(axis, 'name', axis)!r} is not a motor")
        return axis

    @property
    def motors(self) -> list[Axis]:
        """All motors of the session (the positioner snapshots cover them all)."""
        return [self.config.get(n) for n in self.config.names()
                if isinstance(self.config.get(n), Axis)]

    def positioners_snapshot(self) -> dict[str, dict[str, Any]]:
        """Positions, dial positions and units of every motor."""
        motors = self.motors
        return {"positions": {m.name: m.position for m in motors},
                "dials": {m.name: m.dial for m in motors},
                "units": {m.name: m.unit for m in motors}}

    def scan_metadata(self) -> dict[str, dict[str, Any]]:
        """A copy of the metadata categories, the sample named after the collection
        unless set."""
        meta = copy.deepcopy(self.metadata)
        sample = meta.setdefault("sample", {"@NX_class": "NXsample"})
        sample.setdefault("name", self.scan_saving.collection)
        return meta

    def plotselect(self, *counters: Any) -> None:
        """Select channels to plot (objects, names or channel full names); empty clears.

        Scans holding a selected channel get ``_display_extra["plotselect"]`` and ``plots``.
        """
        names: list[str] = []
        for c in counters:
            if isinstance(c, str) and ":" in c:
                names.append(c)
                continue
            dev = self.config.get(c) if isinstance(c, str) else c
            if isinstance(dev, Axis):
                names.append(dev.fullname)
            else:
                names.extend(spec.name for spec in dev.channels() if spec.dim == 0)
        self.plotselected = names

    def close(self) -> None:
        """Close the Redis connection if this session opened it."""
        self.publisher.close()

    def __enter__(self) -> "SimSession":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return (f"SimSession({self.name!r}, {self.store!r}, protocol={self.protocol!r}, "
                f"time_scale={self.time_scale:g})")
