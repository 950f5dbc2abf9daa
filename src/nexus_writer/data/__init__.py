"""The scan data API on Redis streams: producer and listener sides.

Producer: :class:`DataStore` -> :meth:`DataStore.create_scan` -> channels, camera
references, ``start`` / ``end``.  Listener: :meth:`DataStore.get_session_node` ->
``iterator.walk_on_new_events`` -> ``scan_node.iterator.walk_events``.
"""

from .nodes import ChannelNode, DataNode, LimaNode, NodeRefNode, ScanNode, SessionNode
from .protocol import DEFAULT_RETENTION, PROTOCOL_VERSION, LimaReference, NodeDef
from .publish import ChannelPublisher, LimaPublisher, ScanPublisher, deep_update
from .saving import SavingReport, SavingReporter, WriterPresence
from .store import DataStore
from .walk import (EventData, EventType, RedisConnectionLost, ScanIterator, ScanTimeoutError,
                   SessionIterator)

__all__ = [
    "DEFAULT_RETENTION", "PROTOCOL_VERSION", "ChannelNode", "ChannelPublisher", "DataNode",
    "DataStore", "EventData", "EventType", "LimaNode", "LimaPublisher", "LimaReference",
    "NodeDef", "NodeRefNode", "RedisConnectionLost", "SavingReport", "SavingReporter",
    "WriterPresence", "ScanIterator", "ScanNode", "ScanPublisher", "ScanTimeoutError",
    "SessionIterator", "SessionNode", "deep_update",
]
