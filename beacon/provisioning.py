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

``set-relay URL`` points a provisioned device at the relay's new address (the relay
moved, or the URL given at provisioning was wrong) without a reset: the device's
credential is checked against the relay at the new URL first, and nothing changes if
that relay does not accept it.

All three trust the internal CA of ``--ca-file``, else the ``[tls] ca_file`` of the
beacon's settings (``beacon.toml``), for a ``wss://`` relay.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import ssl
import sys
import time
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from websockets.exceptions import InvalidStatus, WebSocketException

from beacon.config import ConfigError, default_config_path, load_config
from beacon.daemon_cli import _state_dir, _state_dir_option
from beacon.state import (
    IDENTITY_FILE,
    DeviceIdentity,
    DeviceStateError,
    load_identity,
    save_identity,
    wipe_identity,
)
from hw.bluetooth_address import AdapterAddressError, adapter_address
from relay.protocol.admin_link import give_back_credential, provision
from relay.protocol.link import LinkError, RelayLink, RequestFailed
from relay.protocol.reach import TlsSetupError, client_tls, why_unreachable

RELAY_ENV = "BTOGETHER_RELAY_URL"
MAC_ENV = "BTOGETHER_DEVICE_MAC"
UNREACHABLE = (OSError, TimeoutError, WebSocketException, LinkError)


def register(sub: Any) -> None:
    """Add ``provision``, ``reset`` and ``set-relay`` to ``btogether beacon``'s subcommands."""
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
    p.add_argument(
        "--relay",
        help=f"the relay's URL, ws://host:port/ or wss://host/ (default: ${RELAY_ENV})",
    )
    p.add_argument(
        "--mac",
        help=f"this device's MAC address (default: ${MAC_ENV}, else the Bluetooth adapter's)",
    )
    p.add_argument(
        "--adapter", help="BlueZ adapter to read the address of, e.g. hci0 (default: the first)"
    )
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    _tls_options(p)
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
    r.add_argument("--json", action="store_true", help="print the result as JSON")
    _tls_options(r)
    _state_dir_option(r)
    r.set_defaults(func=reset_command)

    m = sub.add_parser(
        "set-relay",
        help="point this provisioned device at the relay's new URL (no reset needed)",
        description=(
            "Check that the relay at URL accepts this device's credential, then store URL as "
            "the device's relay; nothing changes if it does not. A running `beacon run` uses "
            "the new URL once restarted (systemctl restart btogether-beacon)."
        ),
    )
    m.add_argument("url", metavar="URL", help="the relay's new URL, ws://host:port/ or wss://host/")
    m.add_argument(
        "--no-verify",
        action="store_true",
        help="store the URL without checking it (the relay is not reachable from here yet)",
    )
    m.add_argument("--json", action="store_true", help="print the result as JSON")
    _tls_options(m)
    _state_dir_option(m)
    m.set_defaults(func=set_relay_command)


def _tls_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--ca-file",
        type=Path,
        metavar="PEM",
        help="trust this internal CA's certificate for a wss:// relay (default: [tls] ca_file "
        "of the beacon's settings, else only the system's CAs)",
    )
    parser.add_argument(
        "--config",
        type=Path,
        help="the beacon's settings file, read for [tls] ca_file (default: $BTOGETHER_CONFIG, "
        "else beacon.toml in the state directory)",
    )


def _tls(args: argparse.Namespace, url: str) -> ssl.SSLContext | None:
    """The TLS context for ``url``: --ca-file, else the settings' ca_file; ValueError if bad."""
    ca_file = args.ca_file
    if ca_file is None:
        explicit = args.config is not None
        path = args.config if explicit else default_config_path(_state_dir(args), os.environ)
        ca_file = load_config(path, required=explicit).tls.ca_file
    return client_tls(url, ca_file)


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
        tls = _tls(args, relay_url)
    except (ConfigError, TlsSetupError) as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return 2
    try:
        mac = args.mac or os.environ.get(MAC_ENV) or asyncio.run(adapter_address(args.adapter))
    except AdapterAddressError as exc:
        print(f"{prog}: cannot tell this device's MAC address ({exc}); pass --mac", file=sys.stderr)
        return 2
    try:
        result = asyncio.run(provision(relay_url, mac, args.code, tls=tls))
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
    except UNREACHABLE as exc:  # before ValueError: a TLS verification failure is both
        why = why_unreachable(relay_url, exc)
        print(f"{prog}: cannot reach the relay at {relay_url}: {why}", file=sys.stderr)
        return 1
    except ValueError as exc:  # a bad URL, or a result the state file cannot hold
        if isinstance(exc, ValidationError):
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()
            )
            print(f"{prog}: the relay's answer is not usable: {problems}", file=sys.stderr)
        else:
            print(f"{prog}: {exc}", file=sys.stderr)
        return 2
    path = save_identity(state_dir, identity)
    if args.json:
        print(
            json.dumps(
                {
                    "device_id": identity.device_id,
                    "tenant_id": identity.tenant_id,
                    "organisation": identity.organisation,
                    "mac": mac,
                    "relay_url": relay_url,
                    "state_file": str(path),
                }
            )
        )
        return 0
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
        identity = None
        unreadable: DeviceStateError | None = exc
    else:
        unreadable = None
    told = False
    if identity is not None:
        try:
            tls = _tls(args, identity.relay_url)
            asyncio.run(give_back_credential(identity.relay_url, identity.credential, tls=tls))
            told = True
        except (ConfigError, TlsSetupError) as exc:
            print(f"{prog}: cannot tell the relay ({exc}); wiping anyway", file=sys.stderr)
        except RequestFailed as exc:
            print(
                f"{prog}: the relay did not take the credential back: {exc.message}",
                file=sys.stderr,
            )
        except UNREACHABLE as exc:
            print(
                f"{prog}: cannot reach the relay ({why_unreachable(identity.relay_url, exc)}); "
                "ask the administrator to remove the device there",
                file=sys.stderr,
            )
    try:
        wiped = wipe_identity(state_dir)
    except OSError as exc:
        print(
            f"{prog}: cannot wipe the device state in {state_dir}: {exc.strerror}", file=sys.stderr
        )
        return 1
    if unreadable is not None and wiped:
        print(f"{prog}: {unreadable}; it was wiped without telling the relay", file=sys.stderr)
    if args.json:
        print(json.dumps({"wiped": wiped, "revoked_on_relay": told}))
        return 0
    if not wiped:
        print("Nothing to reset: this device was not provisioned.")
        return 0
    relay_note = " and revoked on the relay" if told else ""
    print(f"Reset: the device credential was wiped{relay_note}.")
    print("Provision again with a new verification code: btogether beacon provision CODE")
    return 0


def set_relay_command(args: argparse.Namespace) -> int:
    prog = "btogether beacon set-relay"
    state_dir = _state_dir(args)
    try:
        identity = load_identity(state_dir)
    except DeviceStateError as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return 2
    if identity is None:
        print(
            f"{prog}: this device is not provisioned ({state_dir} has no device state); "
            "run `btogether beacon provision CODE --relay URL` instead",
            file=sys.stderr,
        )
        return 2
    try:
        moved = identity.model_copy(update={"relay_url": args.url})
        DeviceIdentity.model_validate(moved.model_dump())
        tls = _tls(args, args.url)
    except (ValueError, ConfigError, TlsSetupError) as exc:
        problem = (
            f"{args.url!r} is not a relay URL (expected ws://host:port/ or wss://host/)"
            if isinstance(exc, ValidationError)
            else str(exc)
        )
        print(f"{prog}: {problem}", file=sys.stderr)
        return 2
    if not args.no_verify:
        try:
            asyncio.run(_check_credential(args.url, identity, tls))
        except UNREACHABLE as exc:
            why = why_unreachable(args.url, exc)
            if isinstance(exc, InvalidStatus) and exc.response.status_code == 401:
                why = (
                    "that relay does not accept this device's credential: is it the same relay "
                    "(the same database) at a new address?"
                )
            print(f"{prog}: nothing changed: {why}", file=sys.stderr)
            return 1
    path = state_dir / IDENTITY_FILE
    owner = path.stat()
    save_identity(state_dir, moved)
    if os.geteuid() == 0 and (owner.st_uid, owner.st_gid) != (0, 0):
        # Run as root for a service's state (DynamicUser): the file stays the service's.
        os.chown(path, owner.st_uid, owner.st_gid)
    if args.json:
        print(
            json.dumps(
                {
                    "previous": identity.relay_url,
                    "relay_url": args.url,
                    "verified": not args.no_verify,
                }
            )
        )
        return 0
    print(f"Relay URL changed from {identity.relay_url} to {args.url}.")
    print("Restart the beacon daemon to use it (systemctl restart btogether-beacon).")
    return 0


async def _check_credential(url: str, identity: DeviceIdentity, tls: ssl.SSLContext | None) -> None:
    """Connect to ``url`` with the device's credential; raises what the connection raised."""
    link = await RelayLink.connect(url, identity.credential, tls=tls, open_timeout=10.0)
    await link.close()
