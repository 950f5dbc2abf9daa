"""Example: using the data API for HDF5 saving (the seed's external_saving_example).

    python examples/external_saving_example.py [--redis URL] [--session test_session]
                                               [--output DIR]

It listens to the scans of a session (run ``examples/some_scans.py --redis URL`` in
another terminal to make some).  For each new scan an ``HDF5_Writer`` runs in a
thread: it walks the scan's events, creates a dataset per channel when the node
appears (``NEW_NODE``), appends the new points when data arrives
(``NEW_DATA_IN_CHANNEL``) and, at ``END_SCAN``, resolves the camera references and
writes the scan_info metadata with silx ``dicttonx``.

This illustrates the data API; it is not the product writer (``nexus-writer write``
writes NeXus files live, checks completeness and never overwrites).
"""

from __future__ import annotations

import argparse
import logging
import os
import threading

import h5py
import numpy as np
from silx.io.dictdump import dicttonx

from nexus_writer.data import DataStore, EventType

logger = logging.getLogger("external_saving_example")


class HDF5_Writer:  # noqa: N801 - the seed's name
    """Writes one scan into ``{output}/{session}_{scan name}.h5``, in its own thread."""

    def __init__(self, scan_node, output: str):
        self.scan_node = scan_node
        self.filename = os.path.join(output, f"{scan_node.session}_{scan_node.name}.h5")
        self.file = h5py.File(self.filename, "w")
        self.entry = self.file.create_group(scan_node.name)
        self.entry.attrs["NX_class"] = "NXentry"
        self.measurement = self.entry.create_group("measurement")
        self.measurement.attrs["NX_class"] = "NXcollection"
        self.last_index: dict[str, int] = {}  # points written per channel
        self.lima_nodes: list = []
        self.thread = threading.Thread(target=self.run, name=scan_node.name, daemon=True)

    def start(self) -> "HDF5_Writer":
        self.thread.start()
        return self

    def run(self) -> None:
        try:
            for event_type, node in self.scan_node.iterator.walk_events():
                if event_type == EventType.NEW_NODE:
                    self.new_node(node)
                elif event_type == EventType.NEW_DATA_IN_CHANNEL and node.type == "channel":
                    self.new_data(node)
                elif event_type == EventType.ERROR:
                    logger.error("%s: %s", self.scan_node.name, node)
                elif event_type == EventType.END_SCAN:
                    self.finalize()
                    break
        finally:
            self.file.close()

    @staticmethod
    def dataset_name(node) -> str:
        return node.name.replace(":", "_")

    def new_node(self, node) -> None:
        """A dataset per channel, empty and growing; cameras are resolved at the end."""
        if node.type == "lima":
            self.lima_nodes.append(node)
        elif node.type == "channel":
            if any(d < 0 for d in node.shape):  # points of varying length (SAMPLES mode)
                dtype, shape = h5py.vlen_dtype(node.dtype), ()
            else:
                dtype, shape = node.dtype, tuple(node.shape)
            self.measurement.create_dataset(self.dataset_name(node), shape=(0,) + shape,
                                            maxshape=(None,) + shape, dtype=dtype)
            self.last_index[node.name] = 0

    def new_data(self, node) -> None:
        """Append the points published since the last time."""
        first = self.last_index[node.name]
        data = node.get(first, -1)
        if len(data) == 0:
            return
        dset = self.measurement[self.dataset_name(node)]
        dset.resize(first + len(data), axis=0)
        if isinstance(data, list):  # varying length: one array per point
            for i, point in enumerate(data):
                dset[first + i] = point
        else:
            dset[first:] = data
        self.last_index[node.name] = first + len(data)

    def finalize(self) -> None:
        """Camera references and metadata: END_SCAN comes after all the scan's data,
        and scan_info is final now."""
        info = self.scan_node.info
        for node in self.lima_nodes:
            refs = node.get_references()
            images = self.entry.require_group(f"images/{self.dataset_name(node)}")
            images.create_dataset("file_path", data=[r.file_path for r in refs],
                                  dtype=h5py.string_dtype())
            images.create_dataset("data_path", data=[r.data_path for r in refs],
                                  dtype=h5py.string_dtype())
            images.create_dataset("frame_index", data=np.array([r.frame_index for r in refs]))
        metadata = {key: info[key] for key in ("title", "start_time", "end_time")
                    if key in info}
        for category in info.get("scan_meta_categories") or ():
            if isinstance(info.get(category), dict):
                metadata[category] = info[category]
        if isinstance(info.get("positioners"), dict):
            metadata["positioners"] = info["positioners"]
        dicttonx(metadata, self.file, h5path=self.entry.name, update_mode="add")
        logger.info("%s saved in %s", self.scan_node.name, self.filename)


def listen_to_session_wait_for_scans(session: str, store: DataStore | None = None,
                                     output: str = ".", stop: threading.Event | None = None,
                                     ready: threading.Event | None = None,
                                     writers: list | None = None) -> None:
    """Start an ``HDF5_Writer`` for every new scan of ``session`` until ``stop`` is set."""
    store = store or DataStore()
    session_node = store.get_session_node(session)
    # wait for new events on scans (scan groups, i.e. sequences, are not written here)
    events = session_node.iterator.walk_on_new_events(filter="scan", from_next=True, stop=stop)
    if ready is not None:
        ready.set()  # the walk starts from this moment, even before the first next()
    for event_type, node in events:
        if event_type == EventType.NEW_NODE:
            writer = HDF5_Writer(node, output).start()
            if writers is not None:
                writers.append(writer)
        elif event_type == EventType.END_SCAN:
            logger.info("%s ended", node.name)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--redis", metavar="URL", help="Redis URL (default: $REDIS_URL)")
    parser.add_argument("--session", default="test_session", help="session to listen to")
    parser.add_argument("--output", default=".", help="directory of the HDF5 files")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    os.makedirs(args.output, exist_ok=True)
    try:
        listen_to_session_wait_for_scans(args.session, DataStore(args.redis), args.output)
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
