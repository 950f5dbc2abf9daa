"""The simulated camera writes real files and references only frames already saved."""

from __future__ import annotations

import os
from pathlib import Path

import fabio
import h5py
import numpy as np
import pytest

from nexus_writer.data import LimaPublisher
from nexus_writer.sim import HDF5_DATA_PATH, ScanState
from tests.waiting import wait_for


def lima_node(scan):
    (node,) = [n for n in scan.node.nodes() if n.type == "lima"]
    return node


def read_frame(ref) -> np.ndarray:
    if ref.file_format == "hdf5":
        with h5py.File(ref.file_path, "r") as f:
            return f[ref.data_path][ref.frame_index]
    with fabio.open(ref.file_path) as img:
        return img.getframe(ref.frame_index).data if ref.frame_index else img.data


def test_hdf5_files_frames_and_references(session):
    cam = session.config.get("lima_simulator")
    cam.saving_frame_per_file = 2
    scan = session.loopscan(5, 0.1, cam, "diode")
    images = Path(scan.scan_info["images_path"])
    assert images.name == "scan0001"
    files = sorted(p.name for p in images.iterdir())
    assert files == ["lima_simulator_0000.h5", "lima_simulator_0001.h5", "lima_simulator_0002.h5"]
    frames_per_file = []
    for name in files:
        with h5py.File(images / name, "r") as f:
            dset = f[HDF5_DATA_PATH]
            assert dset.dtype == np.uint16 and dset.shape[1:] == (64, 64)
            assert dset.chunks == (1, 64, 64)
            frames_per_file.append(dset.shape[0])
    assert frames_per_file == [2, 2, 1]
    node = lima_node(scan)
    assert node.info["frames_per_file"] == 2 and node.info["file_format"] == "hdf5"
    assert node.info["data_path"] == HDF5_DATA_PATH
    refs = node.get_references()
    assert len(refs) == 5 == node.last_index_saved + 1
    assert [(Path(r.file_path).name, r.frame_index) for r in refs] == [
        ("lima_simulator_0000.h5", 0), ("lima_simulator_0000.h5", 1),
        ("lima_simulator_0001.h5", 0), ("lima_simulator_0001.h5", 1),
        ("lima_simulator_0002.h5", 0)]
    for i, ref in enumerate(refs):
        frame = read_frame(ref)
        assert frame[0, 0] == i
        assert np.array_equal(frame, cam.make_frame(scan.seed, i))


def test_edf_files(session):
    cam = session.config.get("lima_simulator")
    cam.saving_format = "EDF"
    cam.saving_frame_per_file = 3
    cam.image_shape = (20, 30)
    scan = session.ascan("roby", 0, 1, 6, 0.1, cam)
    images = Path(scan.images_path)
    assert sorted(p.name for p in images.iterdir()) == [
        f"lima_simulator_{i:04d}.edf" for i in range(3)]
    with fabio.open(images / "lima_simulator_0002.edf") as img:
        assert img.nframes == 1
    node = lima_node(scan)
    assert node.shape == (20, 30) and node.info["file_format"] == "edf"
    refs = node.get_references()
    assert len(refs) == 7
    for i, ref in enumerate(refs):
        frame = read_frame(ref)
        assert frame.shape == (20, 30) and frame.dtype == np.uint16
        assert np.array_equal(frame, cam.make_frame(scan.seed, i))


def test_references_are_sent_only_for_frames_on_disk(session, monkeypatch):
    checked = []
    send = LimaPublisher.send

    def checking_send(self, last_index_saved):
        from nexus_writer.data.protocol import lima_reference

        for i in range(self.count, last_index_saved + 1):
            ref = lima_reference(self.node.info, i)
            with h5py.File(ref.file_path, "r") as f:
                assert f[ref.data_path].shape[0] > ref.frame_index
            checked.append(i)
        return send(self, last_index_saved)

    monkeypatch.setattr(LimaPublisher, "send", checking_send)
    cam = session.config.get("lima_simulator")
    cam.saving_frame_per_file = 4
    scan = session.loopscan(10, 0.1, cam)
    assert checked == list(range(10))
    assert lima_node(scan).count() == 10
    assert not [p for p in os.listdir(scan.images_path) if p.endswith(".part")]


def test_camera_in_two_parallel_scans_writes_separate_files(session):
    cam = session.config.get("lima_simulator")
    scans = [session.loopscan(3, 0.1, cam, run=False) for _ in range(2)]
    for s in scans:
        s.run_in_thread()
    for s in scans:
        assert s.wait(10)
    paths = {ref.file_path for s in scans for ref in lima_node(s).get_references()}
    assert len(paths) == 6
    assert all(os.path.exists(p) for p in paths)


@pytest.mark.parametrize("fmt", ["HDF5", "EDF"])
def test_aborted_scan_flushes_partial_file(session, fmt):
    cam = session.config.get("lima_simulator")
    cam.saving_format = fmt
    cam.saving_frame_per_file = 100
    session.time_scale = 1.0
    scan = session.timescan(0.01, cam, run=False)
    scan.run_in_thread()
    def three_frames() -> bool:
        assert scan.state != ScanState.DONE, "scan ended by itself"
        return scan.key is not None and scan.node.nodes()[0].count() >= 3

    wait_for(three_frames, 30, "3 frames of the running timescan", interval=0.005)
    scan.abort()
    assert scan.wait(5)
    node = lima_node(scan)
    frames = node.count()
    assert frames >= 3
    assert frames == scan.node.nodes()[0].count()
    refs = node.get_references()
    assert np.array_equal(read_frame(refs[-1]), cam.make_frame(scan.seed, frames - 1))
