"""``btogether beacon``: the beacon's commands (``advertise`` here; more join later)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import sys
import time

from beacon.advertising import BeaconConfig, RotatingBeacon, Rotation
from beacon.daemon_cli import register as register_daemon_commands
from beacon.provisioning import register as register_provisioning_commands
from hw.advertiser import AdvertiserError, create_advertiser
from hw.radio_model import DEFAULT_TX_POWER
from hw.stdout import quiet_stdout
from relay.protocol.eid import (
    DEFAULT_ROTATION_EXPONENT,
    MAX_ROTATION_EXPONENT,
    parse_identity_key,
)
from relay.protocol.frame import DEFAULT_COMPANY_ID, FRAME_LEN, company_id_arg

# A legacy advert is 31 bytes; our manufacturer AD takes 2 + 2 + FRAME_LEN of them and
# a name AD takes 2 more than the name.
MAX_NAME_BYTES = 31 - (4 + FRAME_LEN) - 2


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="beacon_command", metavar="ACTION", required=True)
    adv = sub.add_parser(
        "advertise",
        help="advertise a rotating EID for an identity key until interrupted",
        description=(
            "Advertise our frame with the EID of --key, re-registering the advert each time the "
            "EID rotates (every 2^K seconds), on the BlueZ that DBUS_SYSTEM_BUS_ADDRESS points "
            "at (the system bus by default). Prints one line per EID."
        ),
    )
    adv.add_argument("--key", required=True, metavar="HEX32", help="the 128-bit identity key")
    adv.add_argument(
        "--rotation-exponent",
        type=int,
        default=DEFAULT_ROTATION_EXPONENT,
        metavar="K",
        help=f"rotate the EID every 2^K s, 0..{MAX_ROTATION_EXPONENT} "
        f"(default {DEFAULT_ROTATION_EXPONENT})",
    )
    adv.add_argument(
        "--tx-power",
        type=int,
        default=DEFAULT_TX_POWER,
        metavar="DBM",
        help=f"calibrated signal strength at 1 m, dBm (default {DEFAULT_TX_POWER})",
    )
    adv.add_argument("--name", help=f"a local name to advertise too (≤ {MAX_NAME_BYTES} bytes)")
    adv.add_argument(
        "--company-id",
        type=company_id_arg,
        default=DEFAULT_COMPANY_ID,
        help="manufacturer data company ID (default 0xFFFF, the SIG's test ID)",
    )
    adv.add_argument("--adapter", help="BlueZ adapter, e.g. hci0 (default: first powered one)")
    adv.add_argument("--json", action="store_true", help="one JSON object per EID per line")
    adv.set_defaults(func=_advertise)
    register_daemon_commands(sub)
    register_provisioning_commands(sub)


def _advertise(args: argparse.Namespace) -> int:
    prog = "btogether beacon advertise"
    try:
        key = parse_identity_key(args.key)
        if args.name is not None and len(args.name.encode()) > MAX_NAME_BYTES:
            raise ValueError(f"--name must be at most {MAX_NAME_BYTES} bytes to fit in the advert")
        config = BeaconConfig(
            identity_key=key,
            rotation_exponent=args.rotation_exponent,
            tx_power=args.tx_power,
            company_id=args.company_id,
            local_name=args.name or None,
        )
    except ValueError as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return 2

    def announce(rotation: Rotation) -> None:
        if args.json:
            line = json.dumps(
                {"eid": rotation.eid.hex(), "rotates_in_s": round(rotation.valid_for_s, 1)}
            )
        else:
            line = f"EID {rotation.eid.hex()} (rotates in {rotation.valid_for_s:.1f} s)"
        print(line, flush=True)

    async def main() -> None:
        advertiser = create_advertiser(adapter=args.adapter)
        beacon = RotatingBeacon(advertiser, config, time.time, asyncio.sleep, announce)
        task = asyncio.ensure_future(beacon.run())
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, task.cancel)
        try:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        finally:
            await advertiser.stop()

    try:
        asyncio.run(main())
    except AdvertiserError as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return 1
    except BrokenPipeError:
        quiet_stdout()  # the reader went away: the advert is already withdrawn
    return 0
