"""Producer side: input validation, scan states and scan_info updates."""

from __future__ import annotations

import numpy as np
import pytest

from nexus_writer.data import EventType
from nexus_writer.errors import DataValidationError, NexusWriterError, ScanStateError

pytestmark = pytest.mark.timeout(20)

SESSION = "pub_session"


@pytest.fixture
def scan(store):
    s = store.create_scan(SESSION, {"scan_nb": 7, "type": "ascan"})
    s.start()
    return s


def published(store, scan, name):
    """What a listener reads back for channel ``name`` (scan not necessarily ended)."""
    return next(n for n in store.get_scan_node(scan.key).nodes() if n.name == name).get()


# -- wrong dtype / shape -----------------------------------------------------------
@pytest.mark.parametrize("declared, sent", [
    ("float32", np.zeros(3, dtype=np.float64)),
    ("float64", np.zeros(3, dtype=np.float32)),
    ("int32", np.zeros(3, dtype=np.int64)),
    ("int64", np.zeros(3, dtype=np.int32)),
    ("uint16", np.zeros(3, dtype=np.int16)),
    ("bool", np.zeros(3, dtype=np.uint8)),
    ("uint8", np.zeros(3, dtype=bool)),
    ("float16", np.float32(1.0)),
    ("int8", np.uint8(1)),
])
def test_numpy_data_of_another_dtype_refused(store, scan, declared, sent):
    ch = scan.create_channel("diode", declared)
    with pytest.raises(DataValidationError) as exc:
        ch.send(sent)
    assert isinstance(exc.value, ValueError)
    msg = str(exc.value)
    for part in ("scan 7", SESSION, "'diode'", "dtype", str(np.dtype(declared)),
                 str(np.asarray(sent).dtype)):
        assert part in msg, (part, msg)
    assert ch.count == 0
    assert published(store, scan, "diode").shape == (0,)


@pytest.mark.parametrize("shape, sent, expected, received", [
    ((3,), np.zeros(4), "[3]", "[4]"),
    ((3,), np.zeros((5, 4)), "[3]", "[4]"),
    ((2, 3), np.zeros((3, 2)), "[2, 3]", "[3, 2]"),
    ((2, 3), np.zeros((10, 3, 2)), "[2, 3]", "[3, 2]"),
    ((), np.zeros((2, 2)), "[]", "[2, 2]"),
    ((4,), np.zeros(()), "[4]", "[]"),
    ((2, -1), np.zeros((3, 5)), "[2, -1]", "[3, 5]"),
    ((-1,), np.zeros((2, 2, 2)), "[-1]", "[2, 2, 2]"),
])
def test_wrong_shape_refused(store, scan, shape, sent, expected, received):
    ch = scan.create_channel("mca", "float64", shape)
    with pytest.raises(DataValidationError) as exc:
        ch.send(sent)
    msg = str(exc.value)
    for part in ("scan 7", SESSION, "'mca'", "shape", expected, received):
        assert part in msg, (part, msg)
    assert ch.count == 0


def test_wrong_point_in_variable_batch_refused(scan):
    ch = scan.create_channel("samples", "int16", (2, -1))
    good = np.zeros((2, 3), dtype=np.int16)
    with pytest.raises(DataValidationError, match=r"expected \[2, -1\], received \[3, 3\]"):
        ch.send([good, np.zeros((3, 3), dtype=np.int16)])
    with pytest.raises(DataValidationError, match="int16.*int32"):
        ch.send([good, np.zeros((2, 3), dtype=np.int32)])
    assert ch.count == 0
    ch.send([good, np.zeros((2, 0), dtype=np.int16)])
    assert ch.count == 2


def test_ragged_data_for_fixed_channel_refused(scan):
    ch = scan.create_channel("x", "float64", (2,))
    with pytest.raises(DataValidationError, match="shape"):
        ch.send([[1, 2], [3]])


# -- Python numbers ----------------------------------------------------------------
@pytest.mark.parametrize("dtype, values", [
    ("int8", [-128, 127, 0]),
    ("uint8", [0, 255, True]),
    ("int64", [-2**63, 2**63 - 1]),
    ("uint64", [2**64 - 1, 0, 2**63]),
    ("uint32", [2.0, 4294967295.0]),
    ("bool", [0, 1, True, False, 1.0]),
    ("float16", [65504, -1.5, float("nan"), float("inf")]),
    ("float32", [1, 0.1, -3e38, float("-inf")]),
    ("float64", [2**70, 1e308, 5e-324]),
])
def test_python_numbers_that_fit_accepted(store, scan, dtype, values):
    ch = scan.create_channel("c", dtype)
    ch.send(values)            # a batch
    ch.send(values[0])         # one point
    got = published(store, scan, "c")
    assert got.dtype == np.dtype(dtype)
    want = values + values[:1]
    if np.dtype(dtype).kind == "f":
        assert got.tolist() == pytest.approx(want, nan_ok=True, rel=1e-3)
    else:  # exact, also for 2**64 - 1
        assert got.tolist() == [bool(v) if dtype == "bool" else int(v) for v in want]


@pytest.mark.parametrize("dtype, value", [
    ("int8", 128),
    ("int8", [-129, 0]),
    ("uint8", -1),
    ("uint8", 256),
    ("uint64", -1),
    ("uint64", [-1, 1]),
    ("uint64", 2**64),
    ("int64", 2**63),
    ("int64", [2**63, -1]),
    ("int32", 1.5),
    ("int32", float("nan")),
    ("int32", float("inf")),
    ("int64", 1e19),
    ("bool", 2),
    ("bool", 0.5),
    ("float16", 70000),
    ("float32", 1e300),
    ("float64", 2**2000),
    ("float64", "1.0"),
    ("int32", "abc"),
    ("float64", None),
    ("int8", [1, None]),
    ("float32", 1 + 2j),
])
def test_python_values_that_do_not_fit_refused(scan, dtype, value):
    ch = scan.create_channel("c", dtype)
    with pytest.raises(DataValidationError) as exc:
        ch.send(value)
    msg = str(exc.value)
    assert "'c'" in msg and "scan 7" in msg and str(np.dtype(dtype)) in msg
    assert ch.count == 0


def test_non_numeric_channel_refused(scan):
    with pytest.raises(ValueError, match="not numeric"):
        scan.create_channel("s", "U10")
    with pytest.raises(ValueError, match="not numeric"):
        scan.create_channel("o", object)


def test_duplicate_node_name_refused(scan):
    scan.create_channel("x", "f8")
    with pytest.raises(ValueError, match="'x' exists"):
        scan.create_channel("x", "f8")


# -- states ------------------------------------------------------------------------
def test_send_after_end_and_end_twice(store):
    s = store.create_scan(SESSION, {"scan_nb": 8})
    ch = s.create_channel("x", "f8")
    lima = s.create_lima_channel("cam", "uint16", (4, 4), "/tmp/x_{file_index}.h5", "/data",
                                 "hdf5", 10)
    ch.send(1.0)
    s.end()
    with pytest.raises(ScanStateError, match="scan 8.*after the end"):
        ch.send(2.0)
    with pytest.raises(ScanStateError):
        lima.send(3)
    with pytest.raises(ScanStateError, match="twice"):
        s.end()
    with pytest.raises(ScanStateError):
        s.create_channel("y", "f8")
    with pytest.raises(ScanStateError):
        s.start()
    assert isinstance(ScanStateError("x"), RuntimeError)
    assert isinstance(ScanStateError("x"), NexusWriterError)
    # Nothing extra reached Redis: one data event, one END_SCAN.
    events = [e for e, _ in store.get_scan_node(s.key).walk_events(timeout=5)]
    assert events.count(EventType.NEW_DATA_IN_CHANNEL) == 1
    assert events[-1] is EventType.END_SCAN


def test_start_twice_and_bad_end_reason(scan):
    with pytest.raises(ScanStateError):
        scan.start()
    with pytest.raises(ValueError, match="end reason"):
        scan.end("WHATEVER")
    scan.end("USER_ABORT")
    assert scan.state == "ENDED"


def test_context_manager_ends_with_reason(store):
    with store.create_scan(SESSION, {"scan_nb": 9}) as s:
        assert s.state == "STARTED"
    assert store.get_scan_node(s.key).end_reason == "SUCCESS"
    with pytest.raises(RuntimeError):
        with store.create_scan(SESSION, {"scan_nb": 10}) as s2:
            raise RuntimeError("motor fault")
    node = store.get_scan_node(s2.key)
    assert node.state == "ENDED"
    assert node.end_reason == "FAILURE"
    assert node.info["end_reason"] == "FAILURE"


def test_create_scan_checks(store):
    with pytest.raises(ValueError, match="scan_nb"):
        store.create_scan(SESSION, {"type": "ct"})
    with pytest.raises(ValueError, match="node_type"):
        store.create_scan(SESSION, {"scan_nb": 1}, node_type="channel")


def test_lima_checks(scan):
    with pytest.raises(ValueError, match="file_format"):
        scan.create_lima_channel("cam", "u2", (2, 2), "f_{file_index}.tif", "", "tiff", 1)
    with pytest.raises(ValueError, match="frames_per_file"):
        scan.create_lima_channel("cam", "u2", (2, 2), "f_{file_index}.h5", "", "hdf5", 0)
    lima = scan.create_lima_channel("cam", "u2", (2, 2), "f_{file_index}.h5", "", "hdf5", 5)
    lima.send(4)
    lima.send(4)  # nothing new: no entry
    assert lima.count == 5
    with pytest.raises(DataValidationError, match="went back from 4 to 2"):
        lima.send(2)


# -- scan_info ---------------------------------------------------------------------
def test_update_info_merges_recursively(store):
    template = {"scan_nb": 11, "type": "ascan", "positioners": {"start": {"roby": 1.0}},
                "instrument": {"name": "id00"}}
    s = store.create_scan(SESSION, template)
    node = store.get_scan_node(s.key)
    assert node.info["positioners"] == {"start": {"roby": 1.0}}
    assert node.info["session_name"] == SESSION
    s.update_info({"positioners": {"start": {"robz": 2.0}, "units": {"roby": "mm"}},
                   "npoints": np.int64(10), "shape": np.arange(3)})
    info = node.info
    assert info["positioners"] == {"start": {"roby": 1.0, "robz": 2.0}, "units": {"roby": "mm"}}
    assert info["instrument"] == {"name": "id00"}
    assert info["npoints"] == 10 and info["shape"] == [0, 1, 2]
    update = {"positioners": {"end": {"roby": 3.0}}}
    s.update_info(update)
    s.update_info({"positioners": {"end": {"robz": 4.0}}})
    assert node.info["positioners"]["end"] == {"roby": 3.0, "robz": 4.0}
    # The caller's dicts are not modified by later merges.
    assert update == {"positioners": {"end": {"roby": 3.0}}}
    assert template["positioners"] == {"start": {"roby": 1.0}}
    s.update_info({"instrument": "replaced"})
    assert node.info["instrument"] == "replaced"
    s.end()
    assert node.info["end_reason"] == "SUCCESS"


def test_scan_info_template_reused_for_two_scans(store):
    """A producer reusing one scan_info template must not leak updates between scans."""
    template = {"scan_nb": 1, "positioners": {"start": {}}}
    s1 = store.create_scan(SESSION, template)
    s1.update_info({"positioners": {"start": {"roby": 1.0}}})
    s2 = store.create_scan(SESSION, dict(template, scan_nb=2))
    assert store.get_scan_node(s2.key).info["positioners"] == {"start": {}}
    assert store.get_scan_node(s1.key).info["positioners"] == {"start": {"roby": 1.0}}
