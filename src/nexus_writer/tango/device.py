"""``BlissWriter``: the Tango device BLISS 2.x asks whether each scan is saved.

A drop-in for blisswriter 3.0.0's device of the same class name: BLISS 2.4 with
``SCAN_SAVING.writer = "mapping"`` finds the ``BlissWriter`` device whose ``session``
property names its session and calls, per scan, ``state()`` (ON or RUNNING),
``SaveScan(key)``, ``scan_state(key)`` until the scan runs, then every few seconds
``scan_state``, ``GetWarningCount`` / ``GetWarning``, and ``scan_state_reason`` on a
FAULT.  The device is an adapter: the writing is :class:`SessionWriter`'s, on demand
(``SaveScan``) or, with the ``follow_session`` property, for every scan of the session.

Scan states, as blisswriter maps them: writer STARTING (or READY) -> INIT, RUNNING ->
ON, SUCCEEDED or SKIPPED -> OFF, FAILED -> FAULT, a scan no writer took -> UNKNOWN.
Device states: ON (accepting ``SaveScan``), OFF (after ``Stop``: refusing), INIT,
FAULT after an internal error, until ``Init``.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
from typing import Any

from tango import DevState
from tango.server import Device, attribute, command, device_property

from ..data.saving import writer_present
from ..data.walk import connection_lost
from ..writer import SessionWriter
from ..writer.runtime import freeze_startup_objects
from ..data.urls import redact_url as redacted

logger = logging.getLogger(__name__)

#: Writer states (ScanWriter's, and those of the saving reports in Redis) as BLISS reads them.
SCAN_DEV_STATES = {
    "STARTING": DevState.INIT, "READY": DevState.INIT,
    "RUNNING": DevState.ON,
    "SUCCEEDED": DevState.OFF, "SKIPPED": DevState.OFF,
    "FAILED": DevState.FAULT, "REFUSED": DevState.FAULT,
}
#: Seconds between two checks of Redis and of the writer (the ``heartbeat`` attribute).
HEARTBEAT_PERIOD = 1.0
#: Scans listed by the ``scan_progress`` attribute (the most recent ones).
PROGRESS_SCANS = 50


class BlissWriter(Device):
    """Saves the scans BLISS asks for (``SaveScan``) and tells how each one goes."""

    redis_url = device_property(dtype=str, default_value="",
                                doc="URL of the Redis database the scans are published in")
    session = device_property(dtype=str, default_value="",
                              doc="BLISS session served (how BLISS finds its writer)")
    follow_session = device_property(
        dtype=bool, default_value=False,
        doc="write every scan of `session` as NexusSessionWriter does, not only those "
            "asked for with SaveScan")
    protocol = device_property(
        dtype=str, default_value="auto",
        doc="scans published by BLISS 2.x (blissdata), this project's native protocol, "
            "or auto: what the Redis server speaks")
    writer_options = device_property(
        dtype=str, default_value="{}",
        doc='JSON object of writer options, e.g. {"flush_period": 0.5, "keepshape": true}')

    # -- life cycle ------------------------------------------------------------------
    def init_device(self) -> None:
        super().init_device()
        self._initialising = True
        self._fault: str | None = None
        self._accepting = True
        self._last_error = ""
        self._heartbeat = 0.0
        self._writer: SessionWriter | None = None
        # Writers replaced by Init finish their scans in the background; their scans
        # are still looked up (a scan must never be taken by two writers).
        self._retiring: list[SessionWriter] = [w for w in getattr(self, "_retiring", [])
                                               if w.active()]
        self._stop_monitor = threading.Event()
        self._monitor: threading.Thread | None = None
        self._lock = threading.Lock()
        url = redacted(self.redis_url or "")
        try:
            if not self.redis_url:
                raise ValueError("device property redis_url is not set")
            options = json.loads(self.writer_options or "{}")
            if not isinstance(options, dict):
                raise ValueError(f"writer_options is not a JSON object: {self.writer_options}")
            if self.follow_session and not self.session:
                raise ValueError("follow_session needs the session property")
            writer = SessionWriter(self.session or "", self.redis_url,
                                   protocol=self.protocol or "auto", **options)
            if self.follow_session:
                writer.start()
            freeze_startup_objects()
            self._writer = writer
            logger.info("BlissWriter %s: on %s, %s protocol (session %r, %s)", self.get_name(),
                        url, writer.protocol, self.session,
                        "following it" if self.follow_session else "on demand")
            self._monitor = threading.Thread(target=self._watch, daemon=True,
                                             name="BlissWriter heartbeat")
            self._monitor.start()
        except Exception as e:  # noqa: BLE001 - the device says why in its status
            self._set_fault(f"initialization failed: {type(e).__name__}: "
                            f"{self._clean(str(e))}")
        finally:
            self._initialising = False

    def delete_device(self) -> None:
        """Before ``Init`` (and at exit): stop taking scans; those in progress go on."""
        self._stop_monitor.set()
        writer, self._writer = self._writer, None
        if writer is not None:
            writer.stop_listening()
            if writer.active():
                self._retiring.append(writer)
                threading.Thread(target=writer.stop, daemon=True,
                                 name="BlissWriter retiring").start()
            else:
                writer.stop(timeout=0)
        super().delete_device()

    def _clean(self, text: str) -> str:
        """``text`` with the Redis URL's password masked."""
        url = self.redis_url or ""
        return text.replace(url, redacted(url)) if url else text

    def _set_fault(self, message: str) -> None:
        self._fault = self._last_error = message
        logger.error("BlissWriter %s: FAULT: %s", self.get_name(), message)

    def _error(self, message: str) -> None:
        message = self._clean(message)
        # BLISS repeats a refused request ten times a second: logged once
        level = logging.DEBUG if message == self._last_error else logging.WARNING
        self._last_error = message
        logger.log(level, "BlissWriter %s: %s", self.get_name(), message)

    def _watch(self) -> None:
        """Heartbeat: Redis answers and, when following the session, the listener lives."""
        while not self._stop_monitor.is_set():
            writer = self._writer
            if writer is None:
                return
            try:
                writer.store.redis.ping()
            except Exception as e:  # noqa: BLE001 - said in last_error, the heartbeat stops
                self._error(f"Redis unreachable: {e}")
            else:
                if self.follow_session and not writer.listening and self._fault is None:
                    self._set_fault(f"the listener of session {self.session!r} stopped "
                                    "(see the log); run Init")
                else:
                    self._heartbeat = time.time()
            self._stop_monitor.wait(HEARTBEAT_PERIOD)

    def dev_state(self) -> DevState:
        if self._initialising:
            state = DevState.INIT
        elif self._fault is not None:
            state = DevState.FAULT
        else:
            state = DevState.ON if self._accepting else DevState.OFF
        self.set_state(state)
        return state

    def dev_status(self) -> str:
        state = self.dev_state()
        if state == DevState.FAULT:
            text = f"FAULT: {self._fault}. Run Init once the cause is fixed."
        elif state == DevState.OFF:
            text = "OFF: SaveScan requests are refused (Start accepts them again)."
        else:
            text = f"{state.name}: accepting SaveScan requests."
        if self._writer is not None:
            active = len(self._active())
            text += (f" Redis {redacted(self.redis_url)}; session {self.session!r}"
                     f"{' (followed)' if self.follow_session else ''}; "
                     f"{active} scan(s) in progress.")
        self.set_status(text)
        return text

    def _refuse_when_fault(self) -> None:
        if self._fault is not None:
            raise RuntimeError("Device is in FAULT state and cannot be resumed "
                               f"({self._fault}). Run the Init command to reinitialize it.")

    # -- blisswriter's commands ------------------------------------------------------
    @command
    def Start(self) -> None:
        """Accept SaveScan requests again (device ON)."""
        self._refuse_when_fault()
        self._accepting = True
        logger.info("BlissWriter %s: accepting SaveScan requests again", self.get_name())

    @command
    def Stop(self) -> None:
        """Refuse new SaveScan requests (device OFF); scans being written go on."""
        self._refuse_when_fault()
        self._accepting = False
        logger.info("BlissWriter %s: no longer accepting SaveScan requests", self.get_name())

    @command(dtype_in=str, dtype_out=bool)
    def SaveScan(self, scan_key: str) -> bool:
        """Write the scan ``scan_key``; False when refused (device not ON, unknown scan,
        Redis away: ``last_error`` says why)."""
        writer = self._writer
        if self._fault is not None or not self._accepting or writer is None:
            self._error(f"SaveScan {scan_key}: refused, the device must be ON "
                        f"(it is {self.dev_state().name})")
            return False
        try:
            with self._lock:
                if self._known(scan_key) is not None:
                    return True
                if self._other_writer_alive(scan_key):
                    # never two writers on one scan: its reports are relayed (scan_state)
                    logger.info("BlissWriter %s: %s is saved by the writer that follows its "
                                "session", self.get_name(), scan_key)
                    return True
                writer.save_scan(scan_key)
        except (KeyError, ValueError, ConnectionError) as e:
            message = e.args[0] if isinstance(e, KeyError) and e.args else e
            self._error(f"SaveScan {scan_key}: refused: {message}")
            return False
        except Exception as e:
            self._set_fault(f"SaveScan {scan_key}: {type(e).__name__}: "
                            f"{self._clean(str(e))}")
            raise
        return True

    @command(dtype_in=str, dtype_out=DevState)
    def scan_state(self, scan_key: str) -> DevState:
        """INIT (preparing), ON (being written), OFF (saved), FAULT (failed: see
        ``scan_state_reason``), UNKNOWN (no writer took it)."""
        status = self._status(scan_key)
        if status is None:
            return DevState.UNKNOWN
        return SCAN_DEV_STATES.get(str(status.get("state")), DevState.UNKNOWN)

    @command(dtype_in=str, dtype_out=str)
    def scan_state_reason(self, scan_key: str) -> str:
        """Why the scan is in its state (empty when all goes well)."""
        status = self._status(scan_key)
        if status is None:
            return f"scan {scan_key} is unknown to this writer (never requested with " \
                   "SaveScan, or expired)"
        return str(status.get("reason") or "")

    @command(dtype_in=str, dtype_out=int)
    def GetWarningCount(self, scan_key: str) -> int:
        """Number of warnings on the scan so far (malformed data, metadata not written...)."""
        return len(self._problems(scan_key))

    @command(dtype_in=str, dtype_out=str)
    def GetWarning(self, json_value: str) -> str:
        """Warning ``index`` of scan ``scan_key``: ``{"scan_key": ..., "index": i}``."""
        try:
            value = json.loads(json_value)
            scan_key, index = str(value["scan_key"]), int(value["index"])
        except (ValueError, KeyError, TypeError) as e:
            raise ValueError(f"GetWarning expects '{{\"scan_key\": KEY, \"index\": I}}', "
                             f"not {json_value!r} ({e})") from e
        problems = self._problems(scan_key)
        if not 0 <= index < len(problems):
            raise IndexError(f"scan {scan_key} has {len(problems)} warning(s); no index {index}")
        return str(problems[index])

    # -- what blisswriter lacks: read-only attributes --------------------------------
    @attribute(dtype=(str,), max_dim_x=10000)
    def scans_in_progress(self) -> list[str]:
        """Keys of the scans being written."""
        return [w.source.key for w in self._active()]

    @attribute(dtype=(int,), max_dim_x=10000)
    def points_written(self) -> list[int]:
        """Per scan in progress (same order): points in the file, in every channel."""
        return [self._points(w.stats(), "written") for w in self._active()]

    @attribute(dtype=(int,), max_dim_x=10000)
    def points_published(self) -> list[int]:
        """Per scan in progress: points published in every channel (read so far while
        the scan runs, the producer's counts once it ended)."""
        return [self._points(w.stats(), "published") for w in self._active()]

    @attribute(dtype=str)
    def scan_progress(self) -> str:
        """JSON: per recent scan, its state, reason, file, and per channel the points
        written and published."""
        out = {}
        for w in self._scans()[-PROGRESS_SCANS:]:
            s = w.stats()
            out[s["key"]] = {"state": s["state"], "reason": s["reason"], "file": s["file"],
                             "channels": {n: {"written": c["written"],
                                              "published": c["published"]
                                              if c["published"] is not None
                                              else c["received"]}
                                          for n, c in s["channels"].items()}}
        return json.dumps(out)

    @attribute(dtype=str)
    def last_error(self) -> str:
        """The last refusal or error (empty when none)."""
        return self._last_error

    @attribute(dtype=float, unit="s")
    def heartbeat(self) -> float:
        """Epoch time of the last check that found Redis reachable and the writer alive
        (every second); 0 before the first one."""
        return self._heartbeat

    @attribute(dtype=str)
    def writer_host(self) -> str:
        """``host:pid`` of this device server (whose files may be locked)."""
        return f"{socket.gethostname()}:{os.getpid()}"

    # -- helpers ---------------------------------------------------------------------
    def _writers(self) -> list[SessionWriter]:
        return ([self._writer] if self._writer is not None else []) + list(self._retiring)

    def _scans(self) -> list[Any]:
        return [s for w in self._writers() for s in w.scans()]

    def _active(self) -> list[Any]:
        return [s for w in self._writers() for s in w.active()]

    def _known(self, scan_key: str) -> dict[str, Any] | None:
        """The live status of a scan one of this device's writers has (no Redis read)."""
        for w in self._writers():
            scan = w.writers.get(scan_key)
            if scan is not None:
                return scan.stats()
        return None

    def _status(self, scan_key: str) -> dict[str, Any] | None:
        """The scan's status: live when this device writes it; else from the reports in
        Redis.  A scan a writer accepted and never finished (this device, killed and
        restarted) is taken again, and resumed, unless another writer is alive on its
        session.  None when no writer took the scan."""
        with self._lock:
            known = self._known(scan_key)
            if known is not None or self._writer is None:
                return known
            writer = self._writer
            try:
                status = writer.scan_status(scan_key)
                if (status is None or status["state"] not in ("STARTING", "READY", "RUNNING")
                        or self._fault is not None or self._other_writer_alive(scan_key)):
                    return status
            except ConnectionError as e:
                self._error(f"scan {scan_key}: state unknown: {e}")
                return None
            logger.warning("BlissWriter %s: scan %s was left unfinished (%s) by a writer "
                           "that stopped; resuming it", self.get_name(), scan_key,
                           status["state"])
            try:
                scan = writer.save_scan(scan_key)
            except (KeyError, ValueError, ConnectionError) as e:
                self._error(f"scan {scan_key}: not resumed: {e}")
                return status
            return scan.stats() if scan is not None else writer.scan_status(scan_key)

    def _other_writer_alive(self, scan_key: str) -> bool:
        """Whether another writer's heartbeat is on the scan's session (it resumes it)."""
        assert self._writer is not None
        store = self._writer.store
        try:
            session = self._writer.scan_session(scan_key)
            with connection_lost(f"heartbeat of session {session!r}"):
                seen = writer_present(store, session)
        except (KeyError, ValueError):  # not in Redis, unreadable: the caller says so
            return False
        if seen is None:
            return False
        ours = self._writer.presence.info  # announced only when following the session
        return not (self._writer.listening and all(
            seen.get(k) == str(ours[k]) for k in ("pid", "host", "started")))

    def _problems(self, scan_key: str) -> list[str]:
        status = self._status(scan_key)
        if status is None:
            raise KeyError(f"scan {scan_key} is unknown to this writer (never requested "
                           "with SaveScan, or expired)")
        return list(status.get("problems") or ())

    @staticmethod
    def _points(stats: dict[str, Any], what: str) -> int:
        """The smallest count over the scan's channels (-1 when it has none yet)."""
        counts = [c[what] if c[what] is not None else c["received"]
                  for c in stats["channels"].values()]
        return min(counts) if counts else -1
