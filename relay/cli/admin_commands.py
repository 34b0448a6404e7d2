"""How a ``btogether admin`` command runs: reach the relay, look names up, send, print.

Every command but ``bootstrap`` and ``devices template`` opens the relay's ``/admin``
endpoint (``--relay``, default ``$BTOGETHER_RELAY_URL`` or ws://127.0.0.1:8765/) with an
administrator credential (``--token``, else ``$BTOGETHER_ADMIN_TOKEN``, else the file
``--token-file``), turns the names on its command line into ids through that connection
(:class:`Lookup`, matching by :mod:`relay.cli.admin_names`), sends one request and prints the
result: tables and ``key: value`` lines for people, the result object as JSON with
``--json``. Every failure is one line on stderr: 1 when the relay refused or cannot be
reached, 2 for bad usage (an unknown name, an unreadable file).

``bootstrap`` runs on the relay host, on the database file: it creates the first owner and
prints the owner's credential once. The command tree itself is :mod:`relay.cli.admin`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import ssl
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from websockets.exceptions import InvalidStatus, WebSocketException

from relay.admin.service import bootstrap_owner
from relay.admin.store_admin import Admin
from relay.cli.admin_names import Ambiguous, Candidate, NotFound, looks_like_id, pick
from relay.domain.store import StoreUnavailable
from relay.files import FileProblem, read_text
from relay.node import SettingsError, accounts_for, display_db, store_for
from relay.protocol import admin_wire as aw
from relay.protocol import wire
from relay.protocol.admin_link import AdminLink
from relay.protocol.link import LinkError, RequestFailed
from relay.protocol.reach import TlsSetupError, client_tls, refusal, why_unreachable
from relay.web.accounts import normalize_login
from relay.web.passwords import hash_async, read_password_file

DEFAULT_RELAY = "ws://127.0.0.1:8765/"
MAX_TOKEN_FILE_BYTES = 4096
PROG = "btogether admin"
EXIT_REFUSED, EXIT_USAGE = 1, 2


class UsageError(Exception):
    """The command line cannot be carried out as given (exit 2); the message says why."""


def default_token_file() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "btogether" / "admin-token"


def connection_options() -> argparse.ArgumentParser:
    """The options every command that talks to the relay takes (a parent parser)."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--relay",
        default=os.environ.get("BTOGETHER_RELAY_URL", DEFAULT_RELAY),
        help="the relay's URL (default: $BTOGETHER_RELAY_URL, else %(default)s)",
    )
    common.add_argument(
        "--token",
        help="administrator credential (default: $BTOGETHER_ADMIN_TOKEN, else --token-file)",
    )
    common.add_argument(
        "--token-file",
        type=Path,
        default=default_token_file(),
        help="file holding the administrator credential (default: %(default)s)",
    )
    common.add_argument(
        "--ca-file",
        type=Path,
        metavar="PEM",
        default=os.environ.get("BTOGETHER_CA_FILE") or None,
        help="trust this internal CA's certificate for a wss:// relay (default: "
        "$BTOGETHER_CA_FILE, else only the system's CAs)",
    )
    common.add_argument(
        "--tenant",
        metavar="TENANT",
        help="tenant name or id, for this command and the names on its command line "
        "(default: a device administrator's own; an owner's only tenant)",
    )
    common.add_argument("--json", action="store_true", help="print the result as JSON")
    return common


# --- names to ids, through the relay -------------------------------------------------------


def _device_detail(d: aw.DeviceInfo) -> str:
    return ", ".join(part for part in (d.name, d.mac, d.location) if part)


class Lookup:
    """Ids for the names on one command line, read from the relay over ``link``.

    The tenant is ``--tenant`` (a name or an id), else the device administrator's own,
    else an owner's only tenant; an owner of several tenants who names no tenant has
    names looked up in all of them.
    """

    def __init__(self, link: AdminLink, tenant: str | None) -> None:
        self.link = link
        self._tenant_text = tenant
        self._me: aw.AdminInfo | None = None
        self._tenants: list[aw.TenantInfo] | None = None
        self._scope: list[str] | None = None

    async def me(self) -> aw.AdminInfo:
        if self._me is None:
            self._me = await self.link.typed(aw.AdminInfo, aw.WhoAmI)
        return self._me

    async def tenants(self) -> list[aw.TenantInfo]:
        if self._tenants is None:
            self._tenants = (await self.link.typed(aw.Tenants, aw.TenantList)).tenants
        return self._tenants

    async def tenant(self, text: str) -> str:
        """The id of the tenant ``text`` names."""
        if looks_like_id(text):
            return text
        tenants = await self.tenants()
        try:
            return pick("tenant", text, [Candidate(t.id, t.name) for t in tenants])
        except (NotFound, Ambiguous) as exc:
            raise UsageError(str(exc)) from None

    async def scope(self) -> list[str]:
        """The tenants this command works in: one, or (an owner naming none) all of theirs."""
        if self._scope is None:
            if self._tenant_text is not None:
                self._scope = [await self.tenant(self._tenant_text)]
            else:
                me = await self.me()
                if me.tenant_id is not None:
                    self._scope = [me.tenant_id]
                else:
                    self._scope = [t.id for t in await self.tenants()]
        return self._scope

    async def tenant_id(self, *, required: bool = True) -> str | None:
        """The one tenant of this command; UsageError if that is not clear (``required``)."""
        scope = await self.scope()
        if len(scope) == 1:
            return scope[0]
        if not required:
            return None
        if not scope:
            raise UsageError(
                "there is no tenant yet: create one with `btogether admin tenants create NAME`"
            )
        names = ", ".join(sorted(t.name for t in await self.tenants()))
        raise UsageError(
            f"you are an owner of {len(scope)} tenants ({names}): say which with --tenant"
        )

    async def _where(self) -> str:
        scope = await self.scope()
        if len(scope) != 1:
            return ""
        names = (
            {t.id: t.name for t in await self.tenants()}
            if (await self.me()).role == "owner"
            else {}
        )
        return f" in {names.get(scope[0], scope[0])}"

    async def _pick(self, kind: str, text: str, candidates: list[Candidate]) -> str:
        try:
            return pick(kind, text, candidates, await self._where())
        except (NotFound, Ambiguous) as exc:
            raise UsageError(str(exc)) from None

    async def device(self, text: str) -> str:
        if looks_like_id(text):
            return text
        return await self._pick(
            "device",
            text,
            [
                Candidate(d.id, d.name, d.mac, (d.location,), _device_detail(d))
                for d in await self.devices()
            ],
        )

    async def devices(self) -> list[aw.DeviceInfo]:
        out: list[aw.DeviceInfo] = []
        for tenant_id in await self.scope():
            out += (await self.link.typed(aw.Devices, aw.DeviceList, tenant_id=tenant_id)).devices
        return out

    async def users(self) -> list[aw.UserInfo]:
        out: list[aw.UserInfo] = []
        for tenant_id in await self.scope():
            out += (await self.link.typed(aw.Users, aw.UserList, tenant_id=tenant_id)).users
        return out

    async def user(self, text: str) -> str:
        if looks_like_id(text):
            return text
        return await self._pick("user", text, [Candidate(u.id, u.name) for u in await self.users()])

    async def policies(self) -> list[aw.PolicyInfo]:
        out: list[aw.PolicyInfo] = []
        for tenant_id in await self.scope():
            out += (await self.link.typed(aw.Policies, aw.PolicyList, tenant_id=tenant_id)).policies
        return out

    async def policy(self, text: str | None) -> str | None:
        if text is None or looks_like_id(text):
            return text
        return await self._pick(
            "policy", text, [Candidate(p.id, p.name) for p in await self.policies()]
        )


# --- running a command ------------------------------------------------------------------------

Build = Callable[
    [Lookup, argparse.Namespace], Awaitable[tuple[type[aw.AdminRequest], dict[str, Any]]]
]


def token(ns: argparse.Namespace) -> str:
    if ns.token:
        return str(ns.token)
    if os.environ.get("BTOGETHER_ADMIN_TOKEN"):
        return os.environ["BTOGETHER_ADMIN_TOKEN"]
    path = Path(ns.token_file)
    if not path.exists():
        raise UsageError(
            "no administrator credential: pass --token, set BTOGETHER_ADMIN_TOKEN or write "
            f"it to {ns.token_file} (`btogether admin bootstrap --token-file` does)"
        )
    try:
        # An owner's credential opens every tenant: refuse a file others may read, as ssh does.
        return read_text(path, MAX_TOKEN_FILE_BYTES, "credential file", private=True).strip()
    except FileProblem as exc:
        raise UsageError(str(exc)) from None


def _fields(exc: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(p) for p in e['loc']) or 'request'}: {e['msg']}" for e in exc.errors()
    )


def runner(build: Build) -> Callable[[argparse.Namespace], int]:
    """The ``func`` of a command: build its request (looking names up), send it, print."""

    def run(ns: argparse.Namespace) -> int:
        try:
            credential = token(ns)
            tls = client_tls(ns.relay, ns.ca_file)
            result, people = asyncio.run(_send(ns, credential, tls, build))
        except (UsageError, TlsSetupError) as exc:
            print(f"{PROG}: {exc}", file=sys.stderr)
            return EXIT_USAGE
        except ValidationError as exc:  # a value the request cannot carry (too long, …)
            print(f"{PROG}: bad value: {_fields(exc)}", file=sys.stderr)
            return EXIT_USAGE
        except RequestFailed as exc:
            print(f"{PROG}: refused ({exc.code.value}): {exc.message}", file=sys.stderr)
            return EXIT_REFUSED
        except InvalidStatus as exc:
            print(f"{PROG}: the relay refused the credential: {refusal(exc)}", file=sys.stderr)
            return EXIT_REFUSED
        except (OSError, TimeoutError, WebSocketException, LinkError, ValueError) as exc:
            why = why_unreachable(ns.relay, exc)
            print(f"{PROG}: cannot reach the relay at {ns.relay}: {why}", file=sys.stderr)
            return EXIT_REFUSED
        print(result.model_dump_json() if ns.json else people)
        return 0

    return run


async def _send(
    ns: argparse.Namespace, credential: str, tls: ssl.SSLContext | None, build: Build
) -> tuple[wire.Message, str]:
    async with await AdminLink.connect(ns.relay, credential, tls=tls) as link:
        lookup = Lookup(link, ns.tenant)
        kind, fields = await build(lookup, ns)
        result = await link.call(kind, **fields)
        people = "" if ns.json else await render(result, lookup)
        return result, people


# --- output for people -------------------------------------------------------------------------


def when(value: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(value))


def _cell(value: object) -> str:
    if value is None or value == "":
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float) and value > 1e9:
        return when(value)
    return str(value)


def table(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> str:
    if not rows:
        return "(none)"
    cells = [[_cell(row.get(c)) for c in columns] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(columns)]
    lines = ["  ".join(c.upper().ljust(w) for c, w in zip(columns, widths, strict=True))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)) for r in cells]
    return "\n".join(line.rstrip() for line in lines)


DEVICE_COLUMNS = ("id", "name", "mac", "kind", "state", "user", "online", "location", "locked out")
TABLES: dict[type, tuple[str, Sequence[str]]] = {
    aw.Tenants: ("tenants", ("id", "name", "default policy")),
    aw.Users: ("users", ("id", "name", "policy")),
    aw.Devices: ("devices", DEVICE_COLUMNS),
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
    aw.SsoProviders: (
        "providers",
        ("id", "tenant_id", "label", "issuer", "client_id", "has_client_secret", "enabled"),
    ),
    aw.SsoLinks: (
        "links",
        ("name", "subject_kind", "subject", "email", "signed_in_at", "checked_at", "disabled_at"),
    ),
}


async def _names(lookup: Lookup, rows: list[dict[str, Any]]) -> None:
    """Show account and policy names next to ids (people read names, not u_… ids)."""
    wants_users = any(row.get("user_id") for row in rows)
    wants_policies = any(row.get("policy_id") or row.get("default_policy_id") for row in rows)
    users = {u.id: u.name for u in await lookup.users()} if wants_users else {}
    policies = {p.id: p.name for p in await lookup.policies()} if wants_policies else {}
    for row in rows:
        if "user_id" in row:
            row["user"] = users.get(row["user_id"], row["user_id"])
        if "policy_id" in row:
            row["policy"] = policies.get(row["policy_id"], row["policy_id"])
        if "default_policy_id" in row:
            row["default policy"] = policies.get(row["default_policy_id"], row["default_policy_id"])
        if row.get("locked_out_until"):
            row["locked out"] = f"until {when(row['locked_out_until'])} ({row['lockout_reason']})"


async def render(result: wire.Message, lookup: Lookup) -> str:
    """A result as people read it: a table for lists, ``key: value`` lines otherwise."""
    data = result.model_dump()
    if isinstance(result, aw.ImportResult):
        out = [f"imported {len(result.added)} device(s)"]
        out += [f"skipped line {e.line}: {e.message}" for e in result.errors]
        if result.added:
            await _names(lookup, data["added"])
            out.append(table(data["added"], DEVICE_COLUMNS))
        return "\n".join(out)
    if isinstance(result, aw.UserEmails):
        if result.errors:
            return "\n".join(["nothing was imported:"]
                             + [f"line {e.line}: {e.message}" for e in result.errors])
        return table(data["emails"], ("user_name", "user_id", "email"))
    for kind, (key, columns) in TABLES.items():
        if isinstance(result, kind):
            if isinstance(result, aw.Tenants):
                # Policies are per tenant: an owner's tenant list names no policies.
                return table(data[key], ("id", "name"))
            await _names(lookup, data[key])
            return table(data[key], columns)
    lines = []
    for key, value in data.items():
        if isinstance(value, dict):
            lines += [f"{key}.{k}: {_cell(v)}" for k, v in value.items()]
        else:
            lines.append(f"{key}: {_cell(value)}")
    return "\n".join(lines)


# --- bootstrap -----------------------------------------------------------------------------


def bootstrap(ns: argparse.Namespace) -> int:
    return asyncio.run(_bootstrap(ns))


async def _bootstrap(ns: argparse.Namespace) -> int:
    password = None
    if ns.password_file is not None:
        try:
            password = read_password_file(ns.password_file)
        except ValueError as exc:
            print(f"{PROG}: {exc}", file=sys.stderr)
            return EXIT_USAGE
    db = display_db(ns.db)
    try:
        store = store_for(ns.db)
        accounts = accounts_for(store)
    except SettingsError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    try:
        await store.open()
    except StoreUnavailable as exc:  # the message names the database and says why
        print(f"{PROG}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except Exception as exc:  # sqlite3.Error, OSError: the file is not a database we can use
        print(f"{PROG}: cannot open the relay's database {db}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    try:
        if await store.owner_count() and not ns.another:
            print(f"{PROG}: {db} already has an owner (use --another to add one)", file=sys.stderr)
            return EXIT_REFUSED
        now = time.time()
        if password is not None and await accounts.login(ns.owner) is not None:
            print(f"{PROG}: the login {ns.owner!r} is taken", file=sys.stderr)
            return EXIT_REFUSED
        owner, credential = await bootstrap_owner(store, ns.owner, now)
        tenant = await Admin(store).create_tenant(ns.tenant) if ns.tenant else None
        if password is not None:
            await accounts.set_login(
                "admin", owner.id, ns.owner, await hash_async(password), now
            )
    finally:
        await store.close()
    if ns.token_file is not None:
        write_owner_only(ns.token_file, credential)
    login = normalize_login(ns.owner) if password is not None else None
    if ns.json:
        print(
            json.dumps(
                {
                    "owner": {"admin_id": owner.id, "name": owner.name},
                    "tenant": {"id": tenant.id, "name": tenant.name} if tenant else None,
                    "token": credential,
                    "token_file": str(ns.token_file) if ns.token_file else None,
                    "admin_center_login": login,
                }
            )
        )
        return 0
    print(f"owner: {owner.name} ({owner.id})")
    if tenant is not None:
        print(f"tenant: {tenant.name} ({tenant.id})")
    print(f"credential (shown once): {credential}")
    if login is not None:
        print(f"admin center: sign in at /admin/ as {login!r}")
    return 0


def password(path: Path) -> str:
    """The password in the first line of ``path``; UsageError says what is wrong with it."""
    try:
        return read_password_file(path)
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def write_owner_only(path: Path, secret: str) -> None:
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        os.fchmod(handle.fileno(), 0o600)
        handle.write(secret + "\n")
