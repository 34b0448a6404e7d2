"""Group commit for SQLite: one writer drains queued jobs into a single transaction.

Many concurrent changes (lock changes above all) then cost one fsync, not one each:
group commit is how the relay acknowledges a change only once it is durable and still
keeps its throughput. Each job is a list of :class:`Op`; a job whose statement breaks
a constraint, or whose ``expect_one`` statement did not change exactly one row, fails
alone (the batch is retried with a savepoint per job) and leaves nothing half-written.

With ``inline`` (no fsync per commit, so a commit takes microseconds) the batch is
committed on the event loop's thread at the end of the current loop iteration;
otherwise a writer thread commits while the loop goes on serving.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import sqlite3
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, NamedTuple

import structlog

log = structlog.get_logger("relay.store")

Synchronous = Literal["full", "normal"]


class Op(NamedTuple):
    """One statement of a job. Its outcome is the row count, or the rows with ``rows``."""

    sql: str
    params: Sequence[Any] = ()
    many: bool = False  # executemany over ``params`` (a sequence of rows)
    rows: bool = False  # the statement returns rows (RETURNING): the outcome is them
    expect_one: str | None = None  # unless exactly one row changed: fail the job with this


class Refused(sqlite3.IntegrityError):
    """An ``expect_one`` statement changed no row (or several): the job fails alone."""


Outcome = int | list[sqlite3.Row]


@dataclass
class _Job:
    ops: list[Op]
    future: asyncio.Future[list[Outcome]]


@dataclass
class WriterStats:
    """How well group commit is batching: jobs per commit = jobs / commits."""

    jobs: int = 0
    commits: int = 0
    largest_batch: int = 0


class _JobFailed(Exception):
    """A job of an unisolated batch failed; the batch is retried job by job."""


@dataclass
class Writer:
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

    def submit(self, ops: list[Op]) -> asyncio.Future[list[Outcome]]:
        future: asyncio.Future[list[Outcome]] = self.loop.create_future()
        if self.inline:
            if not self._inline_batch:
                self.loop.call_soon(self.commit_waiting)
            self._inline_batch.append(_Job(ops, future))
        else:
            self.jobs.put(_Job(ops, future))
        return future

    def commit_waiting(self) -> None:
        """Inline: commit the jobs submitted so far now, in one transaction, and settle
        their futures (otherwise done at the end of the loop iteration they came in)."""
        batch, self._inline_batch = self._inline_batch, []
        if batch:
            _settle(batch, self._commit(batch))

    def stop(self) -> None:
        if self.inline:
            self.commit_waiting()
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

    def _commit(self, batch: list[_Job]) -> list[list[Outcome] | BaseException]:
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

    @staticmethod
    def _run_job(conn: sqlite3.Connection, job: _Job) -> list[Outcome]:
        results: list[Outcome] = []
        for op in job.ops:
            if op.many:
                cursor = conn.executemany(op.sql, op.params)
                results.append(cursor.rowcount)
                continue
            cursor = conn.execute(op.sql, op.params)
            if op.rows:
                rows = cursor.fetchall()
                results.append(rows)
                changed = len(rows)
            else:
                changed = cursor.rowcount
                results.append(changed)
            if op.expect_one is not None and changed != 1:
                raise Refused(op.expect_one)
        return results

    def _transaction(
        self, batch: list[_Job], *, isolate: bool
    ) -> list[list[Outcome] | BaseException]:
        conn = self.conn
        outcomes: list[list[Outcome] | BaseException] = []
        conn.execute("BEGIN IMMEDIATE")
        try:
            for job in batch:
                if isolate:
                    conn.execute("SAVEPOINT job")
                try:
                    results = self._run_job(conn, job)
                except sqlite3.Error as exc:
                    if not isolate:
                        raise _JobFailed from exc
                    conn.execute("ROLLBACK TO job")
                    conn.execute("RELEASE job")
                    outcomes.append(exc)
                    continue
                if isolate:
                    conn.execute("RELEASE job")
                outcomes.append(results)
            conn.execute("COMMIT")
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            raise
        return outcomes


def _settle(batch: list[_Job], outcomes: list[list[Outcome] | BaseException]) -> None:
    for job, outcome in zip(batch, outcomes, strict=True):
        if job.future.done():
            continue
        if isinstance(outcome, BaseException):
            job.future.set_exception(outcome)
        else:
            job.future.set_result(outcome)


def connect(path: str, synchronous: Synchronous = "full") -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.row_factory = sqlite3.Row
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute(f"PRAGMA synchronous = {'FULL' if synchronous == 'full' else 'NORMAL'}")
    conn.execute("PRAGMA foreign_keys = ON")
    conn.execute("PRAGMA busy_timeout = 5000")
    return conn


def migrate(conn: sqlite3.Connection, migrations: Sequence[str]) -> int:
    """Bring the schema up to date; returns the schema version."""
    version = int(conn.execute("PRAGMA user_version").fetchone()[0])
    if version > len(migrations):
        raise sqlite3.DatabaseError(
            f"the database has schema version {version}, newer than this relay knows "
            f"({len(migrations)}): upgrade btogether"
        )
    for number, script in enumerate(migrations[version:], start=version + 1):
        conn.execute("BEGIN IMMEDIATE")
        try:
            for statement in split_sql(script):
                conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {number}")
            conn.execute("COMMIT")
        except sqlite3.Error:
            conn.execute("ROLLBACK")
            raise
        log.info("store_migrated", version=number)
    return len(migrations)


def split_sql(script: str) -> list[str]:
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
