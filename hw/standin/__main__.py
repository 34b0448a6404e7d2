"""Run the desktop stand-ins as a process, or act on them as a desktop would.

    python -m hw.standin serve --system-bus ADDR [--session-bus ADDR] [--session ID]...
        [--desktop-sets-hint] [--screensaver freedesktop|gnome]... [--notifications]
    python -m hw.standin lock|unlock --system-bus ADDR [--session ID] [--request-only]
    python -m hw.standin screensaver on|off --session-bus ADDR [--flavour gnome]

``serve`` prints ``ready`` on stdout once every name is owned, then runs until SIGTERM/SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
from collections.abc import Sequence

import structlog

from hw.standin.desktop import desktop_lock, desktop_unlock, screensaver_set_active
from hw.standin.logind import LogindStandIn, SessionSpec
from hw.standin.notifications import NotificationsStandIn
from hw.standin.screensaver import ScreenSaverFlavour, ScreenSaverStandIn


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m hw.standin", description=__doc__.split("\n")[0]
    )
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="own logind (and screensavers, notifications) on buses")
    serve.add_argument("--system-bus", required=True, help="bus address for logind")
    serve.add_argument("--session-bus", help="bus address for screensavers and notifications")
    serve.add_argument("--session", action="append", default=[], help="session id (repeatable)")
    serve.add_argument(
        "--desktop-sets-hint",
        action="store_true",
        help="answer Lock()/Unlock() by setting LockedHint, as a desktop's locker would",
    )
    serve.add_argument(
        "--screensaver",
        action="append",
        default=[],
        choices=[f.value for f in ScreenSaverFlavour],
        help="also own this screensaver on the session bus (repeatable)",
    )
    serve.add_argument("--notifications", action="store_true", help="own the notification daemon")
    for name in ("lock", "unlock"):
        action = sub.add_parser(name, help=f"{name} a session as a desktop would")
        action.add_argument("--system-bus", required=True)
        action.add_argument("--session", default="auto")
        action.add_argument(
            "--request-only",
            action="store_true",
            help=f"only send logind's {name.title()}() request, never set LockedHint",
        )
    saver = sub.add_parser("screensaver", help="switch a screensaver on or off")
    saver.add_argument("state", choices=["on", "off"])
    saver.add_argument("--session-bus", required=True)
    saver.add_argument(
        "--flavour", default="freedesktop", choices=[f.value for f in ScreenSaverFlavour]
    )
    return parser


async def _serve(args: argparse.Namespace) -> int:
    if (args.screensaver or args.notifications) and not args.session_bus:
        print("--screensaver and --notifications need --session-bus", file=sys.stderr)
        return 2
    sessions = [SessionSpec(session_id=s) for s in (args.session or ["1"])]
    async with contextlib.AsyncExitStack() as stack:
        await stack.enter_async_context(
            LogindStandIn(args.system_bus, sessions, desktop_sets_hint=args.desktop_sets_hint)
        )
        for flavour in args.screensaver:
            saver = ScreenSaverStandIn(args.session_bus, ScreenSaverFlavour(flavour))
            await stack.enter_async_context(saver)
        if args.notifications:
            await stack.enter_async_context(NotificationsStandIn(args.session_bus))
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        print("ready", flush=True)
        await stop.wait()
    return 0


async def _run(args: argparse.Namespace) -> int:
    if args.command == "serve":
        return await _serve(args)
    if args.command == "lock":
        await desktop_lock(args.system_bus, args.session, set_hint=not args.request_only)
    elif args.command == "unlock":
        await desktop_unlock(args.system_bus, args.session, set_hint=not args.request_only)
    else:
        await screensaver_set_active(
            args.session_bus, args.state == "on", ScreenSaverFlavour(args.flavour)
        )
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    # Logs go to stderr: stdout carries the "ready" line.
    structlog.configure(logger_factory=structlog.PrintLoggerFactory(file=sys.stderr))
    return asyncio.run(_run(_parser().parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
