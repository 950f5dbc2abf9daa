"""``nexus-writer`` and the seed's commands ``NexusSessionWriter`` / ``NexusWriterService``."""

from __future__ import annotations

import argparse
import logging
import sys
import time

from ..errors import NexusWriterError
from . import logs

logger = logging.getLogger("nexus_writer.cli")


def add_writer_arguments(parser: argparse.ArgumentParser) -> None:
    """The session writer's options (the seed-era flags plus live-writing ones)."""
    parser.add_argument("--redis", metavar="URL",
                        help="Redis URL (default: $REDIS_URL, else redis://localhost:6379)")
    g = parser.add_argument_group("saving")
    g.add_argument("--keepshape", action="store_true", help="store mesh scans as a grid")
    g.add_argument("--multivalue_positioners", action="store_true",
                   help="all channels of a motor in one NXpositioner")
    g.add_argument("--enable_external_nonhdf5", action="store_true",
                   help="map EDF frames as raw external datasets (uncompressed EDF only)")
    g.add_argument("--disable_external_hdf5", action="store_true",
                   help="no VDS for HDF5 camera files (relpath::index strings instead)")
    g.add_argument("--copy_non_external", action="store_true",
                   help="copy the pixels of frames that are not linked externally")
    g.add_argument("--required_disk_space", type=float, default=200.0, metavar="MB",
                   help="free space a scan needs to start (default 200 MB)")
    g.add_argument("--flush-period", "--flush_period", dest="flush_period", type=float,
                   default=1.0, metavar="S",
                   help="every point is in the file within S seconds (default 1)")
    g.add_argument("--compression", choices=("bitshuffle", "gzip", "none"),
                   default="bitshuffle", help="filter for detector data (default bitshuffle)")
    g.add_argument("--inactivity-timeout", dest="inactivity_timeout", type=float, default=300.0,
                   metavar="S", help="fail a scan that sends nothing for S s (0: never)")
    g.add_argument("--only-new", dest="only_new", action="store_true",
                   help="write only scans started from now on (by default the scans "
                   "retained in Redis that no writer saved are written too)")
    parser.add_argument("--no-live", dest="live", action="store_false",
                        help="no live table, log lines only")
    logs.add_arguments(parser)


def writer_options(args: argparse.Namespace) -> dict:
    from ..writer import WriterOptions

    return {name: getattr(args, name) for name in WriterOptions.names() if hasattr(args, name)}


def run_session_writer(args: argparse.Namespace) -> int:
    """Write the scans of ``args.session`` until Ctrl-C (twice to abort scans in progress)."""
    from ..writer import SessionWriter
    from .live import LiveView

    writer = SessionWriter(args.session, args.redis, from_next=args.only_new,
                           **writer_options(args))
    writer.start()
    print(f"NexusSessionWriter: session {args.session!r} on {writer.url}; Ctrl-C to stop",
          file=sys.stderr)
    with LiveView(writer, enabled=args.live):
        try:
            while True:
                time.sleep(0.5)
        except KeyboardInterrupt:
            pass
        try:  # a second Ctrl-C, wherever it lands, aborts the scans in progress
            writer.stop_listening()
            active = writer.active()
            if active:
                print(f"finishing {len(active)} scan(s) in progress; Ctrl-C again to abort "
                      "them", file=sys.stderr)
            while writer.active():
                time.sleep(0.2)
        except KeyboardInterrupt:
            writer.abort()
        writer.stop(timeout=30)
    failed = writer.summary().get("FAILED", 0)
    print(f"NexusSessionWriter: {writer.summary() or 'no scans'}", file=sys.stderr)
    return 1 if failed else 0


def run_validate(args: argparse.Namespace) -> int:
    from ..nexus.validate import validate_file

    bad = 0
    for path in args.files:
        report = validate_file(path)
        print(f"{path}: {report.summary()}")
        if args.verbose or not report.ok:
            for m in report.messages:
                print(f"    {m}")
        bad += not report.ok
    return 1 if bad else 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="nexus-writer",
        description="External NeXus/HDF5 writer for beamline data acquisition (Redis streams).")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    demo = sub.add_parser("demo", help="simulated session + writer on an embedded Redis",
                          description="Run the seed's demanding scans in a simulated session "
                          "and write them live; ends with a summary and the NeXus check.")
    demo.add_argument("--base-path", default="demo_data", help="where data goes (default "
                      "./demo_data)")
    demo.add_argument("--time-scale", type=float, default=0.1,
                      help="factor on count times; 0 runs without sleeping (default 0.1)")
    demo.add_argument("--session", default="demo_session", help="session name")
    demo.add_argument("--protocol", choices=("native", "blissdata"), default="native",
                      help="what the simulated session publishes: this project's protocol "
                      "(native, default; embedded redis-server) or BLISS 2.x's (blissdata; "
                      "embedded valkey-server with RedisJSON and RediSearch)")
    add_writer_arguments(demo)
    demo.set_defaults(func=lambda a: __import__("nexus_writer.cli.demo", fromlist=["run"]).run(a))

    write = sub.add_parser("write", help="write every new scan of SESSION (NexusSessionWriter)",
                           description="Listen to SESSION and write each new scan into "
                           "scan_info['filename'], live.")
    write.add_argument("session", metavar="SESSION")
    add_writer_arguments(write)
    write.set_defaults(func=run_session_writer)

    validate = sub.add_parser("validate", help="check files against the NeXus base classes",
                              description="nexusformat base-class check plus the @default "
                              "plot chain; exit 1 if any file has errors or warnings.")
    validate.add_argument("files", nargs="+", metavar="FILE")
    validate.add_argument("-v", "--verbose", action="store_true", help="print all findings")
    logs.add_arguments(validate)
    validate.set_defaults(func=run_validate)

    from .service import add_parsers

    add_parsers(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logs.setup(args)
    try:
        return int(args.func(args) or 0)
    except (NexusWriterError, ConnectionError, ValueError, OSError) as e:
        print(f"nexus-writer {args.command}: error: {e}", file=sys.stderr)
        return 2


def session_writer_main(argv: list[str] | None = None) -> int:
    """``NexusSessionWriter SESSION ...``: the same as ``nexus-writer write``."""
    return main(["write"] + list(sys.argv[1:] if argv is None else argv))


def service_main(argv: list[str] | None = None) -> int:
    """``NexusWriterService``: the same as ``nexus-writer service``."""
    return main(["service"] + list(sys.argv[1:] if argv is None else argv))


if __name__ == "__main__":
    raise SystemExit(main())
