"""Waiting in tests: every wait polls the state it needs, has a deadline, and says what
it waited for when the deadline passes (instead of a bare pytest-timeout minutes later).
"""

from __future__ import annotations

import threading
import time
from typing import Callable, TypeVar

T = TypeVar("T")


def wait_for(predicate: Callable[[], T], timeout: float, what: str,
             details: Callable[[], object] = lambda: "", interval: float = 0.02) -> T:
    """Poll ``predicate`` until it returns something true, and return that.

    After ``timeout`` seconds: ``AssertionError("{what}: not within {timeout} s")``
    followed by ``details()`` (a log, the state seen) to say why.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            extra = details()
            raise AssertionError(f"{what}: not within {timeout} s" + (f"\n{extra}" if extra
                                                                      else ""))
        time.sleep(interval)


def returns_within(call: Callable[[], T], timeout: float, what: str) -> T:
    """``call()``, which must return by itself within ``timeout`` seconds: for a call
    given a much longer timeout of its own, to show that it did not wait for it.

    Runs in a daemon thread; its exception, if any, is raised here.
    """
    result: list[T] = []
    error: list[BaseException] = []

    def run() -> None:
        try:
            result.append(call())
        except BaseException as e:  # noqa: BLE001 - raised in the caller's thread
            error.append(e)

    thread = threading.Thread(target=run, daemon=True, name=f"returns_within: {what}")
    thread.start()
    thread.join(timeout)
    assert not thread.is_alive(), f"{what}: still waiting after {timeout} s"
    if error:
        raise error[0]
    return result[0]
