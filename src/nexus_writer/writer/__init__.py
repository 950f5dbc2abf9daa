"""Scan and session writers: Redis (through a source) -> NeXus/HDF5, live."""

from .options import WriterOptions
from .scan import EntryExistsError, SavingError, ScanWriter
from .session import SessionWriter
from .source import RedisScanSource, ScanSource
from .state import ScanState

__all__ = ["EntryExistsError", "RedisScanSource", "SavingError", "ScanSource", "ScanState",
           "ScanWriter", "SessionWriter", "WriterOptions"]
