"""The SQLite :class:`~relay.store.Store`: one file, migrated on open, writes group-committed.

Reads run on a connection owned by the event loop's thread (WAL lets them proceed
while a commit is under way; they are index lookups of a few microseconds). Writes
go to one writer thread that drains its queue into a single transaction, commits
with ``synchronous=FULL`` (the WAL is fsynced), and only then resolves each
writer's future. Many concurrent lock changes thus cost one fsync, not one each:
group commit is how the relay acknowledges a lock only once it is durable and still
keeps its throughput. Each queued job runs inside its own savepoint, so a job that
breaks a constraint fails alone and leaves nothing half-written.

A phone's lock record is cached in memory once read: this process is the only writer
of lock state (a shared PostgreSQL store would use ``UPDATE … RETURNING`` instead).
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import sqlite3
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal, cast

import structlog

from relay.model import (
    Credential,
    Device,
    DeviceState,
    LockRecord,
    Pairing,
    Policy,
    Tenant,
    User,
)
from relay.protocol.wire import LockState
from relay.store import StoreConflict

log = structlog.get_logger("relay.store")

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

# Provisioning, administrators, consoles and the audit log (relay.admin_store reads them).
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

# Each entry upgrades the schema by one version (PRAGMA user_version). Append, never edit.
MIGRATIONS: tuple[str, ...] = (_SCHEMA_V1 + _version_triggers(), _SCHEMA_V2, _SCHEMA_V3)

Op = tuple[str, Sequence[Any], bool]  # sql, params (or rows when executemany), executemany


@dataclass
class _Job:
    ops: list[Op]
    future: asyncio.Future[list[int]]


@dataclass
class WriterStats:
    """How well group commit is batching: jobs per commit = jobs / commits."""

    jobs: int = 0
    commits: int = 0
    largest_batch: int = 0


@dataclass
class _Writer:
    """Batches queued jobs into one transaction (and so one fsync).

    With ``inline`` (no fsync per commit, so a commit takes microseconds) the batch is
    committed on the event loop's thread at the end of the current loop iteration;
    otherwise a writer thread commits while the loop goes on serving.
    """

    conn: sqlite3.Connection
    loop: asyncio.AbstractEventLoop
    inline: bool = False
    jobs: queue.SimpleQueue[_Job | None] = field(default_factory=queue.SimpleQueue)
    stats: WriterStats = field(default_factory=WriterStats)
    thread: threading.Thread | None = None
    _inline_batch: list[_Job] = field(default_factory=list)

    def start(self) -> None:
        if self.inline:
            return
        self.thread = threading.Thread(target=self._run, name="sqlite-writer", daemon=True)
        self.thread.start()

    def submit(self, ops: list[Op]) -> asyncio.Future[list[int]]:
        future: asyncio.Future[list[int]] = self.loop.create_future()
        if self.inline:
            if not self._inline_batch:
                self.loop.call_soon(self._commit_inline)
            self._inline_batch.append(_Job(ops, future))
        else:
            self.jobs.put(_Job(ops, future))
        return future

    def _commit_inline(self) -> None:
        batch, self._inline_batch = self._inline_batch, []
        if batch:
            _settle(batch, self._commit(batch))

    def stop(self) -> None:
        if self.inline:
            self._commit_inline()
        else:
            self.jobs.put(None)
            if self.thread is not None:
                self.thread.join()
        self.conn.close()

    def _run(self) -> None:
        stopping = False
        while not stopping:
            first = self.jobs.get()
            if first is None:
                break
            batch = [first]
            while True:
                try:
                    more = self.jobs.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    stopping = True
                    break
                batch.append(more)
            outcomes = self._commit(batch)
            self.loop.call_soon_threadsafe(_settle, batch, outcomes)

    def _commit(self, batch: list[_Job]) -> list[list[int] | BaseException]:
        try:
            outcomes = self._transaction(batch, isolate=False)
        except _JobFailed:
            # Some job broke a constraint: run the batch again with a savepoint per job,
            # so that job fails alone. (Savepoints cost two statements per job, which is
            # why the common path does without them.)
            try:
                outcomes = self._transaction(batch, isolate=True)
            except sqlite3.Error as exc:
                log.error("store_commit_failed", error=str(exc), jobs=len(batch))
                return [exc] * len(batch)
        except sqlite3.Error as exc:
            log.error("store_commit_failed", error=str(exc), jobs=len(batch))
            return [exc] * len(batch)
        self.stats.jobs += len(batch)
        self.stats.commits += 1
        self.stats.largest_batch = max(self.stats.largest_batch, len(batch))
        return outcomes

    def _transaction(self, batch: list[_Job], *, isolate: bool) -> list[list[int] | BaseException]:
        conn = self.conn
        outcomes: list[list[int] | BaseException] = []
        conn.execute("BEGIN IMMEDIATE")
        try:
            for job in batch:
                if isolate:
                    conn.execute("SAVEPOINT job")
                try:
                    counts = []
                    for sql, params, many in job.ops:
                        cursor = (
                            conn.executemany(sql, params) if many else conn.execute(sql, params)
                        )
                        counts.append(cursor.rowcount)
                except sqlite3.Error as exc:
                    if not isolate:
                        raise _JobFailed from exc
                    conn.execute("ROLLBACK TO job")
                    conn.execute("RELEASE job")
                    outcomes.append(exc)
                    continue
                if isolate:
                    conn.execute("RELEASE job")
                outcomes.append(counts)
            conn.execute("COMMIT")
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            raise
        return outcomes


class _JobFailed(Exception):
    """A job of an unisolated batch failed; the batch is retried job by job."""


def _settle(batch: list[_Job], outcomes: list[list[int] | BaseException]) -> None:
    for job, outcome in zip(batch, outcomes, strict=True):
        if job.future.done():
            continue
        if isinstance(outcome, BaseException):
            job.future.set_exception(outcome)
        else:
            job.future.set_result(outcome)


Synchronous = Literal["full", "normal"]


def _log_failed_write(future: asyncio.Future[Any]) -> None:
    if not future.cancelled() and future.exception() is not None:
        log.error("store_write_failed", error=str(future.exception()))


def _connect(path: str, synchronous: Synchronous = "full") -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute(f"PRAGMA synchronous = {'FULL' if synchronous == 'full' else 'NORMAL'}")
    conn.execute("PRAGMA foreign_keys = ON")
    conn.execute("PRAGMA busy_timeout = 5000")
    return conn


def migrate(conn: sqlite3.Connection) -> int:
    """Bring the schema up to date; returns the schema version."""
    version = int(conn.execute("PRAGMA user_version").fetchone()[0])
    for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
        conn.execute("BEGIN IMMEDIATE")
        try:
            for statement in _split_sql(script):
                conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {number}")
            conn.execute("COMMIT")
        except sqlite3.Error:
            conn.execute("ROLLBACK")
            raise
        log.info("store_migrated", version=number)
    return len(MIGRATIONS)


def _split_sql(script: str) -> list[str]:
    """Split a script into statements (executescript would commit our transaction)."""
    statements: list[str] = []
    buffer = ""
    for line in script.splitlines(keepends=True):
        buffer += line
        if sqlite3.complete_statement(buffer):
            statements.append(buffer.strip())
            buffer = ""
    if buffer.strip():
        statements.append(buffer.strip())
    return [s for s in statements if s]


def _device(row: sqlite3.Row) -> Device:
    caps = row["capabilities"]
    return Device(
        id=row["id"],
        tenant_id=row["tenant_id"],
        name=row["name"],
        kind=row["kind"],
        mode=row["mode"],
        identity_key=bytes(row["identity_key"]),
        rotation_exponent=row["rotation_exponent"],
        location=row["location"],
        mac=row["mac"],
        state=row["state"],
        user_id=row["user_id"],
        policy_id=row["policy_id"],
        capabilities=tuple(caps.split(",")) if caps else (),
    )


def _pairing(row: sqlite3.Row) -> Pairing:
    return Pairing(
        user_id=row["user_id"],
        laptop_id=row["laptop_id"],
        laptop_name=row["laptop_name"],
        phone_id=row["phone_id"],
        tenant_id=row["tenant_id"],
        created_at=row["created_at"],
    )


# Pairings are cached by relays (see relay.directory); any process that changes them
# bumps this so every relay on the file notices.
_BUMP_PAIRINGS_VERSION: Op = (
    "UPDATE meta SET value = value + 1 WHERE key = 'pairings_version'",
    (),
    False,
)

_LOCK_UPSERT = (
    "INSERT INTO lock_states (phone_id, seq, state, user_id, laptop_id, updated_at, acked_seq)"
    " VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (phone_id) DO UPDATE SET seq = excluded.seq,"
    " state = excluded.state, user_id = excluded.user_id, laptop_id = excluded.laptop_id,"
    " updated_at = excluded.updated_at"
)
_LOCK_ACK = "UPDATE lock_states SET acked_seq = MAX(acked_seq, ?) WHERE phone_id = ?"

_DEVICE_INSERT = (
    "INSERT INTO devices (id, tenant_id, name, kind, mode, identity_key, rotation_exponent,"
    " location, mac, state, user_id, policy_id, capabilities)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)


def _device_row(d: Device) -> tuple[Any, ...]:
    return (
        d.id,
        d.tenant_id,
        d.name,
        d.kind,
        d.mode,
        d.identity_key,
        d.rotation_exponent,
        d.location,
        d.mac,
        d.state,
        d.user_id,
        d.policy_id,
        ",".join(d.capabilities),
    )


class SqliteStore:
    """SQLite implementation of :class:`relay.store.Store` (``":memory:"`` is not supported).

    ``synchronous="full"`` (the default) fsyncs the WAL at every commit, so a change
    survives power loss once acknowledged; ``"normal"`` survives a crash of the relay
    process but may lose the last commits on power loss, and saves an fsync per
    commit (milliseconds on many virtual disks).
    """

    def __init__(self, path: str | Path, synchronous: Synchronous = "full") -> None:
        self.path = str(path)
        self.synchronous: Synchronous = synchronous
        self._reader: sqlite3.Connection | None = None
        self._writer: _Writer | None = None
        self._locks: dict[str, LockRecord | None] = {}
        # Lock writes are coalesced per event-loop iteration into one job.
        self._lock_upserts: list[tuple[Any, ...]] = []
        self._lock_acks: list[tuple[int, str]] = []
        self._lock_flush: asyncio.Future[None] | None = None

    # --- life cycle ----------------------------------------------------------------
    async def open(self) -> None:
        if self._reader is not None:
            return
        Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        writer_conn = _connect(self.path, self.synchronous)
        migrate(writer_conn)
        writer_conn.execute("INSERT OR IGNORE INTO meta VALUES ('pairings_version', 0)")
        self._writer = _Writer(
            writer_conn, asyncio.get_running_loop(), inline=self.synchronous == "normal"
        )
        self._writer.start()
        reader = _connect(self.path, self.synchronous)
        reader.row_factory = sqlite3.Row
        self._reader = reader

    async def close(self) -> None:
        pending = self._lock_flush
        if pending is not None:
            self._flush_lock_writes()
            with contextlib.suppress(Exception):
                await pending
        if self._writer is not None:
            await asyncio.to_thread(self._writer.stop)
            self._writer = None
        if self._reader is not None:
            self._reader.close()
            self._reader = None

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

    # --- plumbing --------------------------------------------------------------------
    @property
    def _db(self) -> sqlite3.Connection:
        if self._reader is None:
            raise RuntimeError("store is not open")
        return self._reader

    async def _write(self, *ops: Op) -> list[int]:
        if self._writer is None:
            raise RuntimeError("store is not open")
        try:
            return await self._writer.submit(list(ops))
        except sqlite3.IntegrityError as exc:
            raise StoreConflict(str(exc)) from exc

    def _one(self, sql: str, *params: Any) -> sqlite3.Row | None:
        return cast(sqlite3.Row | None, self._db.execute(sql, params).fetchone())

    def _all(self, sql: str, *params: Any) -> list[sqlite3.Row]:
        return self._db.execute(sql, params).fetchall()

    async def directory_version(self) -> int:
        row = self._one("SELECT value FROM meta WHERE key = 'directory_version'")
        return int(row[0]) if row else 0

    async def pairings_version(self) -> int:
        row = self._one("SELECT value FROM meta WHERE key = 'pairings_version'")
        return int(row[0]) if row else 0

    # --- directory -------------------------------------------------------------------
    async def add_tenant(self, tenant: Tenant) -> None:
        await self._write(
            (
                "INSERT INTO tenants (id, name, default_policy_id) VALUES (?, ?, ?)",
                (tenant.id, tenant.name, tenant.default_policy_id),
                False,
            )
        )

    async def add_policy(self, policy: Policy) -> None:
        await self._write(
            (
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
                False,
            )
        )

    async def _update_one(self, sql: str, params: tuple[Any, ...], what: str) -> None:
        (count,) = await self._write((sql, params, False))
        if count != 1:
            raise StoreConflict(f"no such {what}")

    async def set_default_policy(self, tenant_id: str, policy_id: str | None) -> None:
        await self._update_one(
            "UPDATE tenants SET default_policy_id = ? WHERE id = ?",
            (policy_id, tenant_id),
            "tenant",
        )

    async def add_user(self, user: User) -> None:
        await self.add_users([user])

    async def add_users(self, users: Sequence[User]) -> None:
        await self._write(
            (
                "INSERT INTO users (id, tenant_id, name, policy_id) VALUES (?, ?, ?, ?)",
                [(u.id, u.tenant_id, u.name, u.policy_id) for u in users],
                True,
            )
        )

    async def set_user_policy(self, user_id: str, policy_id: str | None) -> None:
        await self._update_one(
            "UPDATE users SET policy_id = ? WHERE id = ?", (policy_id, user_id), "user"
        )

    async def add_device(self, device: Device) -> None:
        await self.add_devices([device])

    async def add_devices(self, devices: Sequence[Device]) -> None:
        await self._write((_DEVICE_INSERT, [_device_row(d) for d in devices], True))

    async def set_device_policy(self, device_id: str, policy_id: str | None) -> None:
        await self._update_one(
            "UPDATE devices SET policy_id = ? WHERE id = ?", (policy_id, device_id), "device"
        )

    async def sign_in_device(self, device_id: str, user_id: str | None, state: DeviceState) -> None:
        await self._update_one(
            "UPDATE devices SET user_id = ?, state = ? WHERE id = ?",
            (user_id, state, device_id),
            "device",
        )

    async def add_credentials(self, credentials: Sequence[Credential]) -> None:
        await self._write(
            (
                "INSERT INTO credentials (id, token_hash, subject_kind, subject_id, tenant_id,"
                " created_at, revoked_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                [
                    (
                        c.id,
                        c.token_hash,
                        c.subject_kind,
                        c.subject_id,
                        c.tenant_id,
                        c.created_at,
                        c.revoked_at,
                    )
                    for c in credentials
                ],
                True,
            )
        )

    async def revoke_credential(self, credential_id: str, now: float) -> bool:
        (count,) = await self._write(
            (
                "UPDATE credentials SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL",
                (now, credential_id),
                False,
            )
        )
        return count == 1

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

    async def users(self, tenant_id: str) -> list[User]:
        return [
            User(r["id"], r["tenant_id"], r["name"], r["policy_id"])
            for r in self._all("SELECT * FROM users WHERE tenant_id = ? ORDER BY id", tenant_id)
        ]

    async def device(self, device_id: str) -> Device | None:
        row = self._one("SELECT * FROM devices WHERE id = ?", device_id)
        return _device(row) if row else None

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
        return [_device(r) for r in rows]

    async def credential_by_hash(self, token_hash: bytes) -> Credential | None:
        row = self._one("SELECT * FROM credentials WHERE token_hash = ?", token_hash)
        if row is None:
            return None
        return Credential(
            id=row["id"],
            token_hash=bytes(row["token_hash"]),
            subject_kind=row["subject_kind"],
            subject_id=row["subject_id"],
            tenant_id=row["tenant_id"],
            created_at=row["created_at"],
            revoked_at=row["revoked_at"],
        )

    # --- pairings --------------------------------------------------------------------
    async def add_pairing(self, pairing: Pairing) -> None:
        await self.add_pairings([pairing])

    async def add_pairings(self, pairings: Sequence[Pairing]) -> None:
        await self._write(
            (
                "INSERT OR REPLACE INTO pairings (user_id, laptop_id, laptop_name, phone_id,"
                " tenant_id, created_at) VALUES (?, ?, ?, ?, ?, ?)",
                [
                    (p.user_id, p.laptop_id, p.laptop_name, p.phone_id, p.tenant_id, p.created_at)
                    for p in pairings
                ],
                True,
            ),
            _BUMP_PAIRINGS_VERSION,
        )

    async def remove_pairing(self, user_id: str, laptop_id: str, phone_id: str) -> bool:
        (count, _) = await self._write(
            (
                "DELETE FROM pairings WHERE user_id = ? AND laptop_id = ? AND phone_id = ?",
                (user_id, laptop_id, phone_id),
                False,
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
        return [_pairing(r) for r in rows]

    async def pairings_of_phone(self, phone_id: str) -> list[Pairing]:
        rows = self._all(
            "SELECT * FROM pairings WHERE phone_id = ? ORDER BY user_id, laptop_id", phone_id
        )
        return [_pairing(r) for r in rows]

    # --- lock state ------------------------------------------------------------------
    async def lock_record(self, phone_id: str) -> LockRecord | None:
        if phone_id in self._locks:
            return self._locks[phone_id]
        row = self._one("SELECT * FROM lock_states WHERE phone_id = ?", phone_id)
        record = (
            LockRecord(
                phone_id=row["phone_id"],
                seq=row["seq"],
                state=row["state"],
                user_id=row["user_id"],
                laptop_id=row["laptop_id"],
                updated_at=row["updated_at"],
                acked_seq=row["acked_seq"],
            )
            if row
            else None
        )
        self._locks[phone_id] = record
        return record

    async def set_desired_lock(
        self, phone_ids: Sequence[str], state: LockState, user_id: str, laptop_id: str, now: float
    ) -> list[LockRecord]:
        previous: list[LockRecord | None] = []
        records: list[LockRecord] = []
        for phone_id in phone_ids:
            old = await self.lock_record(phone_id)
            previous.append(old)
            records.append(
                LockRecord(
                    phone_id=phone_id,
                    seq=(old.seq if old else 0) + 1,
                    state=state,
                    user_id=user_id,
                    laptop_id=laptop_id,
                    updated_at=now,
                    acked_seq=old.acked_seq if old else 0,
                )
            )
        # Claim the new seqs before awaiting, so a concurrent change gets the next ones.
        for record in records:
            self._locks[record.phone_id] = record
        self._lock_upserts.extend(
            (r.phone_id, r.seq, r.state, r.user_id, r.laptop_id, r.updated_at, 0) for r in records
        )
        try:
            await self._schedule_lock_flush()
        except BaseException:
            for record, old in zip(records, previous, strict=True):
                if self._locks.get(record.phone_id) is record:
                    self._locks[record.phone_id] = old
            raise
        return records

    async def ack_lock(self, phone_id: str, seq: int) -> LockRecord | None:
        record = await self.lock_record(phone_id)
        if record is None or seq > record.seq:
            return None
        if seq <= record.acked_seq:
            return record
        current = replace(record, acked_seq=seq)
        self._locks[phone_id] = current
        # Not awaited: a lost ack only means the phone is sent a command it has already
        # applied (it ignores seq <= its last), so the ack need not wait for an fsync.
        self._lock_acks.append((seq, phone_id))
        self._schedule_lock_flush()
        return current

    def _schedule_lock_flush(self) -> asyncio.Future[None]:
        """The future of the next coalesced lock write (scheduled if not yet)."""
        if self._lock_flush is None:
            loop = asyncio.get_running_loop()
            self._lock_flush = loop.create_future()
            self._lock_flush.add_done_callback(_log_failed_write)
            loop.call_soon(self._flush_lock_writes)
        return self._lock_flush

    def _flush_lock_writes(self) -> None:
        """Write every lock change and ack of this loop iteration as one job."""
        flush, upserts, acks = self._lock_flush, self._lock_upserts, self._lock_acks
        if flush is None:
            return
        self._lock_flush, self._lock_upserts, self._lock_acks = None, [], []
        ops: list[Op] = []
        if upserts:
            ops.append((_LOCK_UPSERT, upserts, True))
        if acks:
            ops.append((_LOCK_ACK, acks, True))
        if self._writer is None:
            flush.set_exception(RuntimeError("store is closed"))
            return

        def done(job: asyncio.Future[list[int]]) -> None:
            if flush.done():
                return
            if job.cancelled():
                flush.cancel()
            elif (error := job.exception()) is not None:
                flush.set_exception(error)
            else:
                flush.set_result(None)

        self._writer.submit(ops).add_done_callback(done)
