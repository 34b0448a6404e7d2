"""The laptop's command line, ``btogether client …``.

This module registers the commands and runs ``scan`` (like ``bluetoothctl scan on``,
for our beacons); :mod:`~client.cli.commands` has ``login``, ``run``, ``tray`` and one
command per operation of the running client; :mod:`~client.cli.device_code` signs the
laptop in with a code approved in the browser.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import sys
import time

from client.cli.commands import add_commands
from client.proximity.scanning import (
    DEFAULT_LOST_AFTER_S,
    DEFAULT_RSSI_STEP_DB,
    KeyRing,
    SightingEvent,
    SightingTracker,
)
from hw.scanner import (
    AdvertLost,
    ScanEvent,
    ScanMode,
    ScannerError,
    ScanOptions,
    SystemClock,
    create_scanner,
)
from hw.stdout import quiet_stdout
from relay.protocol.eid import parse_identity_key
from relay.protocol.frame import DEFAULT_COMPANY_ID, company_id_arg

_TAGS = {"new": "[NEW]", "change": "[CHG]", "lost": "[DEL]"}


def _named_key(text: str) -> tuple[str, bytes]:
    name, eq, hex_key = text.partition("=")
    if not eq or not name:
        raise argparse.ArgumentTypeError(f"--key {text!r} must look like NAME=HEX32")
    try:
        return name, parse_identity_key(hex_key)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"--key {name}: {exc}") from None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="client_command", metavar="ACTION", required=True)
    scan = sub.add_parser(
        "scan",
        help="list our beacons nearby, like `bluetoothctl scan on`",
        description=(
            "Scan for btogether beacons and print a line per [NEW]/[CHG]/[DEL] event with "
            "address, EID, RSSI and estimated distance; with --key, name the beacons whose "
            "identity key is given. Uses the BlueZ that DBUS_SYSTEM_BUS_ADDRESS points at."
        ),
    )
    scan.add_argument("--timeout", type=float, metavar="S", help="stop after S seconds (exit 0)")
    scan.add_argument("--json", action="store_true", help="one JSON object per event per line")
    scan.add_argument(
        "--key",
        action="append",
        type=_named_key,
        default=[],
        metavar="NAME=HEX32",
        help="recognise the beacon with this identity key as NAME (repeatable)",
    )
    scan.add_argument(
        "--company-id",
        type=company_id_arg,
        default=DEFAULT_COMPANY_ID,
        help="manufacturer data company ID of our adverts (default 0xFFFF, the SIG's test ID)",
    )
    scan.add_argument(
        "--min-rssi", type=int, metavar="DBM", help="ask BlueZ to report only adverts this loud"
    )
    scan.add_argument(
        "--mode",
        choices=[m.value for m in ScanMode],
        default=ScanMode.AUTO.value,
        help="auto (the default) is active scanning, which hears every advert; passive "
        "needs bluetoothd -E and hears a still beacon only once",
    )
    scan.add_argument(
        "--lost-after",
        type=float,
        default=DEFAULT_LOST_AFTER_S,
        metavar="S",
        help=f"report a beacon lost when not heard for S s (default {DEFAULT_LOST_AFTER_S:g}; "
        "in passive mode BlueZ decides, in whole seconds)",
    )
    scan.add_argument(
        "--rssi-step",
        type=float,
        default=DEFAULT_RSSI_STEP_DB,
        metavar="DB",
        help=f"report RSSI changes of at least DB (default {DEFAULT_RSSI_STEP_DB:g})",
    )
    scan.set_defaults(func=_scan)
    add_commands(sub)


def format_event(event: SightingEvent) -> str:
    s = event.sighting
    name = f" name={s.name}" if s.name else ""
    return (
        f"{_TAGS[event.kind]} {s.address} eid={s.eid.hex()} rssi={s.rssi} dBm "
        f"tx={s.tx_power} dBm ~{s.distance_m:.1f} m{name}"
    )


def _scan(args: argparse.Namespace) -> int:
    if args.timeout is not None and args.timeout < 0:
        print("btogether client scan: --timeout must be >= 0", file=sys.stderr)
        return 2
    if not 0 < args.lost_after <= 300:
        print("btogether client scan: --lost-after must be between 0 and 300 s", file=sys.stderr)
        return 2
    keys = KeyRing(dict(args.key)) if args.key else None

    def emit(events: list[SightingEvent]) -> None:
        for event in events:
            line = json.dumps(event.as_json()) if args.json else format_event(event)
            print(line, flush=True)

    async def main() -> None:
        queue: asyncio.Queue[ScanEvent] = asyncio.Queue()
        clock = SystemClock()
        options = ScanOptions(
            args.company_id, args.min_rssi, ScanMode(args.mode), lost_after_s=args.lost_after
        )
        scanner = create_scanner(queue.put_nowait, options, clock)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        deadline = None if args.timeout is None else time.monotonic() + args.timeout
        await scanner.start()
        # Silence means gone only where the scanner hears every advert.
        lost_after = args.lost_after if scanner.reports_every_advert else None
        tracker = SightingTracker(args.company_id, keys, lost_after, args.rssi_step)
        try:
            while not stop.is_set():
                wait = 0.5
                if deadline is not None:
                    wait = min(wait, deadline - time.monotonic())
                    if wait <= 0:
                        break
                with contextlib.suppress(TimeoutError):
                    event = await asyncio.wait_for(queue.get(), wait)
                    if isinstance(event, AdvertLost):
                        emit(tracker.on_lost(event))
                    else:
                        emit(tracker.on_advert(event))
                emit(tracker.expire(clock.monotonic()))
        finally:
            await scanner.stop()

    try:
        asyncio.run(main())
    except ScannerError as exc:
        print(f"btogether client scan: {exc}", file=sys.stderr)
        return 1
    except BrokenPipeError:
        quiet_stdout()  # the reader went away (`| head`): stop quietly, like other tools
    return 0
