"""HTTP status of the service: ``/status`` (JSON) and ``/metrics`` (Prometheus text).

The standard library's threading HTTP server is enough for a few polling clients
and adds no dependency.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

STATES = ("STARTING", "RUNNING", "SUCCEEDED", "FAILED", "SKIPPED")


def _label(value: str) -> str:
    """A Prometheus label value: backslash, double quote and newline escaped."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def metrics(status: dict[str, Any]) -> str:
    """Prometheus exposition text of a service status document."""
    lines = [
        "# HELP nexus_writer_up Session writer process alive (1) or not (0).",
        "# TYPE nexus_writer_up gauge",
    ]
    scans, points, restarts = [], [], []
    for name, entry in status.get("sessions", {}).items():
        label = f'session="{_label(name)}"'
        process = entry.get("process") or {}
        lines.append(f"nexus_writer_up{{{label}}} {int(bool(process.get('alive')))}")
        restarts.append(f"nexus_writer_restarts_total{{{label}}} {process.get('restarts', 0)}")
        counts = dict.fromkeys(STATES, 0)
        written = 0
        for scan in (entry.get("writer") or {}).get("scans", []):
            counts[scan.get("state", "RUNNING")] = counts.get(scan.get("state", "RUNNING"), 0) + 1
            written += sum(c.get("written", 0) for c in scan.get("channels", {}).values())
        for state, n in counts.items():
            scans.append(f'nexus_writer_scans{{{label},state="{state}"}} {n}')
        points.append(f"nexus_writer_points_written{{{label}}} {written}")
    lines += ["# HELP nexus_writer_restarts_total Session writer restarts.",
              "# TYPE nexus_writer_restarts_total counter", *restarts,
              "# HELP nexus_writer_scans Scans by saving state (recent scans).",
              "# TYPE nexus_writer_scans gauge", *scans,
              "# HELP nexus_writer_points_written Points written (recent scans).",
              "# TYPE nexus_writer_points_written gauge", *points]
    return "\n".join(lines) + "\n"


class StatusServer:
    """Serves a supervisor's status on 127.0.0.1:``port`` (0: a free port) in a thread."""

    def __init__(self, supervisor: Any, port: int = 0, host: str = "127.0.0.1"):
        owner = supervisor

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                path = self.path.split("?")[0].rstrip("/")
                if path in ("", "/status"):
                    body = json.dumps(owner.status(), indent=1, default=str).encode()
                    ctype = "application/json"
                elif path == "/metrics":
                    body = metrics(owner.status()).encode()
                    ctype = "text/plain; version=0.0.4"
                else:
                    self.send_error(404, "try /status or /metrics")
                    return
                self.send_response(200)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer((host, port), Handler)
        self.port = self.server.server_address[1]
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True,
                                        name="http-status")

    def start(self) -> "StatusServer":
        self._thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
