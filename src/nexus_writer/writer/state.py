"""A scan's saving state: ordered, with one method per legal transition."""

from __future__ import annotations

import enum

from ..errors import ScanStateError


class ScanState(enum.IntEnum):
    """STARTING < RUNNING < SUCCEEDED | FAILED (the ``writer/status`` values in the file).

    SKIPPED is for scans that ask not to be saved by this writer.
    """

    STARTING = 0
    RUNNING = 1
    SUCCEEDED = 2
    FAILED = 3
    SKIPPED = 4

    @property
    def final(self) -> bool:
        return self >= ScanState.SUCCEEDED


class SavingState:
    """Holds a scan's state and reason; refuses illegal moves with a named error."""

    def __init__(self, label: str):
        self.label = label
        self.state = ScanState.STARTING
        self.reason = ""

    def _move(self, new: ScanState, allowed: tuple[ScanState, ...], reason: str = "") -> None:
        if self.state not in allowed:
            raise ScanStateError(f"{self.label}: cannot go from {self.state.name} to {new.name}")
        self.state = new
        if reason:
            self.reason = reason

    def run(self) -> None:
        self._move(ScanState.RUNNING, (ScanState.STARTING,))

    def succeed(self) -> None:
        self._move(ScanState.SUCCEEDED, (ScanState.RUNNING,))

    def fail(self, reason: str) -> None:
        """Any non-final state may fail; a second failure keeps the first reason."""
        if self.state == ScanState.FAILED:
            return
        self._move(ScanState.FAILED, (ScanState.STARTING, ScanState.RUNNING), reason)

    def skip(self, reason: str) -> None:
        self._move(ScanState.SKIPPED, (ScanState.STARTING, ScanState.RUNNING), reason)

    def __repr__(self) -> str:
        return f"<{self.label}: {self.state.name} {self.reason}>"
