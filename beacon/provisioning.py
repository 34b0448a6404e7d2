"""``btogether beacon provision CODE`` and ``btogether beacon reset``: join a tenant, leave it.

``provision`` sends the device's MAC address and the verification code the
administrator generated to the relay's ``/provision`` endpoint; on success it stores
the device credential and identity key owner-only (:mod:`beacon.state`) and shows the
organisation's name. The MAC is ``--mac``, else ``$BTOGETHER_DEVICE_MAC``, else the
BlueZ adapter's own address.

``reset`` is the factory reset: it gives the credential back to the relay if the
relay is reachable (the credential is revoked and the device waits for activation
again), then wipes it from the disk. The device must be provisioned again with a new
verification code.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from typing import Any

from pydantic import ValidationError
from websockets.exceptions import WebSocketException

from beacon.daemon_cli import _state_dir, _state_dir_option
from beacon.state import (
    DeviceIdentity,
    DeviceStateError,
    load_identity,
    save_identity,
    wipe_identity,
)
from hw.bluetooth_address import AdapterAddressError, adapter_address
from relay.protocol.admin_link import give_back_credential, provision
from relay.protocol.link import LinkError, RequestFailed

RELAY_ENV = "BTOGETHER_RELAY_URL"
MAC_ENV = "BTOGETHER_DEVICE_MAC"
UNREACHABLE = (OSError, TimeoutError, WebSocketException, LinkError)


def register(sub: Any) -> None:
    """Add ``provision`` and ``reset`` to ``btogether beacon``'s subcommands."""
    p = sub.add_parser(
        "provision",
        help="bind this device to a tenant with the administrator's verification code",
        description=(
            "Send this device's MAC address and the 6-digit verification code to the relay. "
            "On success the device credential and identity key are stored owner-only in the "
            "state directory and the organisation's name is shown; the device then waits for "
            "an administrator to sign an account in."
        ),
    )
    p.add_argument("code", help="the 6-digit verification code")
    p.add_argument("--relay", help=f"the relay's URL, ws://host:port/ (default ${RELAY_ENV})")
    p.add_argument(
        "--mac",
        help=f"this device's MAC address (default ${MAC_ENV}, else the Bluetooth adapter's)",
    )
    p.add_argument("--adapter", help="BlueZ adapter to read the address of, e.g. hci0")
    _state_dir_option(p)
    p.set_defaults(func=provision_command)

    r = sub.add_parser(
        "reset",
        help="factory reset: revoke and wipe the device credential",
        description=(
            "Give the credential back to the relay if it is reachable (it is revoked and the "
            "device waits for activation again), then wipe it from this device. Provisioning "
            "again needs a new verification code."
        ),
    )
    _state_dir_option(r)
    r.set_defaults(func=reset_command)


def provision_command(args: argparse.Namespace) -> int:
    prog = "btogether beacon provision"
    state_dir = _state_dir(args)
    try:
        existing = load_identity(state_dir)
    except DeviceStateError as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return 2
    if existing is not None:
        print(
            f"{prog}: this device is already provisioned for {existing.organisation} "
            f"(device {existing.device_id}); run `btogether beacon reset` first",
            file=sys.stderr,
        )
        return 2
    relay_url = args.relay or os.environ.get(RELAY_ENV)
    if not relay_url:
        print(f"{prog}: give the relay's URL with --relay or ${RELAY_ENV}", file=sys.stderr)
        return 2
    try:
        mac = args.mac or os.environ.get(MAC_ENV) or asyncio.run(adapter_address(args.adapter))
    except AdapterAddressError as exc:
        print(f"{prog}: cannot tell this device's MAC address ({exc}); pass --mac", file=sys.stderr)
        return 2
    try:
        result = asyncio.run(provision(relay_url, mac, args.code))
        identity = DeviceIdentity(
            relay_url=relay_url,
            device_id=result.device_id,
            tenant_id=result.tenant_id,
            organisation=result.organisation,
            credential=result.credential,
            identity_key=result.identity_key,
            rotation_exponent=result.rotation_exponent,
            provisioned_at=time.time(),
        )
    except RequestFailed as exc:
        print(f"{prog}: refused: {exc.message}", file=sys.stderr)
        return 1
    except ValueError as exc:  # a bad URL, or a result the state file cannot hold
        if isinstance(exc, ValidationError):
            print(f"{prog}: the relay's answer is not usable: {exc}", file=sys.stderr)
        else:
            print(f"{prog}: {exc}", file=sys.stderr)
        return 2
    except UNREACHABLE as exc:
        print(f"{prog}: cannot reach the relay at {relay_url}: {exc}", file=sys.stderr)
        return 1
    path = save_identity(state_dir, identity)
    print(f"Provisioned for {identity.organisation} (device {identity.device_id}, MAC {mac}).")
    print("Waiting for sign-in: ask your administrator to sign an account in.")
    print(f"Credential and identity key stored in {path} (owner-only).")
    return 0


def reset_command(args: argparse.Namespace) -> int:
    prog = "btogether beacon reset"
    state_dir = _state_dir(args)
    try:
        identity = load_identity(state_dir)
    except DeviceStateError as exc:
        print(f"{prog}: {exc}; wiping it", file=sys.stderr)
        identity = None
    told = False
    if identity is not None:
        try:
            asyncio.run(give_back_credential(identity.relay_url, identity.credential))
            told = True
        except RequestFailed as exc:
            print(
                f"{prog}: the relay did not take the credential back: {exc.message}",
                file=sys.stderr,
            )
        except UNREACHABLE as exc:
            print(
                f"{prog}: cannot reach the relay ({exc}); ask the administrator to remove the "
                "device there",
                file=sys.stderr,
            )
    if not wipe_identity(state_dir):
        print("Nothing to reset: this device was not provisioned.")
        return 0
    relay_note = " and revoked on the relay" if told else ""
    print(f"Reset: the device credential was wiped{relay_note}.")
    print("Provision again with a new verification code: btogether beacon provision CODE")
    return 0
