"""Waiting in tests: every wait polls the state it needs, has a deadline, and says what
it waited for when the deadline passes (instead of a bare pytest-timeout minutes later).
"""

from __future__ import annotations

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
