"""``btogether admin <objects> …``: administer a running relay with an administrator credential.

Every command but ``bootstrap`` and ``devices template`` opens the relay's ``/admin``
endpoint (``--relay``, default ``$BTOGETHER_RELAY_URL`` or ws://127.0.0.1:8765/) with
an administrator credential (``--token``, else ``$BTOGETHER_ADMIN_TOKEN``, else the
file ``--token-file``), sends one request and prints the result: a table for people,
or the result object as JSON with ``--json``. The relay checks the administrator's
role and records the action in its audit log (``btogether admin audit``).

``bootstrap`` runs on the relay host, on the database file: it creates the first
owner and prints the owner's credential once.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import ssl
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from websockets.exceptions import InvalidStatus, WebSocketException

from relay.admin import Admin
from relay.admin_service import bootstrap_owner
from relay.admin_store import SqliteAdminStore
from relay.device_import import CSV_TEMPLATE, MAX_CSV_BYTES
from relay.protocol import admin_wire as aw
from relay.protocol import wire
from relay.protocol.admin_link import AdminLink
from relay.protocol.link import LinkError, RequestFailed
from relay.protocol.reach import TlsSetupError, client_tls, why_unreachable
from relay.web.accounts import SqliteAccounts, normalize_login
from relay.web.passwords import hash_async, read_password_file

DEFAULT_RELAY = "ws://127.0.0.1:8765/"
PROG = "btogether admin"
Build = Callable[[argparse.Namespace], tuple[type[aw.AdminRequest], dict[str, Any]]]


def _default_token_file() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "btogether" / "admin-token"


def _connection_options() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--relay",
        default=os.environ.get("BTOGETHER_RELAY_URL", DEFAULT_RELAY),
        help="the relay's URL (default $BTOGETHER_RELAY_URL or %(default)s)",
    )
    common.add_argument(
        "--token", help="administrator credential (default $BTOGETHER_ADMIN_TOKEN, then the file)"
    )
    common.add_argument(
        "--token-file",
        type=Path,
        default=_default_token_file(),
        help="file holding the credential (default %(default)s)",
    )
    common.add_argument(
        "--ca-file",
        type=Path,
        metavar="PEM",
        default=os.environ.get("BTOGETHER_CA_FILE") or None,
        help="trust this internal CA's certificate for a wss:// relay (default: "
        "$BTOGETHER_CA_FILE, else only the system's CAs)",
    )
    common.add_argument("--json", action="store_true", help="print the result as JSON")
    return common


def _tenant_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--tenant", dest="tenant_id", help="tenant id (owners; a device admin has one)"
    )


def _on_off(text: str) -> bool:
    if text not in ("on", "off"):
        raise argparse.ArgumentTypeError("expected on or off")
    return text == "on"


def register(parser: argparse.ArgumentParser, groups: Any) -> None:
    """Add the command groups that talk to a running relay to ``btogether admin``."""
    parser.description = (parser.description or "") + (
        " The plural groups (tenants, admins, users, credentials, devices, codes, policies, "
        "consoles, pairings, audit, whoami) instead work on a RUNNING relay with an "
        "administrator credential (--relay, --token / $BTOGETHER_ADMIN_TOKEN / --token-file), "
        "print tables (--json for scripts), check the administrator's role and are recorded "
        "in the audit log; 'bootstrap' creates the first owner on the relay host."
    )
    common = _connection_options()

    def command(
        parent: Any, name: str, help_text: str, build: Build, *, scoped: bool = False
    ) -> argparse.ArgumentParser:
        parser: argparse.ArgumentParser = parent.add_parser(
            name, help=help_text, description=help_text, parents=[common]
        )
        if scoped:
            _tenant_option(parser)
        parser.set_defaults(func=_runner(build))
        return parser

    def plain(
        parent: Any,
        name: str,
        help_text: str,
        request: type[aw.AdminRequest],
        *ids: str,
        scoped: bool = False,
    ) -> argparse.ArgumentParser:
        """A command whose request fields are its positional arguments (and --tenant), by name."""
        fields = (*ids, "tenant_id") if scoped else ids
        parser = command(
            parent,
            name,
            help_text,
            lambda ns: (request, {field: getattr(ns, field) for field in fields}),
            scoped=scoped,
        )
        for id_ in ids:
            parser.add_argument(id_)
        return parser

    def group(name: str, help_text: str) -> Any:
        return groups.add_parser(name, help=help_text, description=help_text).add_subparsers(
            dest="action", metavar="ACTION", required=True
        )

    p = groups.add_parser(
        "bootstrap",
        help="on the relay host: create the first owner and print its credential once",
        description=(
            "Create an owner administrator in the relay's database file and print the "
            "owner's credential once (only its hash is stored). Refused if an owner exists "
            "unless --another. Optionally create a first tenant."
        ),
    )
    p.add_argument("--db", type=Path, default=Path("relay.sqlite3"), help="the relay's database")
    p.add_argument("--owner", required=True, help="the owner's name")
    p.add_argument("--tenant", help="also create a tenant with this name")
    p.add_argument("--another", action="store_true", help="add an owner even if one exists")
    p.add_argument("--token-file", type=Path, help="also write the credential here (0600)")
    p.add_argument(
        "--password-file",
        type=Path,
        help="give the owner this password (first line of the file) to sign in to the admin "
        "center at /admin/ with the owner's name",
    )
    p.set_defaults(func=_bootstrap)

    plain(groups, "whoami", "show the administrator the credential belongs to", aw.WhoAmI)
    command(
        groups,
        "audit",
        "show the audit log (who did what, when)",
        lambda ns: (aw.AuditList, {"tenant_id": ns.tenant_id, "limit": ns.limit}),
        scoped=True,
    ).add_argument("--limit", type=int, default=100)

    g = group("tenants", "tenants (owners)")
    plain(g, "create", "create a tenant", aw.TenantCreate, "name")
    plain(g, "list", "list tenants", aw.TenantList)

    g = group("admins", "administrators (owners)")
    p = command(
        g,
        "create",
        "create an administrator; prints its credential once",
        lambda ns: (
            aw.AdminCreate,
            {"name": ns.name, "role": ns.role.replace("-", "_"), "tenant_id": ns.tenant_id},
        ),
        scoped=True,
    )
    p.add_argument("name")
    p.add_argument("--role", choices=["owner", "device-admin"], required=True)

    _sign_in_commands(g, command, "admin", "administrator")

    g = group("users", "user accounts")
    p = command(
        g,
        "create",
        "create a user account (owners)",
        lambda ns: (
            aw.UserCreate,
            {"tenant_id": ns.tenant_id, "name": ns.name, "policy_id": ns.policy},
        ),
        scoped=True,
    )
    p.add_argument("name")
    p.add_argument("--policy", help="policy id")
    plain(g, "list", "list users", aw.UserList, scoped=True)
    _sign_in_commands(g, command, "user", "user")

    g = group("credentials", "laptop sign-in credentials for users (owners)")
    plain(
        g,
        "issue",
        "issue a credential for a user's laptop; prints it once",
        aw.CredentialIssue,
        "user_id",
    )
    plain(g, "revoke", "revoke a credential", aw.CredentialRevoke, "credential_id")
    p = command(
        g,
        "list",
        "list users' laptop credentials (issued, or approved on the device login page)",
        lambda ns: (aw.CredentialList, {"tenant_id": ns.tenant_id, "user_id": ns.user}),
        scoped=True,
    )
    p.add_argument("--user", help="only this user's (user id)")

    g = group("devices", "the device list: add, import, list, sign in, remove")
    p = command(
        g,
        "add",
        "list a device by MAC address (waiting for activation)",
        lambda ns: (
            aw.DeviceAdd,
            {
                "tenant_id": ns.tenant_id,
                "mac": ns.mac,
                "location": ns.location,
                "name": ns.name,
                "kind": ns.kind,
            },
        ),
        scoped=True,
    )
    p.add_argument("mac")
    p.add_argument("--location", default="", help="e.g. 'Building 1 / Floor 2 / Aurora'")
    p.add_argument("--name", help="display name (default: the location)")
    p.add_argument(
        "--kind", choices=["desk_phone", "conference_phone", "room_system"], default="desk_phone"
    )
    p = command(
        g,
        "import",
        "list devices from a 'MAC address,Location' CSV file; all or "
        "nothing unless --skip-bad-rows (see 'devices template')",
        _import,
        scoped=True,
    )
    p.add_argument("file", type=Path)
    p.add_argument(
        "--kind", choices=["desk_phone", "conference_phone", "room_system"], default="desk_phone"
    )
    p.add_argument(
        "--skip-bad-rows", action="store_true", help="import the good rows and report the bad ones"
    )
    p = g.add_parser("template", help="print a CSV template for 'devices import'")
    p.set_defaults(func=_template)
    p = command(
        g,
        "list",
        "list devices (optionally by state); shows lock-outs",
        lambda ns: (aw.DeviceList, {"tenant_id": ns.tenant_id, "state": ns.state}),
        scoped=True,
    )
    p.add_argument(
        "--state", choices=["waiting_for_activation", "waiting_for_sign_in", "signed_in"]
    )
    plain(
        g, "remove", "remove a device (its credential stops working)", aw.DeviceRemove, "device_id"
    )
    p = command(
        g,
        "sign-in",
        "sign an account in to a device with the device's login code ('codes login' fetches it)",
        lambda ns: (
            aw.DeviceSignIn,
            {"device_id": ns.device_id, "user_id": ns.user_id, "code": ns.code, "mode": ns.mode},
        ),
    )
    p.add_argument("device_id")
    p.add_argument("user_id", help="a user, a room's resource account, or a common-area account")
    p.add_argument("--code", required=True, help="the login code, e.g. ABCD-EFGH")
    p.add_argument(
        "--mode",
        choices=["personal", "meeting_room", "common_area"],
        help="how the device runs as the account (default by kind)",
    )
    plain(
        g,
        "sign-out",
        "sign a device out (back to waiting for sign-in)",
        aw.DeviceSignOut,
        "device_id",
    )

    g = group("codes", "verification codes (provisioning) and login codes (sign-in)")
    plain(
        g,
        "create",
        "a 6-digit verification code for a device, valid 24 h, single use; a new one voids the old",
        aw.CodeCreate,
        "device_id",
    )
    plain(
        g,
        "login",
        "fetch the login code a connected device waiting for sign-in shows",
        aw.LoginCodeGet,
        "device_id",
    )

    g = group("policies", "named policies: create, update, assign, list")
    p = command(
        g,
        "create",
        "create a policy",
        lambda ns: (
            aw.PolicyCreate,
            {
                "tenant_id": ns.tenant_id,
                "name": ns.name,
                **_policy_fields(ns, defaults=True),
                "default": ns.default,
            },
        ),
        scoped=True,
    )
    p.add_argument("name")
    _policy_options(p)
    p.add_argument("--default", action="store_true", help="make it the tenant's default")
    p = command(
        g,
        "update",
        "change a policy (connected devices are told at once)",
        lambda ns: (
            aw.PolicyUpdate,
            {"policy_id": ns.policy_id, **_policy_fields(ns, defaults=False)},
        ),
    )
    p.add_argument("policy_id")
    _policy_options(p)
    p = command(
        g,
        "assign",
        "assign a policy to a user, a device or a tenant (its default)",
        lambda ns: (
            aw.PolicyAssign,
            {"subject_kind": ns.kind, "subject_id": ns.subject, "policy_id": ns.policy},
        ),
    )
    p.add_argument("kind", choices=["user", "device", "tenant"])
    p.add_argument("subject")
    p.add_argument("--policy", help="policy id (omit to clear)")
    plain(g, "list", "show the tenant's policies", aw.PolicyList, scoped=True)

    g = group("consoles", "touch consoles paired to room systems")
    plain(g, "pair", "pair a console with a room system", aw.ConsolePair, "console_id", "room_id")
    plain(g, "unpair", "unpair a console", aw.ConsoleUnpair, "console_id")
    plain(g, "list", "list consoles", aw.ConsoleList, scoped=True)

    g = group("pairings", "Better Together pairings (laptop and phone)")
    plain(g, "list", "list the tenant's pairings", aw.PairingList, scoped=True)


def _sign_in_commands(g: Any, command: Any, kind: str, what: str) -> None:
    """``password`` and ``setup-link`` for administrators or users: the browser sign-in."""
    p = command(
        g,
        "password",
        f"give the {what} a login and password for the browser pages (owners); ends their "
        "browser sessions",
        lambda ns: (
            aw.PasswordSet,
            {
                "subject_kind": kind,
                "subject_id": ns.subject_id,
                "login": ns.login,
                "password": _password(ns.password_file),
            },
        ),
    )
    p.add_argument("subject_id", help=f"the {what}'s id")
    p.add_argument("--password-file", type=Path, required=True, help="first line: the password")
    p.add_argument(
        "--login", help="what they type to sign in (default: their login, else their name)"
    )
    p = command(
        g,
        "setup-link",
        f"a one-time link (72 h) with which the {what} chooses a password (owners)",
        lambda ns: (
            aw.SetupLinkCreate,
            {"subject_kind": kind, "subject_id": ns.subject_id, "login": ns.login},
        ),
    )
    p.add_argument("subject_id", help=f"the {what}'s id")
    p.add_argument(
        "--login", help="what they type to sign in (default: their login, else their name)"
    )


def _password(path: Path) -> str:
    try:
        return read_password_file(path)
    except ValueError as exc:
        raise _UsageError(str(exc)) from None


def _policy_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--better-together",
        choices=["Enabled", "Disabled"],
        help="AllowBetterTogether (default Enabled)",
    )
    p.add_argument(
        "--proximity-join",
        choices=["auto", "prompt", "off"],
        help="rooms: accept joins at once, prompt on the room, or refuse (default auto)",
    )
    p.add_argument(
        "--beaconing", type=_on_off, metavar="on|off", help="whether devices advertise (default on)"
    )
    p.add_argument(
        "--auto-confirm",
        type=_on_off,
        metavar="on|off",
        help="unattended devices accept prompts themselves (default off)",
    )


def _policy_fields(ns: argparse.Namespace, *, defaults: bool) -> dict[str, Any]:
    fields = {
        "allow_better_together": ns.better_together,
        "proximity_join": ns.proximity_join,
        "beaconing": ns.beaconing,
        "auto_confirm": ns.auto_confirm,
    }
    return {k: v for k, v in fields.items() if v is not None} if defaults else fields


class _UsageError(Exception):
    pass


def _import(ns: argparse.Namespace) -> tuple[type[aw.AdminRequest], dict[str, Any]]:
    try:
        data = ns.file.read_bytes()[: MAX_CSV_BYTES + 1]
    except OSError as exc:
        raise _UsageError(f"cannot read {ns.file}: {exc.strerror}") from None
    if len(data) > MAX_CSV_BYTES:
        raise _UsageError(f"{ns.file} is larger than {MAX_CSV_BYTES} bytes")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise _UsageError(f"{ns.file} is not UTF-8 text") from None
    return aw.DeviceImport, {
        "tenant_id": ns.tenant_id,
        "csv": text,
        "kind": ns.kind,
        "skip_bad_rows": ns.skip_bad_rows,
    }


def _template(ns: argparse.Namespace) -> int:
    sys.stdout.write(CSV_TEMPLATE)
    return 0


def _token(ns: argparse.Namespace) -> str:
    if ns.token:
        return str(ns.token)
    if os.environ.get("BTOGETHER_ADMIN_TOKEN"):
        return os.environ["BTOGETHER_ADMIN_TOKEN"]
    try:
        return Path(ns.token_file).read_text().strip()
    except OSError:
        raise _UsageError(
            "no administrator credential: pass --token, set BTOGETHER_ADMIN_TOKEN or write "
            f"it to {ns.token_file}"
        ) from None


def _runner(build: Build) -> Callable[[argparse.Namespace], int]:
    def run(ns: argparse.Namespace) -> int:
        try:
            kind, fields = build(ns)
            token = _token(ns)
            tls = client_tls(ns.relay, ns.ca_file)
            result = asyncio.run(_send(ns.relay, token, kind, fields, tls))
        except (_UsageError, TlsSetupError) as exc:
            print(f"{PROG}: {exc}", file=sys.stderr)
            return 2
        except RequestFailed as exc:
            print(f"{PROG}: refused ({exc.code.value}): {exc.message}", file=sys.stderr)
            return 1
        except InvalidStatus as exc:
            status = exc.response.status_code
            print(f"{PROG}: the relay refused the credential (HTTP {status})", file=sys.stderr)
            return 1
        except (OSError, TimeoutError, WebSocketException, LinkError, ValueError) as exc:
            why = why_unreachable(ns.relay, exc)
            print(f"{PROG}: cannot reach the relay at {ns.relay}: {why}", file=sys.stderr)
            return 1
        if ns.json:
            print(result.model_dump_json())
        else:
            print(render(result))
        return 0

    return run


async def _send(
    url: str,
    token: str,
    kind: type[aw.AdminRequest],
    fields: dict[str, Any],
    tls: ssl.SSLContext | None,
) -> Any:
    async with await AdminLink.connect(url, token, tls=tls) as link:
        return await link.call(kind, **fields)


# --- output for people -------------------------------------------------------------------


def _cell(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float) and value > 1e9:
        return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(value))
    return str(value)


def table(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> str:
    if not rows:
        return "(none)"
    cells = [[_cell(row.get(c)) for c in columns] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(columns)]
    lines = ["  ".join(c.upper().ljust(w) for c, w in zip(columns, widths, strict=True))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)) for r in cells]
    return "\n".join(line.rstrip() for line in lines)


TABLES: dict[type, tuple[str, Sequence[str]]] = {
    aw.Tenants: ("tenants", ("id", "name", "default_policy_id")),
    aw.Users: ("users", ("id", "name", "policy_id")),
    aw.Devices: (
        "devices",
        (
            "id",
            "mac",
            "location",
            "kind",
            "mode",
            "state",
            "user_id",
            "online",
            "locked_out_until",
            "lockout_reason",
        ),
    ),
    aw.Policies: (
        "policies",
        (
            "id",
            "name",
            "allow_better_together",
            "proximity_join",
            "beaconing",
            "auto_confirm",
            "is_default",
        ),
    ),
    aw.Consoles: ("consoles", ("console_id", "console_name", "room_id", "room_name")),
    aw.Pairings: ("pairings", ("laptop_id", "laptop_name", "phone_id", "phone_name", "created_at")),
    aw.AuditEntries: ("entries", ("seq", "at", "actor", "action", "target", "outcome")),
    aw.Credentials: (
        "credentials",
        ("credential_id", "user_name", "laptop_name", "created_at", "revoked_at"),
    ),
}


def render(result: wire.Message) -> str:
    """A result as people read it: a table for lists, ``key: value`` lines otherwise."""
    data = result.model_dump()
    if isinstance(result, aw.ImportResult):
        out = [f"imported {len(result.added)} device(s)"]
        out += [f"skipped line {e.line}: {e.message}" for e in result.errors]
        if result.added:
            out.append(table(data["added"], TABLES[aw.Devices][1]))
        return "\n".join(out)
    for kind, (key, columns) in TABLES.items():
        if isinstance(result, kind):
            return table(data[key], columns)
    lines = []
    for key, value in data.items():
        if isinstance(value, dict):
            lines += [f"{key}.{k}: {_cell(v)}" for k, v in value.items()]
        else:
            lines.append(f"{key}: {_cell(value)}")
    return "\n".join(lines)


# --- bootstrap -----------------------------------------------------------------------------


def _bootstrap(ns: argparse.Namespace) -> int:
    return asyncio.run(_bootstrap_async(ns))


async def _bootstrap_async(ns: argparse.Namespace) -> int:
    password = None
    if ns.password_file is not None:
        try:
            password = read_password_file(ns.password_file)
        except ValueError as exc:
            print(f"{PROG}: {exc}", file=sys.stderr)
            return 2
    store = SqliteAdminStore(ns.db)
    await store.open()
    try:
        if await store.owner_count() and not ns.another:
            print(
                f"{PROG}: {ns.db} already has an owner (use --another to add one)", file=sys.stderr
            )
            return 1
        now = time.time()
        if password is not None and await SqliteAccounts(store).login(ns.owner) is not None:
            print(f"{PROG}: the login {ns.owner!r} is taken", file=sys.stderr)
            return 1
        owner, token = await bootstrap_owner(store, ns.owner, now)
        tenant = await Admin(store).create_tenant(ns.tenant) if ns.tenant else None
        if password is not None:
            await SqliteAccounts(store).set_login(
                "admin", owner.id, ns.owner, await hash_async(password), now
            )
    finally:
        await store.close()
    if ns.token_file is not None:
        _write_owner_only(ns.token_file, token)
    print(f"owner: {owner.name} ({owner.id})")
    if tenant is not None:
        print(f"tenant: {tenant.name} ({tenant.id})")
    print(f"credential (shown once): {token}")
    if password is not None:
        print(f"admin center: sign in at /admin/ as {normalize_login(ns.owner)!r}")
    return 0


def _write_owner_only(path: Path, token: str) -> None:
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        os.fchmod(handle.fileno(), 0o600)
        handle.write(token + "\n")
