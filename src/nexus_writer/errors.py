"""The project's one exception root.

Every subclass also inherits the matching built-in, so callers that only know
``ValueError`` or ``RuntimeError`` still catch them.
"""

from __future__ import annotations


class NexusWriterError(Exception):
    """Root of every error raised on purpose by nexus-writer."""


class ProtocolVersionError(NexusWriterError, RuntimeError):
    """The Redis database speaks another version of the wire protocol."""


class DataValidationError(NexusWriterError, ValueError):
    """Data sent to a channel does not match its declared dtype or shape."""


class MalformedEntryError(NexusWriterError, ValueError):
    """A Redis stream entry cannot be decoded."""


class ScanStateError(NexusWriterError, RuntimeError):
    """An operation is illegal in the scan's current state."""
