"""``btogether admin``: the administrator's commands, one set for a running relay.

``btogether admin bootstrap`` creates the first owner on the relay host (on the database
file); every other command works on the running relay with an administrator credential,
checked against the administrator's role and recorded in the relay's audit log. Tenants,
accounts, devices and policies are named by id or by name (a device also by MAC address);
how a command runs and prints is :mod:`relay.cli.admin_commands`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from relay.cli.admin_commands import (
    Build,
    Lookup,
    UsageError,
    bootstrap,
    connection_options,
    password,
    runner,
)
from relay.domain.device_import import CSV_TEMPLATE, KINDS, MAX_CSV_BYTES
from relay.files import FileProblem, read_bounded, read_text
from relay.protocol import admin_wire as aw

Request = tuple[type[aw.AdminRequest], dict[str, Any]]
STATES = ("waiting_for_activation", "waiting_for_sign_in", "signed_in")
MODES = ("personal", "meeting_room", "common_area")


def _on_off(text: str) -> bool:
    if text not in ("on", "off"):
        raise argparse.ArgumentTypeError("expected on or off")
    return text == "on"


class _Tree:
    """Adds groups and commands with help and descriptions, and the connection options."""

    def __init__(self, groups: Any) -> None:
        self._groups = groups
        self._common = connection_options()

    def group(self, name: str, help_text: str, description: str) -> Any:
        parser = self._groups.add_parser(name, help=help_text, description=description)
        return parser.add_subparsers(dest="action", metavar="ACTION", required=True)

    def command(
        self, parent: Any, name: str, help_text: str, build: Build, description: str = ""
    ) -> argparse.ArgumentParser:
        parser: argparse.ArgumentParser = parent.add_parser(
            name,
            help=help_text,
            description=description or help_text[0].upper() + help_text[1:] + ".",
            parents=[self._common],
        )
        parser.set_defaults(func=runner(build))
        return parser


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Administer a relay. `bootstrap` creates the first owner on the relay host; every "
        "other command works on the running relay (--relay, default $BTOGETHER_RELAY_URL) "
        "with an administrator credential (--token, $BTOGETHER_ADMIN_TOKEN or --token-file), "
        "is checked against your role and recorded in the audit log. Tenants, accounts, "
        "devices and policies are named by id or name (devices also by MAC address); an owner "
        "with one tenant and a device administrator need no --tenant. Output is a table or "
        "`key: value` lines; --json prints the result object for scripts."
    )
    groups = parser.add_subparsers(dest="admin_group", metavar="OBJECT", required=True)
    tree = _Tree(groups)
    _bootstrap(groups)
    _top_level(groups, tree)
    _tenants(tree)
    _admins(tree)
    _users(tree)
    _credentials(tree)
    _devices(tree)
    _codes(tree)
    _policies(tree)
    _consoles(tree)
    _sso(tree)
    g = tree.group("pairings", "Better Together pairings", "Laptop and phone pairings.")
    tree.command(g, "list", "list the tenant's pairings", _scoped(aw.PairingList))


def _scoped(kind: type[aw.AdminRequest]) -> Build:
    """A request whose only field is the tenant."""

    async def build(lookup: Lookup, ns: argparse.Namespace) -> Request:
        return kind, {"tenant_id": await lookup.tenant_id()}

    return build


def _bootstrap(groups: Any) -> None:
    p = groups.add_parser(
        "bootstrap",
        help="on the relay host: create the first owner and print its credential once",
        description=(
            "Create an owner administrator in the relay's database file and print the owner's "
            "credential once (only its hash is stored). Refused if an owner exists unless "
            "--another. Optionally create a first tenant. Run it before the relay's first start."
        ),
    )
    p.add_argument(
        "--db",
        default="relay.sqlite3",
        help="the relay's database: a SQLite file (default relay.sqlite3) or postgresql://…",
    )
    p.add_argument("--owner", required=True, help="the owner's name")
    p.add_argument("--tenant", help="also create a tenant with this name (default: none)")
    p.add_argument("--another", action="store_true", help="add an owner even if one exists")
    p.add_argument(
        "--password-file",
        type=Path,
        help="give the owner this password (first line of the file) to sign in to the admin "
        "center at /admin/ with the owner's name (default: none)",
    )
    p.add_argument(
        "--token-file",
        type=Path,
        help="also write the credential to this file, owner-only (default: none)",
    )
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=bootstrap)


def _top_level(groups: Any, tree: _Tree) -> None:
    async def whoami(lookup: Lookup, ns: argparse.Namespace) -> Request:
        return aw.WhoAmI, {}

    tree.command(groups, "whoami", "show the administrator your credential belongs to", whoami)

    async def audit(lookup: Lookup, ns: argparse.Namespace) -> Request:
        # An owner naming no tenant reads every tenant's entries.
        tenant = (
            await lookup.tenant_id(required=False)
            if ns.tenant or (await lookup.me()).tenant_id
            else None
        )
        return aw.AuditList, {"tenant_id": tenant, "limit": ns.limit}

    p = tree.command(
        groups,
        "audit",
        "show the audit log: who did what, when, and the outcome (refusals too)",
        audit,
    )
    p.add_argument("--limit", type=int, default=100, help="the newest N entries, 1-1000")


def _tenants(tree: _Tree) -> None:
    g = tree.group("tenants", "tenants (owners)", "Tenants: the organisations a relay serves.")

    async def create(lookup: Lookup, ns: argparse.Namespace) -> Request:
        return aw.TenantCreate, {"name": ns.name}

    tree.command(g, "create", "create a tenant", create).add_argument("name", help="its name")
    tree.command(
        g, "list", "list tenants (a device administrator sees their own)", _plain(aw.TenantList)
    )

    async def rename(lookup: Lookup, ns: argparse.Namespace) -> Request:
        return aw.TenantRename, {"tenant_id": await lookup.tenant(ns.tenant_name), "name": ns.name}

    p = tree.command(g, "rename", "rename a tenant (its devices show the new name)", rename)
    p.add_argument("tenant_name", metavar="TENANT", help="the tenant's name or id")
    p.add_argument("name", metavar="NEW_NAME", help="its new name")

    async def delete(lookup: Lookup, ns: argparse.Namespace) -> Request:
        return aw.TenantDelete, {"tenant_id": await lookup.tenant(ns.tenant_name)}

    p = tree.command(
        g,
        "delete",
        "delete an empty tenant",
        delete,
        "Delete a tenant that has no accounts and no devices left; its policies and device "
        "administrators go with it.",
    )
    p.add_argument("tenant_name", metavar="TENANT", help="the tenant's name or id")


def _plain(kind: type[aw.AdminRequest]) -> Build:
    async def build(lookup: Lookup, ns: argparse.Namespace) -> Request:
        return kind, {}

    return build


def _admins(tree: _Tree) -> None:
    g = tree.group("admins", "administrators (owners)", "Administrators and their roles.")

    async def create(lookup: Lookup, ns: argparse.Namespace) -> Request:
        role = ns.role.replace("-", "_")
        tenant = await lookup.tenant_id() if role == "device_admin" else None
        return aw.AdminCreate, {"name": ns.name, "role": role, "tenant_id": tenant}

    p = tree.command(
        g,
        "create",
        "create an administrator; prints its credential once",
        create,
        "Create an administrator: an owner (every tenant) or a device administrator of one "
        "tenant (--tenant). Its credential is printed once.",
    )
    p.add_argument("name", help="the administrator's name")
    p.add_argument("--role", choices=["owner", "device-admin"], required=True, help="its role")
    tree.command(
        g,
        "list",
        "list administrators and their credentials (ac_…)",
        _plain(aw.AdminList),
        "List every administrator with the ids of their credentials, active or revoked. "
        "Revoke one with `btogether admin credentials revoke ac_…`: the administrator's open "
        "connections close at once.",
    )
    _sign_in_commands(tree, g, "admin", "administrator")


def _users(tree: _Tree) -> None:
    g = tree.group(
        "users",
        "user accounts",
        "Accounts: people, rooms' resource accounts and common-area accounts. Names are "
        "unique within a tenant.",
    )

    async def create(lookup: Lookup, ns: argparse.Namespace) -> Request:
        return aw.UserCreate, {
            "tenant_id": await lookup.tenant_id(),
            "name": ns.name,
            "policy_id": await lookup.policy(ns.policy),
        }

    p = tree.command(g, "create", "create an account (owners)", create)
    p.add_argument("name", help="the account's name, unique in the tenant")
    p.add_argument("--policy", help="policy name or id (default: the tenant's default)")
    tree.command(g, "list", "list the tenant's accounts", _scoped(aw.UserList))

    async def rename(lookup: Lookup, ns: argparse.Namespace) -> Request:
        return aw.UserRename, {"user_id": await lookup.user(ns.user), "name": ns.name}

    p = tree.command(g, "rename", "rename an account (owners)", rename)
    p.add_argument("user", metavar="USER", help="the account's name or id")
    p.add_argument("name", metavar="NEW_NAME", help="its new name")

    async def delete(lookup: Lookup, ns: argparse.Namespace) -> Request:
        return aw.UserDelete, {"user_id": await lookup.user(ns.user)}

    _sign_in_commands(tree, g, "user", "user")
    _email_commands(tree, g)
    p = tree.command(
        g,
        "delete",
        "delete an account (owners)",
        delete,
        "Delete an account no device is signed in as: its laptop credentials are revoked and "
        "its pairings removed.",
    )
    p.add_argument("user", metavar="USER", help="the account's name or id")


def _credentials(tree: _Tree) -> None:
    g = tree.group(
        "credentials",
        "laptop sign-in credentials (owners)",
        "Credentials a user's laptop signs in with (`btogether client login`).",
    )

    async def issue(lookup: Lookup, ns: argparse.Namespace) -> Request:
        return aw.CredentialIssue, {"user_id": await lookup.user(ns.user)}

    p = tree.command(g, "issue", "issue a credential for a user's laptop; prints it once", issue)
    p.add_argument("user", metavar="USER", help="the account's name or id")

    async def revoke(lookup: Lookup, ns: argparse.Namespace) -> Request:
        return aw.CredentialRevoke, {"credential_id": ns.credential_id}

    p = tree.command(
        g,
        "revoke",
        "revoke a credential; what it opened is closed at once",
        revoke,
        "Revoke a laptop's (c_…) or an administrator's (ac_…) credential: connections opened "
        "with it are closed at once (4001) and it is refused from then on.",
    )
    p.add_argument(
        "credential_id", metavar="CREDENTIAL", help="the credential's id (c_… or ac_…)"
    )

    async def list_(lookup: Lookup, ns: argparse.Namespace) -> Request:
        user = await lookup.user(ns.user) if ns.user is not None else None
        return aw.CredentialList, {"tenant_id": await lookup.tenant_id(), "user_id": user}

    p = tree.command(
        g,
        "list",
        "list users' laptop credentials (issued, or approved on the device login page)",
        list_,
    )
    p.add_argument("--user", metavar="USER", help="only this account's (default: everyone's)")


def _sign_in_commands(tree: _Tree, g: Any, kind: str, what: str) -> None:
    """``password`` and ``setup-link`` for administrators or users: the browser sign-in."""

    async def subject(lookup: Lookup, ns: argparse.Namespace) -> str:
        # Administrators have no list to look names up in: their id (a_…) it is.
        return await lookup.user(ns.subject) if kind == "user" else str(ns.subject)

    async def set_password(lookup: Lookup, ns: argparse.Namespace) -> Request:
        return aw.PasswordSet, {
            "subject_kind": kind,
            "subject_id": await subject(lookup, ns),
            "login": ns.login,
            "password": password(ns.password_file),
        }

    who = "the account's name or id" if kind == "user" else "the administrator's id (a_…)"
    p = tree.command(
        g,
        "password",
        f"give the {what} a login and password for the browser pages (owners)",
        set_password,
        f"Give the {what} a login and password for the browser pages (the admin center, the "
        "device login page); their browser sessions end. Owners only.",
    )
    p.add_argument("subject", metavar=what.upper(), help=who)
    p.add_argument(
        "--password-file", type=Path, required=True, help="file whose first line is the password"
    )
    p.add_argument(
        "--login", help="what they type to sign in (default: their login, else their name)"
    )

    async def setup_link(lookup: Lookup, ns: argparse.Namespace) -> Request:
        return aw.SetupLinkCreate, {
            "subject_kind": kind,
            "subject_id": await subject(lookup, ns),
            "login": ns.login,
        }

    p = tree.command(
        g,
        "setup-link",
        f"a one-time link (72 h) with which the {what} chooses a password (owners)",
        setup_link,
    )
    p.add_argument("subject", metavar=what.upper(), help=who)
    p.add_argument(
        "--login", help="what they type to sign in (default: their login, else their name)"
    )


def _devices(tree: _Tree) -> None:
    g = tree.group(
        "devices",
        "the device list: add, import, list, sign in, rename, remove",
        "Room systems, conference and desk phones: listed by MAC address, then provisioned "
        "with a verification code (`codes create`) and signed in (`devices sign-in`).",
    )

    async def add(lookup: Lookup, ns: argparse.Namespace) -> Request:
        return aw.DeviceAdd, {
            "tenant_id": await lookup.tenant_id(),
            "mac": ns.mac,
            "location": ns.location,
            "name": ns.name,
            "kind": ns.kind,
        }

    p = tree.command(g, "add", "list a device by MAC address (waiting for activation)", add)
    p.add_argument("mac", metavar="MAC", help="its Bluetooth MAC address, e.g. 00:1B:44:11:3A:B7")
    p.add_argument("--kind", choices=KINDS, required=True, help="what the device is")
    p.add_argument("--name", help="display name (default: the location, else the MAC)")
    p.add_argument("--location", default="", help="e.g. 'Building 1 / Floor 2' (default: none)")

    async def import_(lookup: Lookup, ns: argparse.Namespace) -> Request:
        return aw.DeviceImport, {
            "tenant_id": await lookup.tenant_id(),
            "csv": _read_csv(ns.file),
            "kind": ns.kind,
            "skip_bad_rows": ns.skip_bad_rows,
        }

    p = tree.command(
        g,
        "import",
        "list devices from a CSV file (see `devices template`)",
        import_,
        "List devices from a CSV file whose first row names its columns: MAC address "
        "(required), Name, Kind (room_system, conference_phone, desk_phone), Location. All or "
        "nothing unless --skip-bad-rows; every bad row is reported with its line.",
    )
    p.add_argument("file", type=Path, metavar="FILE", help="the CSV file")
    p.add_argument(
        "--kind",
        choices=KINDS,
        help="the kind of rows with no Kind (default: none; such rows are bad rows)",
    )
    p.add_argument(
        "--skip-bad-rows", action="store_true", help="import the good rows and report the bad ones"
    )
    p = g.add_parser(
        "template",
        help="print a CSV template for `devices import`",
        description="Print a CSV template for `devices import` (the columns and two rows).",
    )
    p.set_defaults(func=_template)

    async def list_(lookup: Lookup, ns: argparse.Namespace) -> Request:
        return aw.DeviceList, {"tenant_id": await lookup.tenant_id(), "state": ns.state}

    p = tree.command(
        g, "list", "list devices, online or not, with lock-outs and their reason", list_
    )
    p.add_argument("--state", choices=STATES, help="only devices in this state (default: all)")

    def one(name: str, help_text: str, kind: type[aw.AdminRequest], description: str = "") -> Any:
        async def build(lookup: Lookup, ns: argparse.Namespace) -> Request:
            return kind, {"device_id": await lookup.device(ns.device)}

        parser = tree.command(g, name, help_text, build, description)
        parser.add_argument("device", metavar="DEVICE", help="the device's name, MAC address or id")
        return parser

    one("remove", "remove a device; its credential stops working", aw.DeviceRemove)

    async def sign_in(lookup: Lookup, ns: argparse.Namespace) -> Request:
        return aw.DeviceSignIn, {
            "device_id": await lookup.device(ns.device),
            "user_id": await lookup.user(ns.user),
            "code": ns.code,
            "mode": ns.mode,
        }

    p = tree.command(
        g,
        "sign-in",
        "sign an account in to a device with its login code (`codes login` fetches it)",
        sign_in,
        "Sign an account in: a personal phone to its user, a room system to the room's "
        "resource account, a common-area device to its own account.",
    )
    p.add_argument("device", metavar="DEVICE", help="the device's name, MAC address or id")
    p.add_argument("user", metavar="USER", help="the account's name or id")
    p.add_argument("--code", required=True, help="the login code the device shows, e.g. ABCD-EFGH")
    p.add_argument(
        "--mode", choices=MODES, help="how the device runs as the account (default: by its kind)"
    )
    one("sign-out", "sign a device out (back to waiting for sign-in)", aw.DeviceSignOut)

    async def rename(lookup: Lookup, ns: argparse.Namespace) -> Request:
        return aw.DeviceRename, {
            "device_id": await lookup.device(ns.device),
            "name": ns.name,
            "location": ns.location,
        }

    p = tree.command(g, "rename", "rename a device (and move it, with --location)", rename)
    p.add_argument("device", metavar="DEVICE", help="the device's name, MAC address or id")
    p.add_argument("name", metavar="NEW_NAME", help="its new name")
    p.add_argument("--location", help="its new location (default: unchanged)")


def _email_commands(tree: _Tree, g: Any) -> None:
    """Users' emails, which their first sign-in through the tenant's identity provider
    matches (``users email``, ``users import-emails``, ``users emails``)."""

    async def email(lookup: Lookup, ns: argparse.Namespace) -> Request:
        if (ns.email is None) == (not ns.clear):
            raise UsageError("give the email, or --clear to forget it")
        return aw.UserEmailSet, {"user_id": await lookup.user(ns.user), "email": ns.email}

    p = tree.command(
        g,
        "email",
        "set the email an identity provider sign-in is matched with (owners)",
        email,
        "Import one user's email: their first sign-in through the tenant's identity provider "
        "with that (verified) email signs them in to this account and links it. Owners only.",
    )
    p.add_argument("user", metavar="USER", help="the account's name or id")
    p.add_argument("email", nargs="?", help="the email address")
    p.add_argument("--clear", action="store_true", help="forget the account's email")

    async def import_emails(lookup: Lookup, ns: argparse.Namespace) -> Request:
        return aw.UserEmailImport, {"tenant_id": await lookup.tenant_id(),
                                    "csv": _read_csv(ns.file)}

    p = tree.command(
        g,
        "import-emails",
        "import users' emails from a CSV file of account,email lines (owners)",
        import_emails,
        "Import users' emails from a CSV file whose lines are `account,email` (the account's "
        "name or id; an optional header line `account,email`). All lines or none: a bad line "
        "is reported and nothing changes.",
    )
    p.add_argument("file", type=Path, metavar="CSV", help="the CSV file")
    tree.command(g, "emails", "list the emails imported for the tenant's users",
                 _scoped(aw.UserEmailList))


def _secret_file(path: Path) -> str:
    """The first line of an owner-only file (a client secret)."""
    try:
        text = read_text(path, 64 * 1024, "client secret file", private=True)
    except FileProblem as exc:
        raise UsageError(str(exc)) from None
    lines = text.splitlines()
    secret = lines[0].strip() if lines else ""
    if not secret:
        raise UsageError(f"the client secret file {path} is empty")
    return secret


def _params(pairs: list[str]) -> dict[str, str]:
    out = {}
    for pair in pairs:
        key, eq, value = pair.partition("=")
        if not eq or not key:
            raise UsageError(f"--auth-param {pair!r}: expected NAME=VALUE")
        out[key] = value
    return out


def _sso(tree: _Tree) -> None:
    g = tree.group(
        "sso",
        "sign-in with the tenant's identity provider (OpenID Connect)",
        "The tenant's OpenID Connect provider (Entra ID, Google, Keycloak, …): people sign in "
        "to the admin center and the device login page (and so approve their laptops) with "
        "their organisation's account. Local passwords keep working beside it.",
    )

    async def set_(lookup: Lookup, ns: argparse.Namespace) -> Request:
        if ns.client_secret_file is not None and ns.no_client_secret:
            raise UsageError("give --client-secret-file or --no-client-secret, not both")
        return aw.SsoSet, {
            "tenant_id": await lookup.tenant_id(),
            "label": ns.label,
            "issuer": ns.issuer,
            "client_id": ns.client_id,
            "client_secret": (
                _secret_file(ns.client_secret_file) if ns.client_secret_file else None
            ),
            "clear_client_secret": ns.no_client_secret,
            "scopes": ns.scope or list(aw.SsoSet.model_fields["scopes"].default),
            "subject_claim": ns.subject_claim,
            "email_claim": ns.email_claim,
            "name_claim": ns.name_claim,
            "groups_claim": ns.groups_claim,
            "allowed_domains": ns.allowed_domain,
            "allowed_groups": ns.allowed_group,
            "owner_groups": ns.owner_group,
            "device_admin_groups": ns.device_admin_group,
            "create_users": ns.create_users,
            "require_verified_email": ns.require_verified_email,
            "auth_params": _params(ns.auth_param),
            "enabled": not ns.disabled,
            "check": not ns.no_check,
        }

    p = tree.command(
        g,
        "set",
        "configure (or replace) the tenant's identity provider (owners)",
        set_,
        "Configure the tenant's OpenID Connect provider; options not given take their "
        "defaults (a stored client secret is kept). The issuer's discovery document is "
        "fetched and checked first (--no-check skips that). Register the redirect URI "
        "<relay address>/oidc/callback at the provider (and <relay address>/signin as the "
        "post-logout redirect URI, if it has sign-out). Owners only.",
    )
    p.add_argument("--issuer", required=True, help="the issuer URL, exactly as the provider "
                   "writes it (the discovery document is at "
                   "<issuer>/.well-known/openid-configuration)")
    p.add_argument("--client-id", required=True, help="the relay's client id at the provider")
    p.add_argument("--client-secret-file", type=Path, metavar="FILE",
                   help="owner-only file whose first line is the client secret (default: keep "
                   "the stored one)")
    p.add_argument("--no-client-secret", action="store_true",
                   help="a public client: store no secret (PKCE only)")
    p.add_argument("--label", default=aw.SsoSet.model_fields["label"].default,
                   help="the sign-in button says “Sign in with LABEL” (default: %(default)s)")
    p.add_argument("--scope", action="append", metavar="SCOPE",
                   help="a scope to ask for, repeatable (default: openid email profile "
                   "offline_access)")
    p.add_argument("--subject-claim", default="sub",
                   help="the claim that identifies a person (default: %(default)s; Entra ID: oid)")
    p.add_argument("--email-claim", default="email", help="default: %(default)s")
    p.add_argument("--name-claim", default="name", help="default: %(default)s")
    p.add_argument("--groups-claim", default="groups", help="default: %(default)s")
    p.add_argument("--allowed-domain", action="append", default=[], metavar="DOMAIN",
                   help="only emails of this domain may sign in, repeatable (default: any)")
    p.add_argument("--allowed-group", action="append", default=[], metavar="GROUP",
                   help="only members of this group may sign in, repeatable (default: anyone)")
    p.add_argument("--owner-group", action="append", default=[], metavar="GROUP",
                   help="members become owners of the relay (every tenant), repeatable")
    p.add_argument("--device-admin-group", action="append", default=[], metavar="GROUP",
                   help="members become the tenant's device administrators, repeatable")
    p.add_argument("--create-users", type=_on_off, default=False, metavar="on|off",
                   help="create an account at a person's first sign-in (default: off: only "
                   "people whose email was imported, or already linked, get in)")
    p.add_argument("--require-verified-email", type=_on_off, default=True, metavar="on|off",
                   help="match imported emails and domains only if email_verified is true "
                   "(default: on; off for providers that do not send it, like Entra ID)")
    p.add_argument("--auth-param", action="append", default=[], metavar="NAME=VALUE",
                   help="an extra authorization parameter, repeatable (Google: "
                   "access_type=offline and prompt=consent)")
    p.add_argument("--disabled", action="store_true", help="store it but offer no button yet")
    p.add_argument("--no-check", action="store_true",
                   help="save without fetching the discovery document")
    tree.command(g, "show", "show the tenant's identity provider (an owner naming no tenant: "
                 "every tenant's)", _scoped_optional(aw.SsoList))
    tree.command(g, "remove", "remove the tenant's identity provider and its links (owners)",
                 _scoped(aw.SsoRemove))
    tree.command(
        g, "check",
        "ask the provider now whether each linked person may still sign in (owners)",
        _scoped(aw.SsoCheck),
        "Ask the provider, with each linked person's refresh token, whether it still accepts "
        "them; one it refuses (disabled, deleted, out of the allowed groups) loses their "
        "browser sessions and laptop credentials at once. The relay also does this by itself "
        "every sso_check_s seconds.",
    )
    tree.command(g, "links", "list who signs in through the provider, as whom there",
                 _scoped(aw.SsoLinkList))

    async def unlink(lookup: Lookup, ns: argparse.Namespace) -> Request:
        if ns.admin:
            return aw.SsoLinkRemove, {"subject_kind": "admin", "subject_id": ns.person}
        user = await lookup.user(ns.person)
        return aw.SsoLinkRemove, {"subject_kind": "user", "subject_id": user}

    p = tree.command(g, "unlink", "forget a person's link to their provider identity (owners)",
                     unlink)
    p.add_argument("person", metavar="PERSON", help="the account's name or id (with --admin: the "
                   "administrator's id, a_…)")
    p.add_argument("--admin", action="store_true", help="PERSON is an administrator")


def _scoped_optional(kind: type[aw.AdminRequest]) -> Build:
    """A request whose only field is the tenant, which an owner may leave out (all)."""

    async def build(lookup: Lookup, ns: argparse.Namespace) -> Request:
        return kind, {"tenant_id": await lookup.tenant_id(required=False)
                      if ns.tenant or (await lookup.me()).tenant_id else None}

    return build


def _read_csv(path: Path) -> str:
    try:
        data = read_bounded(path, MAX_CSV_BYTES, "CSV file")  # /dev/zero included
    except FileProblem as exc:
        raise UsageError(str(exc)) from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise UsageError(f"{path} is not UTF-8 text") from None


def _template(ns: argparse.Namespace) -> int:
    sys.stdout.write(CSV_TEMPLATE)
    return 0


def _codes(tree: _Tree) -> None:
    g = tree.group(
        "codes",
        "verification codes (provisioning) and login codes (sign-in)",
        "Codes: the 6-digit verification code typed on a device to provision it, and the "
        "login code a provisioned device shows for signing an account in.",
    )
    for name, kind, help_text in (
        (
            "create",
            aw.CodeCreate,
            "a 6-digit verification code for a device, valid 24 h, single use; a new one "
            "voids the old",
        ),
        (
            "login",
            aw.LoginCodeGet,
            "fetch the login code a connected device waiting for sign-in shows",
        ),
    ):

        def build_for(kind: type[aw.AdminRequest]) -> Build:
            async def build(lookup: Lookup, ns: argparse.Namespace) -> Request:
                return kind, {"device_id": await lookup.device(ns.device)}

            return build

        p = tree.command(g, name, help_text, build_for(kind))
        p.add_argument("device", metavar="DEVICE", help="the device's name, MAC address or id")


def _policy_options(p: argparse.ArgumentParser, *, creating: bool) -> None:
    unchanged = "unchanged" if not creating else None
    p.add_argument(
        "--better-together",
        choices=["Enabled", "Disabled"],
        help=f"AllowBetterTogether (default: {unchanged or 'Enabled'})",
    )
    p.add_argument(
        "--proximity-join",
        choices=["auto", "prompt", "off"],
        help="rooms: accept joins at once, prompt on the room, or refuse "
        f"(default: {unchanged or 'auto'})",
    )
    p.add_argument(
        "--beaconing",
        type=_on_off,
        metavar="on|off",
        help=f"whether devices advertise (default: {unchanged or 'on'})",
    )
    p.add_argument(
        "--auto-confirm",
        type=_on_off,
        metavar="on|off",
        help=f"unattended devices accept prompts themselves (default: {unchanged or 'off'})",
    )


def _policy_fields(ns: argparse.Namespace, *, creating: bool) -> dict[str, Any]:
    fields = {
        "allow_better_together": ns.better_together,
        "proximity_join": ns.proximity_join,
        "beaconing": ns.beaconing,
        "auto_confirm": ns.auto_confirm,
    }
    return {k: v for k, v in fields.items() if v is not None} if creating else fields


def _policies(tree: _Tree) -> None:
    g = tree.group(
        "policies",
        "named policies: create, update, assign, list, rename, delete",
        "Policies: what accounts and devices may do (Better Together, proximity join, "
        "beaconing, auto-confirm). Connected devices are told of every change at once.",
    )

    async def create(lookup: Lookup, ns: argparse.Namespace) -> Request:
        return aw.PolicyCreate, {
            "tenant_id": await lookup.tenant_id(),
            "name": ns.name,
            **_policy_fields(ns, creating=True),
            "default": ns.default,
        }

    p = tree.command(g, "create", "create a policy", create)
    p.add_argument("name", help="its name, unique in the tenant")
    _policy_options(p, creating=True)
    p.add_argument("--default", action="store_true", help="make it the tenant's default")

    async def update(lookup: Lookup, ns: argparse.Namespace) -> Request:
        return aw.PolicyUpdate, {
            "policy_id": await lookup.policy(ns.policy),
            **_policy_fields(ns, creating=False),
        }

    p = tree.command(g, "update", "change a policy (connected devices are told at once)", update)
    p.add_argument("policy", metavar="POLICY", help="the policy's name or id")
    _policy_options(p, creating=False)

    async def assign(lookup: Lookup, ns: argparse.Namespace) -> Request:
        if ns.kind == "tenant":
            subject = await lookup.tenant(ns.subject)
        elif ns.kind == "device":
            subject = await lookup.device(ns.subject)
        else:
            subject = await lookup.user(ns.subject)
        return aw.PolicyAssign, {
            "subject_kind": ns.kind,
            "subject_id": subject,
            "policy_id": await lookup.policy(ns.policy),
        }

    p = tree.command(
        g,
        "assign",
        "give a user, a device or a tenant (its default) a policy",
        assign,
        "Give an account, a device, or a tenant (as its default) a policy; without --policy "
        "the assignment is cleared.",
    )
    p.add_argument("kind", choices=["user", "device", "tenant"], help="what gets the policy")
    p.add_argument("subject", metavar="SUBJECT", help="its name or id (a device: also its MAC)")
    p.add_argument("--policy", help="policy name or id (default: none, which clears it)")
    tree.command(g, "list", "show the tenant's policies", _scoped(aw.PolicyList))

    async def rename(lookup: Lookup, ns: argparse.Namespace) -> Request:
        return aw.PolicyRename, {"policy_id": await lookup.policy(ns.policy), "name": ns.name}

    p = tree.command(g, "rename", "rename a policy", rename)
    p.add_argument("policy", metavar="POLICY", help="the policy's name or id")
    p.add_argument("name", metavar="NEW_NAME", help="its new name")

    async def delete(lookup: Lookup, ns: argparse.Namespace) -> Request:
        return aw.PolicyDelete, {"policy_id": await lookup.policy(ns.policy)}

    p = tree.command(
        g,
        "delete",
        "delete a policy",
        delete,
        "Delete a policy: the accounts, devices and tenant default that had it fall back to "
        "the tenant's default (or the built-in one).",
    )
    p.add_argument("policy", metavar="POLICY", help="the policy's name or id")


def _consoles(tree: _Tree) -> None:
    g = tree.group(
        "consoles",
        "touch consoles paired to room systems",
        "Touch consoles: provisioned devices that control a room system.",
    )

    async def pair(lookup: Lookup, ns: argparse.Namespace) -> Request:
        return aw.ConsolePair, {
            "console_id": await lookup.device(ns.console),
            "room_id": await lookup.device(ns.room),
        }

    p = tree.command(g, "pair", "pair a console with a room system", pair)
    p.add_argument("console", metavar="CONSOLE", help="the console's name, MAC address or id")
    p.add_argument("room", metavar="ROOM", help="the room system's name, MAC address or id")

    async def unpair(lookup: Lookup, ns: argparse.Namespace) -> Request:
        return aw.ConsoleUnpair, {"console_id": await lookup.device(ns.console)}

    p = tree.command(g, "unpair", "unpair a console", unpair)
    p.add_argument("console", metavar="CONSOLE", help="the console's name, MAC address or id")
    tree.command(g, "list", "list the tenant's consoles", _scoped(aw.ConsoleList))
