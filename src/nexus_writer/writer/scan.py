"""``ScanWriter``: one scan, from its source into its dataset file, live.

Reads the source in its own thread and hands HDF5 work to the file's
:class:`FileWriter`.  A failing channel is flagged and the others go on; a failing
scan is recorded FAILED with its reason in the log, the status and the file.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import threading
import time
from typing import Any, Callable, Mapping

import h5py
import numpy as np

from ..errors import NexusWriterError
from ..nexus import appdef, h5map, metadata
from ..nexus.camera import CameraDataset
from ..nexus.datasets import ChannelDataset, JsonDataset, fill_value
from ..nexus.groups import (decode_text, later_entry, nexus_name, now_iso, nx_class_of,
                             require_group, soft_link, unique_name, write_field)
from ..nexus.plots import fit_plot, set_grid_axes, write_plot
from ..nexus.validate import defined_fields
from . import masterfiles
from .filewriter import FileWriter, FileWriterPool, Target
from .options import WriterOptions
from .plan import ChannelPlan, EntryPlan, ScanPlan
from .source import (ChildScans, DataBatch, FramesSaved, NodeAdded, ScanEnded, ScanSource,
                     SourceError)
from .state import SavingState, ScanState

logger = logging.getLogger(__name__)

#: Seconds between reconnection attempts when Redis is away (the last one repeats).
RECONNECT_BACKOFF = (0.2, 0.5, 1.0, 2.0, 5.0, 10.0)
#: Seconds a final report is retried while Redis is away, without inactivity timeout.
FINAL_REPORT_PATIENCE = 300.0


class SavingError(NexusWriterError, OSError):
    """The dataset file cannot be written (directory, permissions, disk space)."""


class EntryExistsError(NexusWriterError, FileExistsError):
    """The scan's entry is already in the file: never overwritten."""


class ScanWriter:
    """Writes one scan.  ``start()`` runs it in a thread; ``state`` tells how it went."""

    def __init__(self, source: ScanSource, pool: FileWriterPool, options: WriterOptions,
                 stop: threading.Event | None = None,
                 on_change: Callable[["ScanWriter"], None] | None = None):
        self.source = source
        self.pool = pool
        self.options = options
        self.stop_event = stop or threading.Event()
        self.on_change = on_change
        self.saving = SavingState(source.label)
        self.info: dict[str, Any] = {}
        self.filename: str | None = None
        self.plan: ScanPlan | None = None
        self.targets: dict[str, Target] = {}
        self.received: dict[str, int] = {}
        self.published: dict[str, int] | None = None
        self.end_reason: str | None = None
        self.problems: list[str] = []
        #: What was not written beside the scan's data (master files, application
        #: definition): reported, but the scan is not failed for it.
        self.warnings: list[str] = []
        self.children: list[tuple[int, str]] = []
        self.started = time.time()
        self.finished: float | None = None
        self._fw: FileWriter | None = None
        self._entries_created = False
        self._running_in_file = False  # writer/status RUNNING in every entry already
        self._created: set[str] = set()  # dataset paths (file thread)
        self._plots_written: dict[str, str] = {}  # entry -> what its plots show
        self._plots_gen: dict[str, int] = {}
        self._thread: threading.Thread | None = None
        #: Resuming a file this scan's writer left unfinished (crash, kill -9).
        self.resumed = False
        self._position: dict[str, int] = {}
        self._ref_nodes: set[str] = set()  # the children streams of a sequence

    # -- public --------------------------------------------------------------------
    @property
    def state(self) -> ScanState:
        return self.saving.state

    @property
    def label(self) -> str:
        return self.source.label

    @property
    def entries(self) -> list[str]:
        return [e.name for e in self.plan.entries.values()] if self.plan else []

    def start(self) -> "ScanWriter":
        self._thread = threading.Thread(target=self.run, name=f"scan:{self.source.key}",
                                        daemon=True)
        self._thread.start()
        return self

    def join(self, timeout: float | None = None) -> bool:
        if self._thread is not None:
            self._thread.join(timeout)
            return not self._thread.is_alive()
        return True

    def stats(self) -> dict[str, Any]:
        """What the live view and status show: counts per channel and state."""
        channels = {}
        for name, target in self.targets.items():
            channels[name] = {"received": self.received.get(name, 0), "written": target.points,
                              "published": (self.published or {}).get(name)}
        return {"scan": self.source.number, "key": self.source.key,
                "title": str(self.info.get("title", "")), "state": self.state.name,
                "reason": self.saving.reason, "file": self.filename, "entries": self.entries,
                "channels": channels, "problems": list(self.problems),
                "warnings": list(self.warnings),
                "started": self.started, "finished": self.finished}

    # -- the scan thread -----------------------------------------------------------
    def run(self) -> None:
        try:
            self._run()
        except Exception as e:  # noqa: BLE001 - every failure ends as FAILED with its reason
            # A timeout (no end of scan) is expected and named like the rest.
            expected = isinstance(e, (NexusWriterError, TimeoutError))
            reason = str(e) if expected else f"{type(e).__name__}: {e}"
            self._fail(reason)
            logger.error("%s: saving FAILED: %s", self.label, reason, exc_info=not expected)
            if self._entries_created:
                try:
                    self._finalize()
                except Exception:  # noqa: BLE001
                    logger.exception("%s: could not record the failure in the file the "
                                     "normal way; recording the bare status", self.label)
                    self._record_final_status()
        finally:
            if self._fw is not None:
                if self._on_flush in self._fw.flush_listeners:
                    self._fw.flush_listeners.remove(self._on_flush)
                self.pool.release(self._fw)
                self._fw = None
            self.finished = time.time()
            self.pool.progress.discard(self.source.key)
            self._report_final()
            self._shed()
            self._changed()

    def _shed(self) -> None:
        """Finished, the writer is kept a while for the status (the session writer's
        ``KEEP_FINISHED``): what only writing needed goes (the datasets, the parsed
        layout, the source's document), or every full garbage collection walks it as
        long as the scan is kept."""
        for target in self.targets.values():
            target.writer = None
        if self.plan is not None:
            self.plan.h5map = None
        self._created.clear()
        self._plots_written.clear()
        self.source.release()

    def _report(self, state: str, reason: str = "", **detail: Any) -> None:
        """Tell the acquisition side (Redis); a lost connection is logged, not raised."""
        try:
            self.source.report(state, reason, **detail)
        except Exception as e:  # noqa: BLE001
            logger.warning("%s: saving state %s not reported: %s", self.label, state, e)

    def _report_final(self) -> None:
        """The final report, which the producer waits for: while Redis is away it is
        retried with backoff (up to the inactivity timeout, or until aborted)."""
        if not self.state.final:
            return
        channels = {name: {"written": t.points, "published": (self.published or {}).get(name)}
                    for name, t in self.targets.items()}
        detail = dict(file=self.filename, entries=self.entries, channels=channels,
                      problems=self.problems, warnings=self.warnings,
                      end_reason=self.end_reason)
        patience = self.options.inactivity_timeout or FINAL_REPORT_PATIENCE
        deadline = time.monotonic() + patience
        attempt = 0
        while True:
            try:
                self.source.report(self.state.name, self.saving.reason, **detail)
                return
            except ConnectionError as e:
                delay = RECONNECT_BACKOFF[min(attempt, len(RECONNECT_BACKOFF) - 1)]
                attempt += 1
                if time.monotonic() + delay > deadline or self.stop_event.is_set():
                    logger.error("%s: saving state %s never reported (Redis away for %g s: "
                                 "%s); the file says it", self.label, self.state.name,
                                 patience, e)
                    return
                logger.warning("%s: saving state %s not reported yet (%s); retrying in %.1f s",
                               self.label, self.state.name, e, delay)
                self.stop_event.wait(delay)
            except Exception as e:  # noqa: BLE001
                logger.warning("%s: saving state %s not reported: %s", self.label,
                               self.state.name, e)
                return

    def _on_flush(self) -> None:
        """In the file thread, after a flush: what is durable, for a resume (written to
        Redis by the pool's recorder, not in the file thread)."""
        flushed = {name: t.written for name, t in self.targets.items()
                   if t.error is None and not isinstance(t.writer, CameraDataset)}
        if flushed and not self.state.final:
            self.pool.progress.note(self.source.key, self.source.save_progress, flushed)

    def _changed(self) -> None:
        if self.on_change is not None:
            try:
                self.on_change(self)
            except Exception:  # noqa: BLE001
                logger.exception("status callback failed")

    def _fail(self, reason: str) -> None:
        if not self.saving.state.final:
            self.saving.fail(reason)

    def _read_info(self, what: str = "scan_info") -> dict[str, Any]:
        """scan_info (at the start, at the end); while Redis is away, retried with
        backoff (up to the inactivity timeout): a scan is not given up for a Redis
        restart."""
        patience = self.options.inactivity_timeout or None
        lost_since, attempt = time.monotonic(), 0
        while True:
            try:
                return self.source.info()
            except ConnectionError as e:
                delay = RECONNECT_BACKOFF[min(attempt, len(RECONNECT_BACKOFF) - 1)]
                attempt += 1
                if patience is not None and time.monotonic() - lost_since + delay > patience:
                    raise NexusWriterError(f"{self.label}: Redis unreachable for "
                                           f"{patience:g} s ({e}); {what} never read") from e
                logger.warning("%s: %s not read (%s); retrying in %.1f s", self.label, what,
                               e, delay)
                if self.stop_event.wait(delay):
                    raise NexusWriterError(
                        f"{self.label}: writer stopped while Redis was unreachable") from e

    def _run(self) -> None:
        early = getattr(self.source, "early_destination", None)
        filename = early() if early is not None else None
        if filename:
            # BLISS 2.x waits for its writer to be running before it prepares the scan,
            # whose info is complete only then: the file named from the start is
            # checked now, and the scan is RUNNING while the info is awaited.
            self.filename = filename
            self._check_destination(filename)
            self.saving.run()
            self._changed()
        self.info = info = self._read_info()
        skip = self.source.skip_reason(info)
        if skip:
            self.saving.skip(skip)
            logger.info("%s: skipped (%s)", self.label, self.saving.reason)
            return  # reported by run()
        filename = info.get("filename")
        if not filename:
            raise SavingError(f"{self.label}: scan_info has no 'filename'; nothing to write to")
        try:  # absolute in every report, status and file field
            self.filename = self.options.resolve(str(filename))
        except ValueError as e:
            raise SavingError(f"{self.label}: {e}") from e
        self._check_destination(self.filename)
        try:
            self.plan = ScanPlan(self.source.number, info, self.options)
        except (TypeError, ValueError, AttributeError, KeyError) as e:
            raise SavingError(f"{self.label}: malformed scan_info ({type(e).__name__}: {e}); "
                              "fix the producer's acquisition_chain/channels/npoints") from e
        self._fw = self.pool.acquire(self.filename)
        self._fw.call(self._create_entries)
        self._entries_created = True
        if self.resumed:
            try:
                self._position = self.source.saved_progress()
            except ConnectionError as e:  # from the start: slower, same result
                logger.warning("%s: progress unknown (%s); resuming from the start",
                               self.label, e)
            repaired = self._fw.call(self._repair_tails)
            if repaired is not None:  # those points again, for every channel
                self._position = {k: min(v, repaired) for k, v in self._position.items()}
            logger.warning("%s: resuming %s in %s from %s", self.label, ", ".join(self.entries),
                           self.filename, self._position or "the start")
        self.received.update(self._position)
        self._fw.flush_listeners.append(self._on_flush)
        self._report("READY", file=self.filename, entries=self.entries)
        if self.state == ScanState.STARTING:
            self.saving.run()
        if not self._running_in_file:
            self._fw.submit(lambda f: self._write_status(f, ScanState.RUNNING))
        self._report("RUNNING", file=self.filename, entries=self.entries)
        logger.info("%s: writing %s into %s", self.label, ", ".join(self.entries), self.filename)
        self._changed()
        self._follow()
        self._finalize()

    def _follow(self) -> None:
        """Consume the source to its end; when Redis goes away, reconnect with backoff
        and go on from the points received (no gap, no duplicate)."""
        timeout = self.options.inactivity_timeout or None
        attempt, lost_since = 0, None
        while True:
            try:
                for event in self.source.events(position=dict(self.received),
                                                stop=self.stop_event, timeout=timeout):
                    attempt, lost_since = 0, None
                    if isinstance(event, DataBatch):
                        self._on_data(event.node, event.first_index, event.data)
                    elif isinstance(event, FramesSaved):
                        self._on_data(event.node, event.first_index, event.refs)
                    elif isinstance(event, NodeAdded):
                        self._on_node(event)
                    elif isinstance(event, ChildScans):  # once each, also when read again
                        self.children.extend(c for c in event.scans if c not in self.children)
                    elif isinstance(event, SourceError):
                        self._problem(event.message)
                    elif isinstance(event, ScanEnded):
                        self.end_reason = event.reason
                        self.published = (dict(event.published) if event.published is not None
                                          else None)
                        return
                if self.stop_event.is_set():
                    raise NexusWriterError(
                        f"{self.label}: writer stopped before the end of the scan")
                return
            except ConnectionError as e:
                now = time.monotonic()
                lost_since = lost_since or now
                if timeout is not None and now - lost_since > timeout:
                    raise NexusWriterError(f"{self.label}: Redis unreachable for {timeout:g} s "
                                           f"({e}); no end of scan received") from e
                delay = RECONNECT_BACKOFF[min(attempt, len(RECONNECT_BACKOFF) - 1)]
                attempt += 1
                message = str(e)
                if message.startswith(self.label + ": "):  # named once in the log line
                    message = message[len(self.label) + 2:]
                logger.warning("%s: %s; reconnecting in %.1f s", self.label, message, delay)
                if self.stop_event.wait(delay):
                    raise NexusWriterError(
                        f"{self.label}: writer stopped while Redis was unreachable") from e

    def _problem(self, message: str) -> None:
        self.problems.append(message)
        logger.warning("%s: %s", self.label, message)

    def _warn(self, message: str) -> None:
        """Something beside the scan's data not written (the scan is not failed)."""
        self.warnings.append(message)
        logger.warning("%s: %s", self.label, message)

    # -- checks --------------------------------------------------------------------
    def _check_destination(self, filename: str) -> None:
        directory = os.path.dirname(os.path.abspath(filename))
        try:
            os.makedirs(directory, exist_ok=True)
        except OSError as e:
            raise SavingError(f"{self.label}: cannot create directory {directory}: "
                              f"{e.strerror or e}") from e
        if not os.access(directory, os.W_OK | os.X_OK):
            raise SavingError(f"{self.label}: directory {directory} is not writable by this "
                              f"writer (uid {os.getuid()}); fix its permissions")
        if os.path.exists(filename) and not os.access(filename, os.W_OK):
            raise SavingError(f"{self.label}: file {filename} is not writable")
        free_mb = shutil.disk_usage(directory).free / 1e6
        if free_mb < self.options.required_disk_space:
            raise SavingError(f"{self.label}: only {free_mb:.0f} MB free in {directory}, "
                              f"{self.options.required_disk_space:g} MB required "
                              "(--required_disk_space)")

    # -- file operations (run in the file thread) ----------------------------------
    def _create_entries(self, f: h5py.File) -> None:
        assert self.plan is not None
        existing = [e.name for e in self.plan.entries.values() if e.name in f]
        for name in existing:
            if not self._own_entry(f[name]):
                raise EntryExistsError(f"{self.label}: entry {name} exists already in "
                                       f"{self.filename}; it is never overwritten")
        self.resumed = bool(existing)
        for name in existing:
            if "end_time" in f[name]:  # finished, not reported: finished again below
                del f[name]["end_time"]
        # a scan known to run (BLISS 2.x: from the start) says so at once
        status = "RUNNING" if self.state == ScanState.RUNNING else "STARTING"
        layout = self.plan.h5map
        if layout is not None:  # the producer's layout first: it wins
            h5map.materialise(f, layout, replace=not self.resumed)
        for entry in self.plan.entries.values():
            if entry.name in existing:
                continue
            group = f.get(entry.name)
            if not isinstance(group, h5py.Group):
                group = require_group(f, entry.name, "NXentry")
            # this writer's own items, where the producer's layout has none
            if "title" not in group:
                write_field(group, "title", str(self.info.get("title", "")))
            if "start_time" not in group:
                write_field(group, "start_time", str(self.info.get("start_time") or now_iso()))
            if "instrument" not in group:
                require_group(group, "instrument", "NXinstrument")
            if "measurement" not in group:
                require_group(group, "measurement", "NXcollection")
            metadata.write_writer_status(group, status, extra={"scan_key": self.source.key})
        self._running_in_file = status == "RUNNING" and not existing
        self._link_to_sequence(f)
        if self.options.master_files:
            self._link_to_masters(f)

    def _link_to_masters(self, f: h5py.File) -> None:
        """The entries in the ESRF master files, as soon as they exist on disk."""
        assert self.plan is not None and self.filename is not None
        masters = masterfiles.master_files(self.info, self.filename)
        if not masters:
            return
        f.flush()  # a reader following a master's link finds the entry
        for warning in masterfiles.link_scan(masters, self.filename, self.entries):
            self._warn(warning)

    def _own_entry(self, entry: h5py.Group) -> bool:
        """Whether ``entry`` was started for this very scan: unfinished (a writer died
        while writing it), or finished by a writer that died before its final report
        (the scan is not saved as far as Redis knows, else it would not be written)."""
        writer = entry.get("writer")
        if not isinstance(writer, h5py.Group):
            return False
        key = writer.get("scan_key")
        value = key[()] if isinstance(key, h5py.Dataset) else None
        if isinstance(value, bytes):
            value = value.decode()
        return value == self.source.key

    def _repair_tails(self, f: h5py.File) -> int | None:
        """Before a resume: the last chunks of each compressed dataset of this scan must
        read back.  A writer killed between a chunk's data and its index in a flush
        leaves an index with the old size of a chunk rewritten in place, which no filter
        decodes; such a chunk is replaced by fill values (stored unfiltered) and the
        point index where it starts is returned: the resume rewrites from there."""
        assert self.plan is not None
        lowest: int | None = None

        def check(name: str, obj: Any) -> None:
            nonlocal lowest
            if (not isinstance(obj, h5py.Dataset) or obj.chunks is None or obj.is_virtual
                    or obj.id.get_create_plist().get_nfilters() == 0):
                return
            n = obj.id.get_num_chunks()
            for index in range(max(0, n - 2), n):
                offset = obj.id.get_chunk_info(index).chunk_offset
                region = tuple(slice(o, min(o + c, s))
                               for o, c, s in zip(offset, obj.chunks, obj.shape))
                try:
                    obj[region]
                    continue
                except (OSError, ValueError) as e:
                    logger.warning("%s: %s: chunk at %s unreadable after a crash (%s); "
                                   "written again", self.label, obj.name, offset, e)
                fill = np.full(obj.chunks, fill_value(obj.dtype), dtype=obj.dtype)
                obj.id.write_direct_chunk(offset, fill.tobytes(), filter_mask=0xFFFFFFFF)
                flat = offset[0] * obj.shape[1] + offset[1] if "points_written" in obj.attrs \
                    else offset[0]
                lowest = flat if lowest is None else min(lowest, flat)

        for entry in self.plan.entries.values():
            instrument = f[entry.name].get("instrument")
            if isinstance(instrument, h5py.Group):
                instrument.visititems(check)
        return lowest

    def _link_to_sequence(self, f: h5py.File) -> None:
        """``/{sequence}.1/subscans/scan_{n}`` when this scan's sequence is in this file.

        The sequence links its children at its own end too; a child whose writer
        starts after that (both end at once) would be missed without this.
        """
        assert self.plan is not None
        parent = self.info.get("parent")
        number = parent.get("scan_nb") if isinstance(parent, Mapping) else None
        if number is None:
            return
        try:
            sequence = f.get(f"/{int(number)}.1")
            if not isinstance(sequence, h5py.Group):
                return  # saved in another file, or not at all
            subscans = require_group(sequence, "subscans", "NXcollection")
            first = next(iter(self.plan.entries.values())).name
            soft_link(subscans, f"scan_{self.source.number}", f"/{first}")
        except (ValueError, TypeError) as e:
            self._problem(f"not linked from sequence {number}: {e}")

    def _write_status(self, f: h5py.File, state: ScanState, reason: str = "",
                      extra: Mapping[str, Any] | None = None) -> None:
        assert self.plan is not None
        for entry in self.plan.entries.values():
            metadata.write_writer_status(f[entry.name], state.name, reason, extra)

    def _on_node(self, event: NodeAdded) -> None:
        node = event.node
        if node.type == "node_ref_channel":
            self._ref_nodes.add(node.name)
            return
        assert self.plan is not None and self._fw is not None
        if node.name in self.targets:  # announced again after a resume
            return
        chan = self.plan.add(node)
        entry = self.plan.entries[next(k for k, e in self.plan.entries.items()
                                       if e.name == chan.entry)]
        target = self.targets[node.name] = Target(node.name, self._channel_failed)
        target.written = self._position.get(node.name, 0)  # durable before a crash
        self.received.setdefault(node.name, 0)

        def create(f: h5py.File) -> None:
            try:
                target.writer = self._create_dataset(f, chan, entry)
            except Exception as e:  # noqa: BLE001 - this channel is flagged, others go on
                target.fail(e)
                return
            original = entry.renamed.get(chan.group)
            main = f.get(chan.path)
            if original is not None and isinstance(main, h5py.Dataset):
                # the name the group would have had (NeXus defines no group attribute
                # for it; a field's attributes are free)
                main.attrs["original_name"] = original
            mapped = self.plan is not None and chan.node.name in self.plan.h5map_streams
            if mapped and isinstance(target.writer, ChannelDataset):
                dset = target.writer.dset
                if "units" not in chan.attrs and not dset.attrs.get("units"):
                    del dset.attrs["units"]  # exactly the attributes the layout gives
                dset.attrs.update(chan.attrs)
            if self.plan is not None and self.plan.h5map is None:
                soft_link(f[chan.entry]["measurement"], chan.measurement, chan.path)
            self._created.add(chan.path)

        self._fw.submit(create)
        self._request_plots(entry)

    def _request_plots(self, entry: EntryPlan) -> None:
        """(Re)write the entry's plots after the dataset creation just queued, unless a
        later request is queued behind it: a burst of new nodes costs one rewrite,
        not one per node (which is quadratic in the number of channels)."""
        gen = self._plots_gen[entry.name] = self._plots_gen.get(entry.name, 0) + 1

        def plots(f: h5py.File) -> None:
            if self._plots_gen.get(entry.name) == gen:
                self._write_plots(f, entry)

        assert self._fw is not None
        self._fw.submit(plots)

    @staticmethod
    def _declared_group(f: h5py.File, chan: ChannelPlan) -> tuple[h5py.Group, str]:
        """The parent group of a channel whose path the producer declared, created
        as needed (groups there already are taken as they are), and the field name."""
        assert chan.fixed is not None
        parts = chan.fixed.split("/")
        group: h5py.Group = f
        for depth, part in enumerate(parts[:-1]):
            child = group.get(part)
            if child is None:
                if depth == 0:
                    nx_class = "NXentry"
                elif depth == 1 and part == "instrument":
                    nx_class = "NXinstrument"
                elif depth == len(parts) - 2 and parts[-1] in defined_fields(chan.nx_class):
                    nx_class = chan.nx_class
                else:  # a name the class does not define: a plain collection
                    nx_class = "NXcollection"
                child = require_group(group, part, nx_class)
            elif not isinstance(child, h5py.Group):
                raise TypeError(f"{child.name} is not a group: no place for {chan.fixed}")
            elif (depth == len(parts) - 2 and nx_class_of(child) in ("NXdetector", "NXpositioner")
                  and parts[-1] not in defined_fields(nx_class_of(child) or "")):
                child.attrs["NX_class"] = "NXcollection"  # one more undefined name
            group = child
        return group, parts[-1]

    def _create_dataset(self, f: h5py.File, chan: ChannelPlan, entry: EntryPlan) -> Any:
        if chan.fixed is not None:
            group, name = self._declared_group(f, chan)
        else:
            instrument = f[chan.entry]["instrument"]
            group = require_group(instrument, chan.group, chan.nx_class)
            if chan.subgroup:
                group = require_group(group, chan.subgroup, "NXcollection")
            name = chan.field
        node = chan.node
        units = node.unit or ""
        if chan.kind == "camera":
            fmt = str(node.info.get("file_format", "hdf5"))
            return CameraDataset(group, name, self.options.camera_mode(fmt), node.shape,
                                 node.dtype, int(node.info.get("frames_per_file", 1)), fmt,
                                 self.options.compression,
                                 min_interval=self.options.flush_period)
        # a declared path holds the points flat: blissdata readers index them so
        if chan.kind == "json":
            existing = group.get(name)
            if self.resumed and isinstance(existing, h5py.Dataset):
                return JsonDataset(existing)
            return JsonDataset.create(group, name, entry.npoints)
        grid = entry.grid if self.options.keepshape and chan.fixed is None else None
        existing = group.get(name)
        if self.resumed and isinstance(existing, h5py.Dataset):
            return ChannelDataset(existing, node.shape, grid)
        return ChannelDataset.create(group, name, node.dtype, node.shape, entry.npoints,
                                     self.options.compression, grid=grid, units=units)

    def _write_plots(self, f: h5py.File, entry: EntryPlan) -> None:
        assert self.plan is not None
        specs = self.plan.plots(entry)
        group = f[entry.name]
        ready = []
        flat = {c.path for c in entry.channels if c.fixed is not None}  # never a grid
        for spec in specs:
            if all(path in self._created for _, path in spec.signals):
                if (self.options.keepshape and spec.grid is not None
                        and not any(path in flat for _, path in spec.signals)):
                    spec.grid = None  # the data is a grid already
                ready.append(spec)
        taken = self.plan.h5map_names.get(entry.name, set())
        ready = [spec for spec in ready if spec.name not in taken]  # the layout's own
        shown = repr(ready)
        if self._plots_written.get(entry.name) == shown:
            return  # the plots in the file show exactly this already
        for spec in ready:
            write_plot(group, spec)
        self._plots_written[entry.name] = shown
        if ready and ready[0].name in group:
            group.attrs["default"] = ready[0].name
            current = f.attrs.get("default")
            if isinstance(current, bytes):
                current = current.decode()
            if not current or current not in f or later_entry(entry.name, current):
                f.attrs["default"] = entry.name

    def _channel_failed(self, name: str, exc: BaseException) -> None:
        self._problem(f"channel {name!r} not written: {type(exc).__name__}: {exc}")

    def _on_data(self, name: str, first_index: int, data: Any) -> None:
        target = self.targets.get(name)
        if target is None:
            self._problem(f"data for unknown node {name!r} ignored")
            return
        assert self._fw is not None
        self.received[name] = max(self.received.get(name, 0), first_index + len(data))
        self._fw.append(target, first_index, data)

    # -- the end -------------------------------------------------------------------
    def _finalize(self) -> None:
        """Final scan_info, metadata, plots, status, then ``end_time`` last."""
        assert self._fw is not None
        try:
            final_info = self._read_info("final scan_info")
            self.info = final_info
        except Exception as e:  # noqa: BLE001 - keep the info read at the start
            self._problem(f"final scan_info unreadable ({e}); metadata from the start kept")
        self._fw.call(self._sync)  # all appends done
        self._check_completeness()
        outcome = ScanState.FAILED if self.state == ScanState.FAILED else ScanState.SUCCEEDED
        self._fw.call(lambda f: self._write_end(f, outcome))
        # On disk before anyone is told (the report follows): a writer killed after a
        # SUCCEEDED report must not leave a file without its end, since the scan is
        # then never written again.
        self._fw.flush()
        if self._fw.error is not None:
            self._fail(f"incomplete: {self.filename}: {self._fw.error}")
        if self.state != ScanState.FAILED:
            self.saving.succeed()
        level = logging.INFO if self.state == ScanState.SUCCEEDED else logging.ERROR
        logger.log(level, "%s: %s %s", self.label, self.state.name,
                   f"({self.saving.reason})" if self.saving.reason else
                   f"-> {self.filename}::{','.join(self.entries)}")

    def _record_final_status(self) -> None:
        """Last resort when finalizing failed: ``writer/status`` FAILED with the reason,
        then ``end_time``, in every entry, each step on its own, so that the file never
        stays RUNNING while Redis says FAILED."""
        assert self.plan is not None
        if self._fw is None:
            return
        reason = self.saving.reason or "finalizing failed"

        def record(f: h5py.File) -> None:
            assert self.plan is not None
            for entry in self.plan.entries.values():
                group = f.get(entry.name)
                if not isinstance(group, h5py.Group):
                    continue
                try:
                    metadata.write_writer_status(group, ScanState.FAILED.name, reason)
                except Exception as e:  # noqa: BLE001 - end_time must still be written
                    logger.error("%s: %s: writer status not recorded: %s", self.label,
                                 entry.name, e)
                try:
                    if "end_time" not in group:
                        write_field(group, "end_time", now_iso())
                except Exception as e:  # noqa: BLE001
                    logger.error("%s: %s: end_time not recorded: %s", self.label,
                                 entry.name, e)

        try:
            self._fw.call(record)
            self._fw.flush()
        except Exception as e:  # noqa: BLE001 - the file cannot be written at all
            logger.error("%s: final status not recorded in %s: %s", self.label,
                         self.filename, e)

    @staticmethod
    def _sync(f: h5py.File) -> None:
        return None

    def _check_completeness(self) -> None:
        # A file that can no longer be written (disk full, failed flush) is named once,
        # not once per channel it stopped.
        file_error = self._fw.error if self._fw is not None else None
        missing = []
        for name, target in self.targets.items():
            expected = (self.published or {}).get(name, self.received.get(name, 0))
            if target.error is not None or target.points < expected:
                why = (f": {target.error}" if target.error is not None
                       and target.error is not file_error else "")
                missing.append(f"{name} {target.points}/{expected} points{why}")
        if self.published is None and self.state == ScanState.RUNNING:
            missing.append("no end of scan received")
        problems = self.problems
        if file_error is not None:
            missing.append(f"{self.filename}: {file_error}")
            problems = [p for p in problems if str(file_error) not in p]
        if missing:
            # the problems say which points are missing and why
            self._fail("incomplete: " + "; ".join(missing + problems))
        elif self.problems and self.state == ScanState.RUNNING:
            self._fail("; ".join(self.problems))

    def _write_end(self, f: h5py.File, outcome: ScanState) -> None:
        assert self.plan is not None
        info = self.info
        names = sorted(self.targets)
        extra = {
            "end_reason": str(self.end_reason or info.get("end_reason") or "unknown"),
            "channels": names or [""],
            "points_written": [self.targets[n].points for n in names] or [0],
            "points_published": [(self.published or {}).get(n, -1) for n in names] or [0],
        }
        layout = None
        ends: dict[str, tuple[Any, dict[str, Any]]] = {}  # the layout's end times
        if self.plan.h5map is not None:
            try:  # the final layout (end time, end positions...)
                layout = h5map.for_file(info.get("h5maps"), str(self.filename))
            except ValueError as e:
                self._problem(f"final h5map not materialised: {e}")
            try:
                if layout is not None:
                    h5map.materialise(f, layout, previous=self.plan.h5map)
                    for entry in self.plan.entries.values():  # "finished" for readers:
                        end = f[entry.name].get("end_time")  # written last, below
                        if isinstance(end, h5py.Dataset):
                            ends[entry.name] = (end[()], dict(end.attrs))
                            del f[entry.name]["end_time"]
                self._write_mapped_children(f)
            except (ValueError, TypeError, OSError, KeyError) as e:
                self._problem(f"final h5map not materialised: {type(e).__name__}: {e}")
        for entry in self.plan.entries.values():
            group = f[entry.name]
            instrument = group["instrument"]
            self._write_plots(f, entry)
            if entry.grid is not None:
                self._grid_axes(f, entry)
            for spec in self.plan.plots(entry):
                if spec.name in self.plan.h5map_names.get(entry.name, ()):
                    continue  # the layout's own item
                plot = group.get(spec.name)
                if isinstance(plot, h5py.Group):
                    fit_plot(plot)
            # with the producer's layout (h5maps), only this writer's status and plots
            esrf = self.plan.h5map is None
            positioners = info.get("positioners")
            if esrf and isinstance(positioners, Mapping):
                try:  # a path the producer declared may hold a snapshot's name
                    metadata.write_positioners(instrument, positioners)
                except (ValueError, TypeError) as e:
                    self._warn(f"positioner snapshots not written: {e}")
            for cat in (info.get("scan_meta_categories") or ()) if esrf else ():
                tree = info.get(cat)
                if isinstance(tree, Mapping) and tree:
                    if nexus_name(str(cat)) == "instrument":
                        tree = self._apart_from_channels(tree, entry)
                    try:
                        metadata.write_category(group, cat, tree)
                    except Exception as e:  # noqa: BLE001 - metadata must not lose the data
                        self._problem(f"metadata category {cat!r} not written: {e}")
            if esrf:
                metadata.write_comments(group, info.get("comments") or ())
            if self.children and entry is next(iter(self.plan.entries.values())):
                subscans = require_group(group, "subscans", "NXcollection")
                for number, _ in self.children:
                    target = f"/{number}.1"
                    if target in f:
                        soft_link(subscans, f"scan_{number}", target)
                    else:  # not written yet (or elsewhere): a child links itself (below)
                        logger.debug("%s: child scan %d has no entry in %s yet", self.label,
                                     number, self.filename)
            if entry is next(iter(self.plan.entries.values())):
                self._write_application(group)
            if self.problems:  # in the file too, not only in the log
                extra["problems"] = list(self.problems)
            if self.warnings:
                extra["warnings"] = list(self.warnings)
            metadata.write_writer_status(group, outcome.name, self.saving.reason, extra)
            if entry.name in ends:
                value, attrs = ends[entry.name]
                write_field(group, "end_time", decode_text(value), **attrs)
            elif self.plan.h5map is None or "end_time" not in group:
                write_field(group, "end_time", str(info.get("end_time") or now_iso()))

    def _write_mapped_children(self, f: h5py.File) -> None:
        """A sequence's children stream placed by the layout: one JSON event per child
        (``{"key", "scan_number"}``, as published), in order."""
        assert self.plan is not None
        for name in self._ref_nodes:
            mapped = self.plan.h5map_streams.get(name)
            if mapped is None:
                continue
            path, attrs = mapped
            parent, _, field_name = path.rpartition("/")
            events = [json.dumps({"key": key, "scan_number": number})
                      for number, key in self.children]
            dset = write_field(f.require_group("/" + parent), field_name, events or [""])
            if not events:
                del f["/" + parent][field_name]
                dset = f["/" + parent].create_dataset(field_name, shape=(0,),
                                                      dtype=h5py.string_dtype())
            dset.attrs.update(attrs)

    @staticmethod
    def _apart_from_channels(tree: Mapping[str, Any], entry: EntryPlan) -> dict[str, Any]:
        """The ``instrument`` metadata category with the keys that name a channel group
        (metadata completed after the start) renamed ``key_2``...: metadata never
        merges into a channel's group."""
        channels = {name for name, _ in entry.groups.values()}
        taken = set(entry.group_names)
        renamed: dict[str, str] = {}
        out: dict[str, Any] = {}
        for key, value in tree.items():
            name, at, attr = str(key).partition("@")
            if name and nexus_name(name) in channels:
                if name not in renamed:
                    renamed[name] = unique_name(nexus_name(name), taken)
                    logger.debug("instrument metadata %r written as %r (a channel's name)",
                                 name, renamed[name])
                key = renamed[name] + at + attr
            out[key] = value
        return out

    def _write_application(self, group: h5py.Group) -> None:
        """The application definition of the scan's technique, if it names one, in
        the first entry; a scan that cannot satisfy it gets a warning."""
        assert self.plan is not None
        try:
            template = appdef.select_template(self.info, self.options.technique)
            if template is None:
                return
            channels = [appdef.ChannelRef(c.node.name, self.plan.display_of(c.node),
                                          self.plan.device_of(c.node), c.kind, c.path)
                        for c in self.plan.entries[next(iter(self.plan.entries))].channels
                        if c.path in self._created]
            roles = appdef.resolve(template, channels)
            sub = appdef.write_subentry(group, template, roles, self.info)
            logger.info("%s: %s written in %s", self.label, template.definition, sub.name)
        except appdef.AppDefError as e:
            self._warn(str(e))

    def _grid_axes(self, f: h5py.File, entry: EntryPlan) -> None:
        """Coordinates of a mesh plot, from the motor data: fast axis is dim 1."""
        assert self.plan is not None and entry.grid is not None
        motors = [c for c in self.plan.axes(entry) if c.motor][:2]
        if len(motors) < 2:
            return
        fast, slow = motors[0], motors[1]
        grid = entry.grid
        fast_data = f[fast.path]
        slow_data = f[slow.path]
        if fast_data.ndim == 2 and slow_data.ndim == 2:  # keepshape: stored as the grid
            fast_values, slow_values = fast_data[0, :], slow_data[:, 0]
        else:
            fast_values = fast_data[:grid.fast]
            slow_values = slow_data[::grid.fast][:grid.slow]
        if len(fast_values) < grid.fast or len(slow_values) < grid.slow:
            return
        for spec in self.plan.plots(entry):
            if spec.name in f[entry.name] and spec.name in ("plotselect", "plot0D"):
                set_grid_axes(f[entry.name][spec.name], [
                    (slow.measurement, slow_values, f[slow.path].attrs.get("units", "")),
                    (fast.measurement, fast_values, f[fast.path].attrs.get("units", ""))])
