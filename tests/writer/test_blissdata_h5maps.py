"""Scans whose info carries ``h5maps`` (a finished layout, ``blissdata.h5map``): the
file holds exactly what the map describes, item by item, plus only this writer's
own additions (status, plots, ``@default``).  The fixtures' maps are a stand-in's,
not ESRF's layout."""

from __future__ import annotations

import re

import h5py
import pytest

from nexus_writer.nexus import h5map
from nexus_writer.nexus.validate import validate_file

from ..blissdata_replay import ScanReplay, load_fixture
from .bliss_helpers import assert_materialised, wait_final
from .helpers import decode
from .test_blissdata_fixtures import SAVED

def warnings_from_map(messages: list[str], roots: list) -> int:
    """How many of the check's warnings are about items the maps themselves define
    (their NeXus classes, their names); fails on any other (the writer's own)."""
    mapped = {p: item for root in roots for p, item in h5map.items(root)}
    paths = set(mapped)
    count, current = 0, None
    for line in messages:
        m = re.match(r"^(?:Field|NX\w+): (/\S*)$", line)
        if m:  # reached through a sequence's link to its child: the child's own item
            current = re.sub(r"^/\d+\.1/subscans/scan_(\d+)", r"/\1.1", m.group(1))
        elif ("is not defined" in line or "is not a valid" in line
              or re.match(r"^Units of \w+ not specified", line)):
            attr = re.match(r'^"@(\w+)" is not defined as an attribute', line)
            assert current in paths, f"warning on {current}, which the map does not hold"
            if attr:
                assert attr.group(1) in mapped[current].attributes, line
            count += 1
    return count


@pytest.mark.parametrize("name", SAVED)
def test_h5maps_materialised_exactly(name, bliss_store, nxw_store, bliss_writer, tmp_path):
    bliss_writer()
    replay = ScanReplay(bliss_store, load_fixture(name), tmp_path, h5maps=True).run()
    scans = [replay] + replay.children
    for scan in scans:
        assert wait_final(nxw_store, scan.key).state == "SUCCEEDED"
    filename = replay.fixture["info"]["filename"]
    with h5py.File(filename, "r", locking=False) as f:
        for scan in scans:
            root = h5map.for_file(scan.fixture["h5maps_standin"]["CLOSED"], filename)
            streams = {s["name"]: s for s in scan.fixture["streams"]}
            if "SUBSCANS" in streams:  # the children's keys are new in the replay
                streams["SUBSCANS"] = dict(streams["SUBSCANS"], data=[
                    {"key": c.key, "scan_number": c.number} for c in scan.children])
            assert assert_materialised(f, root, streams) > 10
            entry = f[f"{scan.number}.1"]
            assert decode(entry["writer/status"][()]) == "SUCCEEDED"
            # the map's own creator attribute wins over the writer's
            assert decode(f.attrs["creator"]).startswith("stand-in h5map generator")
    report = validate_file(filename)
    assert report.errors == 0, report.messages
    assert report.default_plot is not None, "no working @default chain"
    roots = [h5map.for_file(s.fixture["h5maps_standin"]["CLOSED"], filename) for s in scans]
    assert report.warnings == warnings_from_map(report.messages, roots)
