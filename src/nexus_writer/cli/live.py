"""The live view: one line per scan, updated in place on a terminal, log lines otherwise."""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from typing import Any

from rich.console import Console
from rich.live import Live
from rich.logging import RichHandler
from rich.table import Table

from ..writer import ScanWriter, SessionWriter

logger = logging.getLogger("nexus_writer.progress")

STATE_STYLE = {"STARTING": "yellow", "RUNNING": "cyan", "SUCCEEDED": "green", "FAILED": "bold red",
               "SKIPPED": "dim"}


def progress(stats: dict[str, Any]) -> str:
    """Points written vs published (received while running) of the channel furthest
    behind; of the longest channel when none is behind (top masters differ in length)."""
    channels = stats["channels"]
    if not channels:
        return "-"
    counts = [(c["written"], c["published"] if c["published"] is not None else c["received"])
              for c in channels.values()]
    written, expected = min(counts, key=lambda wc: (wc[0] - wc[1], -wc[1]))
    if written >= expected:
        written, expected = max(counts, key=lambda wc: wc[1])
    return f"{written}/{expected} pts, {len(channels)} ch"


def table(writers: list[ScanWriter], limit: int = 20) -> Table:
    t = Table(title="nexus-writer: scans", expand=False)
    for col in ("scan", "title", "state", "points written", "file :: entries"):
        t.add_column(col)
    for w in writers[-limit:]:
        s = w.stats()
        state = s["state"] + (f" ({s['reason']})" if s["reason"] and s["state"] == "FAILED" else "")
        t.add_row(str(s["scan"]), s["title"], f"[{STATE_STYLE.get(s['state'], '')}]{state}",
                  progress(s), f"{os.path.basename(s['file'] or '-')} :: "
                  f"{','.join(s['entries'])}")
    return t


class LiveView:
    """Shows ``writer``'s scans while the ``with`` block runs.

    On a terminal: a table redrawn in place.  Otherwise (pipes, log files): an INFO
    line per running scan every ``period`` seconds.
    """

    def __init__(self, writer: SessionWriter, enabled: bool = True, period: float = 5.0):
        self.writer = writer
        self.interactive = enabled and sys.stdout.isatty()
        self.period = period
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._live: Live | None = None
        self._swapped: list[tuple[logging.Handler, logging.Handler]] = []

    def __enter__(self) -> "LiveView":
        if self.interactive:
            console = Console()
            self._live = Live(table([]), console=console, refresh_per_second=4, transient=False)
            self._route_logs(console)
            self._live.__enter__()
        self._thread = threading.Thread(target=self._loop, daemon=True, name="live-view")
        self._thread.start()
        return self

    def _route_logs(self, console: Console) -> None:
        """Log lines to the terminal go through the live console, which prints them
        above the table: a plain stream handler writing to the terminal behind the
        live region's back would make it draw the whole table again below each line."""
        root = logging.getLogger()
        for handler in list(root.handlers):
            stream = getattr(handler, "stream", None)
            terminal = (sys.stderr, sys.stdout, sys.__stderr__, sys.__stdout__)
            if isinstance(handler, logging.FileHandler) or stream not in terminal:
                continue
            rich = RichHandler(console=console, show_path=False, markup=False,
                               rich_tracebacks=False, log_time_format="%H:%M:%S")
            rich.setLevel(handler.level)
            rich.setFormatter(logging.Formatter("%(name)s: %(message)s"))
            root.removeHandler(handler)
            root.addHandler(rich)
            self._swapped.append((handler, rich))

    def _restore_logs(self) -> None:
        root = logging.getLogger()
        for handler, rich in self._swapped:
            root.removeHandler(rich)
            root.addHandler(handler)
        self._swapped = []

    def _loop(self) -> None:
        last_log = time.monotonic()
        while not self._stop.wait(0.25):
            if self._live is not None:
                self._live.update(table(self.writer.scans()))
            elif time.monotonic() - last_log >= self.period:
                last_log = time.monotonic()
                for w in self.writer.active():
                    s = w.stats()
                    logger.info("scan %s (%s): %s, %s", s["scan"], s["title"], s["state"],
                                progress(s))

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        if self._live is not None:
            self._live.update(table(self.writer.scans()))
            self._live.__exit__(None, None, None)
            self._restore_logs()
