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
import signal
import sys
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

import structlog
from pydantic import ValidationError

from relay.admin_store import SqliteAdminStore
from relay.config import ConfigFileError, RelaySettings, load_settings
from relay.server import RelayServer

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
        "--db", type=Path, help="SQLite database file, created and migrated if needed"
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


def run_serve(args: argparse.Namespace) -> int:
    try:
        settings = load_settings(args.config, {"host": args.host, "port": args.port, "db": args.db})
    except (ConfigFileError, ValidationError) as exc:
        print(f"btogether relay serve: bad settings: {exc}", file=sys.stderr)
        return 2
    # The SQLite writer thread needs the GIL back promptly after each fsync; with the
    # default 5 ms switch interval a busy event loop makes it wait, and every lock
    # acknowledgement waits with it.
    sys.setswitchinterval(0.0005)
    return _run(serve_until_signalled(settings, args.port_file))


async def serve_until_signalled(settings: RelaySettings, port_file: Path | None = None) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    relay = RelayServer(settings, SqliteAdminStore(settings.db, settings.sqlite_synchronous))
    await relay.start()
    if port_file is not None:
        await asyncio.to_thread(port_file.write_text, f"{relay.port}\n")
    log.warning("relay_serving", host=settings.host, port=relay.port, db=str(settings.db))
    try:
        await stop.wait()
    finally:
        log.warning("relay_shutting_down")
        await relay.stop()
    return 0
