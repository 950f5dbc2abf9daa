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
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Mapping

from .scans import Scan, ScanState

if TYPE_CHECKING:
    from .session import SimSession


class Sequence(Scan):
    """A ``scan_group`` node holding child scans; see the module docstring."""

    node_type = "scan_group"

    def __init__(self, session: "SimSession", title: str = "sequence", save: bool = True,
                 scan_info: Mapping[str, Any] | None = None):
        super().__init__(session, "sequence", title, [], save=save, data_dim=0, npoints=0,
                         scan_info=scan_info)
        self.children: list[Scan] = []

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
