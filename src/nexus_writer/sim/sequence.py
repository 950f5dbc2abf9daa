"""A sequence: a group scan (``scan_group``) whose children are ordinary scans.

Like BLISS's ``Sequence``, it has its own scan number and scan_info; each child
scan gets its own number too, is announced with the sequence as parent and
carries ``scan_info["group"]`` (the sequence's key) and ``scan_info["parent"]``.
Two ways to use it::

    with session.sequence(title="my sequence") as seq:
        seq.add_and_run(session.loopscan(3, 0.1, "diode", run=False))
        seq.add_and_run(session.ascan("roby", 0, 1, 2, 0.1, run=False))

    seq = session.sequence()
    seq.add(session.ct(0.1, run=False))
    seq.run()  # runs the added scans in order

Like BLISS's ``ScanSequence(..., channels=[...])``, a sequence may publish channels
of its own (``ChannelSpec``s, BLISS's device ``channels``), filled while it runs with
``seq.emit(name, points)``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Iterable, Mapping

import numpy as np

from .devices import ChannelSpec
from .scans import Scan, ScanState

if TYPE_CHECKING:
    from .publishers import ScanHandle
    from .session import SimSession

#: The device name of a sequence's own channels (as BLISS's ScanSequence).
CHANNELS_DEVICE = "channels"


class Sequence(Scan):
    """A ``scan_group`` node holding child scans; see the module docstring."""

    node_type = "scan_group"

    def __init__(self, session: "SimSession", title: str = "sequence", save: bool = True,
                 scan_info: Mapping[str, Any] | None = None,
                 channels: Iterable[ChannelSpec] = ()):
        super().__init__(session, "sequence", title, [], save=save, data_dim=0, npoints=0,
                         scan_info=scan_info)
        self.children: list[Scan] = []
        #: The sequence's own channels (see :meth:`emit`).
        self.channel_specs: list[ChannelSpec] = list(channels)
        self._channels: dict[str, Any] = {}
        for spec in self.channel_specs:
            self.scan_info["channels"][spec.name] = {
                "unit": spec.unit, "display_name": spec.display_name, "dim": spec.dim,
                "device": CHANNELS_DEVICE, "top_master": "sequence", "dtype": spec.dtype}
        if self.channel_specs:
            self.scan_info["devices"][CHANNELS_DEVICE] = {
                "type": "channels", "channels": [c.name for c in self.channel_specs],
                "metadata": {}}

    def _prepare_channels(self, pub: "ScanHandle") -> None:
        for spec in self.channel_specs:
            self._channels[spec.name] = pub.create_channel(
                spec.name, spec.dtype, spec.shape, spec.unit, top_master="sequence",
                device=CHANNELS_DEVICE, display_name=spec.display_name, dim=spec.dim)

    def emit(self, name: str, points: Any) -> None:
        """Publish ``points`` (a batch: one per entry) on the sequence's channel ``name``
        while it runs."""
        if self.state != ScanState.RUNNING or self.publisher is None:
            raise RuntimeError(f"sequence {self.scan_number}: emit() while not running")
        try:
            channel = self._channels[name]
        except KeyError:
            raise KeyError(f"sequence {self.scan_number} has no channel {name!r}; it has "
                           f"{', '.join(self._channels) or 'none'}") from None
        spec = next(c for c in self.channel_specs if c.name == name)
        batch = np.asarray(points, dtype=spec.dtype)
        if batch.ndim != len(spec.shape) + 1:
            raise ValueError(f"sequence {self.scan_number}: emit({name!r}) takes a batch of "
                             f"points of shape {spec.shape}, got an array of shape "
                             f"{batch.shape}")
        channel.send(batch)

    def add(self, scan: Scan) -> Scan:
        """Make ``scan`` (not run yet) a child of this sequence; returns it."""
        if scan.state != ScanState.IDLE:
            raise RuntimeError(f"scan {scan.scan_number} was run already: it cannot join "
                               f"sequence {self.scan_number}")
        if scan.parent is not None and scan.parent is not self:
            raise RuntimeError(f"scan {scan.scan_number} belongs to sequence "
                               f"{scan.parent.scan_number} already")
        scan.parent = self
        if scan not in self.children:
            self.children.append(scan)
        return scan

    def add_and_run(self, scan: Scan) -> Scan:
        """Add ``scan`` and run it now (the sequence must be running)."""
        return self.add(scan).run()

    def child_info(self) -> dict[str, Any]:
        """What a child scan's scan_info says about this sequence."""
        return {"group": self.key,
                "parent": {"key": self.key, "scan_nb": self.scan_number, "type": self.type,
                           "title": self.scan_info.get("title")}}

    def _run_masters(self) -> None:
        """``run()`` runs the children added and not run yet, in order."""
        for child in list(self.children):
            if self._abort.is_set():
                break
            if child.state == ScanState.IDLE:
                child.run()

    def _finish(self, reason: str) -> None:
        if self.publisher is not None:
            self.publisher.update_info({"npoints": sum(
                1 for c in self.children if c.state != ScanState.IDLE)})
        super()._finish(reason)

    def __enter__(self) -> "Sequence":
        with self._lock:
            if self.state != ScanState.IDLE:
                raise RuntimeError(f"sequence {self.scan_number} was run already")
            self.state = ScanState.RUNNING
        try:
            self._start()
        except BaseException:
            self._finish("FAILURE")
            self.state = ScanState.DONE
            self._done.set()
            raise
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is None:
            reason = "USER_ABORT" if self._abort.is_set() else "SUCCESS"
        else:
            reason = "USER_ABORT" if issubclass(exc_type, KeyboardInterrupt) else "FAILURE"
        try:
            self._finish(reason)
        finally:
            self.state = ScanState.DONE
            self._done.set()
