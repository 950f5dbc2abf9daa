"""Camera (lima) references and sequences of scans (scan_group)."""

from __future__ import annotations

import numpy as np
import pytest

from nexus_writer.data import EventType, LimaNode, LimaReference, NodeRefNode, ScanNode
from nexus_writer.errors import ScanStateError

pytestmark = pytest.mark.timeout(20)

SESSION = "lima_session"
NEW, DATA, END, ERROR = (EventType.NEW_NODE, EventType.NEW_DATA_IN_CHANNEL, EventType.END_SCAN,
                         EventType.ERROR)


def expected_ref(data_dir, frame: int, per_file: int = 3, offset: int = 2) -> LimaReference:
    return LimaReference(
        file_path=f"{data_dir}/scan0005/lima_simulator_{frame // per_file + offset:04d}.h5",
        data_path="/entry_0000/measurement/data", frame_index=frame % per_file,
        file_format="hdf5")


@pytest.fixture
def lima_scan(store, data_dir):
    scan = store.create_scan(SESSION, {"scan_nb": 5, "type": "ct"})
    scan.start()
    cam = scan.create_lima_channel(
        "lima_simulator:image", "uint16", (16, 32),
        file_template=f"{data_dir}/scan0005/lima_simulator_{{file_index:04d}}.h5",
        data_path="/entry_0000/measurement/data", file_format="hdf5", frames_per_file=3,
        file_offset=2, acq_trigger_mode="INTERNAL_TRIGGER")
    return scan, cam


def test_lima_references(store, data_dir, lima_scan):
    scan, cam = lima_scan
    node = store.get_scan_node(scan.key).nodes()[0]
    assert isinstance(node, LimaNode) and node.type == "lima"
    assert node.shape == (16, 32) and node.dtype == np.uint16
    assert node.info["frames_per_file"] == 3 and node.info["file_offset"] == 2
    assert node.info["acq_trigger_mode"] == "INTERNAL_TRIGGER"
    assert node.last_index_saved == -1 and node.get_references() == []
    cam.send(1)
    assert node.last_index_saved == 1
    cam.send(6)
    cam.send(9)
    assert node.last_index_saved == 9 and node.count() == 10
    refs = node.get_references()
    assert refs == [expected_ref(data_dir, i) for i in range(10)]
    # frames 0-2 in file 2, 3-5 in file 3, ...
    assert refs[0].file_path.endswith("lima_simulator_0002.h5")
    assert refs[5].file_path.endswith("lima_simulator_0003.h5") and refs[5].frame_index == 2
    assert refs[9].file_path.endswith("lima_simulator_0005.h5") and refs[9].frame_index == 0
    assert node.get_references(4, 8) == [expected_ref(data_dir, i) for i in range(4, 8)]
    assert node.get_references(8, 100) == [expected_ref(data_dir, i) for i in (8, 9)]
    assert node.get_references(10) == []
    assert node.get(2, 3) == [expected_ref(data_dir, 2)]
    scan.end()
    # A walk yields the references of each announcement.
    events = list(store.get_scan_node(scan.key).walk_events(with_data=True, timeout=10))
    assert [e for e, _, _ in events] == [NEW, DATA, DATA, DATA, END]
    datas = [d for e, _, d in events if e is DATA]
    assert [d.first_index for d in datas] == [0, 2, 7]
    assert [len(d) for d in datas] == [2, 5, 3]
    assert [r for d in datas for r in d.data] == refs


def test_lima_edf_one_frame_per_file(store, data_dir):
    scan = store.create_scan(SESSION, {"scan_nb": 6})
    cam = scan.create_lima_channel("cam", "int32", (4, 4), f"{data_dir}/f_{{file_index:04d}}.edf",
                                   "", "edf", 1)
    cam.send(2)
    scan.end()
    refs = store.get_scan_node(scan.key).nodes()[0].get_references()
    assert refs == [LimaReference(f"{data_dir}/f_{i:04d}.edf", "", 0, "edf") for i in range(3)]


def test_lima_resume_inside_an_announcement(store, data_dir, lima_scan):
    scan, cam = lima_scan
    cam.send(5)
    cam.send(9)
    scan.end()
    events = list(store.get_scan_node(scan.key).walk_events(with_data=True, position={
        "lima_simulator:image": 4}, timeout=10))
    datas = [d for e, _, d in events if e is DATA]
    assert [d.first_index for d in datas] == [4, 6]
    assert [r for d in datas for r in d.data] == [expected_ref(data_dir, i) for i in range(4, 10)]


# -- sequences ---------------------------------------------------------------------
def test_sequence_children(store):
    group = store.create_scan(SESSION, {"scan_nb": 10, "type": "sequence"},
                              node_type="scan_group")
    group.start()
    child1 = store.create_scan(SESSION, {"scan_nb": 11, "type": "ascan"}, parent=group)
    group.add_child(child1)
    child1.create_channel("x", "f8").send([1.0, 2.0])
    child1.end()
    child2 = store.create_scan(SESSION, {"scan_nb": 12, "type": "ascan"})  # no parent given
    group.add_child(child2)
    child2.end()
    group.end()

    gnode = store.get_scan_node(group.key)
    assert gnode.type == "scan_group" and gnode.parent_key is None
    (refs,) = gnode.nodes()
    assert isinstance(refs, NodeRefNode) and refs.type == "node_ref_channel"
    children = refs.get()
    assert all(isinstance(c, ScanNode) for c in children)
    assert [c.key for c in children] == [child1.key, child2.key]
    assert [c.number for c in children] == [11, 12]
    assert all(c.parent_key == group.key for c in children)
    assert all(c.type == "scan" for c in children)
    assert [c.key for c in refs.get(1)] == [child2.key]
    assert refs.get(0, 1) == [store.get_scan_node(child1.key)]
    assert refs.count() == 2
    # The children's own data.
    assert children[0].nodes()[0].get().tolist() == [1.0, 2.0]

    events = list(gnode.walk_events(with_data=True, timeout=10))
    assert [e for e, _, _ in events] == [NEW, DATA, DATA, END]
    assert [c.key for e, _, d in events if e is DATA for c in d.data] == [child1.key, child2.key]
    assert [d.first_index for e, _, d in events if e is DATA] == [0, 1]

    session = store.get_session_node(SESSION)
    order = [(e, n.number) for e, n in session.walk_on_new_events(from_next=False, timeout=0.1,
                                                                 block=0.05)]
    assert order == [(NEW, 10), (NEW, 11), (END, 11), (NEW, 12), (END, 12), (END, 10)]


def test_add_child_checks(store):
    plain = store.create_scan(SESSION, {"scan_nb": 1})
    other = store.create_scan(SESSION, {"scan_nb": 2})
    with pytest.raises(ScanStateError, match="not a scan_group"):
        plain.add_child(other)
    assert store.get_scan_node(other.key).parent_key is None
    group = store.create_scan(SESSION, {"scan_nb": 3}, node_type="scan_group")
    group.end()
    with pytest.raises(ScanStateError):
        group.add_child(other)
    assert store.get_scan_node(other.key).parent_key is None
