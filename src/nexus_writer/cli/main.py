"""``nexus-writer`` and the seed's commands ``NexusSessionWriter`` / ``NexusWriterService``."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import time
from typing import Any

from ..errors import NexusWriterError
from . import logs

logger = logging.getLogger("nexus_writer.cli")


def add_writer_arguments(parser: argparse.ArgumentParser) -> None:
    """The session writer's options (the seed-era flags plus live-writing ones)."""
    add_redis_arguments(parser)
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
    g.add_argument("--base-path", dest="base_path", metavar="DIR",
                   help="resolve a relative scan_info filename against DIR (default: such "
                   "names are refused)")
    g.add_argument("--no-master-files", dest="master_files", action="store_false",
                   help="no ESRF collection/proposal master files (by default written for "
                   "scans with proposal, collection and dataset in their scan_info)")
    g.add_argument("--technique", default="", metavar="NAME",
                   help="application definition (technique template: NXxas, NXtomo, or a "
                   ".toml file) for scans whose scan_info names none")
    g.add_argument("--only-new", dest="only_new", action="store_true",
                   help="write only scans started from now on (by default the scans "
                   "retained in Redis that no writer saved are written too)")
    parser.add_argument("--stop-timeout", dest="stop_timeout", type=float, default=30.0,
                        metavar="S", help="on Ctrl-C or SIGTERM, scans in progress get S s "
                        "to finish before they are ended FAILED (default 30)")
    parser.add_argument("--standby", action="store_true",
                        help="when another writer serves the session, wait and take over "
                        "when it stops (hot standby) instead of refusing to start")
    parser.add_argument("--no-live", dest="live", action="store_false",
                        help="no live table, log lines only")
    add_http_arguments(parser)
    logs.add_arguments(parser)


def add_redis_arguments(parser: argparse.ArgumentParser, help_url: str | None = None) -> None:
    """``--redis URL`` and ``--redis-password-file FILE``."""
    parser.add_argument("--redis", metavar="URL", help=help_url or (
        "Redis URL, redis://[user[:password]@]host:port (default: $REDIS_URL, else "
        "redis://localhost:6379); a password here is visible in ps: prefer REDIS_URL or "
        "--redis-password-file"))
    parser.add_argument("--redis-password-file", dest="redis_password_file", metavar="FILE",
                        help="read the Redis password from FILE (its first line); the user, "
                        "if any, comes from the URL")


def redis_url(args: argparse.Namespace) -> str:
    """The Redis URL of ``--redis`` / ``$REDIS_URL`` with ``--redis-password-file``;
    warns when the command line itself holds a secret."""
    from ..data.urls import has_credentials, redact_url, resolve_url

    if has_credentials(getattr(args, "redis", None)):
        logger.warning("the Redis URL on the command line holds credentials, visible to "
                       "every local user (ps); use REDIS_URL or --redis-password-file "
                       "(given: %s)", redact_url(args.redis))
    return resolve_url(getattr(args, "redis", None), getattr(args, "redis_password_file", None))


def add_http_arguments(parser: argparse.ArgumentParser, what: str = "the writer's") -> None:
    """``--http [HOST:]PORT`` and ``--data-root DIR``: the web page."""
    parser.add_argument("--http", metavar="[HOST:]PORT",
                        help=f"serve {what} web page, /status and /metrics on PORT "
                        "(127.0.0.1 unless HOST is given; 0: a free port; from other hosts "
                        "the token $NEXUS_WRITER_WEB_TOKEN is required when set)")
    parser.add_argument("--data-root", dest="data_roots", action="append", default=None,
                        metavar="DIR", help="the page serves files under DIR only (repeat "
                        "for more; default: the folders of the files written)")


def _web() -> Any:
    """The web adapter, imported only when a page is asked for (Starlette, uvicorn)."""
    from .. import web

    return web


def start_web(args: argparse.Namespace, make: Any) -> Any:
    """Start the web page when ``--http`` is given (``make(port=, host=, roots=)``) and
    print its address; None otherwise."""
    if getattr(args, "http", None) is None:
        return None
    host, port = _web().parse_address(args.http)
    server = make(port=port, host=host, roots=args.data_roots or ())
    server.start()
    print(f"web page: {server.url}  (status: {server.url}status)", file=sys.stderr)
    return server


def writer_options(args: argparse.Namespace) -> dict:
    from ..writer import WriterOptions

    options = {name: getattr(args, name) for name in WriterOptions.names()
               if getattr(args, name, None) is not None}
    if options.get("base_path"):
        options["base_path"] = os.path.abspath(options["base_path"])
    return options


def _interrupt(signum: int, frame: object) -> None:
    """SIGTERM as a Ctrl-C (systemd, supervisors and container runtimes stop with it)."""
    raise KeyboardInterrupt


def run_session_writer(args: argparse.Namespace) -> int:
    """Write the scans of ``args.session`` until Ctrl-C or SIGTERM.

    The first one stops taking scans and lets those in progress finish for at most
    ``--stop-timeout`` seconds; a second one, or that deadline, ends them at once
    (recorded FAILED with what was received).  Every state is recorded before exit.
    """
    from ..writer import SessionWriter
    from ..writer.runtime import freeze_startup_objects
    from .live import LiveView

    writer = SessionWriter(args.session, redis_url(args), from_next=args.only_new,
                           protocol=args.protocol, standby=args.standby,
                           **writer_options(args))
    # the page first: a port taken stops here, before the writer takes any scan; and
    # the writer's first status names its page
    try:
        web = start_web(args, lambda **kw: _web().for_session_writer(writer, **kw))
    except BaseException:
        writer.close_stores()
        raise
    try:
        freeze_startup_objects()  # the imports are done: before any scan
        writer.start()
    except BaseException:  # another writer has the session: nothing to serve
        if web is not None:
            web.stop()
        raise
    with LiveView(writer, enabled=args.live):
        try:  # a Ctrl-C from here on stops the writer the normal way
            signal.signal(signal.SIGTERM, _interrupt)  # as the first Ctrl-C
            print(f"NexusSessionWriter: session {args.session!r} on {writer.url} "
                  f"({writer.protocol}); Ctrl-C or SIGTERM to stop", file=sys.stderr)
            while not writer.lease.lost.wait(0.5):
                pass
            print(f"NexusSessionWriter: session {args.session!r} taken over by another writer "
                  f"({writer.lease_lost_to}); stopping", file=sys.stderr)
        except KeyboardInterrupt:
            pass
        try:  # a second Ctrl-C / SIGTERM, wherever it lands, aborts the scans in progress
            writer.stop_listening()
            active = writer.active()
            if active:
                print(f"finishing {len(active)} scan(s) in progress (at most "
                      f"{args.stop_timeout:g} s, --stop-timeout); Ctrl-C or SIGTERM again to "
                      "abort them", file=sys.stderr)
            deadline = time.monotonic() + args.stop_timeout
            while writer.active():
                if time.monotonic() >= deadline:
                    print(f"scan(s) still in progress after {args.stop_timeout:g} s "
                          "(--stop-timeout): aborting them", file=sys.stderr)
                    writer.abort()
                    break
                time.sleep(0.1)
        except KeyboardInterrupt:
            writer.abort()
        # from here on the final states are recorded: further signals wait for it
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        writer.stop(timeout=30)
    if web is not None:
        web.stop()
    failed = writer.summary().get("FAILED", 0)
    print(f"NexusSessionWriter: {writer.summary() or 'no scans'}", file=sys.stderr)
    return 1 if failed else 0


def run_validate(args: argparse.Namespace) -> int:
    from ..nexus.validate import validate_applications, validate_file

    bad = 0
    for path in args.files:
        report = validate_file(path)
        print(f"{path}: {report.summary()}")
        if args.verbose or not report.ok:
            for m in report.messages:
                print(f"    {m}")
        bad += not report.ok
        if not os.path.isfile(path):  # named by the report above
            continue
        for app in validate_applications(path):  # entries declaring a definition
            print(f"  {app.summary()}")
            if args.verbose or not app.ok:
                for m in app.messages:
                    print(f"    {m}")
            bad += not app.ok
    return 1 if bad else 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="nexus-writer",
        description="External NeXus/HDF5 writer for beamline data acquisition (Redis streams).")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    demo = sub.add_parser("demo", help="simulated session + writer on an embedded Redis",
                          description="Run the seed's demanding scans in a simulated session "
                          "and write them live; ends with a summary and the NeXus check.")
    demo.add_argument("--time-scale", type=float, default=0.1,
                      help="factor on count times; 0 runs without sleeping (default 0.1)")
    demo.add_argument("--session", default="demo_session", help="session name")
    demo.add_argument("--protocol", choices=("native", "blissdata"), default="native",
                      help="what the simulated session publishes: this project's protocol "
                      "(native, default; embedded redis-server) or BLISS 2.x's (blissdata; "
                      "embedded valkey-server with RedisJSON and RediSearch)")
    add_writer_arguments(demo)
    demo.add_argument("--serve", action="store_true",
                      help="keep the web page up after the scans, until Ctrl-C")
    demo.set_defaults(http="0")
    demo.set_defaults(func=lambda a: __import__("nexus_writer.cli.demo", fromlist=["run"]).run(a))

    write = sub.add_parser("write", help="write every new scan of SESSION (NexusSessionWriter)",
                           description="Listen to SESSION and write each new scan into "
                           "scan_info['filename'], live.")
    write.add_argument("session", metavar="SESSION")
    add_writer_arguments(write)
    write.add_argument("--protocol", choices=("auto", "native", "blissdata"), default="auto",
                       help="what the acquisition publishes: this project's protocol (native)"
                       " or BLISS 2.x (blissdata); auto (default) detects it from the "
                       "protocol key in Redis")
    write.set_defaults(func=run_session_writer)

    validate = sub.add_parser("validate", help="check files against the NeXus base classes",
                              description="nexusformat base-class check plus the @default "
                              "plot chain, and the application definition (nxvalidate) of "
                              "each entry or subentry that declares one; exit 1 if any file "
                              "has errors or warnings.")
    validate.add_argument("files", nargs="+", metavar="FILE")
    validate.add_argument("-v", "--verbose", action="store_true", help="print all findings")
    logs.add_arguments(validate)
    validate.set_defaults(func=run_validate)

    from .service import add_parsers
    from .tango_cli import add_parsers as add_tango_parsers

    add_parsers(sub)
    add_tango_parsers(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    # after a lone "--": arguments for a program the command runs (``tango run``)
    passthrough = argv[argv.index("--") + 1:] if "--" in argv else []
    argv = argv[:argv.index("--")] if "--" in argv else argv
    args = parser.parse_args(argv)
    if passthrough and not hasattr(args, "passthrough"):
        parser.error(f"unrecognized arguments: -- {' '.join(passthrough)}")
    if passthrough:
        args.passthrough = passthrough
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
