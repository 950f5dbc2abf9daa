"""Devices for technique scans: an energy axis with I0 / It counters (XAS), and a
rotation axis (tomography, with the session's camera).

Not in :func:`~nexus_writer.sim.session.default_devices` (BLISS's test session
has none of them): add them with :func:`add_technique_devices`, then for example

    session.ascan("energy", 7.0, 7.3, 30, 0.1, "I0", "It", scan_info={"technique": "NXxas"})
    session.ascan("srot", 0, 180, 18, 0.1, "lima_simulator", scan_info={"technique": "NXtomo"})
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .devices import SIM_CONTROLLER, Axis, Counter, PointContext


class BeamCounter(Counter):
    """Incoming (``monitor``) or transmitted (``transmission``) beam of an absorption
    measurement: a smooth flux and, behind the sample, an absorption edge.

    The edge sits at ``edge`` (in the energy motor's unit) when the scan is over the
    motor named ``energy``; elsewhere, in the middle of the first motor's range.
    """

    def __init__(self, name: str, mode: str = "monitor", flux: float = 1e5,
                 edge: float | None = None, step: float = 1.5, noise: float = 1e-3):
        if mode not in ("monitor", "transmission"):
            raise ValueError(f"{name}: mode must be monitor or transmission, not {mode!r}")
        super().__init__(name, SIM_CONTROLLER)
        self.mode = mode
        self.flux = flux
        self.edge = edge
        self.step = step
        self.noise = noise

    def _abscissa(self, ctx: PointContext) -> tuple[float, float]:
        """(x, edge position) of this point."""
        if not ctx.motors:
            return float(ctx.index), max(ctx.npoints - 1, 0) / 2
        m = ctx.motors[0]
        start, stop = ctx.ranges[m]
        edge = self.edge if self.edge is not None and m == "energy" else (start + stop) / 2
        return ctx.positions[m], edge

    def expected(self, x: float, edge: float) -> float:
        """The noiseless value at ``x``."""
        i0 = self.flux * (1 - 0.02 * math.tanh(x - edge))
        if self.mode == "monitor":
            return i0
        mu = 0.3 + self.step * (0.5 + math.atan((x - edge) * 200) / math.pi)
        return i0 * math.exp(-mu)

    def read(self, ctx: PointContext, rng: np.random.Generator) -> dict[str, Any]:
        x, edge = self._abscissa(ctx)
        value = self.expected(x, edge) * (1 + self.noise * float(rng.standard_normal()))
        return {self.fullname: value}

    def metadata(self) -> dict[str, Any]:
        return dict(super().metadata(), mode=self.mode)


def technique_devices() -> list[Any]:
    """``energy`` (keV, at 7.1), ``srot`` (deg), ``I0`` and ``It`` (Fe K edge at 7.112)."""
    return [Axis("energy", position=7.1, unit="keV"), Axis("srot", unit="deg"),
            BeamCounter("I0", "monitor"), BeamCounter("It", "transmission", edge=7.112)]


def add_technique_devices(session: Any) -> None:
    """Add :func:`technique_devices` to a session's config (names must be free)."""
    for device in technique_devices():
        session.config.add(device)
