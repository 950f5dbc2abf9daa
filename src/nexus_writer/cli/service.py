"""``nexus-writer service ...`` (``NexusWriterService``) and ``nexus-writer status``."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from . import logs

DEFAULT_CONFIG = os.environ.get("NEXUS_WRITER_CONFIG",
                                str(Path.home() / ".config" / "nexus-writer" / "service.toml"))


def add_parsers(sub: argparse._SubParsersAction) -> None:
    service = sub.add_parser(
        "service", help="run a session writer per configured session (NexusWriterService)",
        description="run: supervise one session-writer process per session of the config "
        "(restarted when it dies; SIGHUP reloads the config). add/remove: edit the config "
        "and tell a running service. list: print the config.")
    service.add_argument("action", nargs="?", default="run", choices=("run", "add", "remove",
                                                                      "list"))
    service.add_argument("session", nargs="?", help="session name (add, remove)")
    service.add_argument("--config", default=DEFAULT_CONFIG,
                         help=f"TOML config file (default {DEFAULT_CONFIG}, or "
                         "$NEXUS_WRITER_CONFIG)")
    from .main import add_http_arguments, add_redis_arguments

    add_redis_arguments(service, help_url="Redis URL for all sessions (run), or of the "
                        "added session (add); writers get it in their environment "
                        "(REDIS_URL), never on their command line")
    add_http_arguments(service, "the service's")
    logs.add_arguments(service)
    service.set_defaults(func=run_service)

    status = sub.add_parser("status", help="saving status of the writers, from Redis",
                            description="Per session and scan: state, reason, file and "
                            "entries, points written vs published per channel.")
    status.add_argument("session", nargs="?", help="one session (default: all)")
    add_redis_arguments(status, help_url="Redis URL (default $REDIS_URL)")
    status.add_argument("--json", action="store_true", help="print JSON")
    status.add_argument("--watch", action="store_true", help="refresh as a live table")
    logs.add_arguments(status)
    status.set_defaults(func=run_status)


def run_service(args: argparse.Namespace) -> int:
    from ..data.urls import redact_url
    from ..service import config as cfg
    from ..service.supervisor import Supervisor, signal_service

    path = Path(args.config)
    if args.action == "run":
        path.parent.mkdir(parents=True, exist_ok=True)
        level = args.log if args.log != "warning" else None
        return Supervisor(path, redis=args.redis, log=level, http_port=args.http,
                          data_roots=args.data_roots,
                          password_file=args.redis_password_file).run()
    config = cfg.load(path)
    if args.action == "list":
        sys.stdout.write(redact_url(cfg.dump(config)))
        return 0
    if not args.session:
        print(f"nexus-writer service {args.action}: give a SESSION", file=sys.stderr)
        return 2
    if args.action == "add":
        current = config.sessions.get(args.session)
        if current is None:
            config.sessions[args.session] = cfg.SessionConfig(args.session, args.redis)
        elif args.redis is None or args.redis == current.redis:
            print(f"session {args.session!r} is in {path} already", file=sys.stderr)
            return 0
        else:  # keeps the session's writer options; only its Redis changes
            current.redis = args.redis
    elif config.sessions.pop(args.session, None) is None:
        print(f"session {args.session!r} is not in {path}", file=sys.stderr)
        return 1
    path.parent.mkdir(parents=True, exist_ok=True)
    cfg.save(config, path)
    told = signal_service(path)
    print(f"{args.action}: {args.session} ({path}); "
          + ("running service reloaded" if told else "no running service to tell"))
    return 0


def _rows(docs: dict) -> list[list[str]]:
    from .live import progress

    rows = []
    for session, doc in sorted(docs.items()):
        for scan in doc.get("scans", []):
            rows.append([session, str(scan["scan"]), scan.get("title", ""), scan["state"],
                         scan.get("reason", ""), progress(scan),
                         f"{scan.get('file') or '-'}::{','.join(scan.get('entries', []))}"])
    return rows


def run_status(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.live import Live
    from rich.table import Table

    from ..data import DataStore
    from ..data.status import read_status
    from ..data.urls import redact_url
    from .main import redis_url

    store = DataStore(redis_url(args))

    def render() -> Table:
        table = Table(title=f"nexus-writer status ({store.url})")
        for col in ("session", "scan", "title", "state", "reason", "points", "file::entries"):
            table.add_column(col)
        for row in _rows(read_status(store, args.session)):
            table.add_row(*(redact_url(cell) for cell in row))
        return table

    try:
        if args.json:
            # documents of any writer version: masked here too
            print(redact_url(json.dumps(read_status(store, args.session), indent=1,
                                        default=str)))
        elif args.watch:
            with Live(render(), refresh_per_second=2) as live:
                try:
                    while True:
                        time.sleep(0.5)
                        live.update(render())
                except KeyboardInterrupt:
                    pass
        else:
            docs = read_status(store, args.session)
            if not docs:
                print("no writer is running" + (f" for session {args.session!r}"
                                                 if args.session else ""), file=sys.stderr)
                return 1
            Console().print(render())
    finally:
        store.close()
    return 0
