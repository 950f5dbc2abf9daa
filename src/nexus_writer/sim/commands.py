"""The scan commands, with BLISS's signatures and point counts.

:class:`ScanCommands` is mixed into :class:`~nexus_writer.sim.session.SimSession`
(``session.ascan(...)``) and also reachable as ``session.scans.ascan(...)``.
Counters and motors may be given as objects or by name; without counters a scan
uses the session's default measurement group.  Every command takes ``run=True``
(False returns the scan unrun), ``save=True``, ``title=None`` and ``scan_info=None``
(a dict merged into the scan_info).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Mapping, Sequence

from .chain import TopMaster
from .devices import Axis
from .scans import Scan

if TYPE_CHECKING:
    from .sequence import Sequence as ScanSequence


def _fmt(value: float) -> str:
    """A number as BLISS prints it in a title: ``0``, ``0.1``, ``-1.5``."""
    return f"{value:g}"


class ScanCommands:
    """``ct``, ``loopscan``, ``timescan``, ``ascan``, ``dscan``, ``a2scan``, ``d2scan``,
    ``amesh``, ``multi_top_master_scan`` and ``sequence``."""

    # Provided by SimSession.
    def _counters(self, counters: Sequence[Any]) -> list[Any]:
        raise NotImplementedError

    def _motor(self, motor: Any) -> Axis:
        raise NotImplementedError

    @property
    def scans(self) -> "ScanCommands":
        """The scan commands (``session.scans.ascan`` == ``session.ascan``)."""
        return self

    def _go(self, scan_type: str, title: str | None, default_title: str,
            masters: list[TopMaster], run: bool, save: bool, scan_info: Mapping | None,
            **kw: Any) -> Scan:
        scan = Scan(self, scan_type, title or default_title, masters,  # type: ignore[arg-type]
                    save=save, scan_info=scan_info, **kw)
        return scan.run() if run else scan

    # -- timer scans ---------------------------------------------------------------
    def ct(self, count_time: float = 1.0, *counters: Any, run: bool = True, save: bool = True,
           title: str | None = None, scan_info: Mapping | None = None) -> Scan:
        """Count once (1 point, ``data_dim`` 0)."""
        tm = TopMaster.timer(1, count_time, *self._counters(counters))
        return self._go("ct", title, f"ct {_fmt(count_time)}", [tm], run, save, scan_info,
                        data_dim=0)

    def loopscan(self, npoints: int, count_time: float, *counters: Any, sleep_time: float = 0.0,
                 run: bool = True, save: bool = True, title: str | None = None,
                 scan_info: Mapping | None = None) -> Scan:
        """``npoints`` counts of ``count_time``."""
        if npoints < 1:
            raise ValueError(f"loopscan needs npoints >= 1, got {npoints}")
        tm = TopMaster.timer(npoints, count_time, *self._counters(counters),
                             sleep_time=sleep_time)
        return self._go("loopscan", title, f"loopscan {npoints} {_fmt(count_time)}", [tm], run,
                        save, scan_info)

    def timescan(self, count_time: float, *counters: Any, npoints: int = 0,
                 sleep_time: float = 0.0, run: bool = True, save: bool = True,
                 title: str | None = None, scan_info: Mapping | None = None) -> Scan:
        """Count until aborted (``npoints`` 0 in scan_info), or ``npoints`` times."""
        tm = TopMaster.timer(npoints, count_time, *self._counters(counters),
                             sleep_time=sleep_time)
        return self._go("timescan", title, f"timescan {_fmt(count_time)}", [tm], run, save,
                        scan_info, npoints=npoints)

    # -- motor scans ---------------------------------------------------------------
    def _line(self, scan_type: str, ranges: list[tuple[Any, float, float]], intervals: int,
              count_time: float, counters: Sequence[Any], relative: bool, run: bool,
              save: bool, title: str | None, scan_info: Mapping | None) -> Scan:
        motors = [self._motor(m) for m, _, _ in ranges]
        if len({m.name for m in motors}) != len(motors):
            raise ValueError(f"{scan_type}: the same motor twice in {[m.name for m in motors]}")
        origin = {m: m.position for m in motors}
        absolute = [(m, origin[m] + s if relative else s, origin[m] + e if relative else e)
                    for m, (_, s, e) in zip(motors, ranges, strict=True)]
        tm = TopMaster.line(absolute, intervals, count_time, *self._counters(counters))
        words = [scan_type] + [w for m, (_, s, e) in zip(motors, ranges, strict=True)
                               for w in (m.name, _fmt(s), _fmt(e))]
        default = " ".join(words + [str(intervals), _fmt(count_time)])
        return self._go(scan_type, title, default, [tm], run, save, scan_info,
                        return_to=origin if relative else None)

    def ascan(self, motor: Any, start: float, stop: float, intervals: int, count_time: float,
              *counters: Any, run: bool = True, save: bool = True, title: str | None = None,
              scan_info: Mapping | None = None) -> Scan:
        """``motor`` from ``start`` to ``stop`` (``intervals + 1`` points)."""
        return self._line("ascan", [(motor, start, stop)], intervals, count_time, counters,
                          False, run, save, title, scan_info)

    def dscan(self, motor: Any, start: float, stop: float, intervals: int, count_time: float,
              *counters: Any, run: bool = True, save: bool = True, title: str | None = None,
              scan_info: Mapping | None = None) -> Scan:
        """Like ``ascan`` relative to the current position; the motor returns at the end."""
        return self._line("dscan", [(motor, start, stop)], intervals, count_time, counters,
                          True, run, save, title, scan_info)

    def a2scan(self, motor1: Any, start1: float, stop1: float, motor2: Any, start2: float,
               stop2: float, intervals: int, count_time: float, *counters: Any,
               run: bool = True, save: bool = True, title: str | None = None,
               scan_info: Mapping | None = None) -> Scan:
        """Two motors moving together (``intervals + 1`` points)."""
        return self._line("a2scan", [(motor1, start1, stop1), (motor2, start2, stop2)],
                          intervals, count_time, counters, False, run, save, title, scan_info)

    def d2scan(self, motor1: Any, start1: float, stop1: float, motor2: Any, start2: float,
               stop2: float, intervals: int, count_time: float, *counters: Any,
               run: bool = True, save: bool = True, title: str | None = None,
               scan_info: Mapping | None = None) -> Scan:
        """``a2scan`` relative to the current positions; the motors return at the end."""
        return self._line("d2scan", [(motor1, start1, stop1), (motor2, start2, stop2)],
                          intervals, count_time, counters, True, run, save, title, scan_info)

    def amesh(self, motor1: Any, start1: float, stop1: float, intervals1: int, motor2: Any,
              start2: float, stop2: float, intervals2: int, count_time: float, *counters: Any,
              backnforth: bool = False, run: bool = True, save: bool = True,
              title: str | None = None, scan_info: Mapping | None = None) -> Scan:
        """A grid, ``motor1`` fast: ``(intervals1+1) * (intervals2+1)`` points, ``data_dim`` 2,
        ``npoints1`` = intervals1 + 1, ``npoints2`` = intervals2 + 1."""
        m1, m2 = self._motor(motor1), self._motor(motor2)
        if m1 is m2:
            raise ValueError(f"amesh: the same motor {m1.name!r} on both axes")
        tm = TopMaster.mesh((m1, start1, stop1, intervals1), (m2, start2, stop2, intervals2),
                            count_time, *self._counters(counters), backnforth=backnforth)
        default = (f"amesh {m1.name} {_fmt(start1)} {_fmt(stop1)} {intervals1} "
                   f"{m2.name} {_fmt(start2)} {_fmt(stop2)} {intervals2} {_fmt(count_time)}")
        extra = {"npoints1": intervals1 + 1, "npoints2": intervals2 + 1}
        return self._go("amesh", title, default, [tm], run, save, scan_info, data_dim=2,
                        extra_info=extra)

    # -- chains and sequences ------------------------------------------------------
    def multi_top_master_scan(self, masters: Sequence[TopMaster], run: bool = True,
                              save: bool = True, title: str | None = None,
                              scan_info: Mapping | None = None) -> Scan:
        """A scan with several top masters running concurrently, one thread each.

        Build them with :meth:`TopMaster.timer`, :meth:`TopMaster.line` or
        :meth:`TopMaster.mesh`; counters given by name are resolved here.  The
        first is named ``timer`` (or ``axis``), the next ``timer2``, ``timer3``...,
        and so are their timer channels (``timer2:elapsed_time``).  ``npoints`` in
        scan_info is the largest of the top masters'.
        """
        if not masters:
            raise ValueError("multi_top_master_scan needs at least one top master")
        for tm in masters:
            tm.counters = self._counters(tm.counters) if tm.counters else []
        default = "multi_top_master_scan " + " ".join(
            f"{tm.npoints} {_fmt(tm.count_time)}" for tm in masters)
        return self._go("multi_top_master_scan", title, default, list(masters), run, save,
                        scan_info)

    def sequence(self, title: str = "sequence", save: bool = True,
                 scan_info: Mapping | None = None,
                 channels: Sequence[Any] = ()) -> "ScanSequence":
        """A group of scans (``scan_group``); use as ``with session.sequence() as seq:``.

        ``channels``: ``ChannelSpec``s the sequence publishes itself (``seq.emit``)."""
        from .sequence import Sequence as ScanSequence

        return ScanSequence(self, title, save=save, scan_info=scan_info,  # type: ignore[arg-type]
                            channels=channels)
