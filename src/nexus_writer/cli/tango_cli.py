"""``nexus-writer tango run INSTANCE`` and ``nexus-writer tango register``: the
``BlissWriter`` Tango device, with the defaults of blisswriter's ``blisswriter tango
run/register`` (server ``BlissWriter``, instance ``default``, device
``id00/blisswriter/<session or default>``)."""

from __future__ import annotations

import argparse
import logging
import os

from ..errors import NexusWriterError
from . import logs

logger = logging.getLogger("nexus_writer.cli")

#: ``--log`` level -> Tango's ``-vN`` verbosity (as blisswriter maps its --log-level).
TANGO_VERBOSITY = {"debug": 5, "info": 4, "warning": 3, "error": 2, "critical": 1}


def tango_host(value: str | None) -> tuple[str, int] | None:
    """``--tango-host H:P`` as ``(H, P)``; None when not given (``$TANGO_HOST`` applies)."""
    if not value:
        return None
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ValueError(f'--tango-host must be "<host>:<port>", not {value!r}')
    return host, int(port)


def add_parsers(sub: argparse._SubParsersAction) -> None:
    from ..tango.register import (DEFAULT_DOMAIN, DEFAULT_FAMILY, DEFAULT_INSTANCE,
                                  DEFAULT_MEMBER, DEFAULT_SERVER)

    parser = sub.add_parser("tango", help="the BlissWriter Tango device BLISS 2.x asks "
                            "(needs the [tango] extra)",
                            description="run: start a BlissWriter device server; register: "
                            "add a BlissWriter device to the Tango database.")
    tsub = parser.add_subparsers(dest="tango_command", required=True, metavar="ACTION")

    run = tsub.add_parser("run", help="start a BlissWriter device server",
                          usage="nexus-writer tango run INSTANCE [options] [-- TANGO_ARGS]",
                          description="Start the device server INSTANCE of server --server; "
                          "arguments after -- go to Tango as they are (e.g. -nodb -port P, "
                          "-file=DB for a database-less server).")
    run.add_argument("instance", metavar="INSTANCE", help="server instance name")
    run.add_argument("--server", default=DEFAULT_SERVER,
                     help=f"server name (default {DEFAULT_SERVER!r})")
    run.add_argument("--tango-host", metavar="HOST:PORT",
                     help="Tango database (default: $TANGO_HOST)")
    logs.add_arguments(run)
    _log_level_alias(run)
    run.set_defaults(func=run_server, passthrough=[])

    reg = tsub.add_parser("register", help="register a BlissWriter device in the Tango database",
                          description="Add device DOMAIN/FAMILY/MEMBER of class BlissWriter "
                          "to server SERVER/INSTANCE, with its redis_url and session "
                          "properties.")
    reg.add_argument("--redis", metavar="URL", default=os.environ.get("REDIS_URL"),
                     help="Redis URL of the scans (default: $REDIS_URL)")
    reg.add_argument("--session", help="BLISS session served, stored as the 'session' "
                     "property (how BLISS finds its writer); none by default")
    reg.add_argument("--server", default=DEFAULT_SERVER,
                     help=f"server name (default {DEFAULT_SERVER!r})")
    reg.add_argument("--instance", default=DEFAULT_INSTANCE,
                     help=f"server instance name (default {DEFAULT_INSTANCE!r})")
    reg.add_argument("--domain", default=DEFAULT_DOMAIN,
                     help=f"device domain (default {DEFAULT_DOMAIN!r})")
    reg.add_argument("--family", default=DEFAULT_FAMILY,
                     help=f"device family (default {DEFAULT_FAMILY!r})")
    reg.add_argument("--member", help="device member (default: the session name, else "
                     f"{DEFAULT_MEMBER!r})")
    reg.add_argument("--follow", action="store_true",
                     help="write every scan of the session, not only those BLISS asks for")
    reg.add_argument("--tango-host", metavar="HOST:PORT",
                     help="Tango database (default: $TANGO_HOST)")
    logs.add_arguments(reg)
    _log_level_alias(reg)
    reg.set_defaults(func=run_register)


def _log_level_alias(parser: argparse.ArgumentParser) -> None:
    """blisswriter's ``--log-level DEBUG``: the same as ``--log debug``."""
    parser.add_argument("--log-level", dest="log", type=str.lower, help=argparse.SUPPRESS)


def run_server(args: argparse.Namespace) -> int:
    """Run the device server until it is killed (Tango handles SIGINT/SIGTERM)."""
    try:
        from tango.server import run

        from ..tango.device import BlissWriter
    except ImportError as e:
        raise NexusWriterError(f"the Tango device needs pytango ({e}): "
                               "pip install 'nexus-writer[tango]'") from e

    extra = list(args.passthrough)
    tango_args = [args.server, args.instance, f"-v{TANGO_VERBOSITY.get(args.log.lower(), 3)}"]
    where = tango_host(args.tango_host)
    if where is not None:  # the database the server registers with
        os.environ["TANGO_HOST"] = f"{where[0]}:{where[1]}"
    run((BlissWriter,), tango_args + extra)
    return 0


def run_register(args: argparse.Namespace) -> int:
    from ..data.urls import redact_url as redacted
    from ..tango.register import DEFAULT_MEMBER, register_blisswriter

    if not args.redis:
        raise ValueError("--redis URL is required (or the REDIS_URL environment variable)")
    if args.follow and not args.session:
        raise ValueError("--follow needs --session")
    where = tango_host(args.tango_host)
    member = args.member or args.session or DEFAULT_MEMBER
    try:
        name = register_blisswriter(args.redis, args.server, args.instance, args.domain,
                                    args.family, member, session=args.session,
                                    follow_session=args.follow,
                                    host=where[0] if where else None,
                                    port=where[1] if where else None)
    except ImportError as e:
        raise NexusWriterError(f"registering needs pytango ({e}): "
                               "pip install 'nexus-writer[tango]'") from e
    print(f"registered {name} (class BlissWriter) in server {args.server}/{args.instance}; "
          f"Redis {redacted(args.redis)}"
          + (f"; serves session {args.session!r}" if args.session else ""))
    return 0
