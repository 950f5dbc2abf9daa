"""Simulated devices of the test session: motors, counters and an MCA.

Named as in BLISS's ``test_session`` so that files written from the simulation
look like files written at a beamline.  Every value a counter returns comes from a
numpy RNG seeded per scan, top master and device (see :func:`device_rng`), so a
test can recompute what a scan published.
"""

from __future__ import annotations

import math
import threading
import zlib
from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np

#: Controller names of the simulated counters, as in BLISS's test session.
DIODE_CONTROLLER = "simulation_diode_sampling_controller"
SIM_CONTROLLER = "simulation_counter_controller"


def device_rng(seed: int, master_index: int, device: str) -> np.random.Generator:
    """The RNG of one device in one top master of one scan (deterministic).

    ``zlib.crc32`` rather than ``hash``: string hashes change between processes.
    """
    return np.random.default_rng([int(seed), int(master_index), zlib.crc32(device.encode())])


@dataclass(frozen=True)
class ChannelSpec:
    """What a device publishes: one data node of a scan.

    ``shape`` is one point's shape (``-1`` for a length varying per point).
    """

    name: str
    display_name: str
    dtype: str
    shape: tuple[int, ...] = ()
    unit: str | None = None

    @property
    def dim(self) -> int:
        """0 for scalars, 1 for spectra (and sample lists), 2 for images."""
        return len(self.shape)

    @property
    def kind(self) -> str:
        """The ``acquisition_chain`` list this channel belongs to."""
        return ("scalars", "spectra", "images")[min(self.dim, 2)]


@dataclass
class PointContext:
    """What a counter may use to compute the value of one point.

    ``positions``: position of each motor of the top master at this point;
    ``ranges``: (start, stop) of each of those motors over the scan.
    """

    index: int
    npoints: int
    count_time: float
    positions: Mapping[str, float] = field(default_factory=dict)
    ranges: Mapping[str, tuple[float, float]] = field(default_factory=dict)
    motors: tuple[str, ...] = ()


class Axis:
    """A motor: user ``position`` = ``sign * dial + offset``, moved instantly."""

    kind = "axis"
    controller = "axis"

    def __init__(self, name: str, position: float = 0.0, offset: float = 0.0,
                 unit: str | None = "mm", sign: int = 1):
        self.name = name
        self.unit = unit
        self.sign = 1 if sign >= 0 else -1
        self._offset = float(offset)
        self._dial = (float(position) - self._offset) * self.sign
        self._lock = threading.Lock()

    @property
    def fullname(self) -> str:
        """The channel name, BLISS-like ``axis:{name}``."""
        return f"{self.controller}:{self.name}"

    @property
    def position(self) -> float:
        with self._lock:
            return self.sign * self._dial + self._offset

    @property
    def dial(self) -> float:
        with self._lock:
            return self._dial

    @property
    def offset(self) -> float:
        with self._lock:
            return self._offset

    @offset.setter
    def offset(self, value: float) -> None:
        """Change the user position, keeping the dial (like BLISS ``axis.offset = x``)."""
        with self._lock:
            self._offset = float(value)

    def move(self, position: float) -> None:
        """Move to a user position (no motion time in the simulation)."""
        with self._lock:
            self._dial = (float(position) - self._offset) * self.sign

    def rmove(self, delta: float) -> None:
        """Move relative to the current position."""
        with self._lock:
            self._dial += float(delta) * self.sign

    def channel_spec(self) -> ChannelSpec:
        return ChannelSpec(self.fullname, self.name, "float64", (), self.unit)

    def metadata(self) -> dict[str, Any]:
        return {"unit": self.unit, "offset": self.offset, "sign": self.sign,
                "controller": self.controller}

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r}, position={self.position:g})"


class SoftAxis(Axis):
    """A motor with no hardware behind it (BLISS ``SoftAxis``): no unit, no dial offset."""

    def __init__(self, name: str, position: float = 0.0):
        super().__init__(name, position=position, unit=None)

    def metadata(self) -> dict[str, Any]:
        return dict(super().metadata(), soft=True)


class Counter:
    """A device read once per point.  Subclasses define :meth:`channels` and :meth:`read`."""

    kind = "counter"

    def __init__(self, name: str, controller: str = SIM_CONTROLLER, unit: str | None = None):
        self.name = name
        self.controller = controller
        self.unit = unit

    @property
    def fullname(self) -> str:
        return f"{self.controller}:{self.name}"

    def channels(self) -> list[ChannelSpec]:
        """The data nodes this device publishes in a scan."""
        return [ChannelSpec(self.fullname, self.name, "float64", (), self.unit)]

    def read(self, ctx: PointContext, rng: np.random.Generator) -> dict[str, Any]:
        """Values of one point, keyed by channel full name."""
        raise NotImplementedError

    def metadata(self) -> dict[str, Any]:
        return {"controller": self.controller, "class": type(self).__name__}

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"


class SimDiode(Counter):
    """A diode returning uniform noise in [0, 100)."""

    def __init__(self, name: str, unit: str | None = None):
        super().__init__(name, DIODE_CONTROLLER, unit)

    def read(self, ctx: PointContext, rng: np.random.Generator) -> dict[str, Any]:
        return {self.fullname: float(rng.uniform(0.0, 100.0))}


class GaussCounter(Counter):
    """A Gaussian peak over the first scanned motor's range, plus a little noise.

    The peak sits at ``center`` (a fraction of the range, 0.5 = middle) with
    ``fwhm`` as a fraction of the range: it is always inside the scan, as with
    BLISS's ``sim_ct_gauss``.  Without motors the point index is the abscissa.
    """

    def __init__(self, name: str = "sim_ct_gauss", height: float = 100.0,
                 center: float = 0.5, fwhm: float = 0.25, noise: float = 0.01):
        super().__init__(name, SIM_CONTROLLER)
        self.height = height
        self.center = center
        self.fwhm = fwhm
        self.noise = noise

    def value(self, x: float, start: float, stop: float) -> float:
        """The noiseless signal at ``x`` for a scan from ``start`` to ``stop``."""
        span = stop - start
        if span == 0:
            return self.height
        mu = start + self.center * span
        sigma = abs(self.fwhm * span) / (2 * math.sqrt(2 * math.log(2)))
        return self.height * math.exp(-((x - mu) ** 2) / (2 * sigma**2))

    def read(self, ctx: PointContext, rng: np.random.Generator) -> dict[str, Any]:
        if ctx.motors:
            m = ctx.motors[0]
            x, (start, stop) = ctx.positions[m], ctx.ranges[m]
        else:
            x, start, stop = float(ctx.index), 0.0, float(max(ctx.npoints - 1, 0))
        v = self.value(x, start, stop)
        return {self.fullname: v * (1 + self.noise * float(rng.standard_normal()))}


class SamplesCounter(Counter):
    """A counter in SAMPLES mode: a variable number of samples per point.

    Publishes the samples (shape ``(-1,)``) under the counter's own name and,
    like BLISS, their per-point mean as ``{name}_mean``.
    """

    def __init__(self, name: str, controller: str = DIODE_CONTROLLER,
                 min_samples: int = 1, max_samples: int = 8, with_mean: bool = True,
                 unit: str | None = None):
        super().__init__(name, controller, unit)
        if not 0 <= min_samples <= max_samples:
            raise ValueError(f"{name}: need 0 <= min_samples <= max_samples, "
                             f"got {min_samples} and {max_samples}")
        self.min_samples = min_samples
        self.max_samples = max_samples
        self.with_mean = with_mean

    def channels(self) -> list[ChannelSpec]:
        out = [ChannelSpec(self.fullname, self.name, "float64", (-1,), self.unit)]
        if self.with_mean:
            out.append(ChannelSpec(f"{self.fullname}_mean", f"{self.name}_mean", "float64", (),
                                   self.unit))
        return out

    def read(self, ctx: PointContext, rng: np.random.Generator) -> dict[str, Any]:
        n = int(rng.integers(self.min_samples, self.max_samples + 1))
        samples = rng.uniform(0.0, 100.0, size=n)
        out: dict[str, Any] = {self.fullname: samples}
        if self.with_mean:
            out[f"{self.fullname}_mean"] = float(samples.mean()) if n else math.nan
        return out

    def metadata(self) -> dict[str, Any]:
        return dict(super().metadata(), mode="SAMPLES", min_samples=self.min_samples,
                    max_samples=self.max_samples)


class SamplingCounter(Counter):
    """A sampling counter in BLISS 2.4's SAMPLES or STATS mode, named as BLISS 2.4:
    ``{name}`` is the mean of ``nb_samples`` samples in [0, 100) (2 decimals); SAMPLES
    adds the samples (``{name}_samples``, shape ``(-1,)``), STATS their statistics
    (``{name}_N``, ``_std``, ``_var``, ``_min``, ``_max``, ``_p2v``)."""

    MODES = ("SAMPLES", "STATS")
    STATS = ("N", "std", "var", "min", "max", "p2v")

    def __init__(self, name: str, mode: str = "SAMPLES", nb_samples: int = 4,
                 unit: str | None = None):
        super().__init__(name, DIODE_CONTROLLER, unit)
        if mode not in self.MODES:
            raise ValueError(f"{name}: mode must be one of {', '.join(self.MODES)}, not {mode!r}")
        if int(nb_samples) < 1:
            raise ValueError(f"{name}: nb_samples must be >= 1, not {nb_samples}")
        self.mode = mode
        self.nb_samples = int(nb_samples)

    def channels(self) -> list[ChannelSpec]:
        out = [ChannelSpec(self.fullname, self.name, "float64", (), self.unit)]
        if self.mode == "SAMPLES":
            out.append(ChannelSpec(f"{self.fullname}_samples", f"{self.name}_samples",
                                   "float64", (-1,), self.unit))
        else:
            out += [ChannelSpec(f"{self.fullname}_{stat}", f"{self.name}_{stat}", "float64", (),
                                "#" if stat == "N" else self.unit) for stat in self.STATS]
        return out

    def read(self, ctx: PointContext, rng: np.random.Generator) -> dict[str, Any]:
        samples = rng.uniform(0.0, 100.0, size=self.nb_samples).round(2)
        out: dict[str, Any] = {self.fullname: float(samples.mean())}
        if self.mode == "SAMPLES":
            out[f"{self.fullname}_samples"] = samples
        else:
            low, high = float(samples.min()), float(samples.max())
            stats = {"N": float(len(samples)), "std": float(samples.std()),
                     "var": float(samples.var()), "min": low, "max": high, "p2v": high - low}
            out.update({f"{self.fullname}_{k}": v for k, v in stats.items()})
        return out

    def metadata(self) -> dict[str, Any]:
        return dict(super().metadata(), mode=self.mode, nb_samples=self.nb_samples)


class SimMca(Counter):
    """An MCA with ``nb_detectors`` elements ``det0``, ``det1``...: a spectrum of
    ``nb_channels`` per element (two Gaussian lines on a flat background, Poisson
    noise) and its statistics.

    The default is the seed's one-element MCA (int32 spectrum, :attr:`STATS`);
    :meth:`bliss24` makes BLISS 2.4's ``simu1`` (4 elements, uint32 spectra,
    :attr:`BLISS_STATS`).  Channels: every spectrum first, then each element's
    statistics, in BLISS's order.
    """

    kind = "mca"
    #: (name, unit, dtype) of the statistics of the seed's MCA.
    STATS = (("realtime", "s", "float64"), ("livetime", "s", "float64"),
             ("triggers", None, "float64"), ("events", None, "float64"),
             ("icr", "1/s", "float64"), ("ocr", "1/s", "float64"), ("deadtime", "%", "float64"))
    #: The statistics BLISS 2.4's SimulatedMCA publishes per element.
    BLISS_STATS = (("realtime", "s", "float64"), ("trigger_livetime", "s", "float64"),
                   ("energy_livetime", "s", "float64"), ("triggers", None, "int64"),
                   ("events", None, "int64"), ("icr", "1/s", "float64"),
                   ("ocr", "1/s", "float64"), ("deadtime", "%", "float64"))

    def __init__(self, name: str = "simu1", nb_channels: int = 1024,
                 lines: tuple[tuple[float, float, float], ...] = ((300, 15, 2000),
                                                                  (700, 25, 800)),
                 nb_detectors: int = 1, spectrum_dtype: str = "int32",
                 stats: tuple[tuple[str, str | None, str], ...] = STATS):
        super().__init__(name, name)
        if int(nb_detectors) < 1:
            raise ValueError(f"{name}: nb_detectors must be >= 1, not {nb_detectors}")
        self.nb_channels = int(nb_channels)
        self.lines = lines
        self.nb_detectors = int(nb_detectors)
        self.spectrum_dtype = np.dtype(spectrum_dtype).name
        self.stats = tuple(stats)

    @classmethod
    def bliss24(cls, name: str = "simu1") -> "SimMca":
        """The MCA of BLISS 2.4's test session (``SimulatedMCA``)."""
        return cls(name, nb_detectors=4, spectrum_dtype="uint32", stats=cls.BLISS_STATS)

    @property
    def detectors(self) -> list[str]:
        return [f"det{i}" for i in range(self.nb_detectors)]

    def channels(self) -> list[ChannelSpec]:
        out = [ChannelSpec(f"{self.name}:spectrum_{det}", f"spectrum_{det}",
                           self.spectrum_dtype, (self.nb_channels,)) for det in self.detectors]
        for det in self.detectors:
            for stat, unit, dtype in self.stats:
                out.append(ChannelSpec(f"{self.name}:{stat}_{det}", f"{stat}_{det}", dtype, (),
                                       unit))
        return out

    def expected_spectrum(self, count_time: float) -> np.ndarray:
        """The mean spectrum (before Poisson noise) for a count time."""
        x = np.arange(self.nb_channels, dtype=float)
        y = np.full(self.nb_channels, 5.0)
        for pos, sigma, area in self.lines:
            peak = np.exp(-((x - pos) ** 2) / (2 * sigma**2))
            y += area / (sigma * math.sqrt(2 * math.pi)) * peak
        return y * max(count_time, 1e-3) * 10

    def read(self, ctx: PointContext, rng: np.random.Generator) -> dict[str, Any]:
        out: dict[str, Any] = {}
        stats: dict[str, Any] = {}
        for det in self.detectors:
            spectrum = rng.poisson(self.expected_spectrum(ctx.count_time)).astype(
                self.spectrum_dtype)
            realtime = float(ctx.count_time)
            deadtime = float(rng.uniform(1.0, 5.0))
            livetime = realtime * (1 - deadtime / 100)
            events = float(spectrum.sum())
            triggers = float(round(events / (1 - deadtime / 100)))
            t = max(realtime, 1e-9)
            values = {"realtime": realtime, "livetime": livetime, "trigger_livetime": livetime,
                      "energy_livetime": livetime, "triggers": triggers, "events": events,
                      "icr": triggers / max(livetime, 1e-9), "ocr": events / t,
                      "deadtime": deadtime}
            out[f"{self.name}:spectrum_{det}"] = spectrum
            for stat, _, dtype in self.stats:
                value = values[stat]
                stats[f"{self.name}:{stat}_{det}"] = (int(round(value))
                                                      if np.dtype(dtype).kind in "iu"
                                                      else value)
        out.update(stats)
        return out

    def metadata(self) -> dict[str, Any]:
        return {"nb_channels": self.nb_channels, "detectors": self.detectors,
                "class": "SimMca"}
