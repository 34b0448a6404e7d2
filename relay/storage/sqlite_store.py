"""The SQLite :class:`~relay.domain.store.RelayStore`: one file, migrated on open, writes
group-committed.

The embedded default: one relay process, nothing else installed. Reads run on a
connection owned by the event loop's thread (WAL lets them proceed while a commit is
under way; they are index lookups of a few microseconds). Writes go through
:class:`~relay.storage.sqlite_writer.Writer`, which group-commits them (written to the WAL;
with ``synchronous="full"`` also fsynced) and only then resolves each writer's future.

A lock ``seq`` is computed by the upsert itself (``RETURNING``) and a verification
code is used by a conditional update, so another process on the same file (the
``btogether admin --db`` commands, another relay) never makes this one write stale
state. The one thing cached is the lock records this process read or wrote (a phone's
``lock.ack`` would otherwise read the row it was just sent), and only while that cache
provably equals the file: with ``synchronous="normal"`` (the writer commits on the
event loop's thread), each use first asks the writer's connection for ``PRAGMA
data_version``, which changes exactly when *another* connection committed to the file,
and drops the cache if it did; every other write of this process drops it too (and
bypasses it until committed).

The database holds every device's identity key, so it is created owner-only and a file
that others may read is refused (with the command that fixes it).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import os
import sqlite3
import stat
from collections.abc import Sequence
from pathlib import Path
from typing import Any, cast

import structlog

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
from relay.storage.sql_directory import CREDENTIAL_INSERT, DirectoryWrites
from relay.storage.sqlite_writer import (
    Op,
    Outcome,
    Refused,
    Synchronous,
    Writer,
    WriterStats,
    connect,
    migrate,
)

log = structlog.get_logger("relay.store")

__all__ = ["MIGRATIONS", "InsecureDatabase", "SqliteStore", "Synchronous", "WriterStats"]

_DIRECTORY_TABLES = ("tenants", "policies", "users", "devices", "credentials")


def _version_triggers() -> str:
    parts = []
    for table in _DIRECTORY_TABLES:
        for op in ("INSERT", "UPDATE", "DELETE"):
            parts.append(
                f"CREATE TRIGGER {table}_{op.lower()}_version AFTER {op} ON {table} BEGIN "  # noqa: S608
                "UPDATE meta SET value = value + 1 WHERE key = 'directory_version'; END;"
            )
    return "\n".join(parts)


_SCHEMA_V1 = """
    CREATE TABLE meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
    INSERT INTO meta VALUES ('directory_version', 0);
    CREATE TABLE tenants (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        default_policy_id TEXT REFERENCES policies(id)
    );
    CREATE TABLE policies (
        id TEXT PRIMARY KEY,
        tenant_id TEXT NOT NULL REFERENCES tenants(id),
        name TEXT NOT NULL,
        allow_better_together TEXT NOT NULL
            CHECK (allow_better_together IN ('Enabled', 'Disabled')),
        proximity_join TEXT NOT NULL CHECK (proximity_join IN ('auto', 'prompt', 'off')),
        beaconing INTEGER NOT NULL,
        UNIQUE (tenant_id, name)
    );
    CREATE TABLE users (
        id TEXT PRIMARY KEY,
        tenant_id TEXT NOT NULL REFERENCES tenants(id),
        name TEXT NOT NULL,
        policy_id TEXT REFERENCES policies(id)
    );
    CREATE TABLE devices (
        id TEXT PRIMARY KEY,
        tenant_id TEXT NOT NULL REFERENCES tenants(id),
        name TEXT NOT NULL,
        kind TEXT NOT NULL CHECK (kind IN ('room_system', 'conference_phone', 'desk_phone')),
        mode TEXT NOT NULL CHECK (mode IN ('personal', 'common_area', 'meeting_room')),
        identity_key BLOB NOT NULL CHECK (length(identity_key) = 16),
        rotation_exponent INTEGER NOT NULL CHECK (rotation_exponent BETWEEN 0 AND 15),
        location TEXT NOT NULL DEFAULT '',
        mac TEXT,
        state TEXT NOT NULL,
        user_id TEXT REFERENCES users(id),
        policy_id TEXT REFERENCES policies(id),
        capabilities TEXT NOT NULL DEFAULT ''
    );
    CREATE INDEX devices_tenant ON devices (tenant_id);
    CREATE TABLE credentials (
        id TEXT PRIMARY KEY,
        token_hash BLOB NOT NULL UNIQUE,
        subject_kind TEXT NOT NULL CHECK (subject_kind IN ('user', 'device')),
        subject_id TEXT NOT NULL,
        tenant_id TEXT NOT NULL REFERENCES tenants(id),
        created_at REAL NOT NULL,
        revoked_at REAL
    );
    CREATE TABLE pairings (
        user_id TEXT NOT NULL REFERENCES users(id),
        laptop_id TEXT NOT NULL,
        laptop_name TEXT NOT NULL,
        phone_id TEXT NOT NULL REFERENCES devices(id),
        tenant_id TEXT NOT NULL REFERENCES tenants(id),
        created_at REAL NOT NULL,
        PRIMARY KEY (user_id, laptop_id, phone_id)
    );
    CREATE INDEX pairings_phone ON pairings (phone_id);
    CREATE TABLE lock_states (
        phone_id TEXT PRIMARY KEY REFERENCES devices(id),
        seq INTEGER NOT NULL,
        state TEXT NOT NULL CHECK (state IN ('locked', 'unlocked')),
        user_id TEXT NOT NULL,
        laptop_id TEXT NOT NULL,
        updated_at REAL NOT NULL,
        acked_seq INTEGER NOT NULL DEFAULT 0
    );
"""

# Provisioning, administrators, consoles and the audit log.
_SCHEMA_V2 = """
    CREATE TABLE admins (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        role TEXT NOT NULL CHECK (role IN ('owner', 'device_admin')),
        tenant_id TEXT REFERENCES tenants(id),
        created_at REAL NOT NULL,
        CHECK ((role = 'owner') = (tenant_id IS NULL))
    );
    CREATE TABLE admin_credentials (
        id TEXT PRIMARY KEY,
        token_hash BLOB NOT NULL UNIQUE,
        admin_id TEXT NOT NULL REFERENCES admins(id),
        created_at REAL NOT NULL,
        revoked_at REAL
    );
    CREATE TABLE verification_codes (
        device_id TEXT PRIMARY KEY REFERENCES devices(id),
        code_hash TEXT NOT NULL,
        issued_at REAL NOT NULL,
        expires_at REAL NOT NULL,
        used_at REAL
    );
    CREATE TABLE console_pairings (
        console_id TEXT PRIMARY KEY REFERENCES devices(id),
        room_id TEXT NOT NULL REFERENCES devices(id),
        tenant_id TEXT NOT NULL REFERENCES tenants(id),
        created_at REAL NOT NULL
    );
    CREATE TABLE audit_log (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        at REAL NOT NULL,
        actor TEXT NOT NULL,
        tenant_id TEXT,
        action TEXT NOT NULL,
        target TEXT NOT NULL,
        outcome TEXT NOT NULL,
        detail TEXT NOT NULL
    );
    CREATE INDEX audit_tenant ON audit_log (tenant_id, seq);
    ALTER TABLE policies ADD COLUMN auto_confirm INTEGER NOT NULL DEFAULT 0;
    CREATE UNIQUE INDEX devices_mac ON devices (mac) WHERE mac IS NOT NULL;
"""

# Sign-in for people in the browser (relay.web.accounts reads them): logins and their
# password hashes, one-time set-up links, browser sessions with their CSRF secrets, the
# sign-in throttle, and laptops' device-authorisation grants (RFC 8628).
_SCHEMA_V3 = """
    CREATE TABLE web_logins (
        login TEXT PRIMARY KEY,
        subject_kind TEXT NOT NULL CHECK (subject_kind IN ('admin', 'user')),
        subject_id TEXT NOT NULL,
        password_hash TEXT,
        updated_at REAL NOT NULL,
        UNIQUE (subject_kind, subject_id)
    );
    CREATE TABLE web_setup_links (
        token_hash BLOB PRIMARY KEY,
        subject_kind TEXT NOT NULL CHECK (subject_kind IN ('admin', 'user')),
        subject_id TEXT NOT NULL,
        login TEXT NOT NULL,
        created_at REAL NOT NULL,
        expires_at REAL NOT NULL,
        used_at REAL
    );
    CREATE TABLE web_sessions (
        token_hash BLOB PRIMARY KEY,
        subject_kind TEXT NOT NULL CHECK (subject_kind IN ('admin', 'user')),
        subject_id TEXT NOT NULL,
        csrf TEXT NOT NULL,
        method TEXT NOT NULL,
        created_at REAL NOT NULL,
        seen_at REAL NOT NULL,
        expires_at REAL NOT NULL
    );
    CREATE INDEX web_sessions_subject ON web_sessions (subject_kind, subject_id);
    CREATE TABLE web_signin_failures (
        throttle_key TEXT PRIMARY KEY,
        failures INTEGER NOT NULL,
        first_at REAL NOT NULL,
        locked_until REAL
    );
    CREATE TABLE web_device_grants (
        device_code_hash BLOB PRIMARY KEY,
        user_code_hash TEXT NOT NULL UNIQUE,
        client_name TEXT NOT NULL,
        created_at REAL NOT NULL,
        expires_at REAL NOT NULL,
        polled_at REAL,
        status TEXT NOT NULL CHECK (status IN ('pending', 'approved', 'denied', 'delivered')),
        user_id TEXT,
        tenant_id TEXT,
        credential_id TEXT
    );
"""

# Schema 4: MAC addresses unique per tenant (not across the relay); a change log of the
# directory (each relay's cache drops exactly what changed, live sessions of revoked
# credentials are found); short-lived state that must survive a restart (guess
# counters, lock-outs); credentials found by subject.
def _change_log_triggers() -> str:
    parts = []
    for table in _DIRECTORY_TABLES:
        for op, row in (("INSERT", "NEW"), ("UPDATE", "NEW"), ("DELETE", "OLD")):
            name = f"{table}_{op.lower()}_version"
            parts.append(f"DROP TRIGGER {name};")
            parts.append(
                f"CREATE TRIGGER {name} AFTER {op} ON {table} BEGIN "  # noqa: S608
                "UPDATE meta SET value = value + 1 WHERE key = 'directory_version'; "
                "INSERT INTO directory_changes (version, kind, id) VALUES ("
                "(SELECT value FROM meta WHERE key = 'directory_version'), "
                f"'{table}', {row}.id); END;"
            )
    return "\n".join(parts)


_SCHEMA_V4_TABLES = """
    DROP INDEX devices_mac;
    CREATE UNIQUE INDEX devices_tenant_mac ON devices (tenant_id, mac) WHERE mac IS NOT NULL;
    CREATE INDEX devices_by_mac ON devices (mac) WHERE mac IS NOT NULL;
    CREATE INDEX devices_state ON devices (state, id);
    CREATE INDEX credentials_subject ON credentials (tenant_id, subject_id);
    CREATE INDEX admin_credentials_admin ON admin_credentials (admin_id);
    CREATE TABLE directory_changes (
        version INTEGER NOT NULL,
        kind TEXT NOT NULL,
        id TEXT NOT NULL
    );
    CREATE INDEX directory_changes_version ON directory_changes (version);
    INSERT OR IGNORE INTO meta VALUES ('pairings_version', 0);
    INSERT INTO meta
        VALUES ('changes_floor', (SELECT value FROM meta WHERE key = 'directory_version'));
    CREATE TABLE ephemeral (
        key TEXT PRIMARY KEY,
        value TEXT NOT NULL,
        expires_at REAL NOT NULL
    );
    CREATE INDEX ephemeral_expiry ON ephemeral (expires_at);
"""
_SCHEMA_V4 = "\n".join((_SCHEMA_V4_TABLES, _change_log_triggers()))

# Schema 5: sign-in with a tenant's OpenID provider (relay.web.accounts reads them): the
# provider of each tenant, people's links to their provider identity, the sign-ins under
# way (state, nonce, PKCE verifier; used once), and the emails administrators imported.
# No foreign keys: deleting a tenant or a person leaves rows the sign-in ignores.
_SCHEMA_V5 = """
    CREATE TABLE web_sso_providers (
        id TEXT PRIMARY KEY,
        tenant_id TEXT NOT NULL UNIQUE,
        label TEXT NOT NULL,
        issuer TEXT NOT NULL,
        client_id TEXT NOT NULL,
        client_secret TEXT,
        settings TEXT NOT NULL,
        enabled INTEGER NOT NULL,
        created_at REAL NOT NULL,
        updated_at REAL NOT NULL,
        checked_at REAL,
        UNIQUE (issuer, client_id)
    );
    CREATE TABLE web_sso_links (
        provider_id TEXT NOT NULL,
        subject TEXT NOT NULL,
        subject_kind TEXT NOT NULL CHECK (subject_kind IN ('admin', 'user')),
        subject_id TEXT NOT NULL,
        tenant_id TEXT NOT NULL,
        email TEXT,
        created_at REAL NOT NULL,
        signed_in_at REAL,
        refresh_token TEXT,
        checked_at REAL,
        disabled_at REAL,
        PRIMARY KEY (provider_id, subject, subject_kind),
        UNIQUE (subject_kind, subject_id)
    );
    CREATE INDEX web_sso_links_tenant ON web_sso_links (tenant_id);
    CREATE TABLE web_sso_requests (
        state_hash BLOB PRIMARY KEY,
        provider_id TEXT NOT NULL,
        nonce TEXT NOT NULL,
        code_verifier TEXT NOT NULL,
        redirect_uri TEXT NOT NULL,
        next_path TEXT NOT NULL,
        browser_hash BLOB NOT NULL,
        created_at REAL NOT NULL,
        expires_at REAL NOT NULL,
        used_at REAL
    );
    CREATE INDEX web_sso_requests_expiry ON web_sso_requests (expires_at);
    CREATE TABLE web_user_emails (
        tenant_id TEXT NOT NULL,
        email TEXT NOT NULL,
        user_id TEXT NOT NULL UNIQUE,
        PRIMARY KEY (tenant_id, email)
    );
"""

# Each entry upgrades the schema by one version (PRAGMA user_version). Append, never edit.
MIGRATIONS: tuple[str, ...] = (
    _SCHEMA_V1 + _version_triggers(),
    _SCHEMA_V2,
    _SCHEMA_V3,
    _SCHEMA_V4,
    _SCHEMA_V5,
)

CHANGE_LOG_KEPT = 200_000  # directory versions a relay may lag behind and still catch up


class InsecureDatabase(PermissionError):
    """The database file (or its directory) may be read by other users."""


def _conflict_message(exc: sqlite3.Error) -> str:
    """What a refused write means, for a person (never the database's own text)."""
    if isinstance(exc, Refused):
        return str(exc)
    text = str(exc)
    known = (
        ("policies.tenant_id, policies.name", "a policy with this name already exists"),
        ("devices.tenant_id, devices.mac", "a device with this MAC address is already listed"),
        ("credentials.token_hash", "this credential already exists"),
        ("UNIQUE constraint failed", "that already exists"),
        ("FOREIGN KEY constraint failed", "it refers to something that does not exist"),
        ("CHECK constraint failed", "a value is out of range"),
    )
    for needle, message in known:
        if needle in text:
            return message
    return "the change conflicts with the stored data"


# Pairings are cached by relays (see relay.domain.directory); any process that changes them
# bumps this so every relay on the file notices.
_BUMP_PAIRINGS_VERSION = Op("UPDATE meta SET value = value + 1 WHERE key = 'pairings_version'")

_LOCK_UPSERT = (
    "INSERT INTO lock_states (phone_id, seq, state, user_id, laptop_id, updated_at, acked_seq)"
    " VALUES (?, 1, ?, ?, ?, ?, 0) ON CONFLICT (phone_id) DO UPDATE SET"
    " seq = lock_states.seq + 1, state = excluded.state, user_id = excluded.user_id,"
    " laptop_id = excluded.laptop_id, updated_at = excluded.updated_at"
    " RETURNING phone_id, seq, state, user_id, laptop_id, updated_at, acked_seq"
)
_LOCK_ACK = "UPDATE lock_states SET acked_seq = MAX(acked_seq, ?) WHERE phone_id = ? AND seq >= ?"
# Acks wait at most this long for a lock change to share its transaction. Losing one (a
# crash within it) only means the phone is sent a command it already applied, which it
# ignores; this process's own reads see them at once (``_unflushed_acks``).
ACK_FLUSH_S = 0.05

def _revoke_device_credentials(device_id: str, now: float) -> Op:
    return Op(
        "UPDATE credentials SET revoked_at = ? WHERE subject_kind = 'device'"
        " AND subject_id = ? AND revoked_at IS NULL",
        (now, device_id),
    )


def _end_phone_session(phone_id: str, new_user_id: str | None = None) -> list[Op]:
    """What ends when a phone's account changes (to ``new_user_id``; None: to nobody): its
    pairings with other accounts, and any lock command of another account not yet applied
    (the seq is kept, so the phone never mistakes a later command for an old one)."""
    return [
        Op("DELETE FROM pairings WHERE phone_id = ? AND user_id IS NOT ?", (phone_id, new_user_id)),
        _BUMP_PAIRINGS_VERSION,
        Op(
            "UPDATE lock_states SET acked_seq = seq WHERE phone_id = ? AND user_id IS NOT ?",
            (phone_id, new_user_id),
        ),
    ]


def _check_private(path: Path) -> None:
    """Refuse a database file that other users may read, saying how to fix it."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        return
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise InsecureDatabase(
            f"{path} may be read by other users (mode {stat.S_IMODE(mode):o}) and holds every "
            f"device's identity key; run: chmod 600 {path}"
            + "".join(
                f" {path}{suffix}"
                for suffix in ("-wal", "-shm")
                if Path(f"{path}{suffix}").exists()
            )
        )


def _create_private(path: Path) -> None:
    """Create the database file owner-only before SQLite does (its -wal and -shm files
    take the database file's permissions)."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    if path.is_dir():
        raise IsADirectoryError(f"{path} is a directory, not a database file")
    fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o600)
    os.close(fd)


def _prepare_file(path: Path) -> None:
    if path.exists():
        if path.is_dir():
            raise IsADirectoryError(f"{path} is a directory, not a database file")
        _check_private(path)
    else:
        _create_private(path)


def _settle_lock_change(
    future: asyncio.Future[list[LockRecord]], job: asyncio.Future[list[Outcome]]
) -> None:
    """Hand one lock change's records (or its failure) to its caller."""
    if future.done():
        return
    if job.cancelled():
        future.set_exception(StoreUnavailable("the lock write was cancelled"))
        return
    error = job.exception()
    if error is not None:
        log.error("store_write_failed", error=str(error))
        if isinstance(error, sqlite3.IntegrityError):
            error = StoreConflict(_conflict_message(error))
        future.set_exception(error)
        return
    try:
        records = [store_rows.lock(cast(list[sqlite3.Row], rows)[0]) for rows in job.result()]
    except (IndexError, KeyError, TypeError) as exc:  # a broken invariant
        future.set_exception(StoreUnavailable(f"lock write unreadable: {exc}"))
        return
    future.set_result(records)


class SqliteStore(DirectoryWrites):
    """SQLite implementation of :class:`relay.domain.store.RelayStore` (``":memory:"`` is not
    supported).

    ``synchronous="normal"`` (the default) writes every commit to the WAL before
    answering, so an acknowledged change survives a crash (``kill -9``) of the relay
    process, but the last commits may be lost on power loss; ``"full"`` also fsyncs
    the WAL at every commit, so a change survives power loss once acknowledged (an
    fsync per group commit: milliseconds on many virtual disks).
    """

    def __init__(self, path: str | Path, synchronous: Synchronous = "normal") -> None:
        self.path = str(path)
        self.synchronous: Synchronous = synchronous
        self._reader: sqlite3.Connection | None = None
        self._writer: Writer | None = None
        # Lock changes of one event-loop iteration go to the writer as one job.
        self._lock_calls: list[
            tuple[Sequence[str], LockState, str, str, float, asyncio.Future[list[LockRecord]]]
        ] = []
        self._lock_acks: list[tuple[int, str, int]] = []
        # Acks of this process not yet committed: reads see them (our own writes, not a
        # cache of anyone else's), so a phone that reconnects at once is not re-sent what
        # it just acknowledged.
        self._unflushed_acks: dict[str, int] = {}
        self._lock_flush: asyncio.TimerHandle | asyncio.Handle | None = None
        self._lock_flush_soon = False  # the scheduled flush is for this loop iteration
        self._pending_ack_jobs: set[asyncio.Future[list[Outcome]]] = set()
        # Lock records as the file holds them (plus our own unflushed acks); see the
        # module's docstring for when they are used.
        self._locks: dict[str, LockRecord] = {}
        self._locks_version: int | None = None  # the writer's data_version they are for
        self._locks_checked = False  # that version was checked in this loop iteration
        self._other_writes = 0  # writes in flight that may touch lock_states

    # --- life cycle ----------------------------------------------------------------
    async def open(self) -> None:
        if self._reader is not None:
            return
        path = Path(self.path)
        _prepare_file(path)
        try:
            writer_conn = connect(self.path, self.synchronous)
            migrate(writer_conn, MIGRATIONS)
        except sqlite3.DatabaseError as exc:
            raise StoreUnavailable(f"cannot open {path} as a relay database: {exc}") from exc
        self._writer = Writer(
            writer_conn, asyncio.get_running_loop(), inline=self.synchronous == "normal"
        )
        self._writer.start()
        self._reader = connect(self.path, self.synchronous)

    async def close(self) -> None:
        if self._lock_flush is not None:
            self._lock_flush.cancel()
            self._flush_lock_writes()
        for job in list(self._pending_ack_jobs):
            with contextlib.suppress(Exception):
                await job
        if self._writer is not None:
            await asyncio.to_thread(self._writer.stop)
            self._writer = None
        if self._reader is not None:
            self._reader.close()
            self._reader = None
        self._locks.clear()

    async def ready(self) -> bool:
        if self._reader is None:
            return False
        try:
            self._reader.execute("SELECT 1").fetchone()
        except sqlite3.Error:
            return False
        return True

    @property
    def writer_stats(self) -> WriterStats:
        return self._writer.stats if self._writer else WriterStats()

    async def prune(self, now: float) -> None:
        version = await self.directory_version()
        floor = version - CHANGE_LOG_KEPT
        if floor > 0:
            await self._write(
                Op("DELETE FROM directory_changes WHERE version <= ?", (floor,)),
                Op(
                    "UPDATE meta SET value = MAX(value, ?) WHERE key = 'changes_floor'",
                    (floor,),
                ),
            )
        await self._write(Op("DELETE FROM ephemeral WHERE expires_at <= ?", (now,)))

    # --- plumbing --------------------------------------------------------------------
    @property
    def _db(self) -> sqlite3.Connection:
        if self._reader is None:
            raise StoreUnavailable("store is not open")
        return self._reader

    async def _write(self, *ops: Op) -> list[Outcome]:
        if self._writer is None:
            raise StoreUnavailable("store is not open")
        # Any write may change lock states (a reset, a sign-in, a deletion): the cached
        # lock records are dropped, and not used until it is committed.
        self._locks.clear()
        self._other_writes += 1
        try:
            return await self._writer.submit(list(ops))
        except sqlite3.IntegrityError as exc:
            log.debug("store_write_refused", error=str(exc))
            raise StoreConflict(_conflict_message(exc)) from exc
        except sqlite3.OperationalError as exc:
            raise StoreUnavailable(f"the database refused the write: {exc}") from exc
        finally:
            self._other_writes -= 1
            self._locks.clear()

    def _cached_locks(self) -> dict[str, LockRecord] | None:
        """The lock records known to equal the file's, or None when that cannot be told
        cheaply (the writer runs in its own thread with ``synchronous="full"``, or
        another write of ours is in flight).

        Checked once per event-loop iteration: a check costs about as much as the read
        it saves, and a change another process commits during an iteration is seen in
        the next, as if it had been committed a moment later."""
        writer = self._writer
        if writer is None or not writer.inline or self._other_writes:
            return None
        if not self._locks_checked:
            # Changes exactly when another connection (another process) committed.
            version = writer.conn.execute("PRAGMA data_version").fetchone()[0]
            if version != self._locks_version:
                self._locks.clear()
                self._locks_version = version
            self._locks_checked = True
            writer.loop.call_soon(self._locks_unchecked)
        return self._locks

    def _locks_unchecked(self) -> None:
        self._locks_checked = False

    async def _count(self, *ops: Op) -> int:
        """Run ops as one job; the row count of the first."""
        return cast(int, (await self._write(*ops))[0])

    def _statement(
        self, sql: str, params: Any, *, many: bool = False, expect_one: str | None = None
    ) -> Op:
        return Op(sql, params, many=many, expect_one=expect_one)

    async def _directory_write(self, *statements: Any) -> list[Outcome]:
        return await self._write(*statements)

    def _one(self, sql: str, *params: Any) -> sqlite3.Row | None:
        return cast(sqlite3.Row | None, self._db.execute(sql, params).fetchone())

    def _all(self, sql: str, *params: Any) -> list[sqlite3.Row]:
        return self._db.execute(sql, params).fetchall()

    def _meta(self, key: str) -> int:
        row = self._one("SELECT value FROM meta WHERE key = ?", key)
        return int(row[0]) if row else 0

    async def directory_version(self) -> int:
        return self._meta("directory_version")

    async def pairings_version(self) -> int:
        return self._meta("pairings_version")

    async def changes_since(self, version: int) -> list[DirectoryChange] | None:
        if version < self._meta("changes_floor"):
            return None
        rows = self._all(
            "SELECT version, kind, id FROM directory_changes WHERE version > ? ORDER BY version",
            version,
        )
        return [DirectoryChange(r["version"], r["kind"], r["id"]) for r in rows]

    # --- directory -------------------------------------------------------------------
    async def add_tenant(self, tenant: Tenant) -> None:
        await self._write(
            Op(
                "INSERT INTO tenants (id, name, default_policy_id) VALUES (?, ?, ?)",
                (tenant.id, tenant.name, tenant.default_policy_id),
            )
        )

    async def add_policy(self, policy: Policy) -> None:
        await self._write(
            Op(
                "INSERT INTO policies (id, tenant_id, name, allow_better_together,"
                " proximity_join, beaconing) VALUES (?, ?, ?, ?, ?, ?)",
                (
                    policy.id,
                    policy.tenant_id,
                    policy.name,
                    policy.allow_better_together,
                    policy.proximity_join,
                    int(policy.beaconing),
                ),
            )
        )

    async def sign_in_device(self, device_id: str, user_id: str | None, state: DeviceState) -> None:
        await self._write(
            *_end_phone_session(device_id, user_id),
            Op(
                "UPDATE devices SET user_id = ?, state = ? WHERE id = ?",
                (user_id, state, device_id),
                expect_one="no such device",
            ),
        )

    async def tenant(self, tenant_id: str) -> Tenant | None:
        row = self._one("SELECT * FROM tenants WHERE id = ?", tenant_id)
        return Tenant(row["id"], row["name"], row["default_policy_id"]) if row else None

    async def tenants(self) -> list[Tenant]:
        return [
            Tenant(r["id"], r["name"], r["default_policy_id"])
            for r in self._all("SELECT * FROM tenants ORDER BY id")
        ]

    async def policy(self, policy_id: str) -> Policy | None:
        row = self._one("SELECT * FROM policies WHERE id = ?", policy_id)
        if row is None:
            return None
        return Policy(
            id=row["id"],
            tenant_id=row["tenant_id"],
            name=row["name"],
            allow_better_together=row["allow_better_together"],
            proximity_join=row["proximity_join"],
            beaconing=bool(row["beaconing"]),
        )

    async def user(self, user_id: str) -> User | None:
        row = self._one("SELECT * FROM users WHERE id = ?", user_id)
        return User(row["id"], row["tenant_id"], row["name"], row["policy_id"]) if row else None

    async def users(
        self, tenant_id: str, *, after: str | None = None, limit: int = MAX_PAGE
    ) -> list[User]:
        return [
            User(r["id"], r["tenant_id"], r["name"], r["policy_id"])
            for r in self._all(
                "SELECT * FROM users WHERE tenant_id = ? AND id > ? ORDER BY id LIMIT ?",
                tenant_id,
                after or "",
                limit,
            )
        ]

    async def device(self, device_id: str) -> Device | None:
        row = self._one("SELECT * FROM devices WHERE id = ?", device_id)
        return store_rows.device(row) if row else None

    async def devices(
        self,
        tenant_id: str | None = None,
        *,
        after: str | None = None,
        limit: int | None = None,
        state: DeviceState | None = None,
    ) -> list[Device]:
        where = ["id > ?"]
        params: list[Any] = [after or ""]
        if tenant_id is not None:
            where.append("tenant_id = ?")
            params.append(tenant_id)
        if state is not None:
            where.append("state = ?")
            params.append(state)
        params.append(-1 if limit is None else limit)
        rows = self._all(
            f"SELECT * FROM devices WHERE {' AND '.join(where)} ORDER BY id LIMIT ?",  # noqa: S608
            *params,
        )
        return [store_rows.device(r) for r in rows]

    async def credential(self, credential_id: str) -> Credential | None:
        row = self._one("SELECT * FROM credentials WHERE id = ?", credential_id)
        return store_rows.credential(row) if row else None

    async def credential_by_hash(self, token_hash: bytes) -> Credential | None:
        row = self._one("SELECT * FROM credentials WHERE token_hash = ?", token_hash)
        return store_rows.credential(row) if row else None

    async def credentials_of(self, tenant_id: str, subject_id: str | None) -> list[Credential]:
        if subject_id is None:
            rows = self._all(
                "SELECT * FROM credentials WHERE tenant_id = ? ORDER BY created_at, id", tenant_id
            )
        else:
            rows = self._all(
                "SELECT * FROM credentials WHERE tenant_id = ? AND subject_id = ?"
                " ORDER BY created_at, id",
                tenant_id,
                subject_id,
            )
        return [store_rows.credential(r) for r in rows]

    # --- pairings --------------------------------------------------------------------
    async def add_pairing(self, pairing: Pairing) -> None:
        await self.add_pairings([pairing])

    async def add_pairings(self, pairings: Sequence[Pairing]) -> None:
        await self._write(
            Op(
                "INSERT OR REPLACE INTO pairings (user_id, laptop_id, laptop_name, phone_id,"
                " tenant_id, created_at) VALUES (?, ?, ?, ?, ?, ?)",
                [
                    (p.user_id, p.laptop_id, p.laptop_name, p.phone_id, p.tenant_id, p.created_at)
                    for p in pairings
                ],
                many=True,
            ),
            _BUMP_PAIRINGS_VERSION,
        )

    async def remove_pairing(self, user_id: str, laptop_id: str, phone_id: str) -> bool:
        count = await self._count(
            Op(
                "DELETE FROM pairings WHERE user_id = ? AND laptop_id = ? AND phone_id = ?",
                (user_id, laptop_id, phone_id),
            ),
            _BUMP_PAIRINGS_VERSION,
        )
        return count == 1

    async def pairings_of_laptop(self, user_id: str, laptop_id: str) -> list[Pairing]:
        rows = self._all(
            "SELECT * FROM pairings WHERE user_id = ? AND laptop_id = ? ORDER BY phone_id",
            user_id,
            laptop_id,
        )
        return [store_rows.pairing(r) for r in rows]

    async def pairings_of_phone(self, phone_id: str) -> list[Pairing]:
        rows = self._all(
            "SELECT * FROM pairings WHERE phone_id = ? ORDER BY user_id, laptop_id", phone_id
        )
        return [store_rows.pairing(r) for r in rows]

    async def tenant_pairings(
        self, tenant_id: str, *, after: str | None = None, limit: int = MAX_PAGE
    ) -> list[Pairing]:
        """Pairings of a tenant, ordered by (user, laptop, phone); ``after`` is the last
        one's ``user_id/laptop_id/phone_id``."""
        key = after or ""
        rows = self._all(
            "SELECT * FROM pairings WHERE tenant_id = ?"
            " AND user_id || '/' || laptop_id || '/' || phone_id > ?"
            " ORDER BY user_id, laptop_id, phone_id LIMIT ?",
            tenant_id,
            key,
            limit,
        )
        return [store_rows.pairing(r) for r in rows]

    # --- lock state ------------------------------------------------------------------
    async def lock_record(self, phone_id: str) -> LockRecord | None:
        cache = self._cached_locks()
        if cache is not None:
            known = cache.get(phone_id)
            if known is not None:
                return known
        row = self._one("SELECT * FROM lock_states WHERE phone_id = ?", phone_id)
        if row is None:
            return None
        record = self._with_unflushed_ack(store_rows.lock(row))
        if cache is not None:
            cache[phone_id] = record
        return record

    def _with_unflushed_ack(self, record: LockRecord) -> LockRecord:
        acked = self._unflushed_acks.get(record.phone_id)
        if acked is not None and record.seq >= acked > record.acked_seq:
            return record.acked(acked)
        return record

    async def set_desired_lock(
        self, phone_ids: Sequence[str], state: LockState, user_id: str, laptop_id: str, now: float
    ) -> list[LockRecord]:
        if not phone_ids:
            return []
        future: asyncio.Future[list[LockRecord]] = asyncio.get_running_loop().create_future()
        self._lock_calls.append((phone_ids, state, user_id, laptop_id, now, future))
        self._schedule_lock_flush()
        return await future

    async def ack_lock(self, phone_id: str, seq: int) -> Acknowledged | None:
        record = await self.lock_record(phone_id)
        if record is None or seq > record.seq:
            return None
        if seq <= record.acked_seq:
            return Acknowledged(record, news=False)
        # Not awaited: a lost ack only means the phone is sent a command it has already
        # applied (it ignores seq <= its last), so the ack need not wait for an fsync.
        self._lock_acks.append((seq, phone_id, seq))
        self._unflushed_acks[phone_id] = max(seq, self._unflushed_acks.get(phone_id, 0))
        self._schedule_lock_flush(soon=False)
        acked = record.acked(seq)
        cache = self._cached_locks()
        if cache is not None:
            cache[phone_id] = acked
        return Acknowledged(acked, news=True)

    def _lock_change_done(
        self, future: asyncio.Future[list[LockRecord]], job: asyncio.Future[list[Outcome]]
    ) -> None:
        _settle_lock_change(future, job)
        if job.cancelled() or job.exception() is not None:
            return  # nothing was written
        cache = self._cached_locks()
        if cache is None:
            return
        try:
            records = [store_rows.lock(cast(list[sqlite3.Row], rows)[0]) for rows in job.result()]
        except (IndexError, KeyError, TypeError):
            cache.clear()
            return
        for record in records:  # written even if the caller has stopped waiting
            cache[record.phone_id] = self._with_unflushed_ack(record)

    def _schedule_lock_flush(self, soon: bool = True) -> None:
        """Flush lock changes at the end of this loop iteration (they are answered once
        committed); acks alone up to ``ACK_FLUSH_S`` later, so that they usually ride in
        the transaction of the next lock change instead of paying one of their own (a
        BEGIN, a COMMIT and a WAL write; measured at P=100, server CPU per round trip went
        from about 206 to 147 µs, see the README)."""
        if self._lock_flush is not None and (self._lock_flush_soon or not soon):
            return
        if self._lock_flush is not None:
            self._lock_flush.cancel()  # a pending ack flush: it goes now, with the change
        loop = asyncio.get_running_loop()
        self._lock_flush_soon = soon
        self._lock_flush = (
            loop.call_soon(self._flush_lock_writes)
            if soon
            else loop.call_later(ACK_FLUSH_S, self._flush_lock_writes)
        )

    def _flush_lock_writes(self) -> None:
        """Write every lock change and ack waiting: one job per change (the writer commits
        them together, and a change that fails — an unknown phone — fails alone), then the
        acks."""
        self._lock_flush = None
        calls, acks = self._lock_calls, self._lock_acks
        self._lock_calls, self._lock_acks = [], []
        if self._writer is None:
            for *_, future in calls:
                if not future.done():
                    future.set_exception(StoreUnavailable("store is closed"))
            return
        changes = [
            (
                future,
                self._writer.submit(
                    [
                        Op(_LOCK_UPSERT, (phone_id, state, user_id, laptop_id, now), rows=True)
                        for phone_id in phone_ids
                    ]
                ),
            )
            for phone_ids, state, user_id, laptop_id, now, future in calls
        ]
        if acks:
            ack_job = self._writer.submit([Op(_LOCK_ACK, acks, many=True)])
            self._pending_ack_jobs.add(ack_job)

            def acked(job: asyncio.Future[list[Outcome]]) -> None:
                self._pending_ack_jobs.discard(job)
                for seq, phone_id, _ in acks:
                    if self._unflushed_acks.get(phone_id) == seq:
                        del self._unflushed_acks[phone_id]
                if job.cancelled() or job.exception() is not None:
                    for _, phone_id, _ in acks:  # the file did not take them
                        self._locks.pop(phone_id, None)
                if not job.cancelled() and job.exception() is not None:
                    log.error("store_write_failed", error=str(job.exception()))

            ack_job.add_done_callback(acked)
        if self._writer.inline:
            # This is already the end of the loop iteration the changes came in: commit
            # now rather than one iteration later, and hand the records over at once
            # rather than in another (a light-load round trip waits for both).
            self._writer.commit_waiting()
        for future, job in changes:
            if job.done():
                self._lock_change_done(future, job)
            else:
                job.add_done_callback(functools.partial(self._lock_change_done, future))

    # --- administrators ------------------------------------------------------------------
    async def add_admin(self, admin: AdminRecord, token_hash: bytes, credential_id: str) -> None:
        await self._write(
            Op(
                "INSERT INTO admins (id, name, role, tenant_id, created_at) VALUES (?, ?, ?, ?, ?)",
                (admin.id, admin.name, admin.role, admin.tenant_id, admin.created_at),
            ),
            Op(
                "INSERT INTO admin_credentials (id, token_hash, admin_id, created_at)"
                " VALUES (?, ?, ?, ?)",
                (credential_id, token_hash, admin.id, admin.created_at),
            ),
        )

    async def add_admin_credential(
        self, admin_id: str, token_hash: bytes, credential_id: str, now: float
    ) -> None:
        await self._write(
            Op(
                "INSERT INTO admin_credentials (id, token_hash, admin_id, created_at)"
                " VALUES (?, ?, ?, ?)",
                (credential_id, token_hash, admin_id, now),
            )
        )

    async def admin_by_token_hash(self, token_hash: bytes) -> AdminRecord | None:
        row = self._one(
            "SELECT a.* FROM admin_credentials c JOIN admins a ON a.id = c.admin_id"
            " WHERE c.token_hash = ? AND c.revoked_at IS NULL",
            token_hash,
        )
        return store_rows.admin(row) if row else None

    async def admin_credential_by_hash(self, token_hash: bytes) -> AdminCredential | None:
        row = self._one("SELECT * FROM admin_credentials WHERE token_hash = ?", token_hash)
        if row is None:
            return None
        return AdminCredential(row["id"], row["admin_id"], row["created_at"], row["revoked_at"])

    async def admin_by_credential(self, credential_id: str) -> AdminRecord | None:
        row = self._one(
            "SELECT a.* FROM admin_credentials c JOIN admins a ON a.id = c.admin_id"
            " WHERE c.id = ? AND c.revoked_at IS NULL",
            credential_id,
        )
        return store_rows.admin(row) if row else None

    async def admin(self, admin_id: str) -> AdminRecord | None:
        row = self._one("SELECT * FROM admins WHERE id = ?", admin_id)
        return store_rows.admin(row) if row else None

    async def admins(self, tenant_id: str | None) -> list[AdminRecord]:
        if tenant_id is None:
            rows = self._all("SELECT * FROM admins ORDER BY created_at, id")
        else:
            rows = self._all(
                "SELECT * FROM admins WHERE tenant_id = ? ORDER BY created_at, id", tenant_id
            )
        return [store_rows.admin(r) for r in rows]

    async def admin_credentials(self, admin_id: str) -> list[AdminCredential]:
        rows = self._all(
            "SELECT * FROM admin_credentials WHERE admin_id = ? ORDER BY created_at, id", admin_id
        )
        return [
            AdminCredential(r["id"], r["admin_id"], r["created_at"], r["revoked_at"]) for r in rows
        ]

    async def revoke_admin_credential(self, credential_id: str, now: float) -> bool:
        count = await self._count(
            Op(
                "UPDATE admin_credentials SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL",
                (now, credential_id),
            )
        )
        return count == 1

    async def owner_count(self) -> int:
        row = self._one("SELECT count(*) FROM admins WHERE role = 'owner'")
        return int(row[0]) if row else 0

    # --- verification codes and provisioning -----------------------------------------------
    async def set_verification_code(self, device_id: str, code: IssuedCode) -> None:
        """Store a device's code; the previous one (used or not) is gone."""
        await self._write(
            Op(
                "INSERT OR REPLACE INTO verification_codes"
                " (device_id, code_hash, issued_at, expires_at, used_at) VALUES (?, ?, ?, ?, ?)",
                (device_id, code.code_hash, code.issued_at, code.expires_at, code.used_at),
            )
        )

    async def verification_code(self, device_id: str) -> IssuedCode | None:
        row = self._one("SELECT * FROM verification_codes WHERE device_id = ?", device_id)
        if row is None:
            return None
        return IssuedCode(row["code_hash"], row["issued_at"], row["expires_at"], row["used_at"])

    async def devices_by_mac(self, mac: str) -> list[Device]:
        rows = self._all("SELECT * FROM devices WHERE mac = ? ORDER BY id", mac)
        return [store_rows.device(r) for r in rows]

    async def provision_device(
        self,
        device_id: str,
        code_hash: str,
        identity_key: bytes,
        credential: Credential,
        now: float,
    ) -> None:
        await self._write(
            Op(
                "UPDATE verification_codes SET used_at = ? WHERE device_id = ?"
                " AND code_hash = ? AND used_at IS NULL AND expires_at > ?",
                (now, device_id, code_hash, now),
                expect_one="the verification code was used or replaced meanwhile",
            ),
            Op(
                "UPDATE devices SET state = 'waiting_for_sign_in', user_id = NULL,"
                " identity_key = ? WHERE id = ? AND state = 'waiting_for_activation'",
                (identity_key, device_id),
                expect_one="the device is no longer waiting for activation",
            ),
            _revoke_device_credentials(device_id, now),
            Op(CREDENTIAL_INSERT, store_rows.credential_values(credential)),
        )

    async def reset_device(self, device_id: str, now: float) -> None:
        """Factory reset: credentials revoked, back to waiting for activation, pairings gone."""
        await self._write(
            _revoke_device_credentials(device_id, now),
            Op(
                "UPDATE devices SET state = 'waiting_for_activation', user_id = NULL WHERE id = ?",
                (device_id,),
            ),
            *_end_phone_session(device_id),
        )

    async def remove_device(self, device_id: str, now: float) -> None:
        await self._write(
            _revoke_device_credentials(device_id, now),
            Op("DELETE FROM verification_codes WHERE device_id = ?", (device_id,)),
            Op(
                "DELETE FROM console_pairings WHERE console_id = ? OR room_id = ?",
                (device_id, device_id),
            ),
            Op("DELETE FROM pairings WHERE phone_id = ?", (device_id,)),
            _BUMP_PAIRINGS_VERSION,
            Op("DELETE FROM lock_states WHERE phone_id = ?", (device_id,)),
            Op("DELETE FROM devices WHERE id = ?", (device_id,)),
        )

    async def sign_in_device_as(
        self, device_id: str, user_id: str | None, state: DeviceState, mode: DeviceMode
    ) -> None:
        await self._write(
            *_end_phone_session(device_id, user_id),
            Op(
                "UPDATE devices SET user_id = ?, state = ?, mode = ? WHERE id = ?",
                (user_id, state, mode, device_id),
                expect_one="no such device",
            ),
        )

    # --- policies --------------------------------------------------------------------------
    async def update_policy(self, policy: Policy, auto_confirm: bool) -> None:
        await self._write(
            Op(
                "UPDATE policies SET allow_better_together = ?, proximity_join = ?,"
                " beaconing = ?, auto_confirm = ? WHERE id = ?",
                (
                    policy.allow_better_together,
                    policy.proximity_join,
                    int(policy.beaconing),
                    int(auto_confirm),
                    policy.id,
                ),
            )
        )

    async def policy_auto_confirm(self, policy_id: str) -> bool:
        row = self._one("SELECT auto_confirm FROM policies WHERE id = ?", policy_id)
        return bool(row[0]) if row else False

    async def policy_ids(self, tenant_id: str) -> list[str]:
        rows = self._all("SELECT id FROM policies WHERE tenant_id = ? ORDER BY name", tenant_id)
        return [r["id"] for r in rows]

    # --- consoles ----------------------------------------------------------------------------
    async def pair_console(self, pairing: ConsolePairing) -> None:
        await self._write(
            Op(
                "INSERT OR REPLACE INTO console_pairings (console_id, room_id, tenant_id,"
                " created_at) VALUES (?, ?, ?, ?)",
                (pairing.console_id, pairing.room_id, pairing.tenant_id, pairing.created_at),
            )
        )

    async def unpair_console(self, console_id: str) -> bool:
        count = await self._count(
            Op("DELETE FROM console_pairings WHERE console_id = ?", (console_id,))
        )
        return count == 1

    async def console_pairing(self, console_id: str) -> ConsolePairing | None:
        row = self._one("SELECT * FROM console_pairings WHERE console_id = ?", console_id)
        return store_rows.console(row) if row else None

    async def console_pairings(self, tenant_id: str) -> list[ConsolePairing]:
        rows = self._all(
            "SELECT * FROM console_pairings WHERE tenant_id = ? ORDER BY console_id", tenant_id
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
        await self._write(
            Op(
                "INSERT INTO audit_log (at, actor, tenant_id, action, target, outcome, detail)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                (at, actor, tenant_id, action, target, outcome, json.dumps(detail, default=str)),
            )
        )

    async def audit(
        self, tenant_id: str | None, limit: int, *, before: int | None = None
    ) -> list[AuditRecord]:
        below = before if before is not None else 2**62
        if tenant_id is None:
            rows = self._all(
                "SELECT * FROM audit_log WHERE seq < ? ORDER BY seq DESC LIMIT ?", below, limit
            )
        else:
            rows = self._all(
                "SELECT * FROM audit_log WHERE tenant_id = ? AND seq < ?"
                " ORDER BY seq DESC LIMIT ?",
                tenant_id,
                below,
                limit,
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

    # --- short-lived state that must survive a restart (relay.storage.sqlite_ephemeral) -----------
    def kv_get(self, key: str, now: float) -> str | None:
        row = self._one("SELECT value FROM ephemeral WHERE key = ? AND expires_at > ?", key, now)
        return str(row[0]) if row else None

    async def kv_write(self, op: Op) -> Outcome:
        """Run one statement on the ``ephemeral`` table through the writer."""
        (outcome,) = await self._write(op)
        return outcome

    # --- renaming and deleting (relay.admin.edits) ---------------------------------------
    async def devices_signed_in_as(self, user_id: str) -> list[str]:
        rows = self._all("SELECT id FROM devices WHERE user_id = ? ORDER BY id", user_id)
        return [r["id"] for r in rows]

    async def delete_user(self, user_id: str, now: float) -> None:
        """The account, its pairings and lock states gone, its laptop credentials revoked."""
        await self._write(
            Op(
                "UPDATE credentials SET revoked_at = ? WHERE subject_kind = 'user'"
                " AND subject_id = ? AND revoked_at IS NULL",
                (now, user_id),
            ),
            Op("DELETE FROM pairings WHERE user_id = ?", (user_id,)),
            _BUMP_PAIRINGS_VERSION,
            Op("DELETE FROM lock_states WHERE user_id = ?", (user_id,)),
            Op("DELETE FROM users WHERE id = ?", (user_id,)),
        )

    async def delete_policy(self, policy_id: str) -> None:
        """The policy gone; whoever had it falls back to the default."""
        await self._write(
            Op("UPDATE users SET policy_id = NULL WHERE policy_id = ?", (policy_id,)),
            Op("UPDATE devices SET policy_id = NULL WHERE policy_id = ?", (policy_id,)),
            Op(
                "UPDATE tenants SET default_policy_id = NULL WHERE default_policy_id = ?",
                (policy_id,),
            ),
            Op("DELETE FROM policies WHERE id = ?", (policy_id,)),
        )

    async def tenant_admins(self, tenant_id: str) -> list[AdminRecord]:
        rows = self._all("SELECT * FROM admins WHERE tenant_id = ? ORDER BY id", tenant_id)
        return [store_rows.admin(r) for r in rows]

    async def delete_tenant(self, tenant_id: str) -> None:
        """An empty tenant gone, with its policies and its device administrators (and their
        credentials: a deleted administrator's token stops working)."""
        await self._write(
            Op(
                "DELETE FROM admin_credentials WHERE admin_id IN"
                " (SELECT id FROM admins WHERE tenant_id = ?)",
                (tenant_id,),
            ),
            Op("DELETE FROM admins WHERE tenant_id = ?", (tenant_id,)),
            Op("UPDATE tenants SET default_policy_id = NULL WHERE id = ?", (tenant_id,)),
            Op("DELETE FROM policies WHERE tenant_id = ?", (tenant_id,)),
            Op("DELETE FROM credentials WHERE tenant_id = ?", (tenant_id,)),
            Op("DELETE FROM tenants WHERE id = ?", (tenant_id,)),
        )
