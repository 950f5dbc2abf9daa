"""Camera frames: the VDS shows the camera's own pixels, from anywhere the files go."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import h5py
import numpy as np

from .helpers import check_scan, read_frame, wait_written

READER = """
import json, sys, h5py, numpy as np
with h5py.File(sys.argv[1], "r", locking=False) as f:
    d = f[sys.argv[2]]
    out = {"shape": list(d.shape), "sources": [s.file_name for s in d.virtual_sources()],
           "frames": [np.asarray(d[i]).tobytes().hex() for i in range(d.shape[0])]}
print(json.dumps(out))
"""


def _read_elsewhere(path: str, dataset: str, cwd: str) -> dict:
    """Read a VDS in another process whose working directory is ``cwd``."""
    out = subprocess.run([sys.executable, "-c", READER, os.path.abspath(path), dataset],
                         cwd=cwd, capture_output=True, text=True, timeout=60, check=True)
    return json.loads(out.stdout)


def test_vds_shows_camera_pixels_several_files(sim_session, writer_factory, store, tmp_path):
    camera = sim_session.config.get("lima_simulator")
    camera.saving_format = "HDF5"
    camera.saving_frame_per_file = 3
    writer = writer_factory()
    scan = sim_session.loopscan(8, 0.1, camera, "diode")
    [sw] = wait_written(writer, [scan])
    check_scan(store, sw, camera="vds")
    node = next(n for n in scan.node.nodes() if n.type == "lima")
    refs = node.get_references()
    files = sorted({r.file_path for r in refs})
    assert len(files) == 3 and [r.frame_index for r in refs] == [0, 1, 2, 0, 1, 2, 0, 1]
    path = f"/{scan.scan_number}.1/instrument/lima_simulator/data"
    with h5py.File(sw.filename, "r", locking=False) as f:
        dset = f[path]
        assert dset.is_virtual and dset.shape == (8, 64, 64)
        assert sorted(os.path.basename(s.file_name) for s in dset.virtual_sources()) == \
            [os.path.basename(p) for p in files]
        for source in dset.virtual_sources():
            assert source.file_name.startswith(f"scan{scan.scan_number:04d}{os.sep}")
        assert f[f"/{scan.scan_number}.1/measurement/lima_simulator_image"].shape == dset.shape
        plot = f[f"/{scan.scan_number}.1/plot2D"]
        assert plot["lima_simulator_image"].attrs["interpretation"] == "image"
    expected = [read_frame(r).tobytes().hex() for r in refs]
    # a reader elsewhere: HDF5 resolves the relative sources against the file's directory
    seen = _read_elsewhere(sw.filename, path, "/")
    assert seen["frames"] == expected
    assert all(not os.path.isabs(s) for s in seen["sources"])
    # the whole dataset directory moved: the VDS still finds its frames
    moved = tmp_path / "moved"
    shutil.copytree(os.path.dirname(sw.filename), moved)
    copy = moved / os.path.basename(sw.filename)
    for name in os.listdir(os.path.dirname(sw.filename)):
        if name.startswith("scan"):
            shutil.rmtree(os.path.join(os.path.dirname(sw.filename), name))
    seen = _read_elsewhere(str(copy), path, str(tmp_path))
    assert seen["frames"] == expected


def test_camera_in_two_top_masters_and_later_scan(sim_session, writer_factory, store):
    """Frames of several scans and top masters each go to their own entry."""
    from nexus_writer.sim import TopMaster

    camera = sim_session.config.get("lima_simulator")
    camera.saving_frame_per_file = 4
    writer = writer_factory()
    first = sim_session.multi_top_master_scan(
        [TopMaster.timer(3, 0.1, "diode"), TopMaster.timer(10, 0.01, camera, "diode2")])
    second = sim_session.loopscan(2, 0.1, camera)
    written = wait_written(writer, [first, second])
    for sw in written:
        check_scan(store, sw, camera="vds")
    with h5py.File(written[0].filename, "r", locking=False) as f:
        assert "lima_simulator" not in f[f"{first.scan_number}.1/instrument"]
        assert f[f"{first.scan_number}.2/instrument/lima_simulator/data"].shape == (10, 64, 64)
        assert f[f"{second.scan_number}.1/instrument/lima_simulator/data"].shape == (2, 64, 64)
        # same frame index, different scans: different pixels (each VDS has its own files)
        a = f[f"{first.scan_number}.2/instrument/lima_simulator/data"][1]
        b = f[f"{second.scan_number}.1/instrument/lima_simulator/data"][1]
        assert a[0, 0] == b[0, 0] == 1 and not np.array_equal(a, b)


def test_edf_default_is_reference_strings(sim_session, writer_factory, store):
    camera = sim_session.config.get("lima_simulator")
    camera.saving_format = "EDF"
    camera.saving_frame_per_file = 3
    writer = writer_factory()
    scan = sim_session.loopscan(7, 0.1, camera, "diode")
    [sw] = wait_written(writer, [scan])
    check_scan(store, sw, camera="strings")
    with h5py.File(sw.filename, "r", locking=False) as f:
        values = f[f"{scan.scan_number}.1/instrument/lima_simulator/data"].asstr()[()]
    assert values[0] == f"scan{scan.scan_number:04d}/lima_simulator_0000.edf::0"
    assert values[6] == f"scan{scan.scan_number:04d}/lima_simulator_0002.edf::0"


def test_edf_external_frames(sim_session, writer_factory, store):
    import fabio

    camera = sim_session.config.get("lima_simulator")
    camera.saving_format = "EDF"
    camera.saving_frame_per_file = 3
    writer = writer_factory(enable_external_nonhdf5=True)
    scan = sim_session.loopscan(7, 0.1, camera, "diode")
    [sw] = wait_written(writer, [scan])
    check_scan(store, sw, camera="external")
    node = next(n for n in scan.node.nodes() if n.type == "lima")
    with h5py.File(sw.filename, "r", locking=False) as f:
        dset = f[f"{scan.scan_number}.1/instrument/lima_simulator/data"]
        assert len(dset.external) == 7
        for i, ref in enumerate(node.get_references()):
            with fabio.open(ref.file_path) as img:
                frame = img.getframe(ref.frame_index).data if img.nframes > 1 else img.data
            assert frame.dtype == dset.dtype
            assert np.array_equal(dset[i], frame)


def test_copy_non_external_copies_pixels(sim_session, writer_factory, store):
    camera = sim_session.config.get("lima_simulator")
    camera.saving_format = "EDF"
    camera.saving_frame_per_file = 2
    writer = writer_factory(copy_non_external=True)
    edf = sim_session.loopscan(5, 0.1, camera)
    camera.saving_format = "HDF5"
    hdf5 = sim_session.loopscan(3, 0.1, camera)
    written = wait_written(writer, [edf, hdf5])
    check_scan(store, written[0], camera="copy")
    # HDF5 camera files are still linked (VDS): copy is for what is not linked
    check_scan(store, written[1], camera="vds")
    # the copy does not depend on the camera files any more
    for path in {r.file_path for n in edf.node.nodes() if n.type == "lima"
                 for r in n.get_references()}:
        os.remove(path)
    with h5py.File(written[0].filename, "r", locking=False) as f:
        data = f[f"{edf.scan_number}.1/instrument/lima_simulator/data"]
        assert [int(data[i][0, 0]) for i in range(5)] == [0, 1, 2, 3, 4]


def test_disable_external_hdf5(sim_session, writer_factory, store):
    camera = sim_session.config.get("lima_simulator")
    camera.saving_frame_per_file = 2
    writer = writer_factory(disable_external_hdf5=True)
    scan = sim_session.loopscan(3, 0.1, camera, "diode")
    [sw] = wait_written(writer, [scan])
    check_scan(store, sw, camera="strings")
    with h5py.File(sw.filename, "r", locking=False) as f:
        group = f[f"{scan.scan_number}.1/instrument/lima_simulator"]
        assert group.attrs["NX_class"] == "NXcollection"
        assert list(group["data"].asstr()[()]) == [
            f"scan{scan.scan_number:04d}/lima_simulator_0000.h5::0",
            f"scan{scan.scan_number:04d}/lima_simulator_0000.h5::1",
            f"scan{scan.scan_number:04d}/lima_simulator_0001.h5::0"]
        # no image plot of strings
        assert "plot2D" not in f[f"{scan.scan_number}.1"]


def test_disable_external_hdf5_with_copy(sim_session, writer_factory, store):
    camera = sim_session.config.get("lima_simulator")
    camera.saving_frame_per_file = 2
    writer = writer_factory(disable_external_hdf5=True, copy_non_external=True)
    scan = sim_session.loopscan(3, 0.1, camera)
    [sw] = wait_written(writer, [scan])
    check_scan(store, sw, camera="copy")
