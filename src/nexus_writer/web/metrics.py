"""Prometheus exposition text of a status document (``/metrics``)."""

from __future__ import annotations

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
