"""A Lima camera stream of blissdata (references to frames the camera saves in its own
HDF5 files) -> a virtual dataset over those files, frame for frame; a plain JSON
stream -> one JSON document per event."""

from __future__ import annotations

import json
import threading
import time

import h5py
import numpy as np
from blissdata.streams.lima import LimaStream

from ..blissdata_replay import ScanReplay, load_fixture, stream_points
from .bliss_helpers import assert_scan_file, wait_final
from .helpers import assert_same_bytes, decode

CAMERA = "lima_simulator:image"
DIODE = "simulation_diode_sampling_controller:diode"
FRAMES, PER_FILE, SHAPE = 7, 3, (4, 5)
DATA_PATH = "/entry_0000/measurement/data"


def _frame(i: int) -> np.ndarray:
    return (np.arange(np.prod(SHAPE), dtype=np.uint16).reshape(SHAPE) + 100 * i)


def _save_frames(template: str, upto: int) -> None:
    """What the camera does: frames 0..upto-1 in files of PER_FILE frames."""
    for number in range((upto + PER_FILE - 1) // PER_FILE):
        first = number * PER_FILE
        frames = np.stack([_frame(i) for i in range(first, min(first + PER_FILE, upto))])
        with h5py.File(template % number, "w") as f:
            f.create_dataset(DATA_PATH, data=frames)


def test_lima_references_become_a_vds(bliss_store, nxw_store, bliss_writer, tmp_path):
    bliss_writer()
    replay = ScanReplay(bliss_store, load_fixture("loopscan"), tmp_path).create()
    images = tmp_path / "test_session" / "scan0001"
    images.mkdir(parents=True)
    template = str(images / "lima_simulator_%04d.h5")
    lima = replay.scan.create_stream(LimaStream.make_definition(
        CAMERA, "uint16", SHAPE, server_url="id00/limaccds/simulator1", buffer_max_number=10,
        frames_per_acquisition=FRAMES, acquisition_offset=0,
        saving={"file_path": template, "data_path": DATA_PATH, "file_format": "HDF5",
                "file_offset": 0, "frames_per_file": PER_FILE}))
    replay.started(0)
    for saved in (2, 5, FRAMES):  # statuses as the camera saves
        replay.step()
        _save_frames(template, saved)
        lima.send({"last_index": saved - 1, "last_index_saved": saved - 1})
    lima.seal()
    replay.finish()
    report = wait_final(nxw_store, replay.key)
    assert report.state == "SUCCEEDED", report
    assert report.detail["channels"][CAMERA] == {"written": FRAMES, "published": FRAMES}
    filename = assert_scan_file(replay)
    with h5py.File(filename, "r", locking=False) as f:
        dset = f["1.1/measurement/lima_simulator_image"]
        assert dset.is_virtual
        assert dset.shape == (FRAMES,) + SHAPE
        for i in range(FRAMES):
            assert np.array_equal(dset[i], _frame(i)), f"frame {i}"
        sources = {decode(s.file_name) for s in dset.virtual_sources()}
        assert sources == {f"scan0001/lima_simulator_{n:04d}.h5" for n in range(3)}


def test_json_stream_one_document_per_event(bliss_store, nxw_store, bliss_writer, tmp_path):
    """A plain JSON stream (no plugin): each event a JSON document, in order."""
    from blissdata.streams.default import Stream

    events = [{"a": 1}, {"b": [1, 2.5, None]}, "text", 3, [True, {"c": "é"}]]
    bliss_writer()
    replay = ScanReplay(bliss_store, load_fixture("loopscan"), tmp_path).create()
    stream = replay.scan.create_stream(Stream.make_definition("sample:events", "json"))
    replay.started(0)
    for event in events:
        replay.step()
        stream.send(event)
    stream.seal()
    replay.finish()
    report = wait_final(nxw_store, replay.key)
    assert report.state == "SUCCEEDED", report
    assert report.detail["channels"]["sample:events"] == {"written": 5, "published": 5}
    filename = assert_scan_file(replay)
    with h5py.File(filename, "r", locking=False) as f:
        dset = f["1.1/measurement/events"]
        assert [json.loads(d) for d in decode(dset[()])] == events


def test_blissdata_h5api_follows_the_scan_while_written(bliss_store, nxw_store, bliss_writer,
                                                        tmp_path):
    """``blissdata.h5api.dynamic_hdf5`` (what blissdata clients read files with) iterates a
    dataset of ours while the scan runs, and stops at its end (``end_time``, written
    last): every point, in order."""
    from blissdata.h5api import dynamic_hdf5

    from .bliss_helpers import wait_progress

    bliss_writer()
    replay = ScanReplay(bliss_store, load_fixture("loopscan"), tmp_path).create()
    diode = next(s for s in replay.fixture["streams"] if s["name"] == DIODE)
    replay.started(1)
    wait_progress(nxw_store, replay.key, DIODE, 1)  # the file and the dataset exist
    seen: list = []
    errors: list = []

    def read() -> None:
        try:
            with dynamic_hdf5.File(replay.fixture["info"]["filename"], locking=False,
                                   retry_timeout=30, retry_period=0.05) as f:
                for value in f["/" + diode["info"]["data_path"]]:
                    seen.append(value)
        except Exception as e:  # noqa: BLE001 - reported by the test thread
            errors.append(e)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    for points in range(2, 6):  # the reader sees points arrive while the scan runs
        replay.step()
        wait_progress(nxw_store, replay.key, DIODE, points)
    deadline = time.monotonic() + 20
    while len(seen) < 5:  # read while the scan still runs
        assert time.monotonic() < deadline and not errors, \
            f"the dynamic reader saw {len(seen)} of 5 points written: {errors}"
        time.sleep(0.02)
    with h5py.File(replay.fixture["info"]["filename"], "r", locking=False) as f:
        assert "end_time" not in f["1.1"], "the scan ended before the reader saw points"
    replay.finish()
    reader.join(30)
    assert not reader.is_alive(), "the dynamic reader never saw the end of the scan"
    assert not errors, errors
    assert_same_bytes(np.asarray(seen), stream_points(diode), "read live")
