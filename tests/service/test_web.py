"""The service's web page: every session's writer and scans, and each file's data
asked of the page of the writer process that writes it (read in its file thread)."""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request

import numpy as np

from nexus_writer.sim import SimSession

from .helpers import wait_for

FAST = {"flush_period": 0.2}


READ_BY = "x-nexus-writer-read-by"


def _get(port: int, path: str, headers: dict | None = None) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as r:
            if headers is not None:
                headers.update((k.lower(), v) for k, v in r.headers.items())
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def test_service_page_and_files_through_the_writers(service_factory, redis_url, data_dir):
    service = service_factory({"s1": FAST, "s2": FAST})
    pids = {s: service.wait_writer(s) for s in ("s1", "s2")}
    code, page = _get(service.port, "/")
    assert code == 200 and b"static/app.js" in page
    assert _get(service.port, "/status")[0] == 200
    assert _get(service.port, "/h5grove/meta/?file=/etc/passwd")[0] == 403
    with SimSession("s1", redis_url=redis_url, base_path=data_dir, time_scale=0) as session:
        scan = session.loopscan(5, 0.1, "diode")
        assert scan.wait_saved(30).state == "SUCCEEDED"
        diode = next(n for n in scan.node.nodes() if n.name.endswith(":diode")).get()
        path = scan.filename

    def listed() -> dict | None:
        snap = json.loads(_get(service.port, "/api/snapshot")[1])
        rows = [s for s in snap["scans"] if s["session"] == "s1" and s["state"] == "SUCCEEDED"]
        return snap if rows else None

    snap = wait_for(listed, 15, "scan of s1 listed SUCCEEDED on the service's page",
                    service.logs)
    writers = {s["session"]: s for s in snap["sessions"]}
    assert writers["s1"]["pid"] == pids["s1"] and writers["s2"]["pid"] == pids["s2"]
    assert writers["s1"]["state"] == "RUNNING" and writers["s1"]["heartbeat_age"] < 10
    # the writer of s1 serves its own page on a loopback port, named in its status
    status = service.status()
    writer_page = status["sessions"]["s1"]["writer"]["web"]
    assert writer_page.startswith("http://127.0.0.1:")
    query = urllib.parse.urlencode({"file": path, "path": "/1.1/measurement/diode"})
    headers: dict = {}
    code, body = _get(service.port, f"/h5grove/data/?{query}", headers)
    assert code == 200 and np.array_equal(np.array(json.loads(body), dtype=float), diode)
    assert headers[READ_BY] == f"pid {pids['s1']}"  # read in the writer, not the service
    with urllib.request.urlopen(f"{writer_page}h5grove/data/?{query}", timeout=10) as r:
        assert json.loads(r.read()) == json.loads(body)
    headers = {}
    plot = json.loads(_get(service.port, "/api/plot?" + urllib.parse.urlencode(
        {"file": path, "entry": "1.1"}), headers)[1])
    assert plot["kind"] == "curves" and plot["points"] == 5
    assert headers[READ_BY] == f"pid {pids['s1']}"
