"""Fixtures of the Tango device tests: a ``BlissWriter`` device without a Tango
database (``tango.test_context.DeviceTestContext``), and the calls BLISS 2.4 makes."""

from __future__ import annotations

import json
import time
from typing import Any, Callable

import pytest

from tests import waiting

tango = pytest.importorskip("tango")

from tango import DevState  # noqa: E402
from tango.test_context import DeviceTestContext  # noqa: E402

from nexus_writer.tango.device import BlissWriter  # noqa: E402

#: What BLISS 2.4 waits for each step of its checks (``ExternalTangoMappingWriter._retry``).
BLISS_TIMEOUT = 10.0


@pytest.fixture
def blisswriter(redis_url) -> Callable[..., Any]:
    """``start(**properties)`` -> a proxy to a running BlissWriter device (stopped after);
    ``redis_url`` is the test server's and writes flush every 0.1 s unless given."""
    contexts: list[DeviceTestContext] = []

    def start(**properties: Any) -> Any:
        properties.setdefault("redis_url", redis_url)
        properties.setdefault("writer_options", json.dumps({"flush_period": 0.1}))
        context = DeviceTestContext(BlissWriter, properties=properties, timeout=30)
        contexts.append(context)
        return context.__enter__()

    yield start
    for context in contexts:
        context.__exit__(None, None, None)


def wait_for(what: str, condition: Callable[[], Any], timeout: float = 20.0) -> Any:
    """Poll ``condition`` until it is true; fail naming ``what`` after ``timeout`` s
    (:func:`tests.waiting.wait_for`, with BLISS-like argument order)."""
    return waiting.wait_for(condition, timeout, what)


class Bliss:
    """The calls of BLISS 2.4's ``ExternalTangoMappingWriter`` on one scan, in its order."""

    def __init__(self, device: Any, scan_key: str):
        self.device = device
        self.key = scan_key
        self.warnings: list[str] = []

    def prepare(self) -> None:
        """``_writer_ready_checks``: writer ON or RUNNING, SaveScan accepted, the scan
        known (not UNKNOWN), then running (ON; FAULT raises with the reason)."""
        state = self.device.state()
        assert state in (DevState.ON, DevState.RUNNING), f"writer {state}: {self.device.status()}"
        assert self.device.SaveScan(self.key) is True
        wait_for("the scan known to the writer",
                 lambda: self.device.scan_state(self.key) != DevState.UNKNOWN, BLISS_TIMEOUT)
        wait_for("the writer running the scan", self._running, BLISS_TIMEOUT)

    def _running(self) -> bool:
        state = self.device.scan_state(self.key)
        if state == DevState.FAULT:
            raise AssertionError(f"Scan writer state is FAULT: "
                                 f"{self.device.scan_state_reason(self.key)}")
        return state == DevState.ON

    def check(self) -> DevState:
        """``_check_writer``: new warnings (GetWarningCount, GetWarning by index), then
        the scan state; returns it."""
        count = self.device.GetWarningCount(self.key)
        while len(self.warnings) < count:
            arg = json.dumps({"scan_key": self.key, "index": len(self.warnings)})
            self.warnings.append(self.device.GetWarning(arg))
        return self.device.scan_state(self.key)

    def finished(self, timeout: float = 20.0) -> DevState:
        """Checks until the writer is done with the scan (OFF or FAULT)."""
        deadline = time.monotonic() + timeout
        while True:
            state = self.check()
            if state in (DevState.OFF, DevState.FAULT):
                return state
            assert time.monotonic() < deadline, \
                f"timed out ({timeout} s) waiting for the end of the writing: {state}"
            time.sleep(0.05)


@pytest.fixture
def replays(bliss_store, tmp_path):
    """``make(name, base=tmp_path)`` -> a recorded BLISS 2.4 scan to replay (created, not
    run); any stream left open by a failed test is sealed after it (blissdata's sink
    threads would keep the interpreter from exiting)."""
    from ..blissdata_replay import ScanReplay, load_fixture

    made = []

    def make(name: str, base: Any = None) -> Any:
        made.append(ScanReplay(bliss_store, load_fixture(name), base or tmp_path))
        return made[-1]

    yield make
    for replay in made:
        if replay.scan is not None:
            try:
                replay.seal()
            except Exception:  # noqa: BLE001 - sealed already, or the server is gone
                pass
