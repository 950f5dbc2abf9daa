"""Devices, scan saving and config of the simulated session (no scan run)."""

from __future__ import annotations

import numpy as np
import pytest

from nexus_writer.sim import (
    Axis,
    GaussCounter,
    PointContext,
    SamplesCounter,
    ScanSaving,
    SimCamera,
    SimMca,
    SimSession,
    default_devices,
    device_rng,
)


def test_axis_position_dial_offset():
    m = Axis("robu", position=2.0, offset=0.5)
    assert (m.position, m.dial, m.offset, m.unit) == (2.0, 1.5, 0.5, "mm")
    m.move(1.0)
    assert m.dial == 0.5
    m.rmove(-0.25)
    assert m.position == 0.75
    m.offset = 1.0  # keeps the dial
    assert (m.position, m.dial) == (1.25, 0.25)
    assert m.fullname == "axis:robu"
    neg = Axis("neg", position=1.0, sign=-1)
    assert neg.dial == -1.0


def test_gauss_peak_is_in_the_scanned_range():
    g = GaussCounter(noise=0.0)
    xs = np.linspace(-3, 7, 41)
    values = [g.read(PointContext(i, 41, 0.1, {"roby": x}, {"roby": (-3.0, 7.0)}, ("roby",)),
                     np.random.default_rng(0))[g.fullname] for i, x in enumerate(xs)]
    assert xs[int(np.argmax(values))] == pytest.approx(2.0)
    assert max(values) == pytest.approx(100.0)
    assert values[0] < 0.01


def test_samples_counter_varies_and_is_deterministic():
    c = SamplesCounter("diode9", min_samples=2, max_samples=9)
    ctx = PointContext(0, 10, 0.1)
    rng = device_rng(3, 0, "diode9")
    points = [c.read(ctx, rng) for _ in range(20)]
    lengths = {len(p[c.fullname]) for p in points}
    assert len(lengths) > 1 and min(lengths) >= 2 and max(lengths) <= 9
    again = device_rng(3, 0, "diode9")
    assert np.array_equal(c.read(ctx, again)[c.fullname], points[0][c.fullname])
    assert [s.shape for s in c.channels()] == [(-1,), ()]


def test_mca_channels_and_spectrum():
    mca = SimMca("simu1")
    names = [s.name for s in mca.channels()]
    assert names == ["simu1:spectrum_det0", "simu1:realtime_det0", "simu1:livetime_det0",
                     "simu1:triggers_det0", "simu1:events_det0", "simu1:icr_det0",
                     "simu1:ocr_det0", "simu1:deadtime_det0"]
    point = mca.read(PointContext(0, 1, 0.5), np.random.default_rng(1))
    spectrum = point["simu1:spectrum_det0"]
    assert spectrum.dtype == np.int32 and spectrum.shape == (1024,)
    assert point["simu1:events_det0"] == spectrum.sum()
    assert point["simu1:realtime_det0"] == 0.5
    assert abs(int(np.argmax(spectrum)) - 300) < 10


def test_camera_frames_and_settings():
    cam = SimCamera(image_shape=(16, 32))
    f = cam.make_frame(7, 3)
    assert f.dtype == np.uint16 and f.shape == (16, 32) and f[0, 0] == 3
    assert np.array_equal(f, cam.make_frame(7, 3))
    assert not np.array_equal(f, cam.make_frame(8, 3))
    with pytest.raises(ValueError, match="saving_frame_per_file"):
        cam.saving_frame_per_file = 0
    with pytest.raises(ValueError, match="saving_format"):
        cam.saving_format = "TIFF"
    cam.saving_format = "edf"
    assert cam.file_template("/x/scan0001") == "/x/scan0001/lima_simulator_{file_index:04d}.edf"


def test_scan_saving_layout(tmp_path):
    s = ScanSaving(str(tmp_path), "test_session", proposal="blc123", beamline="id99",
                   collection="cube", dataset="0002")
    dataset_dir = tmp_path / "blc123/id99/test_session/RAW_DATA/cube/cube_0002"
    assert s.filename == str(dataset_dir / "cube_0002.h5")
    assert s.images_path(5) == str(dataset_dir / "scan0005")
    s.newdataset(3)
    assert s.dataset_name == "cube_0003"
    s.newcollection("sphere")
    assert s.filename.endswith("RAW_DATA/sphere/sphere_0001/sphere_0001.h5")
    with pytest.raises(ValueError, match="writer"):
        s.writer = "hdf5"


def test_config_names_and_errors(store):
    session = SimSession("s", store=store, base_path="/tmp/unused")
    names = session.config.names()
    for name in ("roby", "robz", "robu", "soft_axis", "diode", "diode2", "diode4",
                 "sim_ct_gauss", "diode9", "sim_var_samples", "diode_samples", "diode_stats",
                 "simu1", "lima_simulator"):
        assert name in names
        assert session.config.get(name).name == name
    with pytest.raises(KeyError, match="no object 'nope'.*roby"):
        session.config.get("nope")
    assert [m.name for m in session.motors] == ["roby", "robz", "robu", "soft_axis"]
    with pytest.raises(TypeError, match="motor"):
        session.ascan("diode", 0, 1, 2, 0.1)
    with pytest.raises(TypeError, match="not a counter"):
        session.ct(0.1, "roby")
    assert len(default_devices()) == len(names)


def test_sampling_counter_modes():
    from nexus_writer.sim import SamplingCounter

    samples = SamplingCounter("diode_samples", "SAMPLES", nb_samples=5)
    assert [(c.name, c.shape) for c in samples.channels()] == [
        ("simulation_diode_sampling_controller:diode_samples", ()),
        ("simulation_diode_sampling_controller:diode_samples_samples", (-1,))]
    point = samples.read(PointContext(0, 1, 0.1), device_rng(1, 0, "diode_samples"))
    values = point["simulation_diode_sampling_controller:diode_samples_samples"]
    assert len(values) == 5 and np.all((values >= 0) & (values <= 100))
    assert point["simulation_diode_sampling_controller:diode_samples"] == values.mean()
    stats = SamplingCounter("diode_stats", "STATS")
    names = [c.display_name for c in stats.channels()]
    assert names == ["diode_stats", "diode_stats_N", "diode_stats_std", "diode_stats_var",
                     "diode_stats_min", "diode_stats_max", "diode_stats_p2v"]
    assert stats.channels()[1].unit == "#"
    with pytest.raises(ValueError, match="mode must be one of SAMPLES, STATS"):
        SamplingCounter("x", "MEAN")
