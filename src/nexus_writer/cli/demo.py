"""``nexus-writer demo``: a simulated session and the writer side by side.

Starts an embedded server when no ``--redis`` is given (redis-server for the
native protocol; valkey-server with RedisJSON and RediSearch, prepared for
blissdata, with ``--protocol blissdata``), writes the seed's demanding scans live,
and ends with a summary: files, entries, points and the NeXus check of every file.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time

import h5py

from ..data.server import BlissdataServer, RedisServer
from ..nexus.validate import validate_file
from ..sim import SimSession, run_some_scans
from ..sim.publishers import prepare_blissdata
from ..writer import ScanState, SessionWriter
from .live import LiveView
from .main import _web, redis_url, start_web, writer_options


def _points(path: str, entries: list[str]) -> int:
    """Points written in the ``measurement`` groups of ``entries``."""
    total = 0
    with h5py.File(path, "r", locking=False) as f:
        for entry in entries:
            group = f.get(f"{entry}/measurement")
            if group is None:
                continue
            for name in group:
                obj = group.get(name)
                if isinstance(obj, h5py.Dataset) and obj.ndim >= 1:
                    total += obj.shape[0]
    return total


def run(args: argparse.Namespace) -> int:
    base = os.path.abspath(args.base_path or "demo_data")  # where data goes (and the
    # writer's base for relative names)
    protocol = getattr(args, "protocol", "native")
    with contextlib.ExitStack() as stack:
        url = redis_url(args) if args.redis else None  # with --redis-password-file
        if url is None:
            if protocol == "blissdata":
                url = stack.enter_context(BlissdataServer()).url
                prepare_blissdata(url)
                print(f"embedded valkey-server (blissdata) at {url}", file=sys.stderr)
            else:
                url = stack.enter_context(RedisServer()).url
                print(f"embedded redis-server at {url}", file=sys.stderr)
        options = dict(writer_options(args), base_path=base)
        if protocol != "native":
            options["protocol"] = protocol
        writer = SessionWriter(args.session, url, **options).start()
        web = start_web(args, lambda **kw: _web().for_session_writer(
            writer, **dict(kw, roots=kw["roots"] or [base])))
        if web is not None:
            stack.callback(web.stop)
        started = time.monotonic()
        with LiveView(writer, enabled=args.live):
            with SimSession(args.session, redis_url=url, base_path=base,
                            time_scale=args.time_scale, protocol=protocol) as session:
                scans = run_some_scans(session, extra=True)
            writer.wait_idle(timeout=120)
            if web is not None and getattr(args, "serve", False):
                print(f"scans done; the page stays at {web.url} until Ctrl-C", file=sys.stderr)
                try:
                    while True:
                        time.sleep(0.5)
                except KeyboardInterrupt:
                    pass
        writer.stop(timeout=30)
        elapsed = time.monotonic() - started
    return summary(writer, len(scans), elapsed)


def summary(writer: SessionWriter, published: int, elapsed: float) -> int:
    """Print files, entries, points and the NeXus check; 0 when all is well."""
    files: dict[str, list[str]] = {}
    states: dict[str, int] = {}
    for w in writer.scans():
        states[w.state.name] = states.get(w.state.name, 0) + 1
        if w.filename and w.state != ScanState.SKIPPED:
            files.setdefault(w.filename, []).extend(w.entries)
        if w.state == ScanState.FAILED:
            print(f"  FAILED scan {w.source.number}: {w.saving.reason}")
    print(f"\n{published} scans published, written in {elapsed:.1f} s: "
          + ", ".join(f"{n} {s}" for s, n in sorted(states.items())))
    ok = states.get("FAILED", 0) == 0
    for path, entries in sorted(files.items()):
        if not os.path.exists(path):  # every scan of it refused before it was created
            print(f"{path}\n    not written")
            continue
        report = validate_file(path)
        ok &= report.ok
        print(f"{path}\n    {len(entries)} entries, {_points(path, entries)} points; "
              f"NeXus check: {report.summary()}")
        if not report.ok:
            for m in report.messages:
                print(f"      {m}")
    print("open with: silx view FILE   (or h5web, or nexus-writer validate FILE)")
    return 0 if ok else 1
