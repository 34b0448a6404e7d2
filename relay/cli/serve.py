"""``btogether relay``: run the relay service.

``btogether relay serve [--host H] [--port P] [--db PATH] [--config FILE]`` serves
the websocket protocol and ``/healthz``, ``/readyz``, ``/metrics`` on one port until
SIGTERM or SIGINT, then closes every connection with 1001 and finishes pending
writes. Settings come from defaults, the TOML ``--config`` file, ``BTOGETHER_*``
environment variables and the flags, later ones winning (see relay.config).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import errno
import signal
import sqlite3
import sys
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

import structlog
from pydantic import ValidationError

from relay.config import ConfigFileError, RelaySettings, load_settings
from relay.domain.store import StoreUnavailable
from relay.net.server import RelayServer
from relay.node import SettingsError, build_node, display_db
from relay.storage.sqlite_store import InsecureDatabase

log = structlog.get_logger("relay.cli")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="relay_command", metavar="SUBCOMMAND", required=True)
    serve = sub.add_parser(
        "serve",
        help="serve the relay (websocket protocol, /healthz, /readyz, /metrics on one port)",
        description=(
            "Serve the relay until SIGTERM/SIGINT (connections are then closed with 1001). "
            "Settings: defaults < --config TOML file < BTOGETHER_* environment variables "
            "(e.g. BTOGETHER_PORT, BTOGETHER_DB) < flags. Logs go to stderr; use "
            "'btogether --log-level info --log-json relay serve' for one JSON event per request."
        ),
    )
    serve.epilog = (
        "settings (TOML key / BTOGETHER_<KEY> environment variable, default):\n"
        + "\n".join(
            f"  {name:<22} {field.description} (default {field.default})"
            for name, field in RelaySettings.model_fields.items()
        )
    )
    serve.formatter_class = argparse.RawDescriptionHelpFormatter
    serve.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="TCP port, 0 for any free one (default 8765)")
    serve.add_argument(
        "--db",
        help="database: a SQLite file (created owner-only and migrated if needed; default "
        "relay.sqlite3) or postgresql://user@host/db for a cluster",
    )
    serve.add_argument(
        "--redis",
        help="redis://host:port/0 for a cluster of relay nodes sharing presence and "
        "short-lived state (default: none, this process alone)",
    )
    serve.add_argument(
        "--config", type=Path, help="TOML settings file ([relay] table or top level)"
    )
    serve.add_argument(
        "--port-file",
        type=Path,
        help="write the port actually bound to this file once serving (useful with --port 0)",
    )
    serve.set_defaults(func=run_serve)


def _run(coro: Coroutine[Any, Any, int]) -> int:
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    return uvloop.run(coro)


def describe_settings_error(exc: ValidationError) -> str:
    """pydantic's report as one line: ``port: Input should be less than or equal to 65535``."""
    return "; ".join(
        f"{'.'.join(str(p) for p in e['loc']) or 'settings'}: {e['msg']}" for e in exc.errors()
    )


def run_serve(args: argparse.Namespace) -> int:
    prog = "btogether relay serve"
    overrides = {"host": args.host, "port": args.port, "db": args.db, "redis": args.redis}
    try:
        settings = load_settings(args.config, overrides)
    except ConfigFileError as exc:
        print(f"{prog}: bad settings: {exc}", file=sys.stderr)
        return 2
    except ValidationError as exc:
        where = f" in {args.config} or BTOGETHER_* variables" if args.config else ""
        print(f"{prog}: bad settings{where}: {describe_settings_error(exc)}", file=sys.stderr)
        return 2
    # The SQLite writer thread needs the GIL back promptly after each fsync; with the
    # default 5 ms switch interval a busy event loop makes it wait, and every lock
    # acknowledgement waits with it.
    sys.setswitchinterval(0.0005)
    try:
        return _run(serve_until_signalled(settings, args.port_file))
    except CannotServe as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return 1


class CannotServe(Exception):
    """The relay could not start; the message says why in one line."""


def _why_not_listening(settings: RelaySettings, exc: OSError) -> str:
    where = f"{settings.host}:{settings.port}"
    if exc.errno == errno.EADDRINUSE:
        return (
            f"cannot listen on {where}: address already in use "
            "(another relay running? choose another --port)"
        )
    if exc.errno == errno.EACCES:
        return f"cannot listen on {where}: permission denied (ports below 1024 need privileges)"
    if exc.errno == errno.EADDRNOTAVAIL:
        return f"cannot listen on {where}: this machine has no such address (--host)"
    return f"cannot listen on {where}: {exc.strerror or exc}"


async def serve_until_signalled(settings: RelaySettings, port_file: Path | None = None) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    try:
        relay = RelayServer(settings, node=build_node(settings))
    except SettingsError as exc:
        raise CannotServe(str(exc)) from None
    try:
        await relay.start()
    except (OSError, sqlite3.Error, StoreUnavailable, InsecureDatabase) as exc:
        with contextlib.suppress(Exception):  # release what did start (the database)
            await relay.stop()
        if isinstance(exc, InsecureDatabase | StoreUnavailable | IsADirectoryError):
            raise CannotServe(str(exc)) from None
        if isinstance(exc, sqlite3.Error) or (isinstance(exc, OSError) and exc.filename):
            raise CannotServe(f"cannot use the database {display_db(settings.db)}: {exc}") from None
        raise CannotServe(_why_not_listening(settings, exc)) from None
    if port_file is not None:
        try:
            await asyncio.to_thread(port_file.write_text, f"{relay.port}\n")
        except OSError as exc:
            await relay.stop()
            raise CannotServe(
                f"cannot write the port file {port_file}: {exc.strerror or exc}"
            ) from None
    settle = asyncio.create_task(relay.settle_heap_when_loaded())
    db = display_db(settings.db)
    log.info("relay_serving", host=settings.host, port=relay.port, db=db)
    print(
        f"btogether relay: serving ws://{settings.host}:{relay.port}/ (database {db}); "
        "Ctrl-C or SIGTERM stops it",
        flush=True,
    )
    try:
        await stop.wait()
    finally:
        log.info("relay_shutting_down")
        settle.cancel()
        await relay.stop()
    return 0
