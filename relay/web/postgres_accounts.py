"""People's browser sign-in records (:class:`relay.web.accounts.Accounts`) on PostgreSQL.

The same ``web_*`` tables as on SQLite, in the
:class:`~relay.storage.postgres_store.PostgresStore`'s database and through its pool, so
every relay node sees one set of logins, sessions and grants. Each write that must happen
once across nodes is one conditional statement (a set-up link is used by ``UPDATE … WHERE
used_at IS NULL``, a grant decided by ``… WHERE status = 'pending'``), and a grant's
credential is stored in the transaction that marks it delivered.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal, cast

from relay.domain.model import AdminRecord, Credential
from relay.domain.store import StoreConflict
from relay.storage import store_rows
from relay.storage.postgres_store import LOCK_DIRECTORY, PostgresStore, Stmt
from relay.web.accounts import (
    FailureRecord,
    GrantRecord,
    LaptopCredential,
    LoginRecord,
    LoginTaken,
    SessionRecord,
    SetupLinkRecord,
    SsoRecords,
    SubjectKind,
    _grant,
    _login,
    normalize_login,
)

_SESSION_COLUMNS = (
    "token_hash, subject_kind, subject_id, csrf, method, created_at, seen_at, expires_at"
)


class PostgresAccounts(SsoRecords):
    """:class:`relay.web.accounts.Accounts` on a :class:`PostgresStore`'s database."""

    # A user is a directory row: the version row is locked first (relay.storage.postgres_store).
    _directory_lock = ((LOCK_DIRECTORY.sql, tuple(LOCK_DIRECTORY.params), False),)

    def __init__(self, store: PostgresStore) -> None:
        self.store = store

    async def _write(self, *stmts: Stmt) -> list[int]:
        outcomes = await self.store.run(*stmts)
        return [o if isinstance(o, int) else len(o) for o in outcomes]

    # The identity provider records (SsoRecords) are SQLite's SQL with ? placeholders.
    async def _ops(self, *ops: tuple[str, Sequence[Any], bool]) -> list[int]:
        return await self._write(
            *(Stmt(sql.replace("?", "%s"), params, many) for sql, params, many in ops)
        )

    async def _read_one(self, sql: str, *params: Any) -> Any:
        return await self.store.one(sql.replace("?", "%s"), *params)

    async def _read_all(self, sql: str, *params: Any) -> list[Any]:
        return await self.store.all(sql.replace("?", "%s"), *params)

    # --- people -------------------------------------------------------------------------------
    async def admin(self, admin_id: str) -> AdminRecord | None:
        return await self.store.admin(admin_id)

    # --- logins -------------------------------------------------------------------------------
    async def login(self, login: str) -> LoginRecord | None:
        row = await self.store.one(
            "SELECT * FROM web_logins WHERE login = %s", normalize_login(login)
        )
        return _login(row) if row else None

    async def login_of(self, subject_kind: SubjectKind, subject_id: str) -> LoginRecord | None:
        row = await self.store.one(
            "SELECT * FROM web_logins WHERE subject_kind = %s AND subject_id = %s",
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
                Stmt(
                    "INSERT INTO web_logins (login, subject_kind, subject_id, password_hash,"
                    " updated_at) VALUES (%s, %s, %s, %s, %s)"
                    " ON CONFLICT (subject_kind, subject_id) DO UPDATE SET"
                    " login = excluded.login, password_hash = excluded.password_hash,"
                    " updated_at = excluded.updated_at",
                    (key, subject_kind, subject_id, password_hash, now),
                )
            )
        except StoreConflict:  # taken meanwhile, by another relay node
            raise LoginTaken(f"the login {key!r} is taken") from None

    async def add_setup_link(self, link: SetupLinkRecord) -> None:
        await self._write(
            Stmt(
                "INSERT INTO web_setup_links (token_hash, subject_kind, subject_id, login,"
                " created_at, expires_at, used_at) VALUES (%s, %s, %s, %s, %s, %s, NULL)",
                (
                    link.token_hash,
                    link.subject_kind,
                    link.subject_id,
                    normalize_login(link.login),
                    link.created_at,
                    link.expires_at,
                ),
            )
        )

    async def setup_link(self, token_hash: bytes) -> SetupLinkRecord | None:
        row = await self.store.one(
            "SELECT * FROM web_setup_links WHERE token_hash = %s", token_hash
        )
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
        # One statement: the password is set only by the redemption that used the link.
        (count,) = await self._write(
            Stmt(
                "WITH used AS (UPDATE web_setup_links SET used_at = %s"
                " WHERE token_hash = %s AND used_at IS NULL AND expires_at > %s"
                " RETURNING login, subject_kind, subject_id)"
                " INSERT INTO web_logins (login, subject_kind, subject_id, password_hash,"
                " updated_at) SELECT login, subject_kind, subject_id, %s, %s FROM used"
                " ON CONFLICT (subject_kind, subject_id) DO UPDATE SET login = excluded.login,"
                " password_hash = excluded.password_hash, updated_at = excluded.updated_at",
                (now, token_hash, now, password_hash, now),
            )
        )
        return count == 1

    # --- sessions -------------------------------------------------------------------------------
    async def add_session(self, session: SessionRecord) -> None:
        await self._write(
            Stmt(
                f"INSERT INTO web_sessions ({_SESSION_COLUMNS})"  # noqa: S608
                " VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
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
            )
        )

    async def session(self, token_hash: bytes) -> SessionRecord | None:
        row = await self.store.one(
            f"SELECT {_SESSION_COLUMNS} FROM web_sessions WHERE token_hash = %s",  # noqa: S608
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
            Stmt(
                "UPDATE web_sessions SET seen_at = %s, expires_at = %s WHERE token_hash = %s",
                (seen_at, expires_at, token_hash),
            )
        )

    async def end_session(self, token_hash: bytes) -> None:
        await self._write(Stmt("DELETE FROM web_sessions WHERE token_hash = %s", (token_hash,)))

    async def end_sessions(self, subject_kind: SubjectKind, subject_id: str) -> int:
        (count,) = await self._write(
            Stmt(
                "DELETE FROM web_sessions WHERE subject_kind = %s AND subject_id = %s",
                (subject_kind, subject_id),
            )
        )
        return count

    # --- sign-in throttle -----------------------------------------------------------------------
    async def failures(self, key: str) -> FailureRecord | None:
        row = await self.store.one(
            "SELECT * FROM web_signin_failures WHERE throttle_key = %s", key
        )
        if row is None:
            return None
        return FailureRecord(
            row["throttle_key"], row["failures"], row["first_at"], row["locked_until"]
        )

    async def put_failures(self, record: FailureRecord) -> None:
        await self._write(
            Stmt(
                "INSERT INTO web_signin_failures (throttle_key, failures, first_at, locked_until)"
                " VALUES (%s, %s, %s, %s) ON CONFLICT (throttle_key) DO UPDATE SET"
                " failures = excluded.failures, first_at = excluded.first_at,"
                " locked_until = excluded.locked_until",
                (record.key, record.failures, record.first_at, record.locked_until),
            )
        )

    async def clear_failures(self, key: str) -> None:
        await self._write(Stmt("DELETE FROM web_signin_failures WHERE throttle_key = %s", (key,)))

    # --- device authorisation grants ------------------------------------------------------------
    async def add_grant(self, grant: GrantRecord) -> None:
        await self._write(
            Stmt(
                "INSERT INTO web_device_grants (device_code_hash, user_code_hash, client_name,"
                " created_at, expires_at, polled_at, status, user_id, tenant_id, credential_id)"
                " VALUES (%s, %s, %s, %s, %s, NULL, 'pending', NULL, NULL, NULL)",
                (
                    grant.device_code_hash,
                    grant.user_code_hash,
                    grant.client_name,
                    grant.created_at,
                    grant.expires_at,
                ),
            )
        )

    async def grant_by_user_code(self, user_code_hash: str) -> GrantRecord | None:
        row = await self.store.one(
            "SELECT * FROM web_device_grants WHERE user_code_hash = %s", user_code_hash
        )
        return _grant(row) if row else None

    async def grant_by_device_code(self, device_code_hash: bytes) -> GrantRecord | None:
        row = await self.store.one(
            "SELECT * FROM web_device_grants WHERE device_code_hash = %s", device_code_hash
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
            Stmt(
                "UPDATE web_device_grants SET status = %s, user_id = %s, tenant_id = %s"
                " WHERE user_code_hash = %s AND status = 'pending' AND expires_at > %s",
                (status, user_id, tenant_id, user_code_hash, now),
            )
        )
        return count == 1

    async def mark_polled(self, device_code_hash: bytes, now: float) -> None:
        await self._write(
            Stmt(
                "UPDATE web_device_grants SET polled_at = %s WHERE device_code_hash = %s",
                (now, device_code_hash),
            )
        )

    async def deliver_grant(self, device_code_hash: bytes, credential: Credential) -> bool:
        # The credential is a directory row: the version row is locked first, as every
        # directory writer does (relay.storage.postgres_store).
        _, marked, stored = await self._write(
            LOCK_DIRECTORY,
            Stmt(
                "UPDATE web_device_grants SET status = 'delivered', credential_id = %s"
                " WHERE device_code_hash = %s AND status = 'approved'",
                (credential.id, device_code_hash),
            ),
            Stmt(
                "INSERT INTO credentials (id, token_hash, subject_kind, subject_id, tenant_id,"
                " created_at, revoked_at) SELECT %s, %s, 'user', user_id, tenant_id, %s, NULL"
                " FROM web_device_grants WHERE device_code_hash = %s AND credential_id = %s"
                " AND status = 'delivered'",
                (
                    credential.id,
                    credential.token_hash,
                    credential.created_at,
                    device_code_hash,
                    credential.id,
                ),
            ),
        )
        return marked == 1 and stored == 1

    async def laptop_credentials(
        self, tenant_id: str, user_id: str | None
    ) -> list[LaptopCredential]:
        sql = (
            "SELECT c.*, g.client_name FROM credentials c LEFT JOIN web_device_grants g"
            " ON g.credential_id = c.id WHERE c.subject_kind = 'user' AND c.tenant_id = %s"
        )
        params: list[Any] = [tenant_id]
        if user_id is not None:
            sql += " AND c.subject_id = %s"
            params.append(user_id)
        rows = await self.store.all(sql + " ORDER BY c.created_at, c.id", *params)
        return [
            LaptopCredential(
                store_rows.credential(r),
                cast(str | None, r["client_name"]),
            )
            for r in rows
        ]
