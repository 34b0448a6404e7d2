"""Short-lived state that must survive a relay restart, in PostgreSQL (one node without Redis).

The PostgreSQL counterpart of :mod:`relay.storage.sqlite_ephemeral`: provisioning's guess
counters and lock-outs live in the database's ``ephemeral`` table when a relay runs on
PostgreSQL without Redis, so restarting the relay gives a guesser no fresh set of tries.
Every write is one conditional statement, so ``add``, ``replace``, ``delete`` with
``expected`` and ``incr`` are atomic even with several processes on the database.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import cast

from psycopg.rows import DictRow

from relay.storage.postgres_store import PostgresStore, Stmt


class PostgresEphemeral:
    """:class:`relay.domain.ephemeral.EphemeralState` in a :class:`PostgresStore`'s database."""

    def __init__(self, store: PostgresStore) -> None:
        self._store = store

    async def get(self, key: str, now: float) -> str | None:
        row = await self._store.one(
            "SELECT value FROM ephemeral WHERE key = %s AND expires_at > %s", key, now
        )
        return str(row["value"]) if row else None

    async def get_many(self, keys: Sequence[str], now: float) -> list[str | None]:
        if not keys:
            return []
        rows = await self._store.all(
            "SELECT key, value FROM ephemeral WHERE key = ANY(%s) AND expires_at > %s",
            list(keys),
            now,
        )
        found = {r["key"]: str(r["value"]) for r in rows}
        return [found.get(key) for key in keys]

    async def set(self, key: str, value: str, ttl: float, now: float) -> None:
        await self.set_many([(key, value)], ttl, now)

    async def set_many(self, items: Sequence[tuple[str, str]], ttl: float, now: float) -> None:
        if items:
            await self._store.run(
                Stmt(
                    "INSERT INTO ephemeral (key, value, expires_at) VALUES (%s, %s, %s)"
                    " ON CONFLICT (key) DO UPDATE SET value = excluded.value,"
                    " expires_at = excluded.expires_at",
                    [(key, value, now + ttl) for key, value in items],
                    many=True,
                )
            )

    async def add(self, key: str, value: str, ttl: float, now: float) -> bool:
        (changed,) = await self._store.run(
            Stmt(
                "INSERT INTO ephemeral (key, value, expires_at) VALUES (%s, %s, %s)"
                " ON CONFLICT (key) DO UPDATE SET value = excluded.value,"
                " expires_at = excluded.expires_at WHERE ephemeral.expires_at <= %s",
                (key, value, now + ttl, now),
            )
        )
        return changed == 1

    async def replace(
        self, key: str, expected: str, value: str, ttl: float, now: float
    ) -> bool:
        (changed,) = await self._store.run(
            Stmt(
                "UPDATE ephemeral SET value = %s, expires_at = %s"
                " WHERE key = %s AND value = %s AND expires_at > %s",
                (value, now + ttl, key, expected, now),
            )
        )
        return changed == 1

    async def delete(self, key: str, now: float, expected: str | None = None) -> bool:
        if expected is None:
            stmt = Stmt("DELETE FROM ephemeral WHERE key = %s AND expires_at > %s", (key, now))
        else:
            stmt = Stmt(
                "DELETE FROM ephemeral WHERE key = %s AND value = %s AND expires_at > %s",
                (key, expected, now),
            )
        (changed,) = await self._store.run(stmt)
        return changed == 1

    async def incr(self, key: str, ttl: float, now: float) -> int:
        (rows,) = await self._store.run(
            Stmt(
                "INSERT INTO ephemeral AS e (key, value, expires_at) VALUES (%s, '1', %s)"
                " ON CONFLICT (key) DO UPDATE SET"
                " value = CASE WHEN e.expires_at <= %s THEN '1'"
                " ELSE (e.value::bigint + 1)::text END,"
                " expires_at = CASE WHEN e.expires_at <= %s THEN excluded.expires_at"
                " ELSE e.expires_at END RETURNING value",
                (key, now + ttl, now, now),
                rows=True,
            )
        )
        return int(cast(list[DictRow], rows)[0]["value"])

    async def purge(self, now: float) -> None:
        await self._store.run(Stmt("DELETE FROM ephemeral WHERE expires_at <= %s", (now,)))
