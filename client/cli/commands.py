"""``btogether client …``: login, run, tray, and one command per action of the running client.

``login`` stores the relay URL and credential; ``run`` is the daemon (and ``tray`` the
daemon with a tray icon); every other command asks the running client over its control
socket (:mod:`hw.control_socket`) and prints the answer, or with ``--json`` one JSON value.

Exit codes: 0 done; 1 refused or failed (the relay's wire error code and message are
shown); 2 bad usage or configuration; 3 the client is not running.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import secrets
import signal
import ssl
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel

from client.api import ask
from client.config import (
    ClientConfig,
    ClientFiles,
    ConfigError,
    check_credential,
    check_relay_url,
    check_socket_path,
    load_config,
    load_credential,
    load_settings,
    login,
    resolve_state_dir,
    save_config,
)
from client.operations import (
    AudioOff,
    AudioOn,
    Command,
    Confirm,
    Connect,
    GetNearby,
    GetStatus,
    Join,
    ListPairings,
    Relogin,
    SetLockSync,
    SetMeeting,
    Unpair,
    WaitConnected,
    WaitPair,
)
from client.views import PairStarted, Status
from hw.control_socket import AlreadyRunning, ControlError, DaemonNotRunning
from relay.protocol.reach import TlsSetupError, client_tls, why_unreachable

MAX_TOKEN_BYTES = 8192
EXIT_INTERRUPTED = 130  # the shell's code for Ctrl-C
EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_NOT_RUNNING = 0, 1, 2, 3
R = TypeVar("R")


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
        help="sign this laptop in (a code to approve in the browser, or a given credential)",
        description="Without --token/--token-file: print a short code and the relay's device "
        "login page, wait until you approve it there (signed in with your account), and receive "
        "this laptop's own credential. With them: check the credential an administrator issued. "
        "Either way the relay URL and credential are stored (owner-only, in the state "
        "directory); this laptop's id is generated once and kept. A running `client run` "
        "switches to the new login at once.",
    )
    _common(p)
    p.add_argument("--relay", required=True, metavar="URL", help="e.g. wss://relay.example.com/")
    token = p.add_mutually_exclusive_group()
    token.add_argument("--token", metavar="TOKEN", help="the credential (visible to `ps`)")
    token.add_argument(
        "--token-file", type=Path, metavar="FILE", help="read it from FILE (- = stdin)"
    )
    p.add_argument("--name", help="this laptop's name as others see it (default: host name)")
    p.add_argument(
        "--ca-file",
        metavar="PEM",
        help="trust this internal CA's certificate for a wss:// relay, besides the system's "
        "(default: only the system's)",
    )
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

    p = sub.add_parser(
        "tray",
        help="run the client with a tray icon and menu",
        description="Show a tray icon whose menu offers the client's actions (join a room, "
        "connect and use my desk phone, lock sync, the meeting) and notifies pairing codes and "
        "join results. Attaches to a running `client run` (its Quit then stops that client "
        "too), else runs the client itself. Needs the desktop extra, btogether[desktop].",
    )
    _common(p, json_flag=False)
    _run_options(p)
    p.add_argument(
        "--backend",
        choices=["appindicator", "gtk", "darwin", "win32"],
        help="pystray backend (default: appindicator if installed, else gtk on Linux)",
    )
    p.set_defaults(func=_tray)

    p = sub.add_parser(
        "status",
        help="what the running client is doing",
        description="Show the running client's relay connection, scanning, the screen session "
        "it watches and the lock state, pairings, a pending pair request, audio and the meeting.",
    )
    _common(p)
    p.add_argument(
        "--wait",
        type=float,
        default=0.0,
        metavar="S",
        help="wait up to S seconds for the client to start and reach the relay (default 0: "
        "ask once)",
    )
    p.set_defaults(func=_status)

    p = sub.add_parser(
        "nearby",
        help="rooms and phones nearby, nearest first",
        description="List the rooms and phones the running client hears and the relay named, "
        "nearest first, with their estimated distance; a room appears once the ranking has "
        "settled (about a second after it is first heard).",
    )
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
    p.add_argument(
        "--timeout", type=float, default=120.0, metavar="S", help="wait S s for the phone"
    )
    p.set_defaults(func=_connect)

    for name, accept in (("confirm", True), ("decline", False)):
        p = sub.add_parser(
            name,
            help=f"{name} the pending pair request on this laptop",
            description=f"{name.capitalize()} the pair request shown by `client connect`, the "
            "tray or `client status` (the code must match the one on the phone).",
        )
        _common(p)
        p.add_argument(
            "--request", metavar="ID", help="the pair request (default: the pending one)"
        )
        p.set_defaults(func=_confirm, accept=accept)

    p = sub.add_parser(
        "pairings",
        help="phones this laptop is paired with",
        description="List the desk phones this laptop is paired with (Better Together).",
    )
    _common(p)
    p.set_defaults(func=_pairings)

    p = sub.add_parser(
        "unpair",
        help="unpair a phone",
        description="End the pairing with a phone; lock sync and audio hand-off to it stop.",
    )
    _common(p)
    p.add_argument("phone", metavar="PHONE", help="phone id or name")
    p.set_defaults(func=_unpair)

    p = sub.add_parser(
        "audio",
        help="use my paired phone as the meeting's audio device, or stop",
        description="on: the paired phone's speakerphone becomes the meeting's audio device; "
        "off: give the audio back.",
    )
    _common(p)
    p.add_argument(
        "state", choices=["on", "off"], help="on: hand the audio over; off: take it back"
    )
    p.add_argument("--phone", metavar="PHONE", help="which paired phone (default: the only one)")
    p.add_argument("--meeting", metavar="ID", help="the meeting (default: the current one)")
    p.add_argument("--wait", type=float, default=10.0, metavar="S", help="wait S s for the phone")
    p.set_defaults(func=_audio)

    p = sub.add_parser(
        "lock-sync",
        help="lock my phone when this laptop locks: on or off",
        description="Switch lock sync: while on, locking and unlocking this laptop's screen "
        "locks and unlocks the paired phone. Kept across restarts.",
    )
    _common(p)
    p.add_argument("state", choices=["on", "off"], help="on or off")
    p.set_defaults(func=_lock_sync)

    p = sub.add_parser(
        "join",
        help="add a nearby room to a meeting (proximity join)",
        description="Ask the relay to add a nearby room to the meeting; the room accepts at "
        "once or after a prompt, as its policy says, and runs its join hook (which can open "
        "the meeting's URL: packaging/hooks/open-meeting).",
    )
    _common(p)
    p.add_argument("room", nargs="?", metavar="ROOM", help="room id or name (default: nearest)")
    p.add_argument("--meeting", metavar="ID", help="the meeting (default: the current one)")
    p.add_argument(
        "--wait", type=float, default=30.0, metavar="S", help="wait S s for a prompted room"
    )
    p.set_defaults(func=_join)

    p = sub.add_parser(
        "meeting",
        help="set (or with --leave, clear) the current meeting",
        description="Set the meeting `join` and `audio on` use when no --meeting is given (an id "
        "or a short meeting URL, at most 128 characters); kept across restarts of `client run`.",
    )
    _common(p)
    p.add_argument("meeting", nargs="?", metavar="ID", help="the meeting id or short URL")
    p.add_argument("--leave", action="store_true", help="clear the current meeting")
    p.set_defaults(func=_meeting)


def _run_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--config",
        type=Path,
        metavar="FILE",
        help="settings file (default: $BTOGETHER_CLIENT_CONFIG, else client.toml in the state "
        "directory if it exists)",
    )
    p.add_argument(
        "--report-interval",
        type=float,
        metavar="S",
        help="report sightings every S s (default: the settings' scan.report_interval_s, 1)",
    )
    p.add_argument(
        "--reconnect-max",
        type=float,
        metavar="S",
        help="longest reconnect delay (default: the settings' reconnect_max_s, 30)",
    )
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
        except OSError as exc:  # e.g. --state-dir names a file
            where = exc.filename or _files(args).state_dir
            print(f"{_prog(args)}: cannot use {where}: {exc.strerror or exc}", file=sys.stderr)
            return EXIT_USAGE

    return wrapped


def _print_error(args: argparse.Namespace, code: str, message: str, source: str) -> None:
    if getattr(args, "json", False):
        error = {"code": code, "message": message, "source": source}
        print(json.dumps({"ok": False, "error": error}))
    who = "the relay refused" if source == "relay" else "failed"
    print(f"{_prog(args)}: {who}: {code}: {message}", file=sys.stderr)


def _ask(
    args: argparse.Namespace, kind: type[Command[R]], within: float = 30.0, **op_args: object
) -> R:
    """Ask the running client; ``within`` bounds the whole exchange (seconds)."""
    return asyncio.run(ask(_files(args).socket_path, kind, op_args, within=within))


def _json(answer: object) -> Any:
    """An answer (a view, a list of them, or plain data) as JSON data."""
    if isinstance(answer, BaseModel):
        return answer.model_dump(mode="json")
    if isinstance(answer, list):
        return [_json(item) for item in answer]
    return answer


def _emit(args: argparse.Namespace, result: object, human: str) -> int:
    print(json.dumps(_json(result)) if args.json else human)
    return EXIT_OK


# --- login, run, tray ---------------------------------------------------------------------


def _read_token(args: argparse.Namespace) -> str:
    if args.token is not None:
        return str(args.token)
    try:
        if str(args.token_file) == "-":
            return sys.stdin.read(MAX_TOKEN_BYTES)
        with Path(args.token_file).open("rb") as handle:
            data = handle.read(MAX_TOKEN_BYTES + 1)  # bounded: /dev/zero is not a credential
        if len(data) > MAX_TOKEN_BYTES:
            raise ConfigError(
                f"{args.token_file} is larger than {MAX_TOKEN_BYTES} bytes: not a credential"
            )
        return data.decode("ascii")
    except IsADirectoryError:
        raise ConfigError(f"{args.token_file} is a directory, not a credential file") from None
    except (OSError, UnicodeDecodeError) as exc:
        why = exc.strerror if isinstance(exc, OSError) and exc.strerror else "not ASCII text"
        raise ConfigError(f"cannot read the credential from {args.token_file}: {why}") from None


@_guard
def _login(args: argparse.Namespace) -> int:
    files = _files(args)
    ca_file = str(Path(args.ca_file).expanduser().resolve()) if args.ca_file else None
    if args.token is None and args.token_file is None:
        token = _device_code(args, ca_file)
    else:
        token = _read_token(args).strip()
    who: dict[str, Any] | None = None
    if not args.no_verify:
        try:
            check_relay_url(args.relay)
            token = check_credential(token)
            tls = client_tls(args.relay, ca_file)
        except ValueError as exc:
            raise ConfigError(str(exc)) from exc
        who = asyncio.run(_verify(args.relay, token, tls))
        if not args.json:
            print(
                f"The relay at {args.relay} knows you: user {who['user_id']} of tenant "
                f"{who['tenant_id']}"
            )
    config = login(files, args.relay, token, args.name, ca_file)
    running = _tell_running_client(files)
    if args.json:
        print(
            json.dumps(
                {
                    "state_dir": str(files.state_dir),
                    "relay_url": config.relay_url,
                    "ca_file": config.ca_file,
                    "laptop_id": config.laptop_id,
                    "laptop_name": config.laptop_name,
                    "verified": who,
                    "running_client": running,
                }
            )
        )
        return EXIT_OK
    print(
        f"Stored in {files.state_dir} (laptop id {config.laptop_id}, name {config.laptop_name!r})"
    )
    if running == "switched":
        print("The running client switched to this login.")
    elif running != "not_running":
        print(f"The running client did not take the new login ({running}): restart `client run`.")
    return EXIT_OK


def _device_code(args: argparse.Namespace, ca_file: str | None) -> str:
    """RFC 8628: the person approves this laptop on the relay's device login page."""
    from client.cli.device_code import DeviceCodeFailed, Prompt, sign_in
    from client.config import check_relay_url, default_laptop_name

    try:
        check_relay_url(args.relay)
        tls = client_tls(args.relay, ca_file)
    except ValueError as exc:
        raise ConfigError(str(exc)) from exc

    def show(prompt: Prompt) -> None:
        if args.json:
            print(
                json.dumps(
                    {
                        "user_code": prompt.user_code,
                        "verification_uri": prompt.verification_uri,
                        "verification_uri_complete": prompt.verification_uri_complete,
                    }
                ),
                flush=True,
            )
        else:
            print(
                f"To sign this laptop in, open {prompt.verification_uri} and enter the code "
                f"{prompt.user_code}\n(or open {prompt.verification_uri_complete}); "
                f"it expires in {prompt.expires_in / 60:.0f} minutes. Waiting…",
                flush=True,
            )

    try:
        granted = asyncio.run(
            sign_in(args.relay, args.name or default_laptop_name(), show, tls=tls)
        )
    except DeviceCodeFailed as exc:
        raise CommandFailed(str(exc)) from None
    if not args.json:
        print(f"Approved for {granted.user_name or 'your account'}.")
    return granted.token


def _tell_running_client(files: ClientFiles) -> str:
    """Ask a running client to reload the login: switched, not_running, or why it could not."""
    try:
        asyncio.run(ask(files.socket_path, Relogin, within=15.0))
    except DaemonNotRunning:
        return "not_running"
    except ControlError as exc:
        return exc.message
    return "switched"


async def _verify(url: str, token: str, tls: ssl.SSLContext | None) -> dict[str, Any]:
    from websockets.exceptions import InvalidHandshake, InvalidStatus, InvalidURI

    from relay.protocol.link import LinkError, RelayLink

    try:
        # Not this laptop's id: a client already running with it would be replaced.
        check_id = f"login-check-{secrets.token_hex(4)}"
        link = await RelayLink.connect(url, token, laptop_id=check_id, open_timeout=10.0, tls=tls)
    except InvalidStatus as exc:
        raise CommandFailed(why_unreachable(url, exc)) from None
    except (OSError, TimeoutError, InvalidHandshake, InvalidURI, LinkError) as exc:
        raise CommandFailed(
            f"cannot reach the relay at {url}: {why_unreachable(url, exc)}"
        ) from None
    principal = link.welcome.principal
    await link.close()
    if principal.role != "laptop":
        raise CommandFailed("that is a device credential; a laptop needs a user credential")
    return {"user_id": principal.user_id, "tenant_id": principal.tenant_id}


def _load_for_run(args: argparse.Namespace) -> tuple[ClientFiles, ClientConfig, str]:
    files = _files(args)
    settings = files.settings_path(args.config, os.environ)
    if args.config is not None:
        load_settings(settings, required=True)  # a file named on the command line must exist
    config = load_config(files, settings)
    credential = load_credential(files)
    check_socket_path(files.socket_path)
    try:
        client_tls(config.relay_url, config.ca_file)
    except TlsSetupError as exc:
        raise ConfigError(
            f"{exc} (ca_file in {files.config_path}; `client login --ca-file`)"
        ) from None
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
        asyncio.run(
            serve(
                files,
                config,
                credential,
                lock_watch=not args.no_lock_watch,
                settings=files.settings_path(args.config, os.environ),
            )
        )
    except AlreadyRunning as exc:
        raise CommandFailed(str(exc)) from None
    return EXIT_OK


async def serve(
    files: ClientFiles,
    config: ClientConfig,
    credential: str,
    *,
    lock_watch: bool = True,
    on_daemon: Callable[[Any], None] | None = None,
    handle_signals: bool = True,
    settings: Path | None = None,
) -> None:
    """Run the client daemon and its control socket until SIGINT/SIGTERM or ``stop()``.

    ``settings`` is the client.toml a new login is read with (``relogin``).
    """
    from client.api import ControlApi
    from client.daemon import ClientDaemon
    from hw.control_socket import ControlServer
    from hw.lock import LockBusConfig, create_lock_watcher

    lock_config = LockBusConfig.from_environ(os.environ, session_id=config.lock.session)

    def reload_login() -> tuple[ClientConfig, str, ssl.SSLContext | None]:
        try:
            fresh = load_config(files, settings)
            return fresh, load_credential(files), client_tls(fresh.relay_url, fresh.ca_file)
        except (ConfigError, TlsSetupError) as exc:
            raise ControlError("bad_login", str(exc)) from None

    daemon = ClientDaemon(
        config,
        credential,
        lock_watcher_factory=(lambda: create_lock_watcher(lock_config)) if lock_watch else None,
        save_config=_persist_lock_sync(files),
        unsent_lock=files.load_unsent_lock(),
        save_unsent_lock=files.save_unsent_lock,
        tls=client_tls(config.relay_url, config.ca_file),
        meeting_id=files.load_meeting(),
        save_meeting=files.save_meeting,
        reload_login=reload_login,
    )
    server = ControlServer(files.socket_path, ControlApi(daemon.execute, settings).handle)
    await server.start()
    if handle_signals:
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, daemon.stop)
    if on_daemon is not None:
        on_daemon(daemon)
    try:
        await daemon.run()
    finally:
        await server.stop()


@_guard
def _tray(args: argparse.Namespace) -> int:
    from client.tray.app import run_tray

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
        status = _ask(args, GetStatus)
    relay, lock = status.relay, status.lock
    link = (
        f"connected to {relay.url} as user {relay.user_id}"
        if relay.connected
        else f"not connected to {relay.url}: {relay.error or 'connecting…'}"
    )
    lines = [
        f"Laptop {status.laptop_name} ({status.laptop_id}): {link}",
        f"Scanning: {status.scan.status}, {status.scan.nearby} device(s) nearby",
        f"Screen lock: {_lock_word(lock.locked)}"
        + (
            f"; watching {lock.session}"
            if lock.watch == "watching" and lock.session
            else ""
            if lock.watch == "watching"
            else f" (lock watch {lock.watch})"
        )
        + f"; lock sync {'on' if lock.sync else 'off'}",
        "Paired with: " + (", ".join(p.phone_name for p in status.pairings) or "no phone"),
    ]
    if status.pending:
        pending = status.pending
        lines.append(f"Pending: connecting {pending.phone_name} (code {pending.code})")
    if status.audio:
        lines.append(f"Audio: {status.audio.phone_id} is {status.audio.state}")
    if status.meeting_id:
        lines.append(f"Meeting: {status.meeting_id}")
    if status.settings_file:
        lines.append(f"Settings: {status.settings_file}")
    _emit(args, status, "\n".join(lines))
    if args.wait > 0 and not relay.connected:
        return EXIT_FAILED
    return EXIT_OK


def _lock_word(locked: bool | None) -> str:
    return "unknown" if locked is None else ("locked" if locked else "unlocked")


async def _wait_status(files: ClientFiles, wait: float) -> Status:
    """Wait for the client to answer (it may be starting) and to reach the relay."""
    deadline = time.monotonic() + wait
    while True:
        try:
            timeout = max(0.0, min(wait, 600))
            await ask(files.socket_path, WaitConnected, {"timeout": timeout}, within=wait + 5)
            return await ask(files.socket_path, GetStatus)
        except DaemonNotRunning:
            if time.monotonic() >= deadline:
                raise
            await asyncio.sleep(0.1)
        wait = max(0.0, deadline - time.monotonic())


@_guard
def _nearby(args: argparse.Namespace) -> int:
    devices = _ask(args, GetNearby)
    if not devices:
        return _emit(args, devices, "Nothing nearby yet.")
    rows = []
    for index, d in enumerate(devices, 1):
        tags = [
            t
            for t, on in (
                ("your phone", d.own and d.kind != "room_system"),
                ("paired", d.paired),
            )
            if on
        ]
        suffix = f"  ({', '.join(tags)})" if tags else ""
        rows.append(
            f"{index:>2}. {d.name:<28} {d.kind.replace('_', ' '):<16} "
            f"{d.distance_m:>5.1f} m  {d.rssi:>6.1f} dBm  [{d.device_id}]{suffix}"
        )
    return _emit(args, devices, "\n".join(rows))


@_guard
def _connect(args: argparse.Namespace) -> int:
    started = _ask(args, Connect, phone=args.phone)
    try:
        return _finish_connect(args, started)
    except KeyboardInterrupt:
        # Ctrl-C withdraws the request: confirming it on the phone afterwards pairs nothing.
        with contextlib.suppress(Exception):
            _ask(args, Confirm, within=5.0, request_id=started.request_id, accept=False)
        print("\nCancelled: the pair request was withdrawn.", file=sys.stderr)
        return EXIT_INTERRUPTED


def _finish_connect(args: argparse.Namespace, started: PairStarted) -> int:
    request_id, code, name = started.request_id, started.code, started.phone_name
    shown = started.model_dump(mode="json")
    if not args.json:
        print(f"Connecting {name}. Code: {code}")
        print("Check that the phone shows the same code; it must be confirmed on both ends.")
    accept = args.yes
    if not accept:
        if not sys.stdin.isatty():
            return _emit(
                args,
                {**shown, "outcome": "pending"},
                "Confirm on this laptop with `btogether client confirm` "
                "(or run `client connect --yes`).",
            )
        answer = input("Does the code match? Confirm on this laptop [y/N] ").strip().lower()
        accept = answer in ("y", "yes")
    confirmed = _ask(args, Confirm, request_id=request_id, accept=accept)
    if not accept:
        return _emit(args, {**shown, "outcome": "declined"}, "Declined.")
    outcome: dict[str, Any] = {"outcome": "paired"} if confirmed.state == "paired" else {}
    if not outcome:
        if not args.json:
            print(f"Confirmed here; waiting for {name} to confirm…", flush=True)
        waited = _ask(
            args, WaitPair, within=args.timeout + 10, request_id=request_id, timeout=args.timeout
        )
        outcome = waited.model_dump(mode="json")
    result = {**shown, **outcome}
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
    result = _ask(args, Confirm, request_id=args.request, accept=args.accept)
    word = "Confirmed" if args.accept else "Declined"
    return _emit(args, result, f"{word} (pair request {result.request_id}: {result.state}).")


@_guard
def _pairings(args: argparse.Namespace) -> int:
    pairings = _ask(args, ListPairings)
    human = "\n".join(f"{p.phone_name} [{p.phone_id}]" for p in pairings) or "No pairings."
    return _emit(args, pairings, human)


@_guard
def _unpair(args: argparse.Namespace) -> int:
    result = _ask(args, Unpair, phone=args.phone)
    return _emit(args, result, f"Unpaired {result.phone_id}.")


@_guard
def _audio(args: argparse.Namespace) -> int:
    within = args.wait + 10
    if args.state == "on":
        result = _ask(
            args, AudioOn, within=within, phone=args.phone, meeting=args.meeting, wait=args.wait
        )
        if result.state == "pending":
            if args.json:
                print(json.dumps(_json(result)))
            raise CommandFailed("the phone has not taken over the audio yet")
        return _emit(
            args, result, f"{result.phone_id} is the audio device of meeting {result.meeting_id}."
        )
    result = _ask(args, AudioOff, within=within, phone=args.phone, wait=args.wait)
    return _emit(args, result, f"{result.phone_id} released the audio.")


@_guard
def _lock_sync(args: argparse.Namespace) -> int:
    result = _ask(args, SetLockSync, enabled=args.state == "on")
    return _emit(args, result, f"Lock sync is {args.state}.")


@_guard
def _join(args: argparse.Namespace) -> int:
    result = _ask(
        args, Join, within=args.wait + 10, room=args.room, meeting=args.meeting, wait=args.wait
    )
    human = f"Room {result.room_id}: {result.outcome} (meeting {result.meeting_id})."
    _emit(args, result, human)
    return EXIT_OK if result.outcome == "accepted" else EXIT_FAILED


@_guard
def _meeting(args: argparse.Namespace) -> int:
    if args.leave == (args.meeting is not None):
        raise CommandFailed("give a meeting ID, or --leave", EXIT_USAGE)
    result = _ask(args, SetMeeting, meeting=args.meeting)
    return _emit(args, result, f"Meeting: {result.meeting_id or 'none'}.")
