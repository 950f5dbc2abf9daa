"""Writer options: mesh grids (keepshape), compression filters, option checks."""

from __future__ import annotations

import subprocess
import sys

import h5py
import numpy as np
import pytest

from nexus_writer.nexus.validate import validate_file
from nexus_writer.writer import WriterOptions

from .helpers import check_scan, decode, wait_written

BITSHUFFLE = 32008  # HDF5 filter id, registered by hdf5plugin


def test_keepshape_grid(sim_session, writer_factory, store):
    writer = writer_factory(keepshape=True)
    scan = sim_session.amesh("roby", 0, 1, 4, "robz", 10, 11, 2, 0.1, "diode", "simu1")
    [sw] = wait_written(writer, [scan])
    check_scan(store, sw, keepshape=True)
    positions = {n.name: n.get() for n in scan.node.nodes()}
    with h5py.File(sw.filename, "r", locking=False) as f:
        entry = f[f"{scan.scan_number}.1"]
        roby = entry["instrument/roby/value"]
        robz = entry["instrument/robz/value"]
        assert roby.shape == robz.shape == (3, 5)  # (npoints2, npoints1): slow first
        assert entry["instrument/simu1_det0/data"].shape == (3, 5, 1024)
        # the fast motor varies along a row, the slow one along a column
        np.testing.assert_array_equal(roby[0], np.linspace(0, 1, 5))
        np.testing.assert_array_equal(robz[:, 0], np.linspace(10, 11, 3))
        np.testing.assert_array_equal(roby[()].reshape(-1), positions["axis:roby"])
        plot = entry["plot0D"]
        assert plot[decode(plot.attrs["signal"])].shape == (3, 5)
        assert decode(list(plot.attrs["axes"])) == ["robz", "roby"]
    assert validate_file(sw.filename).ok


def filter_ids(dset: h5py.Dataset) -> set[int]:
    """The HDF5 filter ids of a dataset, from its creation property list."""
    plist = dset.id.get_create_plist()
    return {plist.get_filter(i)[0] for i in range(plist.get_nfilters())}


@pytest.mark.parametrize("compression", ["bitshuffle", "gzip", "none"])
def test_compression_lossless(sim_session, writer_factory, store, compression):
    camera = sim_session.config.get("lima_simulator")
    camera.saving_format = "EDF"
    writer = writer_factory(compression=compression, copy_non_external=True)
    scan = sim_session.ascan("roby", 0, 1, 4, 0.1, "simu1", "diode9", camera)
    [sw] = wait_written(writer, [scan])
    check_scan(store, sw, camera="copy")  # bit-exact after the filter
    paths = [f"/{scan.scan_number}.1/instrument/{p}" for p in
             ("simu1_det0/data", "lima_simulator/data", "diode9/data")]
    with h5py.File(sw.filename, "r", locking=False) as f:
        for path in paths:
            dset = f[path]
            filters = filter_ids(dset)
            if compression == "bitshuffle":
                assert BITSHUFFLE in filters, (path, filters)
            elif compression == "gzip":
                assert dset.compression == "gzip" and h5py.h5z.FILTER_DEFLATE in filters, path
            else:
                assert dset.compression is None and not filters, (path, filters)
        # scalar data stays unfiltered: it is small and read live
        assert not filter_ids(f[f"/{scan.scan_number}.1/instrument/roby/value"])
        expected = {p: f[p][()].tobytes().hex() for p in paths}
    # another process reads it back, with the filters of hdf5plugin
    code = ("import sys, json, h5py, hdf5plugin\n"
            "f = h5py.File(sys.argv[1], 'r', locking=False)\n"
            "print(json.dumps({p: f[p][()].tobytes().hex() for p in sys.argv[2:]}))")
    out = subprocess.run([sys.executable, "-c", code, sw.filename] + paths, capture_output=True,
                         text=True, timeout=60, check=True)
    assert out.stdout.strip() == __import__("json").dumps(expected)


def test_options_refuse_bad_values():
    with pytest.raises(ValueError, match="compression"):
        WriterOptions(compression="zip")
    with pytest.raises(ValueError, match="flush_period"):
        WriterOptions(flush_period=0)
    assert WriterOptions().camera_mode("hdf5") == "vds"
    assert WriterOptions().camera_mode("edf") == "strings"
    assert WriterOptions(enable_external_nonhdf5=True).camera_mode("edf") == "external"
    assert WriterOptions(copy_non_external=True).camera_mode("edf") == "copy"
    assert WriterOptions(disable_external_hdf5=True).camera_mode("hdf5") == "strings"
    assert WriterOptions(disable_external_hdf5=True, copy_non_external=True
                         ).camera_mode("hdf5") == "copy"
    # the seed's flags are all there
    for name in ("keepshape", "multivalue_positioners", "enable_external_nonhdf5",
                 "disable_external_hdf5", "copy_non_external", "required_disk_space"):
        assert name in WriterOptions.names()
