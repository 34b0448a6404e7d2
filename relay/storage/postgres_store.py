"""The PostgreSQL :class:`~relay.domain.store.RelayStore`: durable state shared by several
relay nodes.

Built on psycopg 3 and its asyncio connection pool (``psycopg_pool``) rather than
asyncpg, because:

* psycopg speaks through libpq, so a ``postgresql://`` URL means exactly what it means
  to ``psql`` and every other libpq client (unix sockets, ``sslmode``, ``PGPASSFILE``,
  service files, several hosts with ``target_session_attrs``); asyncpg reimplements
  the protocol and its own URL rules;
* its pool checks a connection before handing it out (``check``) and replaces broken
  ones in the background, which is what lets a relay survive a PostgreSQL restart
  without being restarted itself;
* the relay's queries are single-row index lookups and small upserts whose cost is the
  round trip, not decoding, where asyncpg's speed advantage does not show; psycopg
  prepares repeated statements itself and pipelines ``executemany``.

Everything SQLite's store guarantees holds here, decided by the database (see
:mod:`relay.domain.store`):

* a change returns once committed with ``synchronous_commit`` on (the WAL is flushed);
  a lock acknowledgement alone commits with ``synchronous_commit = off``, as the
  contract allows;
* a lock ``seq`` is computed by an upsert (``… DO UPDATE SET seq = seq + 1
  RETURNING``), a verification code is used by a conditional ``UPDATE … WHERE
  used_at IS NULL``, provisioning is one transaction that fails whole;
* every change to a directory table bumps ``directory_version`` and is listed in
  ``directory_changes`` by statement-level triggers, in the same transaction. Every
  transaction that writes the directory first locks the version row, so directory
  writers are serialised (in commit order: a reader who sees version *v* sees every
  change up to *v*) and never deadlock on it; a deadlock or serialisation failure
  elsewhere is retried, the transaction having been rolled back whole;
* a refused write raises :class:`~relay.domain.store.StoreConflict` with a message for a
  person (by constraint name, never PostgreSQL's text); an unreachable database
  raises :class:`~relay.domain.store.StoreUnavailable`. A transaction interrupted before its
  ``COMMIT`` is rolled back by the server, so nothing is half-written; only a
  connection lost *during* ``COMMIT`` leaves the outcome unknown (libpq cannot say),
  which is reported as unavailable too.

While PostgreSQL is down, :meth:`PostgresStore.ready` is false and every call fails
fast (``StoreUnavailable`` after at most :attr:`PostgresStore.outage_wait` seconds);
the pool keeps reconnecting, and the first call after PostgreSQL is back succeeds, with
no restart of the relay.

The schema lives in the connection's current schema (``search_path``), is created by
versioned migrations of its own (:data:`MIGRATIONS`, recorded in ``btogether_schema``)
under an advisory lock so nodes starting together migrate once, and sorts text with
the ``"C"`` collation so pages come in the same order as on SQLite.
"""

from __future__ import annotations

import asyncio
import json
import time
import weakref
from collections.abc import AsyncIterator, Coroutine, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any, NamedTuple, cast

import psycopg
import structlog
from psycopg import errors
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg.rows import DictRow, dict_row
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from relay.domain.model import (
    Acknowledged,
    AdminCredential,
    AdminRecord,
    AuditRecord,
    ConsolePairing,
    Credential,
    Device,
    DeviceState,
    DirectoryChange,
    LockRecord,
    Pairing,
    Policy,
    Tenant,
    User,
)
from relay.domain.store import MAX_PAGE, StoreConflict, StoreUnavailable
from relay.domain.verification import IssuedCode
from relay.protocol.wire import DeviceMode, LockState
from relay.storage import store_rows
from relay.storage.sql_directory import (
    CREDENTIAL_INSERT,
    DirectoryWrites,
    percent_placeholders,
)

log = structlog.get_logger("relay.store")

__all__ = ["LOCK_DIRECTORY", "MIGRATIONS", "BadDatabaseUrl", "PostgresStore", "Stmt", "redact"]

_DIRECTORY_TABLES = ("tenants", "policies", "users", "devices", "credentials")

# Text compared or sorted by the relay (ids, names used for paging and ordering) uses
# the "C" collation: byte order, as SQLite sorts, whatever the database's locale.
_ID = 'TEXT COLLATE "C"'

_SCHEMA_V1 = """
    CREATE TABLE meta (key TEXT PRIMARY KEY, value BIGINT NOT NULL);
    INSERT INTO meta VALUES ('directory_version', 0), ('pairings_version', 0),
        ('changes_floor', 0);
    CREATE TABLE tenants (
        id ID_TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        default_policy_id ID_TEXT
    );
    CREATE TABLE policies (
        id ID_TEXT PRIMARY KEY,
        tenant_id ID_TEXT NOT NULL REFERENCES tenants(id),
        name ID_TEXT NOT NULL,
        allow_better_together TEXT NOT NULL
            CHECK (allow_better_together IN ('Enabled', 'Disabled')),
        proximity_join TEXT NOT NULL CHECK (proximity_join IN ('auto', 'prompt', 'off')),
        beaconing BOOLEAN NOT NULL,
        auto_confirm BOOLEAN NOT NULL DEFAULT FALSE,
        CONSTRAINT policies_tenant_name UNIQUE (tenant_id, name)
    );
    ALTER TABLE tenants ADD CONSTRAINT tenants_default_policy
        FOREIGN KEY (default_policy_id) REFERENCES policies(id);
    CREATE TABLE users (
        id ID_TEXT PRIMARY KEY,
        tenant_id ID_TEXT NOT NULL REFERENCES tenants(id),
        name TEXT NOT NULL,
        policy_id ID_TEXT REFERENCES policies(id)
    );
    CREATE INDEX users_tenant ON users (tenant_id, id);
    CREATE TABLE devices (
        id ID_TEXT PRIMARY KEY,
        tenant_id ID_TEXT NOT NULL REFERENCES tenants(id),
        name TEXT NOT NULL,
        kind TEXT NOT NULL CHECK (kind IN ('room_system', 'conference_phone', 'desk_phone')),
        mode TEXT NOT NULL CHECK (mode IN ('personal', 'common_area', 'meeting_room')),
        identity_key BYTEA NOT NULL CHECK (length(identity_key) = 16),
        rotation_exponent INTEGER NOT NULL CHECK (rotation_exponent BETWEEN 0 AND 15),
        location TEXT NOT NULL DEFAULT '',
        mac TEXT,
        state TEXT NOT NULL,
        user_id ID_TEXT REFERENCES users(id),
        policy_id ID_TEXT REFERENCES policies(id),
        capabilities TEXT NOT NULL DEFAULT ''
    );
    CREATE INDEX devices_tenant ON devices (tenant_id, id);
    CREATE UNIQUE INDEX devices_tenant_mac ON devices (tenant_id, mac) WHERE mac IS NOT NULL;
    CREATE INDEX devices_by_mac ON devices (mac) WHERE mac IS NOT NULL;
    CREATE INDEX devices_state ON devices (state, id);
    CREATE INDEX devices_user ON devices (user_id) WHERE user_id IS NOT NULL;
    CREATE TABLE credentials (
        id ID_TEXT PRIMARY KEY,
        token_hash BYTEA NOT NULL CONSTRAINT credentials_token_hash UNIQUE,
        subject_kind TEXT NOT NULL CHECK (subject_kind IN ('user', 'device')),
        subject_id ID_TEXT NOT NULL,
        tenant_id ID_TEXT NOT NULL REFERENCES tenants(id),
        created_at DOUBLE PRECISION NOT NULL,
        revoked_at DOUBLE PRECISION
    );
    CREATE INDEX credentials_subject ON credentials (tenant_id, subject_id);
    CREATE INDEX credentials_by_subject ON credentials (subject_id);
    CREATE TABLE pairings (
        user_id ID_TEXT NOT NULL REFERENCES users(id),
        laptop_id ID_TEXT NOT NULL,
        laptop_name TEXT NOT NULL,
        phone_id ID_TEXT NOT NULL REFERENCES devices(id),
        tenant_id ID_TEXT NOT NULL REFERENCES tenants(id),
        created_at DOUBLE PRECISION NOT NULL,
        PRIMARY KEY (user_id, laptop_id, phone_id)
    );
    CREATE INDEX pairings_phone ON pairings (phone_id);
    CREATE INDEX pairings_tenant ON pairings (tenant_id, user_id, laptop_id, phone_id);
    CREATE TABLE lock_states (
        phone_id ID_TEXT PRIMARY KEY REFERENCES devices(id),
        seq BIGINT NOT NULL,
        state TEXT NOT NULL CHECK (state IN ('locked', 'unlocked')),
        user_id ID_TEXT NOT NULL,
        laptop_id ID_TEXT NOT NULL,
        updated_at DOUBLE PRECISION NOT NULL,
        acked_seq BIGINT NOT NULL DEFAULT 0
    );
    CREATE INDEX lock_states_user ON lock_states (user_id);
    CREATE TABLE admins (
        id ID_TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        role TEXT NOT NULL CHECK (role IN ('owner', 'device_admin')),
        tenant_id ID_TEXT REFERENCES tenants(id),
        created_at DOUBLE PRECISION NOT NULL,
        CHECK ((role = 'owner') = (tenant_id IS NULL))
    );
    CREATE TABLE admin_credentials (
        id ID_TEXT PRIMARY KEY,
        token_hash BYTEA NOT NULL CONSTRAINT admin_credentials_token_hash UNIQUE,
        admin_id ID_TEXT NOT NULL REFERENCES admins(id),
        created_at DOUBLE PRECISION NOT NULL,
        revoked_at DOUBLE PRECISION
    );
    CREATE INDEX admin_credentials_admin ON admin_credentials (admin_id);
    CREATE TABLE verification_codes (
        device_id ID_TEXT PRIMARY KEY REFERENCES devices(id),
        code_hash TEXT NOT NULL,
        issued_at DOUBLE PRECISION NOT NULL,
        expires_at DOUBLE PRECISION NOT NULL,
        used_at DOUBLE PRECISION
    );
    CREATE TABLE console_pairings (
        console_id ID_TEXT PRIMARY KEY REFERENCES devices(id),
        room_id ID_TEXT NOT NULL REFERENCES devices(id),
        tenant_id ID_TEXT NOT NULL REFERENCES tenants(id),
        created_at DOUBLE PRECISION NOT NULL
    );
    CREATE INDEX console_pairings_room ON console_pairings (room_id);
    CREATE INDEX console_pairings_tenant ON console_pairings (tenant_id, console_id);
    CREATE TABLE audit_log (
        seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        at DOUBLE PRECISION NOT NULL,
        actor TEXT NOT NULL,
        tenant_id TEXT,
        action TEXT NOT NULL,
        target TEXT NOT NULL,
        outcome TEXT NOT NULL,
        detail TEXT NOT NULL
    );
    CREATE INDEX audit_tenant ON audit_log (tenant_id, seq);
    CREATE TABLE directory_changes (
        version BIGINT NOT NULL,
        kind TEXT NOT NULL,
        id TEXT NOT NULL
    );
    CREATE INDEX directory_changes_version ON directory_changes (version);
    CREATE TABLE ephemeral (
        key TEXT PRIMARY KEY,
        value TEXT NOT NULL,
        expires_at DOUBLE PRECISION NOT NULL
    );
    CREATE INDEX ephemeral_expiry ON ephemeral (expires_at);

    CREATE TABLE web_logins (
        login TEXT PRIMARY KEY,
        subject_kind TEXT NOT NULL CHECK (subject_kind IN ('admin', 'user')),
        subject_id TEXT NOT NULL,
        password_hash TEXT,
        updated_at DOUBLE PRECISION NOT NULL,
        CONSTRAINT web_logins_subject UNIQUE (subject_kind, subject_id)
    );
    CREATE TABLE web_setup_links (
        token_hash BYTEA PRIMARY KEY,
        subject_kind TEXT NOT NULL CHECK (subject_kind IN ('admin', 'user')),
        subject_id TEXT NOT NULL,
        login TEXT NOT NULL,
        created_at DOUBLE PRECISION NOT NULL,
        expires_at DOUBLE PRECISION NOT NULL,
        used_at DOUBLE PRECISION
    );
    CREATE TABLE web_sessions (
        token_hash BYTEA PRIMARY KEY,
        subject_kind TEXT NOT NULL CHECK (subject_kind IN ('admin', 'user')),
        subject_id TEXT NOT NULL,
        csrf TEXT NOT NULL,
        method TEXT NOT NULL,
        created_at DOUBLE PRECISION NOT NULL,
        seen_at DOUBLE PRECISION NOT NULL,
        expires_at DOUBLE PRECISION NOT NULL
    );
    CREATE INDEX web_sessions_subject ON web_sessions (subject_kind, subject_id);
    CREATE TABLE web_signin_failures (
        throttle_key TEXT PRIMARY KEY,
        failures INTEGER NOT NULL,
        first_at DOUBLE PRECISION NOT NULL,
        locked_until DOUBLE PRECISION
    );
    CREATE TABLE web_device_grants (
        device_code_hash BYTEA PRIMARY KEY,
        user_code_hash TEXT NOT NULL CONSTRAINT web_device_grants_user_code UNIQUE,
        client_name TEXT NOT NULL,
        created_at DOUBLE PRECISION NOT NULL,
        expires_at DOUBLE PRECISION NOT NULL,
        polled_at DOUBLE PRECISION,
        status TEXT NOT NULL CHECK (status IN ('pending', 'approved', 'denied', 'delivered')),
        user_id TEXT,
        tenant_id TEXT,
        credential_id TEXT
    );
    CREATE INDEX web_device_grants_credential ON web_device_grants (credential_id);

    -- Each row a statement changed gets its own directory version, as on SQLite. The
    -- version row is updated in the writer's transaction, so versions follow commit order.
    CREATE FUNCTION btogether_directory_changed() RETURNS trigger LANGUAGE plpgsql AS $$
    DECLARE
        n BIGINT;
        top BIGINT;
    BEGIN
        IF TG_OP = 'DELETE' THEN
            SELECT count(*) INTO n FROM changed_old;
        ELSE
            SELECT count(*) INTO n FROM changed_new;
        END IF;
        IF n = 0 THEN
            RETURN NULL;
        END IF;
        UPDATE meta SET value = value + n WHERE key = 'directory_version' RETURNING value INTO top;
        IF TG_OP = 'DELETE' THEN
            INSERT INTO directory_changes (version, kind, id)
                SELECT top - n + row_number() OVER (), TG_TABLE_NAME, id FROM changed_old;
        ELSE
            INSERT INTO directory_changes (version, kind, id)
                SELECT top - n + row_number() OVER (), TG_TABLE_NAME, id FROM changed_new;
        END IF;
        RETURN NULL;
    END $$;
""".replace("ID_TEXT", _ID)


def _change_triggers() -> str:
    parts = []
    for table in _DIRECTORY_TABLES:
        for op, transition in (
            ("INSERT", "NEW TABLE AS changed_new"),
            ("UPDATE", "NEW TABLE AS changed_new"),
            ("DELETE", "OLD TABLE AS changed_old"),
        ):
            parts.append(
                f"CREATE TRIGGER {table}_{op.lower()}_changed AFTER {op} ON {table}"
                f" REFERENCING {transition} FOR EACH STATEMENT"
                " EXECUTE FUNCTION btogether_directory_changed();"
            )
    return "\n".join(parts)


# Version 2 is SQLite's schema 5: sign-in with tenants' OpenID providers
# (relay.web.postgres_accounts reads them).
_SCHEMA_V2 = """
    CREATE TABLE web_sso_providers (
        id TEXT PRIMARY KEY,
        tenant_id TEXT NOT NULL CONSTRAINT web_sso_providers_tenant UNIQUE,
        label TEXT NOT NULL,
        issuer TEXT NOT NULL,
        client_id TEXT NOT NULL,
        client_secret TEXT,
        settings TEXT NOT NULL,
        enabled INTEGER NOT NULL,
        created_at DOUBLE PRECISION NOT NULL,
        updated_at DOUBLE PRECISION NOT NULL,
        checked_at DOUBLE PRECISION,
        CONSTRAINT web_sso_providers_client UNIQUE (issuer, client_id)
    );
    CREATE TABLE web_sso_links (
        provider_id TEXT NOT NULL,
        subject TEXT NOT NULL,
        subject_kind TEXT NOT NULL CHECK (subject_kind IN ('admin', 'user')),
        subject_id TEXT NOT NULL,
        tenant_id TEXT NOT NULL,
        email TEXT,
        created_at DOUBLE PRECISION NOT NULL,
        signed_in_at DOUBLE PRECISION,
        refresh_token TEXT,
        checked_at DOUBLE PRECISION,
        disabled_at DOUBLE PRECISION,
        PRIMARY KEY (provider_id, subject, subject_kind),
        CONSTRAINT web_sso_links_person UNIQUE (subject_kind, subject_id)
    );
    CREATE INDEX web_sso_links_tenant ON web_sso_links (tenant_id);
    CREATE TABLE web_sso_requests (
        state_hash BYTEA PRIMARY KEY,
        provider_id TEXT NOT NULL,
        nonce TEXT NOT NULL,
        code_verifier TEXT NOT NULL,
        redirect_uri TEXT NOT NULL,
        next_path TEXT NOT NULL,
        browser_hash BYTEA NOT NULL,
        created_at DOUBLE PRECISION NOT NULL,
        expires_at DOUBLE PRECISION NOT NULL,
        used_at DOUBLE PRECISION
    );
    CREATE INDEX web_sso_requests_expiry ON web_sso_requests (expires_at);
    CREATE TABLE web_user_emails (
        tenant_id TEXT NOT NULL,
        email TEXT NOT NULL,
        user_id TEXT NOT NULL CONSTRAINT web_user_emails_user UNIQUE,
        PRIMARY KEY (tenant_id, email)
    );
"""

# Each entry upgrades the schema by one version (btogether_schema.version). Append, never
# edit. Version 1 is SQLite's schema 4 (relay.storage.sqlite_store) in PostgreSQL's terms.
MIGRATIONS: tuple[str, ...] = (_SCHEMA_V1 + _change_triggers(), _SCHEMA_V2)

_MIGRATION_LOCK = 0x6274_6F67  # pg_advisory_xact_lock key: nodes starting together migrate once

CHANGE_LOG_KEPT = 200_000  # directory versions a relay may lag behind and still catch up

# A connection used this recently is handed out unchecked (see PostgresStore._check).
_TRUSTED_IDLE = 2.0

_RETRIES = 4  # attempts of a transaction that lost a deadlock or a serialisation race


class BadDatabaseUrl(ValueError):
    """The PostgreSQL URL cannot be parsed; the message says what is wrong."""


class Stmt(NamedTuple):
    """One statement of a transaction. Its outcome is the row count, or the rows with
    ``rows``."""

    sql: str
    params: Sequence[Any] | Mapping[str, Any] = ()
    many: bool = False  # executemany over ``params`` (a sequence of rows)
    rows: bool = False  # the statement returns rows: the outcome is them
    expect_one: str | None = None  # unless exactly one row changed: refuse with this


Outcome = int | list[DictRow]


class _Refused(Exception):
    """An ``expect_one`` statement changed no row (or several): roll back, refuse."""


def redact(url: str) -> str:
    """The URL without its password, for messages and logs."""
    try:
        parts = conninfo_to_dict(url)
    except psycopg.Error:
        return "postgresql://…"
    user = parts.get("user")
    host = parts.get("host") or "localhost"
    port = parts.get("port")
    dbname = parts.get("dbname") or ""
    return (
        f"postgresql://{f'{user}@' if user else ''}{host}{f':{port}' if port else ''}/{dbname}"
    )


_CONSTRAINT_MESSAGES = {
    "policies_tenant_name": "a policy with this name already exists",
    "devices_tenant_mac": "a device with this MAC address is already listed",
    "credentials_token_hash": "this credential already exists",
    "admin_credentials_token_hash": "this credential already exists",
    "web_logins_pkey": "the login is taken",
    "web_logins_subject": "this person already has a login",
}


def _conflict_message(exc: psycopg.Error) -> str:
    """What a refused write means, for a person (never the database's own text)."""
    constraint = exc.diag.constraint_name if exc.diag is not None else None
    if constraint in _CONSTRAINT_MESSAGES:
        return _CONSTRAINT_MESSAGES[constraint]
    if isinstance(exc, errors.UniqueViolation):
        return "that already exists"
    if isinstance(exc, errors.ForeignKeyViolation):
        return "it refers to something that does not exist"
    if isinstance(exc, errors.CheckViolation):
        return "a value is out of range"
    if isinstance(exc, psycopg.DataError):
        return "a value cannot be stored (out of range, or text with a NUL character)"
    return "the change conflicts with the stored data"


# The first statement of every transaction that writes a directory table: directory
# writers queue here, in one order, instead of deadlocking on the version row their
# triggers update after locking rows of their own.
LOCK_DIRECTORY = Stmt("SELECT value FROM meta WHERE key = 'directory_version' FOR UPDATE")
# Pairings are cached by relays (see relay.domain.directory); any writer bumps this.
_BUMP_PAIRINGS_VERSION = Stmt("UPDATE meta SET value = value + 1 WHERE key = 'pairings_version'")

# The lock changes of one event-loop iteration, one row per (phone, change): each phone at
# most once (ON CONFLICT DO UPDATE cannot change a row twice in one statement), rows locked
# in phone order (no deadlock with another node's statement).
_LOCK_UPSERT = (
    "INSERT INTO lock_states AS l (phone_id, seq, state, user_id, laptop_id, updated_at,"
    " acked_seq) SELECT c.p, 1, c.s, c.u, c.l, c.t, 0"
    " FROM unnest(%s::text[], %s::text[], %s::text[], %s::text[], %s::float8[])"
    " AS c(p, s, u, l, t) ORDER BY c.p"
    " ON CONFLICT (phone_id) DO UPDATE SET seq = l.seq + 1, state = excluded.state,"
    " user_id = excluded.user_id, laptop_id = excluded.laptop_id,"
    " updated_at = excluded.updated_at"
    " RETURNING phone_id, seq, state, user_id, laptop_id, updated_at, acked_seq"
)


class _LockChange(NamedTuple):
    phones: list[str]  # each once
    state: LockState
    user_id: str
    laptop_id: str
    now: float


def _lock_rounds(phone_lists: Sequence[Sequence[str]]) -> list[list[int]]:
    """The lock changes (or acks) of a batch, each naming ``phone_lists[i]``, grouped by
    index into as few statements as can be: a phone at most once per statement, and a
    phone named twice in the batch written in call order (later in a later statement)."""
    last: dict[str, int] = {}
    rounds: list[list[int]] = []
    for index, phones in enumerate(phone_lists):
        at = 1 + max((last[phone] for phone in phones if phone in last), default=-1)
        for phone in phones:
            last[phone] = at
        if at == len(rounds):
            rounds.append([])
        rounds[at].append(index)
    return rounds


def _lock_upsert(changes: Sequence[_LockChange]) -> Stmt:
    """One statement making ``changes`` (no phone in two of them)."""
    columns: tuple[list[Any], ...] = ([], [], [], [], [])
    for change in changes:
        for phone in change.phones:
            for column, value in zip(
                columns,
                (phone, change.state, change.user_id, change.laptop_id, change.now),
                strict=True,
            ):
                column.append(value)
    return Stmt(_LOCK_UPSERT, columns, rows=True)


# One ack alone (light load): record it if it is news, and return the phone's record either
# way, with whether it was (none if the phone has no state up to ``seq``). Losing an ack
# costs a redundant re-delivery, never a wrong state, so this commit does not wait for the
# WAL flush (synchronous_commit off for this statement's transaction only).
_LOCK_ACK = (
    "WITH relaxed AS (SELECT set_config('synchronous_commit', 'off', true)),"
    " acked AS (UPDATE lock_states SET acked_seq = %(seq)s WHERE phone_id = %(phone)s"
    " AND seq >= %(seq)s AND acked_seq < %(seq)s AND EXISTS (SELECT 1 FROM relaxed)"
    " RETURNING *)"
    " SELECT *, true AS news FROM acked UNION ALL SELECT *, false AS news FROM lock_states"
    " WHERE phone_id = %(phone)s"
    " AND seq >= %(seq)s AND NOT EXISTS (SELECT 1 FROM acked)"
)
# The same for the acks of one event-loop iteration, in one statement, each phone at most
# once. Rows are locked in phone order first, as the lock changes lock them (no deadlock
# between the two).
_LOCK_ACKS = (
    "WITH relaxed AS (SELECT set_config('synchronous_commit', 'off', true)),"
    " ack AS (SELECT * FROM unnest(%s::text[], %s::bigint[]) AS a(phone, seq)),"
    " locked AS (SELECT l.phone_id FROM lock_states l JOIN ack ON l.phone_id = ack.phone"
    " WHERE l.seq >= ack.seq AND l.acked_seq < ack.seq ORDER BY l.phone_id FOR UPDATE OF l),"
    " acked AS (UPDATE lock_states l SET acked_seq = ack.seq FROM ack"
    " WHERE l.phone_id = ack.phone AND l.phone_id IN (SELECT phone_id FROM locked)"
    " AND l.seq >= ack.seq AND l.acked_seq < ack.seq AND EXISTS (SELECT 1 FROM relaxed)"
    " RETURNING l.*)"
    " SELECT *, true AS news FROM acked UNION ALL"
    " SELECT l.*, false AS news FROM lock_states l JOIN ack ON l.phone_id = ack.phone"
    " WHERE l.seq >= ack.seq AND l.phone_id NOT IN (SELECT phone_id FROM acked)"
)

_PG_CREDENTIAL_INSERT = percent_placeholders(CREDENTIAL_INSERT)


def _revoke_device_credentials(device_id: str, now: float) -> Stmt:
    return Stmt(
        "UPDATE credentials SET revoked_at = %s WHERE subject_kind = 'device'"
        " AND subject_id = %s AND revoked_at IS NULL",
        (now, device_id),
    )


def _end_phone_session(phone_id: str, new_user_id: str | None = None) -> list[Stmt]:
    """What ends when a phone's account changes (to ``new_user_id``; None: to nobody): its
    pairings with other accounts, and any lock command of another account not yet applied
    (the seq is kept, so the phone never mistakes a later command for an old one)."""
    return [
        Stmt(
            "DELETE FROM pairings WHERE phone_id = %s AND user_id IS DISTINCT FROM %s::text",
            (phone_id, new_user_id),
        ),
        _BUMP_PAIRINGS_VERSION,
        Stmt(
            "UPDATE lock_states SET acked_seq = seq WHERE phone_id = %s"
            " AND user_id IS DISTINCT FROM %s::text AND acked_seq < seq",
            (phone_id, new_user_id),
        ),
    ]


class PostgresStore(DirectoryWrites):
    """PostgreSQL implementation of :class:`relay.domain.store.RelayStore`.

    ``url`` is a libpq connection URL (``postgresql://user@host:5432/dbname``). The pool
    keeps ``min_size`` to ``max_size`` connections; a call waits at most
    ``acquire_timeout`` seconds for one (``outage_wait`` once the database has been seen
    unreachable, so requests during an outage are answered quickly) and
    ``statement_timeout`` seconds for its statements.
    """

    def __init__(
        self,
        url: str,
        *,
        min_size: int = 1,
        max_size: int = 8,
        acquire_timeout: float = 5.0,
        outage_wait: float = 0.5,
        statement_timeout: float = 15.0,
        connect_timeout: int = 5,
    ) -> None:
        try:
            params = conninfo_to_dict(url)
        except psycopg.Error as exc:
            reason = " ".join(str(exc).split())
            raise BadDatabaseUrl(f"bad PostgreSQL URL {redact(url)}: {reason}") from None
        params.setdefault("application_name", "btogether-relay")
        params.setdefault("connect_timeout", str(connect_timeout))
        self.url = url
        self._conninfo = make_conninfo("", **params)
        self.min_size = min_size
        self.max_size = max_size
        self.acquire_timeout = acquire_timeout
        self.outage_wait = outage_wait
        self.statement_timeout = statement_timeout
        self._pool: AsyncConnectionPool[psycopg.AsyncConnection[DictRow]] | None = None
        self._down_since: float | None = None  # monotonic time of the first failure seen
        self._force_sync_commit = False
        self._returned_at: weakref.WeakKeyDictionary[psycopg.AsyncConnection[DictRow], float] = (
            weakref.WeakKeyDictionary()
        )
        # This node's claim on the database (see claim_node): None until claimed.
        self._node_alone: bool | None = None
        self._node_claim: psycopg.AsyncConnection[DictRow] | None = None
        # Lock changes waiting for the end of this event-loop iteration, and their writers.
        self._lock_queue: list[tuple[_LockChange, asyncio.Future[list[DictRow]]]] = []
        self._ack_queue: list[tuple[str, int, asyncio.Future[DictRow | None]]] = []
        self._lock_writers: set[asyncio.Task[None]] = set()

    def __repr__(self) -> str:
        return f"PostgresStore({redact(self.url)!r})"

    # --- life cycle ----------------------------------------------------------------
    async def open(self) -> None:
        """Migrate the schema (once, whichever node gets there first) and open the pool;
        StoreUnavailable (with libpq's reason) if the database cannot be reached."""
        if self._pool is not None:
            return
        where = redact(self.url)
        try:
            conn = await psycopg.AsyncConnection.connect(
                self._conninfo, autocommit=True, row_factory=dict_row
            )
        except psycopg.Error as exc:
            reason = " ".join(str(exc).split()) or type(exc).__name__
            raise StoreUnavailable(
                f"cannot reach the PostgreSQL database {where}: {reason}"
            ) from None
        try:
            async with conn:
                await self._migrate(conn)
                self._force_sync_commit = await self._check_durability(conn)
        except psycopg.Error as exc:
            reason = " ".join(str(exc).split())
            raise StoreUnavailable(
                f"cannot use the PostgreSQL database {where}: {reason}"
            ) from None
        pool: AsyncConnectionPool[psycopg.AsyncConnection[DictRow]] = AsyncConnectionPool(
            self._conninfo,
            kwargs={"autocommit": True, "row_factory": dict_row},
            connection_class=psycopg.AsyncConnection[DictRow],
            min_size=self.min_size,
            max_size=self.max_size,
            open=False,
            configure=self._configure,
            check=self._check,
            reset=self._reset,
            timeout=self.acquire_timeout,
            # Short, so a long outage does not leave the pool waiting out a long backoff
            # once the database is back: after it, connections are made on demand again.
            reconnect_timeout=2.0,
            name="btogether",
        )
        try:
            await pool.open(wait=True, timeout=max(self.acquire_timeout, 5.0))
        except psycopg.Error as exc:
            await pool.close()
            raise StoreUnavailable(f"cannot reach the PostgreSQL database {where}: {exc}") from None
        self._pool = pool
        log.info("store_opened", database=where, schema_version=len(MIGRATIONS))

    async def close(self) -> None:
        """Finish the lock changes already asked for, then release the database."""
        self._flush_lock_changes()
        if self._lock_writers:
            await asyncio.gather(*self._lock_writers, return_exceptions=True)
        pool, self._pool = self._pool, None
        if pool is not None:
            await pool.close()
        claim, self._node_claim = self._node_claim, None
        if claim is not None:
            await claim.close()

    async def ready(self) -> bool:
        if self._pool is None:
            return False
        try:
            async with asyncio.timeout(self.outage_wait + 1.0), self._pool.connection(
                timeout=self.outage_wait if self._down_since is not None else 1.0
            ) as conn:
                await conn.execute("SELECT 1")
        except (psycopg.Error, TimeoutError, OSError):
            self._went_down("readiness probe failed")
            return False
        self._came_back()
        return await self._keep_node_claim()

    # --- one node without Redis, or a cluster with it: never both ----------------------
    async def claim_node(self, *, alone: bool) -> None:
        """Register this relay node on the database for as long as the store is open:
        ``alone`` (no Redis: short-lived state and delivery in this process) excludes any
        other node, otherwise any node that is alone. Refused with StoreUnavailable and a
        message saying what to do. The claim is a session advisory lock (per schema) on a
        connection of its own, so a node that dies releases it."""
        self._node_alone = alone
        try:
            claimed = await self._take_node_claim()
        except psycopg.Error as exc:
            reason = " ".join(str(exc).split())
            raise StoreUnavailable(
                f"cannot reach the PostgreSQL database {redact(self.url)}: {reason}"
            ) from None
        if not claimed:
            raise StoreUnavailable(self._claim_refusal())

    def _claim_refusal(self) -> str:
        where = redact(self.url)
        if self._node_alone:
            return (
                f"another relay node is using {where}: several nodes need Redis for presence "
                "and delivery (start every node with --redis redis://…)"
            )
        return (
            f"a relay node without Redis is using {where}: restart it with --redis "
            "redis://… before adding nodes"
        )

    async def _take_node_claim(self) -> bool:
        claim = "pg_try_advisory_lock" if self._node_alone else "pg_try_advisory_lock_shared"
        conn = await psycopg.AsyncConnection.connect(
            self._conninfo, autocommit=True, row_factory=dict_row
        )
        row = await (
            await conn.execute(
                f"SELECT {claim}(hashtext(current_schema() || '/btogether relay node')) AS ok"
            )
        ).fetchone()
        if row is None or not row["ok"]:
            await conn.close()
            return False
        self._node_claim = conn
        return True

    async def _keep_node_claim(self) -> bool:
        """After an outage the claim's connection is gone: take the claim again (and stay
        unready if another node took it meanwhile)."""
        if self._node_alone is None:
            return True
        conn = self._node_claim
        if conn is not None and not conn.closed:
            try:
                await conn.execute("")
                return True
            except psycopg.Error:
                await conn.close()
        self._node_claim = None
        try:
            if await self._take_node_claim():
                return True
        except psycopg.Error:
            return False
        log.error("store_node_claim_lost", reason=self._claim_refusal())
        return False

    async def _check(self, conn: psycopg.AsyncConnection[DictRow]) -> None:
        """Before a connection is handed out: an empty query if it has been idle a while
        or the database was seen failing. After a PostgreSQL restart the pooled
        connections are dead, and no request should be the one to find out; checking
        every time would cost a round trip per call (about as much as the query)."""
        idle = time.monotonic() - self._returned_at.get(conn, float("-inf"))
        if idle > _TRUSTED_IDLE or self._down_since is not None:
            await AsyncConnectionPool.check_connection(conn)

    async def _reset(self, conn: psycopg.AsyncConnection[DictRow]) -> None:
        self._returned_at[conn] = time.monotonic()

    async def _configure(self, conn: psycopg.AsyncConnection[DictRow]) -> None:
        statement_ms = int(self.statement_timeout * 1000)
        await conn.execute(f"SET statement_timeout = {statement_ms}")
        if self._force_sync_commit:
            await conn.execute("SET synchronous_commit = on")

    async def _migrate(self, conn: psycopg.AsyncConnection[DictRow]) -> None:
        async with conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))
            await conn.execute(
                "CREATE TABLE IF NOT EXISTS btogether_schema (version INTEGER NOT NULL)"
            )
            row = await (await conn.execute("SELECT version FROM btogether_schema")).fetchone()
            if row is None:
                await conn.execute("INSERT INTO btogether_schema VALUES (0)")
                version = 0
            else:
                version = int(row["version"])
            if version > len(MIGRATIONS):
                raise StoreUnavailable(
                    f"the database has schema version {version}, newer than this relay knows "
                    f"({len(MIGRATIONS)}): upgrade btogether"
                )
            for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
                await conn.execute(script.encode())
                await conn.execute("UPDATE btogether_schema SET version = %s", (number,))
                log.info("store_migrated", version=number)

    async def _check_durability(self, conn: psycopg.AsyncConnection[DictRow]) -> bool:
        """Whether sessions must turn ``synchronous_commit`` back on (the server default
        is off, which would acknowledge changes before they are durable)."""
        row = await (
            await conn.execute(
                "SELECT current_setting('synchronous_commit') AS sync,"
                " current_setting('fsync') AS fsync"
            )
        ).fetchone()
        assert row is not None
        if row["fsync"] != "on":
            log.warning(
                "store_not_durable",
                detail="the PostgreSQL server runs with fsync=off: acknowledged changes can be "
                "lost if the machine stops",
            )
        return bool(row["sync"] == "off")

    async def prune(self, now: float) -> None:
        version = await self.directory_version()
        floor = version - CHANGE_LOG_KEPT
        if floor > 0:
            await self.run(
                Stmt("DELETE FROM directory_changes WHERE version <= %s", (floor,)),
                Stmt(
                    "UPDATE meta SET value = GREATEST(value, %s) WHERE key = 'changes_floor'",
                    (floor,),
                ),
            )
        await self.run(Stmt("DELETE FROM ephemeral WHERE expires_at <= %s", (now,)))

    # --- plumbing --------------------------------------------------------------------
    def _went_down(self, why: str) -> None:
        if self._down_since is None:
            self._down_since = time.monotonic()
            log.warning("store_unreachable", database=redact(self.url), error=why)

    def _came_back(self) -> None:
        if self._down_since is not None:
            log.info(
                "store_reachable_again",
                database=redact(self.url),
                outage_s=round(time.monotonic() - self._down_since, 3),
            )
            self._down_since = None

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[psycopg.AsyncConnection[DictRow]]:
        """A pooled connection (autocommit, rows as dicts); psycopg's errors pass through."""
        if self._pool is None:
            raise StoreUnavailable("store is not open")
        wait = self.outage_wait if self._down_since is not None else self.acquire_timeout
        async with self._pool.connection(timeout=wait) as conn:
            yield conn

    async def run(self, *stmts: Stmt) -> list[Outcome]:
        """Run statements as one transaction (one statement: on its own, committed at once)
        and return their outcomes once committed. Refusals raise StoreConflict; an
        unreachable database StoreUnavailable."""
        for attempt in range(1, _RETRIES + 1):
            try:
                async with asyncio.timeout(self.statement_timeout + self.acquire_timeout):
                    async with self.connection() as conn:
                        outcomes = await self._transaction(conn, stmts)
            except _Refused as exc:
                self._came_back()
                raise StoreConflict(str(exc)) from None
            except errors.TransactionRollback as exc:  # deadlock, serialisation failure
                if attempt < _RETRIES:
                    log.info("store_retry", error=type(exc).__name__, attempt=attempt)
                    await asyncio.sleep(0.01 * attempt)
                    continue
                raise StoreUnavailable("the database stayed too busy; nothing changed") from None
            except (psycopg.IntegrityError, psycopg.DataError) as exc:
                self._came_back()
                log.debug("store_write_refused", error=str(exc))
                raise StoreConflict(_conflict_message(exc)) from None
            except (psycopg.OperationalError, psycopg.InterfaceError, TimeoutError, OSError) as exc:
                self._went_down(" ".join(str(exc).split()) or type(exc).__name__)
                raise StoreUnavailable("the database cannot be reached") from exc
            self._came_back()
            return outcomes
        raise AssertionError("unreachable")  # the loop returns or raises

    @staticmethod
    async def _transaction(
        conn: psycopg.AsyncConnection[DictRow], stmts: Sequence[Stmt]
    ) -> list[Outcome]:
        if len(stmts) == 1 and not stmts[0].many:
            return [await PostgresStore._execute(conn, stmts[0])]
        async with conn.transaction():
            return [await PostgresStore._execute(conn, stmt) for stmt in stmts]

    @staticmethod
    async def _execute(conn: psycopg.AsyncConnection[DictRow], stmt: Stmt) -> Outcome:
        async with conn.cursor() as cursor:
            if stmt.many:
                if not stmt.params:
                    return 0
                await cursor.executemany(stmt.sql, stmt.params)
                return max(cursor.rowcount, 0)
            await cursor.execute(stmt.sql, stmt.params or None)
            if stmt.rows:
                rows = await cursor.fetchall()
                changed = len(rows)
                outcome: Outcome = rows
            else:
                changed = cursor.rowcount
                outcome = changed
        if stmt.expect_one is not None and changed != 1:
            raise _Refused(stmt.expect_one)
        return outcome

    async def _write(self, *stmts: Stmt) -> list[Outcome]:
        return await self.run(*stmts)

    def _statement(
        self, sql: str, params: Any, *, many: bool = False, expect_one: str | None = None
    ) -> Stmt:
        return Stmt(percent_placeholders(sql), params, many=many, expect_one=expect_one)

    async def _directory_write(self, *stmts: Stmt) -> list[Outcome]:
        """A transaction that changes directory tables: the version row locked first."""
        return (await self.run(LOCK_DIRECTORY, *stmts))[1:]

    async def _count(self, *stmts: Stmt) -> int:
        return cast(int, (await self.run(*stmts))[0])

    async def all(self, sql: str, *params: Any) -> list[DictRow]:
        """Rows of one query. A parameter the database cannot hold (text with NUL) matches
        nothing, as it would on SQLite. A read that met a dead connection (PostgreSQL
        restarted since it was last used) is tried once more: reading twice is harmless,
        and the failure has made the pool check connections again."""
        for attempt in (1, 2):
            try:
                (rows,) = await self.run(Stmt(sql, params, rows=True))
            except StoreConflict:
                return []
            except StoreUnavailable as exc:
                if attempt == 1 and isinstance(exc.__cause__, psycopg.OperationalError) and not (
                    isinstance(exc.__cause__, PoolTimeout)
                ):
                    continue
                raise
            return cast(list[DictRow], rows)
        raise AssertionError("unreachable")

    async def one(self, sql: str, *params: Any) -> DictRow | None:
        rows = await self.all(sql, *params)
        return rows[0] if rows else None

    async def _meta(self, key: str) -> int:
        row = await self.one("SELECT value FROM meta WHERE key = %s", key)
        return int(row["value"]) if row else 0

    async def directory_version(self) -> int:
        return await self._meta("directory_version")

    async def pairings_version(self) -> int:
        return await self._meta("pairings_version")

    async def changes_since(self, version: int) -> list[DirectoryChange] | None:
        rows = await self.all(
            "SELECT version, kind, id, (SELECT value FROM meta WHERE key = 'changes_floor')"
            " AS floor FROM directory_changes WHERE version > %s ORDER BY version",
            version,
        )
        floor = rows[0]["floor"] if rows else await self._meta("changes_floor")
        if version < floor:
            return None
        return [DirectoryChange(r["version"], r["kind"], r["id"]) for r in rows]

    # --- directory -------------------------------------------------------------------
    async def add_tenant(self, tenant: Tenant) -> None:
        await self._directory_write(
            Stmt(
                "INSERT INTO tenants (id, name, default_policy_id) VALUES (%s, %s, %s)",
                (tenant.id, tenant.name, tenant.default_policy_id),
            )
        )

    async def add_policy(self, policy: Policy) -> None:
        await self._directory_write(
            Stmt(
                "INSERT INTO policies (id, tenant_id, name, allow_better_together,"
                " proximity_join, beaconing) VALUES (%s, %s, %s, %s, %s, %s)",
                (
                    policy.id,
                    policy.tenant_id,
                    policy.name,
                    policy.allow_better_together,
                    policy.proximity_join,
                    policy.beaconing,
                ),
            )
        )

    async def sign_in_device(self, device_id: str, user_id: str | None, state: DeviceState) -> None:
        await self._directory_write(
            *_end_phone_session(device_id, user_id),
            Stmt(
                "UPDATE devices SET user_id = %s, state = %s WHERE id = %s",
                (user_id, state, device_id),
                expect_one="no such device",
            ),
        )

    async def tenant(self, tenant_id: str) -> Tenant | None:
        row = await self.one("SELECT * FROM tenants WHERE id = %s", tenant_id)
        return store_rows.tenant(row) if row else None

    async def tenants(self) -> list[Tenant]:
        return [
            store_rows.tenant(r)
            for r in await self.all("SELECT * FROM tenants ORDER BY id")
        ]

    async def policy(self, policy_id: str) -> Policy | None:
        row = await self.one("SELECT * FROM policies WHERE id = %s", policy_id)
        return store_rows.policy(row) if row else None

    async def user(self, user_id: str) -> User | None:
        row = await self.one("SELECT * FROM users WHERE id = %s", user_id)
        return store_rows.user(row) if row else None

    async def users(
        self, tenant_id: str, *, after: str | None = None, limit: int = MAX_PAGE
    ) -> list[User]:
        return [
            store_rows.user(r)
            for r in await self.all(
                "SELECT * FROM users WHERE tenant_id = %s AND id > %s ORDER BY id LIMIT %s",
                tenant_id,
                after or "",
                max(limit, 0),
            )
        ]

    async def device(self, device_id: str) -> Device | None:
        row = await self.one("SELECT * FROM devices WHERE id = %s", device_id)
        return store_rows.device(row) if row else None

    async def devices(
        self,
        tenant_id: str | None = None,
        *,
        after: str | None = None,
        limit: int | None = None,
        state: DeviceState | None = None,
    ) -> list[Device]:
        where = ["id > %s"]
        params: list[Any] = [after or ""]
        if tenant_id is not None:
            where.append("tenant_id = %s")
            params.append(tenant_id)
        if state is not None:
            where.append("state = %s")
            params.append(state)
        # SQLite reads a negative LIMIT as none; PostgreSQL refuses it: NULL means none.
        params.append(None if limit is None or limit < 0 else limit)
        rows = await self.all(
            f"SELECT * FROM devices WHERE {' AND '.join(where)} ORDER BY id LIMIT %s",  # noqa: S608
            *params,
        )
        return [store_rows.device(r) for r in rows]

    async def credential(self, credential_id: str) -> Credential | None:
        row = await self.one("SELECT * FROM credentials WHERE id = %s", credential_id)
        return store_rows.credential(row) if row else None

    async def credential_by_hash(self, token_hash: bytes) -> Credential | None:
        row = await self.one("SELECT * FROM credentials WHERE token_hash = %s", token_hash)
        return store_rows.credential(row) if row else None

    async def credentials_of(self, tenant_id: str, subject_id: str | None) -> list[Credential]:
        if subject_id is None:
            rows = await self.all(
                "SELECT * FROM credentials WHERE tenant_id = %s ORDER BY created_at, id",
                tenant_id,
            )
        else:
            rows = await self.all(
                "SELECT * FROM credentials WHERE tenant_id = %s AND subject_id = %s"
                " ORDER BY created_at, id",
                tenant_id,
                subject_id,
            )
        return [store_rows.credential(r) for r in rows]

    # --- pairings --------------------------------------------------------------------
    async def add_pairing(self, pairing: Pairing) -> None:
        await self.add_pairings([pairing])

    async def add_pairings(self, pairings: Sequence[Pairing]) -> None:
        await self.run(
            Stmt(
                "INSERT INTO pairings (user_id, laptop_id, laptop_name, phone_id, tenant_id,"
                " created_at) VALUES (%s, %s, %s, %s, %s, %s)"
                " ON CONFLICT (user_id, laptop_id, phone_id) DO UPDATE SET"
                " laptop_name = excluded.laptop_name, tenant_id = excluded.tenant_id,"
                " created_at = excluded.created_at",
                [
                    (p.user_id, p.laptop_id, p.laptop_name, p.phone_id, p.tenant_id, p.created_at)
                    for p in pairings
                ],
                many=True,
            ),
            _BUMP_PAIRINGS_VERSION,
        )

    async def remove_pairing(self, user_id: str, laptop_id: str, phone_id: str) -> bool:
        return (
            await self._count(
                Stmt(
                    "DELETE FROM pairings WHERE user_id = %s AND laptop_id = %s AND phone_id = %s",
                    (user_id, laptop_id, phone_id),
                ),
                _BUMP_PAIRINGS_VERSION,
            )
            == 1
        )

    async def pairings_of_laptop(self, user_id: str, laptop_id: str) -> list[Pairing]:
        rows = await self.all(
            "SELECT * FROM pairings WHERE user_id = %s AND laptop_id = %s ORDER BY phone_id",
            user_id,
            laptop_id,
        )
        return [store_rows.pairing(r) for r in rows]

    async def pairings_of_phone(self, phone_id: str) -> list[Pairing]:
        rows = await self.all(
            "SELECT * FROM pairings WHERE phone_id = %s ORDER BY user_id, laptop_id", phone_id
        )
        return [store_rows.pairing(r) for r in rows]

    async def tenant_pairings(
        self, tenant_id: str, *, after: str | None = None, limit: int = MAX_PAGE
    ) -> list[Pairing]:
        """Pairings of a tenant, ordered by (user, laptop, phone); ``after`` is the last
        one's ``user_id/laptop_id/phone_id``."""
        rows = await self.all(
            "SELECT * FROM pairings WHERE tenant_id = %s"
            " AND (user_id || '/' || laptop_id || '/' || phone_id) COLLATE \"C\" > %s"
            " ORDER BY user_id, laptop_id, phone_id LIMIT %s",
            tenant_id,
            after or "",
            max(limit, 0),
        )
        return [store_rows.pairing(r) for r in rows]

    # --- lock state ------------------------------------------------------------------
    async def lock_record(self, phone_id: str) -> LockRecord | None:
        row = await self.one("SELECT * FROM lock_states WHERE phone_id = %s", phone_id)
        return store_rows.lock(row) if row else None

    async def set_desired_lock(
        self, phone_ids: Sequence[str], state: LockState, user_id: str, laptop_id: str, now: float
    ) -> list[LockRecord]:
        """Committed before it returns. A phone named twice is changed once. The changes
        of one event-loop iteration are written together: one statement for all of them
        (one round trip and one WAL flush, as SQLite's group commit), more only where a
        phone is changed twice (in call order, in one transaction)."""
        unique = list(dict.fromkeys(phone_ids))
        if not unique:
            return []
        future: asyncio.Future[list[DictRow]] = asyncio.get_running_loop().create_future()
        self._lock_queue.append((_LockChange(unique, state, user_id, laptop_id, now), future))
        if len(self._lock_queue) == 1:
            asyncio.get_running_loop().call_soon(self._flush_lock_changes)
        records = {r.phone_id: r for r in map(store_rows.lock, await future)}
        return [records[phone_id] for phone_id in phone_ids]

    def _flush_lock_changes(self) -> None:
        batch, self._lock_queue = self._lock_queue, []
        if batch:
            self._write_soon(self._write_lock_changes(batch))

    def _write_soon(self, write: Coroutine[Any, Any, None]) -> None:
        """Run a batch's write as a task of its own (closing the store waits for it)."""
        task = asyncio.get_running_loop().create_task(write)
        self._lock_writers.add(task)
        task.add_done_callback(self._lock_writers.discard)

    async def _write_lock_changes(
        self, batch: list[tuple[_LockChange, asyncio.Future[list[DictRow]]]]
    ) -> None:
        rounds = _lock_rounds([change.phones for change, _ in batch])
        results: list[list[DictRow] | BaseException]
        try:
            outcomes = await self.run(
                *(_lock_upsert([batch[index][0] for index in indexes]) for indexes in rounds)
            )
        except StoreConflict as exc:
            if len(batch) > 1:  # one bad change (an unknown phone) must not fail the others
                for change in batch:  # one by one, in call order
                    await self._write_lock_changes([change])
                return
            results = [exc]
        except Exception as exc:  # whatever it was, every caller is told
            results = [exc] * len(batch)
        else:
            results = [StoreUnavailable("lock write unreadable")] * len(batch)
            for indexes, rows in zip(rounds, outcomes, strict=True):
                written = {row["phone_id"]: row for row in cast(list[DictRow], rows)}
                for index in indexes:
                    phones = batch[index][0].phones
                    if all(phone in written for phone in phones):
                        results[index] = [written[phone] for phone in phones]
        for (_, future), outcome in zip(batch, results, strict=True):
            if future.done():  # the caller gave up (cancelled)
                continue
            if isinstance(outcome, BaseException):
                future.set_exception(outcome)
            else:
                future.set_result(outcome)

    async def ack_lock(self, phone_id: str, seq: int) -> Acknowledged | None:
        """The acks of one event-loop iteration are written together, in one statement
        (more only where a phone acked twice)."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[DictRow | None] = loop.create_future()
        self._ack_queue.append((phone_id, seq, future))
        if len(self._ack_queue) == 1:
            loop.call_soon(self._flush_acks)
        row = await future
        if row is None:
            return None
        return Acknowledged(store_rows.lock(row), news=bool(row["news"]))

    def _flush_acks(self) -> None:
        batch, self._ack_queue = self._ack_queue, []
        if batch:
            self._write_soon(self._write_acks(batch))

    async def _write_acks(
        self, batch: list[tuple[str, int, asyncio.Future[DictRow | None]]]
    ) -> None:
        for indexes in _lock_rounds([[phone_id] for phone_id, _, _ in batch]):
            acks = [batch[index] for index in indexes]
            stmt = (
                Stmt(_LOCK_ACK, {"phone": acks[0][0], "seq": acks[0][1]}, rows=True)
                if len(acks) == 1  # a smaller plan for PostgreSQL than the batch's
                else Stmt(_LOCK_ACKS, ([a[0] for a in acks], [a[1] for a in acks]), rows=True)
            )
            try:
                (rows,) = await self.run(stmt)
            except Exception as exc:  # whatever it was, each caller is told
                for *_, future in acks:
                    if not future.done():
                        future.set_exception(exc)
                continue
            found = {row["phone_id"]: row for row in cast(list[DictRow], rows)}
            for phone_id, _, future in acks:
                if not future.done():  # the caller gave up (cancelled)
                    future.set_result(found.get(phone_id))

    # --- administrators ------------------------------------------------------------------
    async def add_admin(self, admin: AdminRecord, token_hash: bytes, credential_id: str) -> None:
        await self.run(
            Stmt(
                "INSERT INTO admins (id, name, role, tenant_id, created_at)"
                " VALUES (%s, %s, %s, %s, %s)",
                (admin.id, admin.name, admin.role, admin.tenant_id, admin.created_at),
            ),
            Stmt(
                "INSERT INTO admin_credentials (id, token_hash, admin_id, created_at)"
                " VALUES (%s, %s, %s, %s)",
                (credential_id, token_hash, admin.id, admin.created_at),
            ),
        )

    async def add_admin_credential(
        self, admin_id: str, token_hash: bytes, credential_id: str, now: float
    ) -> None:
        await self.run(
            Stmt(
                "INSERT INTO admin_credentials (id, token_hash, admin_id, created_at)"
                " VALUES (%s, %s, %s, %s)",
                (credential_id, token_hash, admin_id, now),
            )
        )

    async def admin_by_token_hash(self, token_hash: bytes) -> AdminRecord | None:
        row = await self.one(
            "SELECT a.* FROM admin_credentials c JOIN admins a ON a.id = c.admin_id"
            " WHERE c.token_hash = %s AND c.revoked_at IS NULL",
            token_hash,
        )
        return store_rows.admin(row) if row else None

    async def admin_credential_by_hash(self, token_hash: bytes) -> AdminCredential | None:
        row = await self.one("SELECT * FROM admin_credentials WHERE token_hash = %s", token_hash)
        return store_rows.admin_credential(row) if row else None

    async def admin_by_credential(self, credential_id: str) -> AdminRecord | None:
        row = await self.one(
            "SELECT a.* FROM admin_credentials c JOIN admins a ON a.id = c.admin_id"
            " WHERE c.id = %s AND c.revoked_at IS NULL",
            credential_id,
        )
        return store_rows.admin(row) if row else None

    async def admin(self, admin_id: str) -> AdminRecord | None:
        row = await self.one("SELECT * FROM admins WHERE id = %s", admin_id)
        return store_rows.admin(row) if row else None

    async def admins(self, tenant_id: str | None) -> list[AdminRecord]:
        if tenant_id is None:
            rows = await self.all("SELECT * FROM admins ORDER BY created_at, id")
        else:
            rows = await self.all(
                "SELECT * FROM admins WHERE tenant_id = %s ORDER BY created_at, id", tenant_id
            )
        return [store_rows.admin(r) for r in rows]

    async def admin_credentials(self, admin_id: str) -> list[AdminCredential]:
        rows = await self.all(
            "SELECT * FROM admin_credentials WHERE admin_id = %s ORDER BY created_at, id",
            admin_id,
        )
        return [store_rows.admin_credential(r) for r in rows]

    async def revoke_admin_credential(self, credential_id: str, now: float) -> bool:
        count = await self._count(
            Stmt(
                "UPDATE admin_credentials SET revoked_at = %s WHERE id = %s AND revoked_at IS NULL",
                (now, credential_id),
            )
        )
        return count == 1

    async def owner_count(self) -> int:
        row = await self.one("SELECT count(*) AS n FROM admins WHERE role = 'owner'")
        return int(row["n"]) if row else 0

    # --- verification codes and provisioning -----------------------------------------------
    async def set_verification_code(self, device_id: str, code: IssuedCode) -> None:
        """Store a device's code; the previous one (used or not) is gone."""
        await self.run(
            Stmt(
                "INSERT INTO verification_codes (device_id, code_hash, issued_at, expires_at,"
                " used_at) VALUES (%s, %s, %s, %s, %s) ON CONFLICT (device_id) DO UPDATE SET"
                " code_hash = excluded.code_hash, issued_at = excluded.issued_at,"
                " expires_at = excluded.expires_at, used_at = excluded.used_at",
                (device_id, code.code_hash, code.issued_at, code.expires_at, code.used_at),
            )
        )

    async def verification_code(self, device_id: str) -> IssuedCode | None:
        row = await self.one("SELECT * FROM verification_codes WHERE device_id = %s", device_id)
        if row is None:
            return None
        return IssuedCode(row["code_hash"], row["issued_at"], row["expires_at"], row["used_at"])

    async def devices_by_mac(self, mac: str) -> list[Device]:
        rows = await self.all("SELECT * FROM devices WHERE mac = %s ORDER BY id", mac)
        return [store_rows.device(r) for r in rows]

    async def provision_device(
        self,
        device_id: str,
        code_hash: str,
        identity_key: bytes,
        credential: Credential,
        now: float,
    ) -> None:
        await self._directory_write(
            Stmt(
                "UPDATE verification_codes SET used_at = %s WHERE device_id = %s"
                " AND code_hash = %s AND used_at IS NULL AND expires_at > %s",
                (now, device_id, code_hash, now),
                expect_one="the verification code was used or replaced meanwhile",
            ),
            Stmt(
                "UPDATE devices SET state = 'waiting_for_sign_in', user_id = NULL,"
                " identity_key = %s WHERE id = %s AND state = 'waiting_for_activation'",
                (identity_key, device_id),
                expect_one="the device is no longer waiting for activation",
            ),
            _revoke_device_credentials(device_id, now),
            Stmt(_PG_CREDENTIAL_INSERT, store_rows.credential_values(credential)),
        )

    async def reset_device(self, device_id: str, now: float) -> None:
        """Factory reset: credentials revoked, back to waiting for activation, pairings gone."""
        await self._directory_write(
            _revoke_device_credentials(device_id, now),
            Stmt(
                "UPDATE devices SET state = 'waiting_for_activation', user_id = NULL"
                " WHERE id = %s",
                (device_id,),
            ),
            *_end_phone_session(device_id),
        )

    async def remove_device(self, device_id: str, now: float) -> None:
        await self._directory_write(
            _revoke_device_credentials(device_id, now),
            Stmt("DELETE FROM verification_codes WHERE device_id = %s", (device_id,)),
            Stmt(
                "DELETE FROM console_pairings WHERE console_id = %s OR room_id = %s",
                (device_id, device_id),
            ),
            Stmt("DELETE FROM pairings WHERE phone_id = %s", (device_id,)),
            _BUMP_PAIRINGS_VERSION,
            Stmt("DELETE FROM lock_states WHERE phone_id = %s", (device_id,)),
            Stmt("DELETE FROM devices WHERE id = %s", (device_id,)),
        )

    async def sign_in_device_as(
        self, device_id: str, user_id: str | None, state: DeviceState, mode: DeviceMode
    ) -> None:
        await self._directory_write(
            *_end_phone_session(device_id, user_id),
            Stmt(
                "UPDATE devices SET user_id = %s, state = %s, mode = %s WHERE id = %s",
                (user_id, state, mode, device_id),
                expect_one="no such device",
            ),
        )

    # --- policies --------------------------------------------------------------------------
    async def update_policy(self, policy: Policy, auto_confirm: bool) -> None:
        await self._directory_write(
            Stmt(
                "UPDATE policies SET allow_better_together = %s, proximity_join = %s,"
                " beaconing = %s, auto_confirm = %s WHERE id = %s",
                (
                    policy.allow_better_together,
                    policy.proximity_join,
                    policy.beaconing,
                    auto_confirm,
                    policy.id,
                ),
            )
        )

    async def policy_auto_confirm(self, policy_id: str) -> bool:
        row = await self.one("SELECT auto_confirm FROM policies WHERE id = %s", policy_id)
        return bool(row["auto_confirm"]) if row else False

    async def policy_ids(self, tenant_id: str) -> list[str]:
        rows = await self.all(
            "SELECT id FROM policies WHERE tenant_id = %s ORDER BY name", tenant_id
        )
        return [r["id"] for r in rows]

    # --- consoles ----------------------------------------------------------------------------
    async def pair_console(self, pairing: ConsolePairing) -> None:
        await self.run(
            Stmt(
                "INSERT INTO console_pairings (console_id, room_id, tenant_id, created_at)"
                " VALUES (%s, %s, %s, %s) ON CONFLICT (console_id) DO UPDATE SET"
                " room_id = excluded.room_id, tenant_id = excluded.tenant_id,"
                " created_at = excluded.created_at",
                (pairing.console_id, pairing.room_id, pairing.tenant_id, pairing.created_at),
            )
        )

    async def unpair_console(self, console_id: str) -> bool:
        count = await self._count(
            Stmt("DELETE FROM console_pairings WHERE console_id = %s", (console_id,))
        )
        return count == 1

    async def console_pairing(self, console_id: str) -> ConsolePairing | None:
        row = await self.one("SELECT * FROM console_pairings WHERE console_id = %s", console_id)
        return store_rows.console(row) if row else None

    async def console_pairings(self, tenant_id: str) -> list[ConsolePairing]:
        rows = await self.all(
            "SELECT * FROM console_pairings WHERE tenant_id = %s ORDER BY console_id", tenant_id
        )
        return [store_rows.console(r) for r in rows]

    # --- audit -------------------------------------------------------------------------------
    async def add_audit(
        self,
        at: float,
        actor: str,
        tenant_id: str | None,
        action: str,
        target: str,
        outcome: str,
        detail: dict[str, Any],
    ) -> None:
        await self.run(
            Stmt(
                "INSERT INTO audit_log (at, actor, tenant_id, action, target, outcome, detail)"
                " VALUES (%s, %s, %s, %s, %s, %s, %s)",
                (at, actor, tenant_id, action, target, outcome, json.dumps(detail, default=str)),
            )
        )

    async def audit(
        self, tenant_id: str | None, limit: int, *, before: int | None = None
    ) -> list[AuditRecord]:
        below = before if before is not None else 2**62
        if tenant_id is None:
            rows = await self.all(
                "SELECT * FROM audit_log WHERE seq < %s ORDER BY seq DESC LIMIT %s",
                below,
                max(limit, 0),
            )
        else:
            rows = await self.all(
                "SELECT * FROM audit_log WHERE tenant_id = %s AND seq < %s"
                " ORDER BY seq DESC LIMIT %s",
                tenant_id,
                below,
                max(limit, 0),
            )
        return [
            AuditRecord(
                r["seq"],
                r["at"],
                r["actor"],
                r["tenant_id"],
                r["action"],
                r["target"],
                r["outcome"],
                json.loads(r["detail"]),
            )
            for r in reversed(rows)
        ]

    # --- renaming and deleting (relay.admin.edits) ---------------------------------------
    async def devices_signed_in_as(self, user_id: str) -> list[str]:
        rows = await self.all("SELECT id FROM devices WHERE user_id = %s ORDER BY id", user_id)
        return [r["id"] for r in rows]

    async def delete_user(self, user_id: str, now: float) -> None:
        """The account, its pairings and lock states gone, its laptop credentials revoked."""
        await self._directory_write(
            Stmt(
                "UPDATE credentials SET revoked_at = %s WHERE subject_kind = 'user'"
                " AND subject_id = %s AND revoked_at IS NULL",
                (now, user_id),
            ),
            Stmt("DELETE FROM pairings WHERE user_id = %s", (user_id,)),
            _BUMP_PAIRINGS_VERSION,
            Stmt("DELETE FROM lock_states WHERE user_id = %s", (user_id,)),
            Stmt("DELETE FROM users WHERE id = %s", (user_id,)),
        )

    async def delete_policy(self, policy_id: str) -> None:
        """The policy gone; whoever had it falls back to the default."""
        await self._directory_write(
            Stmt("UPDATE users SET policy_id = NULL WHERE policy_id = %s", (policy_id,)),
            Stmt("UPDATE devices SET policy_id = NULL WHERE policy_id = %s", (policy_id,)),
            Stmt(
                "UPDATE tenants SET default_policy_id = NULL WHERE default_policy_id = %s",
                (policy_id,),
            ),
            Stmt("DELETE FROM policies WHERE id = %s", (policy_id,)),
        )

    async def tenant_admins(self, tenant_id: str) -> list[AdminRecord]:
        rows = await self.all("SELECT * FROM admins WHERE tenant_id = %s ORDER BY id", tenant_id)
        return [store_rows.admin(r) for r in rows]

    async def delete_tenant(self, tenant_id: str) -> None:
        """An empty tenant gone, with its policies and its device administrators (and their
        credentials: a deleted administrator's token stops working)."""
        await self._directory_write(
            Stmt(
                "DELETE FROM admin_credentials WHERE admin_id IN"
                " (SELECT id FROM admins WHERE tenant_id = %s)",
                (tenant_id,),
            ),
            Stmt("DELETE FROM admins WHERE tenant_id = %s", (tenant_id,)),
            Stmt("UPDATE tenants SET default_policy_id = NULL WHERE id = %s", (tenant_id,)),
            Stmt("DELETE FROM policies WHERE tenant_id = %s", (tenant_id,)),
            Stmt("DELETE FROM credentials WHERE tenant_id = %s", (tenant_id,)),
            Stmt("DELETE FROM tenants WHERE id = %s", (tenant_id,)),
        )
