"""``btogether client …``: login, run, tray, and one command per action of the running client.

``login`` stores the relay URL and credential; ``run`` is the daemon (and ``tray`` the
daemon with a tray icon); every other command asks the running client over its control
socket (:mod:`client.control`) and prints the answer, or with ``--json`` one JSON value.

Exit codes: 0 done; 1 refused or failed (the relay's wire error code and message are
shown); 2 bad usage or configuration; 3 the client is not running.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from client.config import (
    ClientConfig,
    ClientFiles,
    ConfigError,
    check_socket_path,
    load_config,
    load_credential,
    login,
    resolve_state_dir,
    save_config,
)
from client.control import AlreadyRunning, ControlError, DaemonNotRunning, call

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_NOT_RUNNING = 0, 1, 2, 3


class CommandFailed(Exception):
    def __init__(self, message: str, code: int = EXIT_FAILED) -> None:
        super().__init__(message)
        self.exit_code = code


def _files(args: argparse.Namespace) -> ClientFiles:
    return ClientFiles(resolve_state_dir(args.state_dir, os.environ))


def _common(parser: argparse.ArgumentParser, *, json_flag: bool = True) -> None:
    parser.add_argument(
        "--state-dir",
        type=Path,
        metavar="DIR",
        help="the client's state directory (default: $BTOGETHER_STATE_DIR, "
        "else $XDG_STATE_HOME/btogether, else ~/.local/state/btogether)",
    )
    if json_flag:
        parser.add_argument("--json", action="store_true", help="print the answer as JSON")


def add_commands(sub: Any) -> None:
    """Register the commands on ``btogether client``'s subparsers."""
    p = sub.add_parser(
        "login",
        help="store the relay URL and your user credential",
        description="Store the relay URL and the user credential an administrator issued "
        "(owner-only, in the state directory); this laptop's id is generated once and kept.",
    )
    _common(p, json_flag=False)
    p.add_argument("--relay", required=True, metavar="URL", help="e.g. wss://relay.example.com/")
    token = p.add_mutually_exclusive_group(required=True)
    token.add_argument("--token", metavar="TOKEN", help="the credential (visible to `ps`)")
    token.add_argument(
        "--token-file", type=Path, metavar="FILE", help="read it from FILE (- = stdin)"
    )
    p.add_argument("--name", help="this laptop's name as others see it (default: host name)")
    p.add_argument(
        "--no-verify", action="store_true", help="store without checking them against the relay"
    )
    p.set_defaults(func=_login)

    p = sub.add_parser(
        "run",
        help="run the client: scan, report to the relay, watch the screen lock",
        description="Run the laptop client until SIGINT/SIGTERM: keep a connection to the "
        "relay, scan (BlueZ on DBUS_SYSTEM_BUS_ADDRESS), report sightings, watch the screen lock "
        "(logind there, screensavers on DBUS_SESSION_BUS_ADDRESS). Commands and the tray talk to "
        "it over control.sock in the state directory; `client status --wait S` returns once it "
        "answers and has reached the relay.",
    )
    _common(p, json_flag=False)
    _run_options(p)
    p.set_defaults(func=_run)

    p = sub.add_parser("tray", help="run the client with a tray icon and menu")
    _common(p, json_flag=False)
    _run_options(p)
    p.add_argument("--backend", help="pystray backend (appindicator, gtk, darwin, win32)")
    p.set_defaults(func=_tray)

    p = sub.add_parser("status", help="what the running client is doing")
    _common(p)
    p.add_argument(
        "--wait",
        type=float,
        default=0.0,
        metavar="S",
        help="wait up to S seconds for the client to start and reach the relay",
    )
    p.set_defaults(func=_status)

    p = sub.add_parser("nearby", help="rooms and phones nearby, nearest first")
    _common(p)
    p.set_defaults(func=_nearby)

    p = sub.add_parser(
        "connect",
        help="connect my desk phone (Better Together); both ends confirm",
        description="Ask the relay to pair this laptop with your desk phone (the nearest one if "
        "PHONE is not given), show the code both screens display, confirm it here, and wait "
        "for the phone's confirmation.",
    )
    _common(p)
    p.add_argument("phone", nargs="?", metavar="PHONE", help="phone id or name")
    p.add_argument("--yes", "-y", action="store_true", help="confirm without asking")
    p.add_argument("--timeout", type=float, default=120.0, metavar="S", help="wait for the phone")
    p.set_defaults(func=_connect)

    for name, accept in (("confirm", True), ("decline", False)):
        p = sub.add_parser(name, help=f"{name} the pending pair request on this laptop")
        _common(p)
        p.add_argument(
            "--request", metavar="ID", help="the pair request (default: the pending one)"
        )
        p.set_defaults(func=_confirm, accept=accept)

    p = sub.add_parser("pairings", help="phones this laptop is paired with")
    _common(p)
    p.set_defaults(func=_pairings)

    p = sub.add_parser("unpair", help="unpair a phone")
    _common(p)
    p.add_argument("phone", metavar="PHONE", help="phone id or name")
    p.set_defaults(func=_unpair)

    p = sub.add_parser("audio", help="use my paired phone as the meeting's audio device, or stop")
    _common(p)
    p.add_argument("state", choices=["on", "off"])
    p.add_argument("--phone", metavar="PHONE", help="which paired phone (default: the only one)")
    p.add_argument("--meeting", metavar="ID", help="the meeting (default: the current one)")
    p.add_argument("--wait", type=float, default=10.0, metavar="S", help="wait for the phone")
    p.set_defaults(func=_audio)

    p = sub.add_parser("lock-sync", help="lock my phone when this laptop locks: on or off")
    _common(p)
    p.add_argument("state", choices=["on", "off"])
    p.set_defaults(func=_lock_sync)

    p = sub.add_parser("join", help="add a nearby room to a meeting (proximity join)")
    _common(p)
    p.add_argument("room", nargs="?", metavar="ROOM", help="room id or name (default: nearest)")
    p.add_argument("--meeting", metavar="ID", help="the meeting (default: the current one)")
    p.add_argument("--wait", type=float, default=30.0, metavar="S", help="wait for a room's answer")
    p.set_defaults(func=_join)

    p = sub.add_parser("meeting", help="set (or with --leave, clear) the current meeting")
    _common(p)
    p.add_argument("meeting", nargs="?", metavar="ID")
    p.add_argument("--leave", action="store_true")
    p.set_defaults(func=_meeting)


def _run_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--report-interval", type=float, metavar="S", help="report sightings every S s")
    p.add_argument("--reconnect-max", type=float, metavar="S", help="longest reconnect delay")
    p.add_argument(
        "--no-lock-watch", action="store_true", help="do not watch the screen lock at all"
    )


# --- running commands ----------------------------------------------------------------------


def _prog(args: argparse.Namespace) -> str:
    return f"btogether client {args.client_command}"


def _guard(func: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """Turn the expected failures into a message on stderr and an exit code."""

    def wrapped(args: argparse.Namespace) -> int:
        try:
            return func(args)
        except ConfigError as exc:
            print(f"{_prog(args)}: {exc}", file=sys.stderr)
            return EXIT_USAGE
        except DaemonNotRunning as exc:
            _print_error(args, "not_running", str(exc), "client")
            return EXIT_NOT_RUNNING
        except ControlError as exc:
            _print_error(args, exc.code, exc.message, exc.source)
            return EXIT_FAILED
        except CommandFailed as exc:
            print(f"{_prog(args)}: {exc}", file=sys.stderr)
            return exc.exit_code

    return wrapped


def _print_error(args: argparse.Namespace, code: str, message: str, source: str) -> None:
    if getattr(args, "json", False):
        error = {"code": code, "message": message, "source": source}
        print(json.dumps({"ok": False, "error": error}))
    who = "the relay refused" if source == "relay" else "failed"
    print(f"{_prog(args)}: {who}: {code}: {message}", file=sys.stderr)


def _ask(args: argparse.Namespace, op: str, within: float = 30.0, **op_args: Any) -> Any:
    """Ask the running client; ``within`` bounds the whole exchange (seconds)."""
    files = _files(args)
    payload = {k: v for k, v in op_args.items() if v is not None}
    return asyncio.run(call(files.socket_path, op, payload, within=within))


def _emit(args: argparse.Namespace, result: Any, human: str) -> int:
    print(json.dumps(result) if args.json else human)
    return EXIT_OK


# --- login, run, tray ---------------------------------------------------------------------


def _read_token(args: argparse.Namespace) -> str:
    if args.token is not None:
        return str(args.token)
    try:
        if str(args.token_file) == "-":
            return sys.stdin.read(8192)
        return Path(args.token_file).read_text(encoding="ascii")[:8192]
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read the credential from {args.token_file}: {exc}") from exc


@_guard
def _login(args: argparse.Namespace) -> int:
    files = _files(args)
    token = _read_token(args).strip()
    if not args.no_verify:
        from client.config import check_credential, check_relay_url

        try:
            check_relay_url(args.relay)
            token = check_credential(token)
        except ValueError as exc:
            raise ConfigError(str(exc)) from exc
        who = asyncio.run(_verify(args.relay, token))
        print(f"The relay at {args.relay} knows you: {who}")
    config = login(files, args.relay, token, args.name)
    print(
        f"Stored in {files.state_dir} (laptop id {config.laptop_id}, name {config.laptop_name!r})"
    )
    return EXIT_OK


async def _verify(url: str, token: str) -> str:
    from websockets.exceptions import InvalidHandshake, InvalidStatus, InvalidURI

    from relay.protocol import wire
    from relay.protocol.link import LinkError, RelayLink

    try:
        # Not this laptop's id: a client already running with it would be replaced.
        check_id = f"login-check-{secrets.token_hex(4)}"
        link = await RelayLink.connect(url, token, laptop_id=check_id, open_timeout=10.0)
    except InvalidStatus as exc:
        code = exc.response.status_code
        why = wire.HANDSHAKE_REFUSALS.get(code, exc.response.reason_phrase)
        raise CommandFailed(f"the relay refused (HTTP {code}): {why}") from None
    except (OSError, TimeoutError, InvalidHandshake, InvalidURI, LinkError) as exc:
        raise CommandFailed(f"cannot reach the relay at {url}: {exc}") from None
    principal = link.welcome.principal
    await link.close()
    if principal.role != "laptop":
        raise CommandFailed("that is a device credential; a laptop needs a user credential")
    return f"user {principal.user_id} of tenant {principal.tenant_id}"


def _load_for_run(args: argparse.Namespace) -> tuple[ClientFiles, ClientConfig, str]:
    files = _files(args)
    config = load_config(files)
    credential = load_credential(files)
    check_socket_path(files.socket_path)
    overrides: dict[str, Any] = {}
    if args.reconnect_max is not None:
        if args.reconnect_max <= 0:
            raise ConfigError("--reconnect-max must be > 0")
        overrides["reconnect_max_s"] = args.reconnect_max
        overrides["reconnect_initial_s"] = min(config.reconnect_initial_s, args.reconnect_max)
    if args.report_interval is not None:
        if not 0.05 <= args.report_interval <= 60:
            raise ConfigError("--report-interval must be between 0.05 and 60 seconds")
        overrides["scan"] = config.scan.model_copy(
            update={"report_interval_s": args.report_interval}
        )
    return files, config.model_copy(update=overrides), credential


def _persist_lock_sync(files: ClientFiles) -> Callable[[ClientConfig], None]:
    """Save only lock sync, on top of the file's settings (run-time overrides stay run-time)."""

    def save(updated: ClientConfig) -> None:
        try:
            stored = load_config(files)
        except ConfigError:
            stored = updated
        save_config(files, stored.model_copy(update={"lock_sync": updated.lock_sync}))

    return save


@_guard
def _run(args: argparse.Namespace) -> int:
    files, config, credential = _load_for_run(args)
    try:
        asyncio.run(serve(files, config, credential, lock_watch=not args.no_lock_watch))
    except AlreadyRunning as exc:
        raise CommandFailed(str(exc)) from None
    return EXIT_OK


async def serve(
    files: ClientFiles,
    config: ClientConfig,
    credential: str,
    *,
    lock_watch: bool = True,
    on_core: Callable[[Any], None] | None = None,
    handle_signals: bool = True,
) -> None:
    """Run the client core and its control socket until SIGINT/SIGTERM or ``core.stop()``."""
    from client.api import ControlApi
    from client.control import ControlServer
    from client.daemon import ClientCore, default_lock_watcher_factory

    core = ClientCore(
        config,
        credential,
        lock_watcher_factory=default_lock_watcher_factory if lock_watch else None,
        save_config=_persist_lock_sync(files),
        unsent_lock=files.load_unsent_lock(),
        save_unsent_lock=files.save_unsent_lock,
    )
    server = ControlServer(files.socket_path, ControlApi(core).handle)
    await server.start()
    if handle_signals:
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, core.stop)
    if on_core is not None:
        on_core(core)
    try:
        await core.run()
    finally:
        await server.stop()


@_guard
def _tray(args: argparse.Namespace) -> int:
    from client.tray_app import run_tray

    files, config, credential = _load_for_run(args)
    return run_tray(
        files,
        config,
        credential,
        lock_watch=not args.no_lock_watch,
        backend=args.backend,
        serve=serve,
    )


# --- asking the running client ---------------------------------------------------------------


@_guard
def _status(args: argparse.Namespace) -> int:
    if args.wait > 0:
        status = asyncio.run(_wait_status(_files(args), args.wait))
    else:
        status = _ask(args, "status")
    relay = status["relay"]
    link = (
        f"connected to {relay['url']} as user {relay['user_id']}"
        if relay["connected"]
        else f"not connected to {relay['url']}: {relay['error'] or 'connecting…'}"
    )
    lock = status["lock"]
    lines = [
        f"Laptop {status['laptop_name']} ({status['laptop_id']}): {link}",
        f"Scanning: {status['scan']['status']}, {status['scan']['nearby']} device(s) nearby",
        f"Screen lock: {_lock_word(lock['locked'])}"
        + ("" if lock["watch"] == "watching" else f" (lock watch {lock['watch']})")
        + f"; lock sync {'on' if lock['sync'] else 'off'}",
        "Paired with: " + (", ".join(p["phone_name"] for p in status["pairings"]) or "no phone"),
    ]
    if status["pending"]:
        pending = status["pending"]
        lines.append(f"Pending: connecting {pending['phone_name']} (code {pending['code']})")
    if status["audio"]:
        lines.append(f"Audio: {status['audio']['phone_id']} is {status['audio']['state']}")
    if status["meeting_id"]:
        lines.append(f"Meeting: {status['meeting_id']}")
    _emit(args, status, "\n".join(lines))
    if args.wait > 0 and not relay["connected"]:
        return EXIT_FAILED
    return EXIT_OK


def _lock_word(locked: bool | None) -> str:
    return "unknown" if locked is None else ("locked" if locked else "unlocked")


async def _wait_status(files: ClientFiles, wait: float) -> Any:
    """Wait for the client to answer (it may be starting) and to reach the relay."""
    deadline = time.monotonic() + wait
    while True:
        try:
            await call(
                files.socket_path,
                "wait_connected",
                {"timeout": max(0.0, min(wait, 600))},
                within=wait + 5,
            )
            return await call(files.socket_path, "status")
        except DaemonNotRunning:
            if time.monotonic() >= deadline:
                raise
            await asyncio.sleep(0.1)
        wait = max(0.0, deadline - time.monotonic())


@_guard
def _nearby(args: argparse.Namespace) -> int:
    devices = _ask(args, "nearby")
    if not devices:
        return _emit(args, devices, "Nothing nearby yet.")
    rows = []
    for index, d in enumerate(devices, 1):
        tags = [
            t
            for t, on in (
                ("your phone", d["own"] and d["kind"] != "room_system"),
                ("paired", d["paired"]),
            )
            if on
        ]
        suffix = f"  ({', '.join(tags)})" if tags else ""
        rows.append(
            f"{index:>2}. {d['name']:<28} {d['kind'].replace('_', ' '):<16} "
            f"{d['distance_m']:>5.1f} m  {d['rssi']:>6.1f} dBm  [{d['device_id']}]{suffix}"
        )
    return _emit(args, devices, "\n".join(rows))


@_guard
def _connect(args: argparse.Namespace) -> int:
    started = _ask(args, "connect", phone=args.phone)
    request_id, code, name = started["request_id"], started["code"], started["phone_name"]
    if not args.json:
        print(f"Connecting {name}. Code: {code}")
        print("Check that the phone shows the same code; it must be confirmed on both ends.")
    accept = args.yes
    if not accept:
        if not sys.stdin.isatty():
            result = {**started, "outcome": "pending"}
            return _emit(
                args,
                result,
                "Confirm on this laptop with `btogether client confirm` "
                "(or run `client connect --yes`).",
            )
        answer = input("Does the code match? Confirm on this laptop [y/N] ").strip().lower()
        accept = answer in ("y", "yes")
    confirmed = _ask(args, "confirm", request_id=request_id, accept=accept)
    if not accept:
        return _emit(args, {**started, "outcome": "declined"}, "Declined.")
    outcome: dict[str, Any] = {"outcome": "paired"} if confirmed["state"] == "paired" else {}
    if not outcome:
        if not args.json:
            print(f"Confirmed here; waiting for {name} to confirm…", flush=True)
        outcome = _ask(
            args,
            "wait_pair",
            within=args.timeout + 10,
            request_id=request_id,
            timeout=args.timeout,
        )
    result = {**started, **outcome}
    if result["outcome"] == "paired":
        return _emit(args, result, f"Connected: {name} is paired with this laptop.")
    if args.json:
        print(json.dumps(result))
    reason = {"pending": "the phone did not confirm in time"}.get(
        result["outcome"], f"the pair request was {result['outcome']}"
    )
    raise CommandFailed(f"not connected: {reason}")


@_guard
def _confirm(args: argparse.Namespace) -> int:
    result = _ask(args, "confirm", request_id=args.request, accept=args.accept)
    word = "Confirmed" if args.accept else "Declined"
    return _emit(args, result, f"{word} (pair request {result['request_id']}: {result['state']}).")


@_guard
def _pairings(args: argparse.Namespace) -> int:
    pairings = _ask(args, "pairings")
    human = "\n".join(f"{p['phone_name']} [{p['phone_id']}]" for p in pairings) or "No pairings."
    return _emit(args, pairings, human)


@_guard
def _unpair(args: argparse.Namespace) -> int:
    result = _ask(args, "unpair", phone=args.phone)
    return _emit(args, result, f"Unpaired {result['phone_id']}.")


@_guard
def _audio(args: argparse.Namespace) -> int:
    if args.state == "on":
        result = _ask(
            args,
            "audio_on",
            within=args.wait + 10,
            phone=args.phone,
            meeting=args.meeting,
            wait=args.wait,
        )
        if result["state"] == "pending":
            if args.json:
                print(json.dumps(result))
            raise CommandFailed("the phone has not taken over the audio yet")
        return _emit(
            args,
            result,
            f"{result['phone_id']} is the audio device of meeting {result['meeting_id']}.",
        )
    result = _ask(args, "audio_off", within=args.wait + 10, phone=args.phone, wait=args.wait)
    return _emit(args, result, f"{result['phone_id']} released the audio.")


@_guard
def _lock_sync(args: argparse.Namespace) -> int:
    result = _ask(args, "lock_sync", enabled=args.state == "on")
    return _emit(args, result, f"Lock sync is {args.state}.")


@_guard
def _join(args: argparse.Namespace) -> int:
    result = _ask(
        args, "join", within=args.wait + 10, room=args.room, meeting=args.meeting, wait=args.wait
    )
    human = f"Room {result['room_id']}: {result['outcome']} (meeting {result['meeting_id']})."
    _emit(args, result, human)
    return EXIT_OK if result["outcome"] == "accepted" else EXIT_FAILED


@_guard
def _meeting(args: argparse.Namespace) -> int:
    if args.leave == (args.meeting is not None):
        raise CommandFailed("give a meeting ID, or --leave", EXIT_USAGE)
    result = _ask(args, "meeting", meeting=args.meeting)
    return _emit(args, result, f"Meeting: {result['meeting_id'] or 'none'}.")
