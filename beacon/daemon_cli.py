"""``btogether beacon run | confirm | status``: start the daemon, and talk to the running one."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

from beacon.config import ConfigError, default_config_path, load_config
from beacon.control import BEACON, control_path
from beacon.daemon import BeaconDaemon
from beacon.hooks import HookRunner
from beacon.state import DeviceStateError, default_state_dir, load_identity
from hw.advertiser import AdvertiserError, create_advertiser
from hw.audio import AudioRouter, create_audio_router
from hw.audio import UnsupportedPlatformError as AudioUnsupported
from hw.control_socket import (
    AlreadyRunning,
    ControlError,
    ControlPathTooLong,
    DaemonNotRunning,
    call_blocking,
)
from hw.lock import LockBusConfig, SessionLocker, create_session_locker
from hw.lock import UnsupportedPlatformError as LockUnsupported
from relay.protocol.reach import TlsSetupError, client_tls


def register(sub: Any) -> None:
    """Add ``run``, ``confirm`` and ``status`` to ``btogether beacon``'s subcommands."""
    run = sub.add_parser(
        "run",
        help="run the beacon daemon (relay link, EID advert, lock, audio, prompts)",
        description=(
            "Connect to the relay with the device's credential and keep the connection; "
            "advertise the EID while signed in; carry out pair prompts, lock and unlock, "
            "audio hand-off and meeting joins. Prints `ready …` once the control socket is up; "
            "writes status.json in the state directory."
        ),
    )
    _state_dir_option(run)
    run.add_argument(
        "--config",
        type=Path,
        help="TOML config file (default: $BTOGETHER_CONFIG, else beacon.toml in the state dir)",
    )
    run.set_defaults(func=run_command)

    confirm = sub.add_parser(
        "confirm",
        help="confirm (or decline) a pending pair or join prompt on this device",
        description="Answer a prompt shown by the running daemon. Without REQUEST_ID, the only "
        "pending prompt is answered.",
    )
    _state_dir_option(confirm)
    confirm.add_argument("request_id", nargs="?", metavar="REQUEST_ID", help="the prompt's id")
    confirm.add_argument("--decline", action="store_true", help="decline instead of confirming")
    confirm.add_argument("--json", action="store_true", help="print the answer as JSON")
    confirm.set_defaults(func=confirm_command)

    status = sub.add_parser(
        "status",
        help="show the running daemon's state and pending prompts",
        description="Show the running daemon's relay connection, sign-in state, advert, lock, "
        "audio, login code and pending prompts (from its control socket).",
    )
    _state_dir_option(status)
    status.add_argument("--json", action="store_true", help="print the status as JSON")
    status.set_defaults(func=status_command)


def _state_dir_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--state-dir",
        type=Path,
        help="device state directory (default: $BTOGETHER_STATE_DIR, "
        "$XDG_STATE_HOME/btogether, ~/.local/state/btogether)",
    )


def _state_dir(args: argparse.Namespace) -> Path:
    return Path(args.state_dir) if args.state_dir else default_state_dir()


def run_command(args: argparse.Namespace) -> int:
    prog = "btogether beacon run"
    state_dir = _state_dir(args)
    try:
        identity = load_identity(state_dir)
    except (DeviceStateError, OSError) as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return 2
    if identity is None:
        print(
            f"{prog}: this device is not provisioned ({state_dir} has no device state); "
            "run `btogether beacon provision` first",
            file=sys.stderr,
        )
        return 2
    explicit = args.config is not None
    config_path = args.config if explicit else default_config_path(state_dir, os.environ)
    try:
        settings = load_config(config_path, required=explicit)
        tls = client_tls(identity.relay_url, settings.tls.ca_file)
        advertiser = create_advertiser(adapter=settings.advertising.adapter)
    except (ConfigError, TlsSetupError, AdvertiserError) as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return 2

    lock_config = LockBusConfig.from_environ(os.environ, session_id=settings.lock.session)
    if settings.lock.system_bus:
        lock_config = replace(lock_config, system_bus_address=settings.lock.system_bus)
    locker: SessionLocker | None
    try:
        locker = create_session_locker(
            replace(lock_config, session_bus_address=None),
            confirm_timeout=settings.lock.confirm_timeout_s,
        )
    except LockUnsupported:
        locker = None
    audio: AudioRouter | None
    try:
        audio = create_audio_router(settings.audio.server)
    except AudioUnsupported:
        audio = None

    async def main() -> None:
        try:
            daemon = BeaconDaemon(
                identity,
                settings,
                state_dir,
                locker=locker,
                audio=audio,
                advertiser=advertiser,
                hooks=HookRunner(settings.hooks),
                rng=random.Random(),
                tls=tls,
            )
        except ValueError as exc:  # e.g. a tx power the frame cannot carry
            raise ConfigError(str(exc)) from exc
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, daemon.request_stop)
        await daemon.run()

    try:
        asyncio.run(main())
    except ConfigError as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return 2
    except AlreadyRunning as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return 1
    return 0


def confirm_command(args: argparse.Namespace) -> int:
    prog = "btogether beacon confirm"
    request = {"id": args.request_id, "accept": not args.decline}
    if args.request_id is not None and not 0 < len(args.request_id) <= 128:
        print(f"{prog}: a request id is 1-128 characters", file=sys.stderr)
        return 2
    try:
        reply = call_blocking(
            control_path(_state_dir(args)), "confirm", request, within=10.0, daemon=BEACON
        )
    except ControlError as exc:
        print(f"{prog}: {exc.message}", file=sys.stderr)
        return 1
    except (DaemonNotRunning, ControlPathTooLong, OSError) as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps({"id": reply.get("id"), "accepted": bool(reply.get("accepted"))}))
        return 0
    print(f"{'confirmed' if reply.get('accepted') else 'declined'} {reply.get('id')}")
    return 0


def status_command(args: argparse.Namespace) -> int:
    prog = "btogether beacon status"
    try:
        status = call_blocking(
            control_path(_state_dir(args)), "status", within=10.0, daemon=BEACON
        )
    except ControlError as exc:
        print(f"{prog}: {exc.message}", file=sys.stderr)
        return 1
    except (DaemonNotRunning, ControlPathTooLong, OSError) as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return 1
    if not isinstance(status, dict):
        print(f"{prog}: the daemon sent no status", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(status, indent=2))
        return 0
    print(format_status(status))
    return 0


def format_status(status: dict[str, Any]) -> str:
    lock = status.get("lock") or {}
    audio = status.get("audio")
    advert = f"on, EID {status.get('eid')}" if status.get("advertising") else "off"
    lines = [
        f"device        {status.get('device_id')} ({status.get('organisation') or '-'})",
        f"relay         {'connected' if status.get('connected') else 'not connected'}"
        f" to {status.get('relay_url')}"
        + (f" — {status['relay_error']}" if status.get("relay_error") else ""),
        f"state         {status.get('state') or 'unknown'}"
        + (f", signed in as {status['user_name']}" if status.get("user_name") else ""),
        f"advertising   {advert}"
        + (f" — {status['advertising_error']}" if status.get("advertising_error") else ""),
        f"lock          {lock.get('state') or 'never set'} (last seq {lock.get('last_seq', 0)})"
        + (f" — {status['lock_error']}" if status.get("lock_error") else ""),
        f"audio         {'active for ' + str(audio.get('meeting_id')) if audio else 'idle'}",
        f"auto-confirm  {'yes' if status.get('auto_confirm') else 'no'}",
    ]
    if status.get("login_code"):
        lines.append(f"login code    {status['login_code']}")
    join = status.get("last_join")
    if join:
        lines.append(f"last join     {join.get('meeting_id')} (by {join.get('user_name')})")
    prompts = status.get("prompts") or []
    if not prompts:
        lines.append("prompts       none")
    for prompt in prompts:
        if prompt.get("kind") == "pair":
            what = f"pair with {prompt.get('laptop_name')!r} of {prompt.get('user_name')}, " \
                   f"code {prompt.get('code')}"
        else:
            what = f"join meeting {prompt.get('meeting_id')!r} for {prompt.get('user_name')}"
        lines.append(
            f"prompt        {prompt.get('id')}: {what} "
            f"(expires in {prompt.get('expires_in_s', '?')} s)"
        )
    return "\n".join(lines)
