"""Process-wide settings for a process whose job is writing (the CLI, the Tango
device server): called by those adapters, never by the library itself."""

from __future__ import annotations

import gc


def freeze_startup_objects() -> None:
    """Move every object alive now (the imported modules: h5py, blissdata, pydantic
    models...) out of the garbage collector's reach.

    A writer allocates many short-lived objects per scan; each full collection then
    walked the hundreds of thousands of objects of its imports, a pause of tens of
    milliseconds in the middle of some scan (``gc.freeze``, Python's advice for
    long-running servers).  Objects made later are collected as usual.
    """
    gc.collect()
    gc.freeze()
