"""``btogether admin``: set a relay up by working on its SQLite database file.

Creates tenants, policies, users, devices and credentials, signs accounts in to
devices and stores pairings. Works while the relay is running on the same file (it
notices changes within ``directory_check_s``) or before it starts. Each command
prints one JSON object on stdout, so scripts (the demo, end-to-end tests) can read
the ids and the one-time credential tokens.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Awaitable, Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from relay import admin_commands
from relay.admin import Admin, AdminError
from relay.model import Device
from relay.protocol.eid import DEFAULT_ROTATION_EXPONENT, parse_identity_key
from relay.sqlite_store import SqliteStore
from relay.store import StoreConflict

Action = Callable[[Admin, argparse.Namespace], Awaitable[object]]


def _device_json(device: Device) -> dict[str, Any]:
    data = asdict(device)
    data["identity_key"] = device.identity_key.hex()
    data["capabilities"] = list(device.capabilities)
    return data


def _json(value: object) -> object:
    if isinstance(value, Device):
        return _device_json(value)
    if isinstance(value, list):
        return [_json(v) for v in value]
    if hasattr(value, "__dataclass_fields__"):
        return asdict(value)  # type: ignore[call-overload]
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Administer a relay through its SQLite database file (also while it runs). "
        "Every command prints one JSON object. Credential tokens are printed once and "
        "only their hash is stored."
    )
    parser.add_argument(
        "--db", type=Path, default=Path("relay.sqlite3"), help="the relay's database file"
    )
    groups = parser.add_subparsers(dest="admin_group", metavar="OBJECT", required=True)

    tenant = groups.add_parser("tenant", help="tenants").add_subparsers(
        dest="action", required=True
    )
    p = tenant.add_parser("create", help="create a tenant")
    p.add_argument("name")
    p.set_defaults(func=_runner(lambda a, ns: a.create_tenant(ns.name)))
    p = tenant.add_parser("list", help="list tenants")
    p.set_defaults(func=_runner(lambda a, ns: a.store.tenants()))

    policy = groups.add_parser("policy", help="named policies").add_subparsers(
        dest="action", required=True
    )
    p = policy.add_parser("create", help="create a policy")
    p.add_argument("--tenant", required=True)
    p.add_argument("name")
    p.add_argument("--better-together", choices=["Enabled", "Disabled"], default="Enabled")
    p.add_argument("--proximity-join", choices=["auto", "prompt", "off"], default="auto")
    p.add_argument("--beaconing", choices=["on", "off"], default="on")
    p.add_argument("--default", action="store_true", help="make it the tenant's default")
    p.set_defaults(
        func=_runner(
            lambda a, ns: a.create_policy(
                ns.tenant,
                ns.name,
                allow_better_together=ns.better_together,
                proximity_join=ns.proximity_join,
                beaconing=ns.beaconing == "on",
                make_default=ns.default,
            )
        )
    )
    p = policy.add_parser("assign", help="give a user or device a policy (omit --policy to clear)")
    p.add_argument("kind", choices=["user", "device"])
    p.add_argument("subject_id")
    p.add_argument("--policy")
    p.set_defaults(func=_runner(_assign_policy))

    user = groups.add_parser("user", help="user accounts").add_subparsers(
        dest="action", required=True
    )
    p = user.add_parser("create", help="create a user")
    p.add_argument("--tenant", required=True)
    p.add_argument("name")
    p.add_argument("--policy")
    p.set_defaults(func=_runner(lambda a, ns: a.create_user(ns.tenant, ns.name, ns.policy)))
    p = user.add_parser("list", help="list a tenant's users")
    p.add_argument("--tenant", required=True)
    p.set_defaults(func=_runner(lambda a, ns: a.store.users(ns.tenant)))

    device = groups.add_parser("device", help="devices").add_subparsers(
        dest="action", required=True
    )
    p = device.add_parser("create", help="create a device (prints its identity key)")
    p.add_argument("--tenant", required=True)
    p.add_argument("name")
    p.add_argument(
        "--kind", required=True, choices=["room_system", "conference_phone", "desk_phone"]
    )
    p.add_argument("--mode", required=True, choices=["personal", "common_area", "meeting_room"])
    p.add_argument("--location", default="")
    p.add_argument("--mac")
    p.add_argument("--policy")
    p.add_argument("--identity-key", help="32 hex digits (default: random)")
    p.add_argument("--rotation-exponent", type=int, default=DEFAULT_ROTATION_EXPONENT)
    p.set_defaults(func=_runner(_create_device))
    p = device.add_parser("sign-in", help="sign a user in to a device")
    p.add_argument("device_id")
    p.add_argument("user_id")
    p.set_defaults(func=_runner(lambda a, ns: a.sign_in_device(ns.device_id, ns.user_id)))
    p = device.add_parser("sign-out", help="sign a device out")
    p.add_argument("device_id")
    p.set_defaults(func=_runner(lambda a, ns: a.sign_out_device(ns.device_id)))
    p = device.add_parser("list", help="list devices")
    p.add_argument("--tenant")
    p.set_defaults(func=_runner(lambda a, ns: a.store.devices(ns.tenant)))

    credential = groups.add_parser("credential", help="connection credentials").add_subparsers(
        dest="action", required=True
    )
    p = credential.add_parser("issue", help="issue a credential; prints the token once")
    p.add_argument("kind", choices=["user", "device"])
    p.add_argument("subject_id")
    p.set_defaults(func=_runner(lambda a, ns: a.issue_credential(ns.kind, ns.subject_id)))
    p = credential.add_parser("revoke", help="revoke a credential (new connections refused)")
    p.add_argument("credential_id")
    p.set_defaults(func=_runner(_revoke))

    pairing = groups.add_parser("pair", help="store a pairing without the confirmation dance")
    pairing.add_argument("user_id")
    pairing.add_argument("laptop_id")
    pairing.add_argument("phone_id")
    pairing.set_defaults(func=_runner(lambda a, ns: a.pair(ns.user_id, ns.laptop_id, ns.phone_id)))
    admin_commands.register(parser, groups)  # the plural groups: a running relay, with roles


async def _assign_policy(admin: Admin, ns: argparse.Namespace) -> object:
    if ns.kind == "user":
        await admin.set_user_policy(ns.subject_id, ns.policy)
    else:
        await admin.set_device_policy(ns.subject_id, ns.policy)
    return {"subject_id": ns.subject_id, "policy_id": ns.policy}


async def _create_device(admin: Admin, ns: argparse.Namespace) -> object:
    try:
        key = parse_identity_key(ns.identity_key) if ns.identity_key else None
    except ValueError as exc:
        raise AdminError(str(exc)) from None
    return await admin.create_device(
        ns.tenant,
        ns.name,
        ns.kind,
        ns.mode,
        location=ns.location,
        mac=ns.mac,
        policy_id=ns.policy,
        identity_key=key,
        rotation_exponent=ns.rotation_exponent,
    )


async def _revoke(admin: Admin, ns: argparse.Namespace) -> object:
    return {
        "credential_id": ns.credential_id,
        "revoked": await admin.revoke_credential(ns.credential_id),
    }


def _runner(action: Action) -> Callable[[argparse.Namespace], int]:
    def run(ns: argparse.Namespace) -> int:
        return asyncio.run(_run(action, ns))

    return run


async def _run(action: Action, ns: argparse.Namespace) -> int:
    store = SqliteStore(ns.db)
    await store.open()
    try:
        result = await action(Admin(store), ns)
    except (AdminError, StoreConflict) as exc:
        print(f"btogether admin: {exc}", file=sys.stderr)
        return 1
    finally:
        await store.close()
    print(json.dumps(_json(result)))
    return 0
