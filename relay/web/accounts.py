"""What the browser side keeps: logins, set-up links, sessions, the sign-in throttle,
laptops' device-authorisation grants, and sign-in through tenants' identity providers
(their configuration, people's links to their provider identity, sign-ins under way,
imported emails) — one small interface and its SQLite implementation.

:class:`Accounts` is the interface the web layer depends on; :class:`SqliteAccounts`
implements it on the relay's SQLite file (tables of schema version 3, see
:mod:`relay.storage.sqlite_store`), through that store's group-committing writer. A PostgreSQL
store implements the same interface. The SQL stays portable (``ON CONFLICT``, no
``INSERT OR REPLACE``), and every write that must be race-free across relay processes is
one conditional statement: a set-up link or a device grant is used once because its
``UPDATE … WHERE used_at IS NULL`` (or ``status = …``) matches once.

Secrets are stored only hashed: session tokens, set-up link tokens and device codes are
256-bit random values hashed with SHA-256 (as connection credentials are); user codes
are hashed too; passwords are scrypt hashes (:mod:`relay.web.passwords`); an identity
provider sign-in's state is stored hashed and used once. A provider's client secret and
people's provider refresh tokens must be usable by the relay, so they are stored as they
are, in the database the relay keeps owner-only (never sent back by any request).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from relay.domain.model import AdminRecord, AdminRole, Credential, User
from relay.domain.store import StoreConflict
from relay.storage import store_rows
from relay.storage.sqlite_store import SqliteStore
from relay.storage.sqlite_writer import Op
from relay.web.sso_core import ProviderRecord

SubjectKind = Literal["admin", "user"]
GrantStatus = Literal["pending", "approved", "denied", "delivered"]


def normalize_login(text: str) -> str:
    """How a login is compared: surrounding space dropped, inner runs of space as one,
    case-folded (``"Olivia  Owner "`` and ``"olivia owner"`` are the same login)."""
    return " ".join(text.split()).casefold()


@dataclass(frozen=True, slots=True)
class LoginRecord:
    login: str
    subject_kind: SubjectKind
    subject_id: str
    password_hash: str | None
    updated_at: float


@dataclass(frozen=True, slots=True)
class SetupLinkRecord:
    token_hash: bytes
    subject_kind: SubjectKind
    subject_id: str
    login: str
    created_at: float
    expires_at: float
    used_at: float | None = None


@dataclass(frozen=True, slots=True)
class SessionRecord:
    token_hash: bytes
    subject_kind: SubjectKind
    subject_id: str
    csrf: str
    method: str
    created_at: float
    seen_at: float
    expires_at: float


@dataclass(frozen=True, slots=True)
class FailureRecord:
    key: str
    failures: int
    first_at: float
    locked_until: float | None = None


@dataclass(frozen=True, slots=True)
class GrantRecord:
    device_code_hash: bytes
    user_code_hash: str
    client_name: str
    created_at: float
    expires_at: float
    status: GrantStatus = "pending"
    polled_at: float | None = None
    user_id: str | None = None
    tenant_id: str | None = None
    credential_id: str | None = None


@dataclass(frozen=True, slots=True)
class LaptopCredential:
    """A user's laptop credential as the admin center lists it."""

    credential: Credential
    client_name: str | None  # from the device-code sign-in that made it, if one did


@dataclass(frozen=True, slots=True)
class SsoRequestRecord:
    """An identity provider sign-in under way: what the callback must find (by the state's
    hash) and check — the browser that started it, the nonce, the PKCE verifier."""

    state_hash: bytes
    provider_id: str
    nonce: str
    code_verifier: str
    redirect_uri: str
    next_path: str
    browser_hash: bytes
    created_at: float
    expires_at: float


@dataclass(frozen=True, slots=True)
class SsoLinkRecord:
    """A person (an administrator or a user) and their identity at a tenant's provider."""

    provider_id: str
    subject: str
    subject_kind: SubjectKind
    subject_id: str
    tenant_id: str
    email: str | None
    created_at: float
    signed_in_at: float | None = None
    refresh_token: str | None = None
    checked_at: float | None = None
    disabled_at: float | None = None  # the provider no longer accepts them


class LoginTaken(StoreConflict):
    """Another person already signs in with this login."""


class EmailTaken(StoreConflict):
    """Another account of the tenant already has this email."""


class Accounts(Protocol):
    # --- people ---------------------------------------------------------------------------
    async def admin(self, admin_id: str) -> AdminRecord | None: ...

    # --- logins ---------------------------------------------------------------------------
    async def login(self, login: str) -> LoginRecord | None: ...
    async def login_of(self, subject_kind: SubjectKind, subject_id: str) -> LoginRecord | None: ...
    async def set_login(
        self,
        subject_kind: SubjectKind,
        subject_id: str,
        login: str,
        password_hash: str | None,
        now: float,
    ) -> None:
        """Give a person a login (and password hash, or none until a set-up link is used);
        raises :class:`LoginTaken` if another person has that login."""
        ...

    async def add_setup_link(self, link: SetupLinkRecord) -> None: ...
    async def setup_link(self, token_hash: bytes) -> SetupLinkRecord | None: ...
    async def redeem_setup_link(self, token_hash: bytes, password_hash: str, now: float) -> bool:
        """Use the link once (unexpired) and set its person's password; False if it was
        used, expired or unknown."""
        ...

    # --- sessions -------------------------------------------------------------------------
    async def add_session(self, session: SessionRecord) -> None: ...
    async def session(self, token_hash: bytes) -> SessionRecord | None: ...
    async def touch_session(self, token_hash: bytes, seen_at: float, expires_at: float) -> None: ...
    async def end_session(self, token_hash: bytes) -> None: ...
    async def end_sessions(self, subject_kind: SubjectKind, subject_id: str) -> int: ...

    # --- sign-in throttle ---------------------------------------------------------------
    async def failures(self, key: str) -> FailureRecord | None: ...
    async def put_failures(self, record: FailureRecord) -> None: ...
    async def clear_failures(self, key: str) -> None: ...

    # --- device authorisation grants (laptops) ------------------------------------------------
    async def add_grant(self, grant: GrantRecord) -> None: ...
    async def grant_by_user_code(self, user_code_hash: str) -> GrantRecord | None: ...
    async def grant_by_device_code(self, device_code_hash: bytes) -> GrantRecord | None: ...
    async def decide_grant(
        self,
        user_code_hash: str,
        status: Literal["approved", "denied"],
        user_id: str,
        tenant_id: str,
        now: float,
    ) -> bool:
        """Approve or deny a pending, unexpired grant once; False otherwise."""
        ...

    async def mark_polled(self, device_code_hash: bytes, now: float) -> None: ...
    async def deliver_grant(self, device_code_hash: bytes, credential: Credential) -> bool:
        """Mark an approved grant delivered and store its credential (for the approving
        user and tenant), once; False if it is not (or no longer) approved."""
        ...

    async def laptop_credentials(
        self, tenant_id: str, user_id: str | None
    ) -> list[LaptopCredential]: ...

    # --- identity providers (one per tenant) ----------------------------------------------------
    async def sso_providers(self, tenant_id: str | None = None) -> list[ProviderRecord]: ...
    async def sso_provider(self, provider_id: str) -> ProviderRecord | None: ...
    async def put_sso_provider(self, provider: ProviderRecord) -> None:
        """Add or replace (by id) a provider; :class:`StoreConflict` if the tenant has
        another one, or another tenant uses the same issuer and client id."""
        ...

    async def remove_sso_provider(self, provider_id: str) -> bool:
        """Remove a provider with its links and sign-ins under way; False if unknown."""
        ...

    async def claim_sso_check(self, provider_id: str, now: float, every_s: float) -> bool:
        """Take the turn to check the provider's people (once per ``every_s`` across relay
        processes: a conditional update)."""
        ...

    # --- sign-ins under way ------------------------------------------------------------------
    async def add_sso_request(self, request: SsoRequestRecord) -> None: ...
    async def take_sso_request(
        self, state_hash: bytes, browser_hash: bytes, now: float
    ) -> SsoRequestRecord | None:
        """The sign-in with this state started by this browser, marked used (once,
        unexpired); None otherwise (a state presented by another browser stays usable)."""
        ...

    # --- people's links to their provider identity ----------------------------------------------
    async def sso_link(
        self, provider_id: str, subject: str, subject_kind: SubjectKind
    ) -> SsoLinkRecord | None: ...
    async def sso_link_of(
        self, subject_kind: SubjectKind, subject_id: str
    ) -> SsoLinkRecord | None: ...
    async def sso_links(
        self, *, tenant_id: str | None = None, provider_id: str | None = None
    ) -> list[SsoLinkRecord]: ...
    async def put_sso_link(self, link: SsoLinkRecord) -> None:
        """Add or update a link (by provider, subject and kind); :class:`StoreConflict` if
        the person is linked to another identity."""
        ...

    async def add_sso_user(self, user: User, link: SsoLinkRecord) -> None:
        """Create a user and its link in one transaction (both or neither)."""
        ...

    async def add_sso_admin(self, admin: AdminRecord, link: SsoLinkRecord) -> None:
        """Create an administrator (no command-line credential) and its link at once."""
        ...

    async def set_admin_role(self, admin_id: str, role: AdminRole, tenant_id: str | None) -> None:
        ...

    async def remove_sso_link(self, subject_kind: SubjectKind, subject_id: str) -> bool: ...
    async def sso_checked(
        self,
        link: SsoLinkRecord,
        now: float,
        *,
        refresh_token: str | None,
        disabled: bool,
    ) -> None:
        """Record a check of a link: a new refresh token if the provider rotated it, and
        whether the provider still accepts the person."""
        ...

    # --- emails administrators imported (per tenant) --------------------------------------------
    async def user_emails(self, tenant_id: str) -> dict[str, str]:
        """user id → email."""
        ...

    async def user_by_email(self, tenant_id: str, email: str) -> str | None: ...
    async def set_user_emails(self, tenant_id: str, emails: dict[str, str | None]) -> None:
        """Set (or clear, with None) users' emails in one transaction; :class:`EmailTaken`
        if another account of the tenant has one of them."""
        ...


def _login(row: Any) -> LoginRecord:
    return LoginRecord(
        row["login"], row["subject_kind"], row["subject_id"], row["password_hash"],
        row["updated_at"],
    )


def _grant(row: Any) -> GrantRecord:
    return GrantRecord(
        device_code_hash=bytes(row["device_code_hash"]),
        user_code_hash=row["user_code_hash"],
        client_name=row["client_name"],
        created_at=row["created_at"],
        expires_at=row["expires_at"],
        status=row["status"],
        polled_at=row["polled_at"],
        user_id=row["user_id"],
        tenant_id=row["tenant_id"],
        credential_id=row["credential_id"],
    )


def provider_from_row(row: Any) -> ProviderRecord:
    return ProviderRecord(
        id=row["id"],
        tenant_id=row["tenant_id"],
        label=row["label"],
        issuer=row["issuer"],
        client_id=row["client_id"],
        client_secret=row["client_secret"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        enabled=bool(row["enabled"]),
        checked_at=row["checked_at"],
        **ProviderRecord.settings_from_json(row["settings"]),
    )


def link_from_row(row: Any) -> SsoLinkRecord:
    return SsoLinkRecord(
        provider_id=row["provider_id"],
        subject=row["subject"],
        subject_kind=row["subject_kind"],
        subject_id=row["subject_id"],
        tenant_id=row["tenant_id"],
        email=row["email"],
        created_at=row["created_at"],
        signed_in_at=row["signed_in_at"],
        refresh_token=row["refresh_token"],
        checked_at=row["checked_at"],
        disabled_at=row["disabled_at"],
    )


_LINK_COLUMNS = (
    "provider_id, subject, subject_kind, subject_id, tenant_id, email, created_at,"
    " signed_in_at, refresh_token, checked_at, disabled_at"
)
PUT_LINK_SQL = (
    f"INSERT INTO web_sso_links ({_LINK_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"  # noqa: S608
    " ON CONFLICT (provider_id, subject, subject_kind) DO UPDATE SET"
    " subject_id = excluded.subject_id, tenant_id = excluded.tenant_id,"
    " email = excluded.email, signed_in_at = excluded.signed_in_at,"
    " refresh_token = excluded.refresh_token, checked_at = excluded.checked_at,"
    " disabled_at = excluded.disabled_at"
)


def link_params(link: SsoLinkRecord) -> tuple[Any, ...]:
    return (
        link.provider_id,
        link.subject,
        link.subject_kind,
        link.subject_id,
        link.tenant_id,
        link.email,
        link.created_at,
        link.signed_in_at,
        link.refresh_token,
        link.checked_at,
        link.disabled_at,
    )


class SsoRecords:
    """The identity provider records of :class:`Accounts`, written once for every backend:
    the SQL is portable and uses ``?`` placeholders, which each backend's three helpers
    adapt (and a backend that locks its directory before adding a user says how)."""

    _directory_lock: tuple[tuple[str, Sequence[Any], bool], ...] = ()

    async def _ops(self, *ops: tuple[str, Sequence[Any], bool]) -> list[int]:
        raise NotImplementedError

    async def _read_one(self, sql: str, *params: Any) -> Any:
        raise NotImplementedError

    async def _read_all(self, sql: str, *params: Any) -> list[Any]:
        raise NotImplementedError

    # --- identity providers ---------------------------------------------------------------------
    async def sso_providers(self, tenant_id: str | None = None) -> list[ProviderRecord]:
        if tenant_id is None:
            rows = await self._read_all("SELECT * FROM web_sso_providers ORDER BY label, id")
        else:
            rows = await self._read_all(
                "SELECT * FROM web_sso_providers WHERE tenant_id = ?", tenant_id
            )
        return [provider_from_row(r) for r in rows]

    async def sso_provider(self, provider_id: str) -> ProviderRecord | None:
        row = await self._read_one("SELECT * FROM web_sso_providers WHERE id = ?", provider_id)
        return provider_from_row(row) if row else None

    async def put_sso_provider(self, provider: ProviderRecord) -> None:
        await self._ops(
            (
                "INSERT INTO web_sso_providers (id, tenant_id, label, issuer, client_id,"
                " client_secret, settings, enabled, created_at, updated_at, checked_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, NULL) ON CONFLICT (id) DO UPDATE SET"
                " label = excluded.label, issuer = excluded.issuer,"
                " client_id = excluded.client_id, client_secret = excluded.client_secret,"
                " settings = excluded.settings, enabled = excluded.enabled,"
                " updated_at = excluded.updated_at",
                (
                    provider.id,
                    provider.tenant_id,
                    provider.label,
                    provider.issuer,
                    provider.client_id,
                    provider.client_secret,
                    provider.settings_json(),
                    int(provider.enabled),
                    provider.created_at,
                    provider.updated_at,
                ),
                False,
            )
        )

    async def remove_sso_provider(self, provider_id: str) -> bool:
        removed, *_ = await self._ops(
            ("DELETE FROM web_sso_providers WHERE id = ?", (provider_id,), False),
            ("DELETE FROM web_sso_links WHERE provider_id = ?", (provider_id,), False),
            ("DELETE FROM web_sso_requests WHERE provider_id = ?", (provider_id,), False),
        )
        return removed == 1

    async def claim_sso_check(self, provider_id: str, now: float, every_s: float) -> bool:
        (count,) = await self._ops(
            (
                "UPDATE web_sso_providers SET checked_at = ? WHERE id = ?"
                " AND (checked_at IS NULL OR checked_at <= ?)",
                (now, provider_id, now - every_s),
                False,
            )
        )
        return count == 1

    # --- sign-ins under way ----------------------------------------------------------------------
    async def add_sso_request(self, request: SsoRequestRecord) -> None:
        await self._ops(
            # Old ones go as new ones come: the table holds only the last few minutes.
            ("DELETE FROM web_sso_requests WHERE expires_at < ?", (request.created_at,), False),
            (
                "INSERT INTO web_sso_requests (state_hash, provider_id, nonce, code_verifier,"
                " redirect_uri, next_path, browser_hash, created_at, expires_at, used_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, NULL)",
                (
                    request.state_hash,
                    request.provider_id,
                    request.nonce,
                    request.code_verifier,
                    request.redirect_uri,
                    request.next_path,
                    request.browser_hash,
                    request.created_at,
                    request.expires_at,
                ),
                False,
            ),
        )

    async def take_sso_request(
        self, state_hash: bytes, browser_hash: bytes, now: float
    ) -> SsoRequestRecord | None:
        (count,) = await self._ops(
            (
                "UPDATE web_sso_requests SET used_at = ? WHERE state_hash = ?"
                " AND browser_hash = ? AND used_at IS NULL AND expires_at > ?",
                (now, state_hash, browser_hash, now),
                False,
            )
        )
        if count != 1:
            return None
        row = await self._read_one(
            "SELECT * FROM web_sso_requests WHERE state_hash = ?", state_hash
        )
        if row is None:
            return None
        return SsoRequestRecord(
            bytes(row["state_hash"]),
            row["provider_id"],
            row["nonce"],
            row["code_verifier"],
            row["redirect_uri"],
            row["next_path"],
            bytes(row["browser_hash"]),
            row["created_at"],
            row["expires_at"],
        )

    # --- links -----------------------------------------------------------------------------------
    async def sso_link(
        self, provider_id: str, subject: str, subject_kind: SubjectKind
    ) -> SsoLinkRecord | None:
        row = await self._read_one(
            "SELECT * FROM web_sso_links WHERE provider_id = ? AND subject = ?"
            " AND subject_kind = ?",
            provider_id,
            subject,
            subject_kind,
        )
        return link_from_row(row) if row else None

    async def sso_link_of(
        self, subject_kind: SubjectKind, subject_id: str
    ) -> SsoLinkRecord | None:
        row = await self._read_one(
            "SELECT * FROM web_sso_links WHERE subject_kind = ? AND subject_id = ?",
            subject_kind,
            subject_id,
        )
        return link_from_row(row) if row else None

    async def sso_links(
        self, *, tenant_id: str | None = None, provider_id: str | None = None
    ) -> list[SsoLinkRecord]:
        sql, params = "SELECT * FROM web_sso_links WHERE 1 = 1", []
        if tenant_id is not None:
            sql += " AND tenant_id = ?"
            params.append(tenant_id)
        if provider_id is not None:
            sql += " AND provider_id = ?"
            params.append(provider_id)
        rows = await self._read_all(sql + " ORDER BY created_at, subject", *params)
        return [link_from_row(r) for r in rows]

    async def put_sso_link(self, link: SsoLinkRecord) -> None:
        await self._ops((PUT_LINK_SQL, link_params(link), False))

    async def add_sso_user(self, user: User, link: SsoLinkRecord) -> None:
        await self._ops(
            *self._directory_lock,
            (
                "INSERT INTO users (id, tenant_id, name, policy_id) VALUES (?, ?, ?, ?)",
                (user.id, user.tenant_id, user.name, user.policy_id),
                False,
            ),
            (PUT_LINK_SQL, link_params(link), False),
        )

    async def add_sso_admin(self, admin: AdminRecord, link: SsoLinkRecord) -> None:
        await self._ops(
            (
                "INSERT INTO admins (id, name, role, tenant_id, created_at) VALUES (?, ?, ?, ?, ?)",
                (admin.id, admin.name, admin.role, admin.tenant_id, admin.created_at),
                False,
            ),
            (PUT_LINK_SQL, link_params(link), False),
        )

    async def set_admin_role(self, admin_id: str, role: AdminRole, tenant_id: str | None) -> None:
        await self._ops(
            (
                "UPDATE admins SET role = ?, tenant_id = ? WHERE id = ?",
                (role, tenant_id, admin_id),
                False,
            )
        )

    async def remove_sso_link(self, subject_kind: SubjectKind, subject_id: str) -> bool:
        (count,) = await self._ops(
            (
                "DELETE FROM web_sso_links WHERE subject_kind = ? AND subject_id = ?",
                (subject_kind, subject_id),
                False,
            )
        )
        return count == 1

    async def sso_checked(
        self,
        link: SsoLinkRecord,
        now: float,
        *,
        refresh_token: str | None,
        disabled: bool,
    ) -> None:
        await self._ops(
            (
                "UPDATE web_sso_links SET checked_at = ?,"
                " refresh_token = COALESCE(?, refresh_token),"
                " disabled_at = CASE WHEN ? = 1 THEN COALESCE(disabled_at, ?) ELSE NULL END"
                " WHERE provider_id = ? AND subject = ? AND subject_kind = ?",
                (
                    now,
                    refresh_token,
                    int(disabled),
                    now,
                    link.provider_id,
                    link.subject,
                    link.subject_kind,
                ),
                False,
            )
        )

    # --- imported emails -------------------------------------------------------------------------
    async def user_emails(self, tenant_id: str) -> dict[str, str]:
        rows = await self._read_all(
            "SELECT e.user_id, e.email FROM web_user_emails e JOIN users u ON u.id = e.user_id"
            " WHERE e.tenant_id = ?",
            tenant_id,
        )
        return {r["user_id"]: r["email"] for r in rows}

    async def user_by_email(self, tenant_id: str, email: str) -> str | None:
        row = await self._read_one(
            "SELECT e.user_id FROM web_user_emails e JOIN users u ON u.id = e.user_id"
            " WHERE e.tenant_id = ? AND e.email = ? AND u.tenant_id = ?",
            tenant_id,
            email,
            tenant_id,
        )
        return row["user_id"] if row else None

    async def set_user_emails(self, tenant_id: str, emails: dict[str, str | None]) -> None:
        ops: list[tuple[str, Sequence[Any], bool]] = [
            # Rows of deleted accounts would hold their addresses forever.
            (
                "DELETE FROM web_user_emails WHERE tenant_id = ?"
                " AND user_id NOT IN (SELECT id FROM users)",
                (tenant_id,),
                False,
            ),
            (
                "DELETE FROM web_user_emails WHERE user_id = ?",
                [(user_id,) for user_id in emails],
                True,
            ),
            (
                "INSERT INTO web_user_emails (tenant_id, email, user_id) VALUES (?, ?, ?)",
                [(tenant_id, email, user_id) for user_id, email in emails.items() if email],
                True,
            ),
        ]
        try:
            await self._ops(*ops)
        except StoreConflict:
            raise EmailTaken("another account of this tenant has that email") from None


_SESSION_COLUMNS = (
    "token_hash, subject_kind, subject_id, csrf, method, created_at, seen_at, expires_at"
)


class SqliteAccounts(SsoRecords):
    """:class:`Accounts` on the relay's SQLite store (same file, same writer)."""

    def __init__(self, store: SqliteStore) -> None:
        self.store = store

    # The store's private read and write helpers are this class's way in: it is the same
    # database, and a second writer connection would defeat group commit.
    async def _write(self, *ops: tuple[str, Sequence[Any], bool]) -> list[int]:
        outcomes = await self.store._write(*(Op(sql, params, many) for sql, params, many in ops))
        return [o if isinstance(o, int) else len(o) for o in outcomes]

    def _one(self, sql: str, *params: Any) -> Any:
        return self.store._one(sql, *params)

    def _all(self, sql: str, *params: Any) -> list[Any]:
        return self.store._all(sql, *params)

    async def _ops(self, *ops: tuple[str, Sequence[Any], bool]) -> list[int]:
        return await self._write(*ops)

    async def _read_one(self, sql: str, *params: Any) -> Any:
        return self._one(sql, *params)

    async def _read_all(self, sql: str, *params: Any) -> list[Any]:
        return self._all(sql, *params)

    # --- people -------------------------------------------------------------------------------
    async def admin(self, admin_id: str) -> AdminRecord | None:
        row = self._one("SELECT * FROM admins WHERE id = ?", admin_id)
        if row is None:
            return None
        return AdminRecord(row["id"], row["name"], row["role"], row["tenant_id"], row["created_at"])

    # --- logins -------------------------------------------------------------------------------
    async def login(self, login: str) -> LoginRecord | None:
        row = self._one("SELECT * FROM web_logins WHERE login = ?", normalize_login(login))
        return _login(row) if row else None

    async def login_of(self, subject_kind: SubjectKind, subject_id: str) -> LoginRecord | None:
        row = self._one(
            "SELECT * FROM web_logins WHERE subject_kind = ? AND subject_id = ?",
            subject_kind,
            subject_id,
        )
        return _login(row) if row else None

    async def set_login(
        self,
        subject_kind: SubjectKind,
        subject_id: str,
        login: str,
        password_hash: str | None,
        now: float,
    ) -> None:
        key = normalize_login(login)
        holder = await self.login(key)
        if holder is not None and (holder.subject_kind, holder.subject_id) != (
            subject_kind,
            subject_id,
        ):
            raise LoginTaken(f"the login {key!r} is taken")
        try:
            await self._write(
                (
                    "INSERT INTO web_logins (login, subject_kind, subject_id, password_hash,"
                    " updated_at) VALUES (?, ?, ?, ?, ?) ON CONFLICT (subject_kind, subject_id)"
                    " DO UPDATE SET login = excluded.login,"
                    " password_hash = excluded.password_hash, updated_at = excluded.updated_at",
                    (key, subject_kind, subject_id, password_hash, now),
                    False,
                )
            )
        except StoreConflict:  # taken meanwhile, by another relay process
            raise LoginTaken(f"the login {key!r} is taken") from None

    async def add_setup_link(self, link: SetupLinkRecord) -> None:
        await self._write(
            (
                "INSERT INTO web_setup_links (token_hash, subject_kind, subject_id, login,"
                " created_at, expires_at, used_at) VALUES (?, ?, ?, ?, ?, ?, NULL)",
                (
                    link.token_hash,
                    link.subject_kind,
                    link.subject_id,
                    normalize_login(link.login),
                    link.created_at,
                    link.expires_at,
                ),
                False,
            )
        )

    async def setup_link(self, token_hash: bytes) -> SetupLinkRecord | None:
        row = self._one("SELECT * FROM web_setup_links WHERE token_hash = ?", token_hash)
        if row is None:
            return None
        return SetupLinkRecord(
            bytes(row["token_hash"]),
            row["subject_kind"],
            row["subject_id"],
            row["login"],
            row["created_at"],
            row["expires_at"],
            row["used_at"],
        )

    async def redeem_setup_link(self, token_hash: bytes, password_hash: str, now: float) -> bool:
        used, set_ = await self._write(
            (
                "UPDATE web_setup_links SET used_at = ?"
                " WHERE token_hash = ? AND used_at IS NULL AND expires_at > ?",
                (now, token_hash, now),
                False,
            ),
            (
                "INSERT INTO web_logins (login, subject_kind, subject_id, password_hash,"
                " updated_at) SELECT login, subject_kind, subject_id, ?, ? FROM web_setup_links"
                # changes(): only if the UPDATE above used the link (a redemption that lost
                # a race at the same instant must not set its password anyway).
                " WHERE token_hash = ? AND used_at = ? AND changes() = 1"
                " ON CONFLICT (subject_kind, subject_id)"
                " DO UPDATE SET login = excluded.login, password_hash = excluded.password_hash,"
                " updated_at = excluded.updated_at",
                (password_hash, now, token_hash, now),
                False,
            ),
        )
        return used == 1 and set_ == 1

    # --- sessions -------------------------------------------------------------------------------
    async def add_session(self, session: SessionRecord) -> None:
        await self._write(
            (
                f"INSERT INTO web_sessions ({_SESSION_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",  # noqa: S608
                (
                    session.token_hash,
                    session.subject_kind,
                    session.subject_id,
                    session.csrf,
                    session.method,
                    session.created_at,
                    session.seen_at,
                    session.expires_at,
                ),
                False,
            )
        )

    async def session(self, token_hash: bytes) -> SessionRecord | None:
        row = self._one(
            f"SELECT {_SESSION_COLUMNS} FROM web_sessions WHERE token_hash = ?",  # noqa: S608
            token_hash,
        )
        if row is None:
            return None
        return SessionRecord(
            bytes(row["token_hash"]),
            row["subject_kind"],
            row["subject_id"],
            row["csrf"],
            row["method"],
            row["created_at"],
            row["seen_at"],
            row["expires_at"],
        )

    async def touch_session(self, token_hash: bytes, seen_at: float, expires_at: float) -> None:
        await self._write(
            (
                "UPDATE web_sessions SET seen_at = ?, expires_at = ? WHERE token_hash = ?",
                (seen_at, expires_at, token_hash),
                False,
            )
        )

    async def end_session(self, token_hash: bytes) -> None:
        await self._write(("DELETE FROM web_sessions WHERE token_hash = ?", (token_hash,), False))

    async def end_sessions(self, subject_kind: SubjectKind, subject_id: str) -> int:
        (count,) = await self._write(
            (
                "DELETE FROM web_sessions WHERE subject_kind = ? AND subject_id = ?",
                (subject_kind, subject_id),
                False,
            )
        )
        return count

    # --- sign-in throttle -----------------------------------------------------------------------
    async def failures(self, key: str) -> FailureRecord | None:
        row = self._one("SELECT * FROM web_signin_failures WHERE throttle_key = ?", key)
        if row is None:
            return None
        return FailureRecord(row["throttle_key"], row["failures"], row["first_at"],
                             row["locked_until"])

    async def put_failures(self, record: FailureRecord) -> None:
        await self._write(
            (
                "INSERT INTO web_signin_failures (throttle_key, failures, first_at, locked_until)"
                " VALUES (?, ?, ?, ?) ON CONFLICT (throttle_key) DO UPDATE SET"
                " failures = excluded.failures, first_at = excluded.first_at,"
                " locked_until = excluded.locked_until",
                (record.key, record.failures, record.first_at, record.locked_until),
                False,
            )
        )

    async def clear_failures(self, key: str) -> None:
        await self._write(
            ("DELETE FROM web_signin_failures WHERE throttle_key = ?", (key,), False)
        )

    # --- device authorisation grants ------------------------------------------------------------
    async def add_grant(self, grant: GrantRecord) -> None:
        await self._write(
            (
                "INSERT INTO web_device_grants (device_code_hash, user_code_hash, client_name,"
                " created_at, expires_at, polled_at, status, user_id, tenant_id, credential_id)"
                " VALUES (?, ?, ?, ?, ?, NULL, 'pending', NULL, NULL, NULL)",
                (
                    grant.device_code_hash,
                    grant.user_code_hash,
                    grant.client_name,
                    grant.created_at,
                    grant.expires_at,
                ),
                False,
            )
        )

    async def grant_by_user_code(self, user_code_hash: str) -> GrantRecord | None:
        row = self._one("SELECT * FROM web_device_grants WHERE user_code_hash = ?", user_code_hash)
        return _grant(row) if row else None

    async def grant_by_device_code(self, device_code_hash: bytes) -> GrantRecord | None:
        row = self._one(
            "SELECT * FROM web_device_grants WHERE device_code_hash = ?", device_code_hash
        )
        return _grant(row) if row else None

    async def decide_grant(
        self,
        user_code_hash: str,
        status: Literal["approved", "denied"],
        user_id: str,
        tenant_id: str,
        now: float,
    ) -> bool:
        (count,) = await self._write(
            (
                "UPDATE web_device_grants SET status = ?, user_id = ?, tenant_id = ?"
                " WHERE user_code_hash = ? AND status = 'pending' AND expires_at > ?",
                (status, user_id, tenant_id, user_code_hash, now),
                False,
            )
        )
        return count == 1

    async def mark_polled(self, device_code_hash: bytes, now: float) -> None:
        await self._write(
            (
                "UPDATE web_device_grants SET polled_at = ? WHERE device_code_hash = ?",
                (now, device_code_hash),
                False,
            )
        )

    async def deliver_grant(self, device_code_hash: bytes, credential: Credential) -> bool:
        marked, stored = await self._write(
            (
                "UPDATE web_device_grants SET status = 'delivered', credential_id = ?"
                " WHERE device_code_hash = ? AND status = 'approved'",
                (credential.id, device_code_hash),
                False,
            ),
            (
                "INSERT INTO credentials (id, token_hash, subject_kind, subject_id, tenant_id,"
                " created_at, revoked_at) SELECT ?, ?, 'user', user_id, tenant_id, ?, NULL"
                " FROM web_device_grants WHERE device_code_hash = ? AND credential_id = ?"
                " AND status = 'delivered'",
                (
                    credential.id,
                    credential.token_hash,
                    credential.created_at,
                    device_code_hash,
                    credential.id,
                ),
                False,
            ),
        )
        return marked == 1 and stored == 1

    async def laptop_credentials(
        self, tenant_id: str, user_id: str | None
    ) -> list[LaptopCredential]:
        sql = (
            "SELECT c.*, g.client_name FROM credentials c LEFT JOIN web_device_grants g"
            " ON g.credential_id = c.id WHERE c.subject_kind = 'user' AND c.tenant_id = ?"
        )
        params: list[Any] = [tenant_id]
        if user_id is not None:
            sql += " AND c.subject_id = ?"
            params.append(user_id)
        rows = self._all(sql + " ORDER BY c.created_at, c.id", *params)
        return [
            LaptopCredential(
                store_rows.credential(r),
                r["client_name"],
            )
            for r in rows
        ]
