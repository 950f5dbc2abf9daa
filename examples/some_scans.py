"""Run the seed's list of demanding scans in a simulated session.

    python examples/some_scans.py [--redis URL] [--base-path DIR] [--time-scale X]

Without ``--redis`` an embedded redis-server is started for the run (and stopped at
the end, so start a writer against ``--redis`` to see the scans saved).
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import tempfile

from nexus_writer.data.server import RedisServer
from nexus_writer.sim import SimSession, run_some_scans


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--redis", metavar="URL", help="Redis URL (default: embedded server)")
    parser.add_argument("--base-path", help="root of the saved data (default: a new temp dir)")
    parser.add_argument("--time-scale", type=float, default=1.0,
                        help="factor on count times; 0 runs without sleeping (default 1)")
    parser.add_argument("--session", default="test_session", help="session name")
    parser.add_argument("--extra", action="store_true",
                        help="also run an amesh with EDF files, a ct and a sequence")
    parser.add_argument("--log", default="warning", help="log level")
    parser.add_argument("--wait-saved", type=float, default=0.5, metavar="S",
                        help="how long to wait for each scan's saving report (default 0.5)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log.upper(), format="%(asctime)s %(name)s %(message)s")
    base = args.base_path or tempfile.mkdtemp(prefix="nexus_writer_sim_")
    with contextlib.ExitStack() as stack:
        url = args.redis
        if url is None:
            url = stack.enter_context(RedisServer()).url
            print(f"embedded redis-server at {url}")
        session = stack.enter_context(
            SimSession(args.session, redis_url=url, base_path=base, time_scale=args.time_scale))
        for scan in run_some_scans(session, extra=args.extra):
            counts = {n.name: n.count() for n in scan.node.nodes()}
            # the completeness protocol: did a writer save it?  (NO_WRITER when none runs)
            saved = scan.wait_saved(timeout=args.wait_saved)
            print(f"{scan.scan_number:3d} {scan.scan_info['title']:<45} {scan.end_reason:<10} "
                  f"{max(counts.values(), default=0):4d} points max, {len(counts)} nodes, "
                  f"saved: {saved}")
        print(f"dataset file (for the writer): {session.scan_saving.filename}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
