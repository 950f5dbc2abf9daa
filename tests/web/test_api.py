"""The page's HTTP side without a browser: status, metrics, snapshot, h5grove's API on
the written files, read-only, data roots, secrets, token."""

from __future__ import annotations

import json
import os
import urllib.parse

import h5py
import numpy as np
import pytest

from nexus_writer.web.files import DataRoots, NotServedError
from nexus_writer.web.sources import mask, snapshot

from ..writer.helpers import wait_written
from .conftest import wait_for


def _q(**params: str) -> str:
    return urllib.parse.urlencode(params)


def test_status_metrics_and_snapshot(web_factory, sim_session):
    writer, server, client = web_factory()
    scans = [sim_session.loopscan(5, 0.1, "diode"), sim_session.ascan("roby", 0, 1, 3, 0.1,
                                                                      "diode")]
    wait_written(writer, scans)
    status = client.json("/status")
    entry = status["sessions"]["test_session"]
    assert entry["process"]["alive"] is True and entry["writer"]["pid"] == os.getpid()
    code, ctype, body = client.request("/metrics")
    assert code == 200 and ctype.startswith("text/plain")
    lines = body.decode().splitlines()
    assert 'nexus_writer_up{session="test_session"} 1' in lines
    assert 'nexus_writer_scans{session="test_session",state="SUCCEEDED"} 2' in lines
    # 5 points x 3 channels (elapsed_time, epoch, diode) + 4 points x 4 (roby too)
    assert 'nexus_writer_points_written{session="test_session"} 31' in lines
    snap = wait_for(lambda: (s := client.json("/api/snapshot"))["sessions"][0][
        "heartbeat_age"] is not None and s, 5, "the writer's heartbeat in the snapshot")
    [session] = snap["sessions"]
    assert session["session"] == "test_session" and session["state"] == "RUNNING"
    assert session["pid"] == os.getpid() and session["host"]
    rows = {s["scan"]: s for s in snap["scans"]}
    assert rows[1]["title"] == "loopscan 5 0.1" and rows[1]["state"] == "SUCCEEDED"
    assert rows[1]["written"] == rows[1]["published"] == 5
    assert rows[2]["written"] == 4 and rows[2]["entries"] == ["2.1"]
    assert rows[1]["file"] == sim_session.scan_saving.filename
    assert rows[1]["duration"] > 0 and rows[1]["reason"] is None


def test_page_and_static_files(web_factory):
    _, _, client = web_factory()
    code, ctype, body = client.request("/")
    assert code == 200 and ctype.startswith("text/html") and b"static/app.js" in body
    for name in ("app.js", "app.css", "uPlot.iife.min.js", "uPlot.min.css", "uPlot.LICENSE"):
        code, _, body = client.request(f"/static/{name}")
        assert code == 200 and body, name
    assert client.request("/static/../files.py")[0] == 404


def test_events_stream_pushes_snapshots(web_factory, sim_session):
    import urllib.request

    writer, server, client = web_factory()
    with urllib.request.urlopen(server.url + "events", timeout=10) as stream:
        assert stream.headers["Content-Type"].startswith("text/event-stream")
        assert stream.readline() == b"event: snapshot\n"
        first = json.loads(stream.readline().decode().removeprefix("data: "))
        assert first["scans"] == []
        scan = sim_session.loopscan(3, 0.1, "diode")
        wait_written(writer, [scan])
        while True:  # the next snapshots come by themselves, the scan in them
            line = stream.readline()
            if line.startswith(b"data: "):
                snap = json.loads(line[6:])
                if snap["scans"] and snap["scans"][0]["state"] == "SUCCEEDED":
                    break
    assert snap["scans"][0]["written"] == 3


def test_h5grove_api_serves_the_written_file(web_factory, sim_session):
    writer, _, client = web_factory()
    scan = sim_session.loopscan(6, 0.1, "diode")
    wait_written(writer, [scan])
    published = scan.node.nodes()
    diode = next(n for n in published if n.name.endswith(":diode")).get()
    path = sim_session.scan_saving.filename
    assert client.request("/h5grove/")[2] == b"ok"
    meta = client.json("/h5grove/meta/?" + _q(file=path, path="/1.1"))
    assert meta["kind"] == "group"
    assert {"instrument", "measurement", "plot0D"} <= {c["name"] for c in meta["children"]}
    data = client.json("/h5grove/data/?" + _q(file=path, path="/1.1/measurement/diode"))
    assert np.array_equal(np.array(data, dtype=float), diode)
    code, _, raw = client.request("/h5grove/data/?" + _q(file=path, path="/1.1/measurement/diode",
                                                         format="bin", dtype="safe"))
    assert code == 200 and np.frombuffer(raw, dtype=diode.dtype).tobytes() == diode.tobytes()
    attrs = client.json("/h5grove/attr/?" + _q(file=path, path="/1.1/plot0D"))
    assert attrs["NX_class"] == "NXdata" and attrs["signal"] == "diode"
    paths = client.json("/h5grove/paths/?" + _q(file=path, path="/1.1/plot0D"))
    assert "/1.1/plot0D/diode" in paths
    stats = client.json("/h5grove/stats/?" + _q(file=path, path="/1.1/measurement/diode"))
    assert stats["max"] == diode.max()
    code, _, body = client.request("/h5grove/meta/?" + _q(file=path, path="/nothing"))
    assert code == 404 and "nothing" in json.loads(body)["message"]


def test_plot_of_each_kind(web_factory, sim_session):
    """The default NXdata (curves), a spectrum, the mesh and the last camera frame, as
    documented in the layout: plot0D, plot1D (spectrum), plot2D (image)."""
    writer, _, client = web_factory()
    camera = sim_session.config.get("lima_simulator")
    scans = [sim_session.ascan("roby", 0, 1, 4, 0.1, "diode", "diode2"),
             sim_session.loopscan(3, 0.1, "diode", camera),
             sim_session.amesh("roby", 0, 1, 3, "robz", 0, 1, 2, 0.1, "diode")]
    wait_written(writer, scans)
    path = sim_session.scan_saving.filename
    curves = client.json("/api/plot?" + _q(file=path, entry="1.1"))
    assert curves["kind"] == "curves" and curves["x_label"] == "roby" and curves["points"] == 5
    assert curves["x"] == pytest.approx([0, 0.25, 0.5, 0.75, 1])
    with h5py.File(path, "r", locking=False) as f:
        signal = f["1.1/plot0D"].attrs["signal"]
        assert curves["series"][signal] == f[f"1.1/plot0D/{signal}"][()].tolist()
        frame = f["2.1/plot2D"][f["2.1/plot2D"].attrs["signal"]][2]
    image = client.json("/api/plot?" + _q(file=path, entry="2.1", nxdata="plot2D"))
    assert image["kind"] == "image" and image["point"] == 2
    assert (image["height"], image["width"]) == frame.shape
    assert image["pixels"] == frame.astype(float).ravel().tolist()
    mesh = client.json("/api/plot?" + _q(file=path, entry="3.1"))
    assert mesh["kind"] == "image" and (mesh["height"], mesh["width"]) == (3, 4)
    missing = client.request("/api/plot?" + _q(file=path, entry="9.1"))
    assert missing[0] == 404 and b"no entry" in missing[2]


def test_spectrum_plot(web_factory, sim_session):
    writer, _, client = web_factory()
    mca = sim_session.config.get("simu1")
    scan = sim_session.loopscan(4, 0.1, mca)
    wait_written(writer, [scan])
    path = sim_session.scan_saving.filename
    spectrum = client.json("/api/plot?" + _q(file=path, entry="1.1", nxdata="plot1D"))
    assert spectrum["kind"] == "spectrum" and spectrum["point"] == 3
    with h5py.File(path, "r", locking=False) as f:
        data = f["1.1/plot1D"]
        last = data[data.attrs["signal"]][3]
    assert spectrum["series"][spectrum["signal"]] == last.astype(float).tolist()


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH"])
def test_read_only(web_factory, method):
    _, _, client = web_factory()
    for path in ("/", "/status", "/h5grove/data/", "/nowhere"):
        code, _, _ = client.request(path, method=method)
        assert code == 405, (method, path)


def test_only_files_under_the_data_roots(web_factory, sim_session, data_dir, tmp_path):
    writer, _, client = web_factory()
    scan = sim_session.loopscan(2, 0.1, "diode")
    wait_written(writer, [scan])
    inside = sim_session.scan_saving.filename
    outside = tmp_path / "outside.h5"
    with h5py.File(outside, "w") as f:
        f["secret"] = 1
    (data_dir / "link.h5").symlink_to(outside)          # a symlink out of the root
    (data_dir / "linkdir").symlink_to(tmp_path)           # a directory symlink out of it
    relative = os.path.relpath(outside, data_dir)
    refused = [str(outside),                                           # absolute
               f"{data_dir}/{relative}",                               # ../
               f"{data_dir}/../outside.h5",
               str(data_dir / "link.h5"),
               str(data_dir / "linkdir" / "outside.h5"),
               "/etc/passwd", "outside.h5", ""]
    for path in refused:
        for route in ("/h5grove/meta/?", "/h5grove/data/?", "/api/plot?"):
            code, _, body = client.request(route + _q(file=path, path="/secret", entry="1.1"))
            assert code == 403, (route, path, code)
            assert b"secret\"" not in body
    assert client.request("/h5grove/meta/?" + _q(file=inside, path="/"))[0] == 200
    assert client.request("/h5grove/meta/?" + _q(file=str(data_dir / "none.h5")))[0] == 404


def test_data_roots_resolve(tmp_path):
    root = tmp_path / "root"
    (root / "a").mkdir(parents=True)
    roots = DataRoots([str(root)])
    assert roots.resolve(str(root / "a" / "f.h5")) == str(root / "a" / "f.h5")
    (tmp_path / "rootless").mkdir()
    for bad in (str(tmp_path / "rootless" / "f.h5"), str(root / ".." / "rootless"),
                str(root) + "less/f.h5", "relative.h5", "x\0y"):
        with pytest.raises(NotServedError):
            roots.resolve(bad)


def test_secrets_are_masked():
    doc = {"sessions": {"s": {"process": {"redis": "redis://user:s3cret@host:6379/0"},
                              "writer": {"url": "redis://:s3cret@host:6379", "scans": [
                                  {"state": "FAILED", "reason": "redis://a:s3cret@h refused",
                                   "channels": {}}]}}}}
    masked = mask(doc)
    assert "s3cret" not in json.dumps(masked) and "user" not in json.dumps(masked)
    assert masked["sessions"]["s"]["process"]["redis"] == "redis://***@host:6379/0"
    assert "s3cret" not in json.dumps(snapshot(doc))


def test_token_required_from_other_hosts(web_factory):
    _, server, client = web_factory()
    web = server.web
    web.token = "let-me-in"
    web.trusted = lambda request: False  # as if the client were on another host
    assert client.request("/status")[0] == 401
    assert client.request("/status", headers={"Authorization": "Bearer nope"})[0] == 401
    assert client.request("/status", headers={"Authorization": "Bearer let-me-in"})[0] == 200
    code, _, _ = client.request("/?token=let-me-in")
    assert code == 200
    web.trusted = lambda request: True  # this host: no token needed
    assert client.request("/status")[0] == 200


def test_writer_page_of_a_file():
    """The service asks a file's data of the page of the live writer that wrote it last."""
    from nexus_writer.web.server import writer_page_of

    def session(web, alive, *scans):
        return {"process": {"alive": alive},
                "writer": {"web": web, "scans": [{"file": f, "started": t} for f, t in scans]}}

    status = {"sessions": {"a": session("http://127.0.0.1:1/", True, ("/d/x.h5", 1.0)),
                           "b": session("http://127.0.0.1:2/", True, ("/d/x.h5", 2.0),
                                        ("/d/y.h5", 3.0)),
                           "c": session("http://127.0.0.1:3/", False, ("/d/z.h5", 4.0)),
                           "d": session(None, True, ("/d/w.h5", 5.0))}}
    assert writer_page_of(status, "/d/x.h5") == "http://127.0.0.1:2/"
    assert writer_page_of(status, "/d/y.h5") == "http://127.0.0.1:2/"
    assert writer_page_of(status, "/d/z.h5") is None  # its writer is down
    assert writer_page_of(status, "/d/w.h5") is None  # its writer has no page
