"""A simulated scan: builds the full ``scan_info``, publishes nodes and points, ends.

The life cycle follows BLISS: the scan object is built (``run=False`` stops
there), ``run()`` announces it (``DataStore.create_scan``), creates every data
node, starts, runs its top masters (in threads when there are several), completes
``scan_info`` with the end time and positioners, then ends it with a reason.
``abort()`` from any thread ends it with ``USER_ABORT``, keeping what was published.
"""

from __future__ import annotations

import enum
import logging
import threading
import time
from datetime import datetime
from typing import TYPE_CHECKING, Any, Mapping, Sequence

from ..data import deep_update
from .chain import MasterRun, TopMaster, name_masters
from .devices import Axis

if TYPE_CHECKING:
    from ..data import SavingReport, ScanNode
    from .publishers import ScanHandle
    from .session import SimSession

logger = logging.getLogger(__name__)

PUBLISHER = "nexus_writer.sim"


def now_iso() -> str:
    """The current local time, ISO 8601 with the UTC offset."""
    return datetime.now().astimezone().isoformat()


class ScanState(enum.IntEnum):
    """Ordered states of a simulated scan."""

    IDLE = 0
    RUNNING = 1
    DONE = 2


class Scan:
    """One scan of a :class:`SimSession`; see the module docstring for the life cycle.

    Attributes: ``scan_number``, ``scan_info`` (the published dict once running),
    ``filename``, ``images_path``, ``key`` (the published scan's key, None until
    ``run``), ``seed`` (of the device RNGs), ``end_reason``.
    """

    node_type = "scan"

    def __init__(self, session: "SimSession", scan_type: str, title: str,
                 masters: Sequence[TopMaster], *, save: bool = True, data_dim: int = 1,
                 npoints: int | None = None, extra_info: Mapping[str, Any] | None = None,
                 scan_info: Mapping[str, Any] | None = None,
                 return_to: Mapping[Axis, float] | None = None):
        self.session = session
        self.type = scan_type
        self.masters = list(masters)
        name_masters(self.masters)
        self.scan_number = session._next_scan_number()
        self.seed = self.scan_number
        saving = session.scan_saving
        self.save_requested = bool(save)  # BLISS's info["save"] (writer "null" aside)
        self.save = bool(save) and saving.writer != "null"
        self.filename = saving.filename
        self.images_path = saving.images_path(self.scan_number)
        self._return_to = dict(return_to or {})
        self.state = ScanState.IDLE
        self.key: str | None = None
        self.publisher: "ScanHandle | None" = None
        self.end_reason: str | None = None
        self.exception: BaseException | None = None
        self.parent: Any = None  # a Sequence, set by Sequence.add
        self._abort = threading.Event()
        self._done = threading.Event()
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []  # running this scan: no wait in abort()
        self.data_dim = int(data_dim)
        #: Scan-type keys (``extra_info``) and the user's ``scan_info``, kept apart so
        #: that every protocol's publisher merges them into its own scan_info.
        self.extra_info: dict[str, Any] = dict(extra_info or {})
        self.user_info: dict[str, Any] = dict(scan_info or {})
        self.scan_info: dict[str, Any] = self._build_info(title, data_dim, npoints)
        if extra_info:
            deep_update(self.scan_info, extra_info)
        if scan_info:
            deep_update(self.scan_info, scan_info)

    # -- scan_info -----------------------------------------------------------------
    def _build_info(self, title: str, data_dim: int, npoints: int | None) -> dict[str, Any]:
        s = self.session
        saving = s.scan_saving
        first = self.masters[0] if self.masters else None
        channels: dict[str, Any] = {}
        devices: dict[str, Any] = {}
        for tm in self.masters:
            for device, spec in tm.all_channels():
                channels[spec.name] = {"unit": spec.unit, "display_name": spec.display_name,
                                       "dim": spec.dim, "device": device,
                                       "top_master": tm.name, "dtype": spec.dtype}
            for m in tm.motors:
                devices[m.name] = {"type": "axis", "channels": [m.fullname],
                                   "metadata": m.metadata()}
            devices[tm.timer_name] = {"type": "timer",
                                      "channels": [c.name for c in tm.timer_channels()],
                                      "metadata": {"count_time": tm.count_time}}
            for c in tm.counters:
                devices[c.name] = {"type": c.kind, "channels": [x.name for x in c.channels()],
                                   "metadata": c.metadata()}
        info: dict[str, Any] = {
            "scan_nb": self.scan_number,
            "name": self.type,
            "type": self.type,
            "title": title,
            "session_name": s.name,
            "user_name": s.user_name,
            "publisher": PUBLISHER,
            "publisher_version": s.publisher_version,
            "count_time": first.count_time if first else 0.0,
            "sleep_time": first.sleep_time if first else 0.0,
            "npoints": int(max((tm.npoints for tm in self.masters), default=0)
                           if npoints is None else npoints),
            "data_dim": int(data_dim),
            "save": self.save,
            "data_writer": saving.writer if self.save else "null",
            "filename": self.filename,
            "images_path": self.images_path,
            "data_policy": saving.data_policy,
            "acquisition_chain": {tm.name: tm.chain_info() for tm in self.masters},
            "channels": channels,
            "devices": devices,
            "comments": [],
        }
        if saving.data_policy == "ESRF":  # the data-policy fields (master files follow)
            info.update(proposal=saving.proposal, beamline=saving.beamline,
                        collection=saving.collection, dataset=saving.dataset)
        meta = s.scan_metadata()
        info.update(meta)
        info["scan_meta_categories"] = list(meta)
        selected = [name for name in s.plotselected if name in channels]
        if selected:
            x = (self.masters[0].motors[0].fullname if self.masters[0].motors
                 else self.masters[0].timer_channels()[0].name)
            info["_display_extra"] = {"plotselect": selected, "displayed_channels": selected}
            info["plots"] = [{"kind": "curve-plot", "name": "plotselect",
                              "items": [{"kind": "curve", "x": x, "y": y} for y in selected]}]
        return info

    def add_comment(self, message: str) -> None:
        """Add a dated user comment (before or during the run)."""
        comment = {"date": now_iso(), "message": str(message)}
        with self._lock:
            comments = list(self.scan_info.get("comments", [])) + [comment]
            if self.publisher is not None and self.state == ScanState.RUNNING:
                self.publisher.update_info({"comments": comments})
            else:
                self.scan_info["comments"] = comments

    # -- running -------------------------------------------------------------------
    def run(self) -> "Scan":
        """Publish and run the scan in this thread; returns self.

        Raises RuntimeError when run twice; re-raises a failure of the
        acquisition after ending the scan with ``FAILURE``.
        """
        with self._lock:
            if self.state != ScanState.IDLE:
                raise RuntimeError(f"scan {self.scan_number} of session "
                                   f"{self.session.name!r} was run already")
            self.state = ScanState.RUNNING
            self._threads.append(threading.current_thread())
        reason = "SUCCESS"
        try:
            self._start()
            self._run_masters()
            if self._abort.is_set():
                reason = "USER_ABORT"
        except KeyboardInterrupt:
            reason = "USER_ABORT"
            raise
        except BaseException as e:
            reason = "FAILURE"
            self.exception = e
            raise
        finally:
            try:
                self._finish(reason)
            finally:
                self.state = ScanState.DONE
                self._done.set()
        return self

    def _start(self) -> None:
        s = self.session
        start = s.positioners_snapshot()
        timestamp = time.time()
        self.scan_info.update(
            start_time=datetime.fromtimestamp(timestamp).astimezone().isoformat(),
            start_timestamp=timestamp,
            positioners={"positioners_start": start["positions"],
                         "positioners_dial_start": start["dials"],
                         "positioners_units": start["units"]})
        if self.parent is not None:
            if self.parent.publisher is None or self.parent.state != ScanState.RUNNING:
                raise RuntimeError(f"scan {self.scan_number}: its sequence "
                                   f"{self.parent.scan_number} is not running")
            self.scan_info.update(self.parent.child_info())
        if self.save:
            s.scan_saving.create_dataset_path()
        parent_pub = self.parent.publisher if self.parent is not None else None
        pub = s.publisher.create_scan(self, parent_pub)
        # create_scan copies scan_info; keep the published dict so both stay equal.
        self.publisher, self.key, self.scan_info = pub, pub.key, pub.info
        if parent_pub is not None:
            parent_pub.add_child(pub)
        self._runs = [MasterRun(tm, k, self.seed, self.images_path, s.time_scale, self._abort)
                      for k, tm in enumerate(self.masters)]
        for run in self._runs:
            run.prepare(pub)
        self._prepare_channels(pub)
        pub.start()
        logger.info("session %s: scan %d started: %s", s.name, self.scan_number,
                    self.scan_info["title"])

    def _prepare_channels(self, pub: "ScanHandle") -> None:
        """Channels of the scan's own, beside its top masters' (none here)."""

    def _run_masters(self) -> None:
        if len(self._runs) == 1:
            self._runs[0].run()
            return
        errors: list[BaseException] = []

        def target(run: MasterRun) -> None:
            try:
                run.run()
            except BaseException as e:  # re-raised in the scan's thread below
                errors.append(e)
                self._abort.set()

        threads = [threading.Thread(target=target, args=(r,), daemon=True,
                                    name=f"scan{self.scan_number}-{r.tm.name}")
                   for r in self._runs]
        self._threads.extend(threads)
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if errors:  # the abort event stopped the other top masters; run() ends with FAILURE
            raise errors[0]

    def _finish(self, reason: str) -> None:
        s = self.session
        pub = self.publisher
        end = s.positioners_snapshot()
        for motor, position in self._return_to.items():
            motor.move(position)
        self.end_reason = reason
        if pub is None:  # failed before being announced
            return
        timestamp = time.time()
        pub.update_info({
            "end_time": datetime.fromtimestamp(timestamp).astimezone().isoformat(),
            "end_timestamp": timestamp,
            "end_reason": reason,
            "positioners": {"positioners_end": end["positions"],
                            "positioners_dial_end": end["dials"]},
        })
        pub.end(reason)
        logger.info("session %s: scan %d ended (%s)", s.name, self.scan_number, reason)

    def run_in_thread(self) -> threading.Thread:
        """Run in a new daemon thread; a failure is kept in ``exception`` (see :meth:`wait`)."""
        def target() -> None:
            try:
                self.run()
            except BaseException as e:  # kept for wait(): an escaping error would be lost
                self.exception = e

        thread = threading.Thread(target=target, daemon=True, name=f"scan{self.scan_number}")
        thread.start()
        return thread

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for the end of a running scan; True when ended.  Re-raises its failure."""
        done = self._done.wait(timeout)
        if done and self.exception is not None:
            raise self.exception
        return done

    def wait_saved(self, timeout: float = 30.0) -> "SavingReport":
        """The writer's final saving report on this scan (SUCCEEDED, FAILED, SKIPPED),
        or NO_WRITER when none came within ``timeout`` s.  Needs ``run`` first."""
        if self.publisher is None:
            raise RuntimeError(f"scan {self.scan_number}: wait_saved() before run()")
        return self.publisher.wait_saved(timeout)

    def abort(self, wait: bool = True, timeout: float | None = 10.0) -> None:
        """Stop the scan after the current point; it ends with ``USER_ABORT``.

        Callable from any thread; with ``wait`` returns once the scan has ended.
        Before ``run`` it makes the scan end at once with no point.
        """
        self._abort.set()
        own_thread = threading.current_thread() in self._threads
        if wait and self.state == ScanState.RUNNING and not own_thread:
            self._done.wait(timeout)

    @property
    def node(self) -> "ScanNode":
        """The listener's view of this scan (read handle); needs ``run`` first."""
        if self.key is None:
            raise RuntimeError(f"scan {self.scan_number} has not been run: no Redis node yet")
        if self.session.protocol != "native":
            raise RuntimeError(f"scan {self.scan_number}: node is the native protocol's view; "
                               "with blissdata use session.store.load_scan(scan.key)")
        return self.session.store.get_scan_node(self.key)

    @property
    def npoints(self) -> int:
        return int(self.scan_info["npoints"])

    def __repr__(self) -> str:
        return f"Scan({self.scan_number}, {self.scan_info['title']!r}, {self.state.name})"
