"""``examples/external_saving_example.py`` (the seed's example on this API) works."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import threading
from pathlib import Path

import h5py
import numpy as np
import pytest

from tests.waiting import wait_for

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "external_saving_example.py"


@pytest.fixture(scope="module")
def example():
    spec = importlib.util.spec_from_file_location("external_saving_example", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_example_writes_the_scans(example, sim_session, store, tmp_path):
    output = tmp_path / "out"
    output.mkdir()
    stop, ready, writers = threading.Event(), threading.Event(), []
    listener = threading.Thread(target=example.listen_to_session_wait_for_scans,
                                args=("test_session", store, str(output)),
                                kwargs={"stop": stop, "ready": ready, "writers": writers},
                                daemon=True)
    listener.start()
    assert ready.wait(10)
    camera = sim_session.config.get("lima_simulator")
    camera.saving_frame_per_file = 2
    try:
        scans = [sim_session.loopscan(5, 0.1, "diode", "diode9", camera),
                 sim_session.ascan("roby", 0, 1, 3, 0.1, "simu1")]
        wait_for(lambda: len(writers) >= 2, 30, "the example's writers of both scans")
        assert len(writers) == 2
        for writer in writers:
            writer.thread.join(30)
            assert not writer.thread.is_alive()
    finally:
        stop.set()
        listener.join(10)
    for scan, writer in zip(scans, writers, strict=True):
        assert writer.filename == str(output / f"test_session_{scan.scan_number}_{scan.type}.h5")
        with h5py.File(writer.filename, "r") as f:
            entry = f[f"{scan.scan_number}_{scan.type}"]
            assert entry.attrs["NX_class"] == "NXentry"
            assert entry["title"].asstr()[()] == scan.scan_info["title"]
            assert entry["sample"].attrs["NX_class"] == "NXsample"
            assert entry["instrument/source"].attrs["NX_class"] == "NXsource"
            assert "roby" in entry["positioners/positioners_start"]
            for node in scan.node.nodes():
                if node.type == "lima":
                    refs = node.get_references()
                    images = entry["images/lima_simulator_image"]
                    assert list(images["file_path"].asstr()[()]) == [r.file_path for r in refs]
                    assert list(images["frame_index"][()]) == [r.frame_index for r in refs]
                    assert list(images["data_path"].asstr()[()]) == [r.data_path for r in refs]
                    continue
                dset = entry["measurement"][node.name.replace(":", "_")]
                data = node.get()
                if isinstance(data, list):  # SAMPLES mode: one array per point
                    assert len(dset) == len(data)
                    for got, point in zip(dset[()], data, strict=True):
                        assert got.dtype == point.dtype and np.array_equal(got, point)
                else:
                    assert dset.dtype == data.dtype and dset.shape == data.shape
                    assert dset[()].tobytes() == data.tobytes()


def test_example_help():
    out = subprocess.run([sys.executable, str(EXAMPLE), "--help"], capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0 and "--redis" in out.stdout
