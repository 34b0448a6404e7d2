"""Short-lived state that must survive a relay restart, in the SQLite file (embedded default).

Provisioning's guess counters and lock-outs must not be wiped by restarting the relay
(a guesser would get a fresh set of tries), so in the embedded deployment they live in
the database's ``ephemeral`` table instead of memory; in a cluster, Redis holds them.
Writes go through the store's group-committing writer, so they are atomic: ``add``,
``replace``, ``delete`` with ``expected`` and ``incr`` are single conditional statements.
"""

from __future__ import annotations

from collections.abc import Sequence

from relay.storage.sqlite_store import SqliteStore
from relay.storage.sqlite_writer import Op


class SqliteEphemeral:
    """:class:`relay.domain.ephemeral.EphemeralState` on a :class:`SqliteStore`'s file."""

    def __init__(self, store: SqliteStore) -> None:
        self._store = store

    async def get(self, key: str, now: float) -> str | None:
        return self._store.kv_get(key, now)

    async def get_many(self, keys: Sequence[str], now: float) -> list[str | None]:
        return [self._store.kv_get(key, now) for key in keys]

    async def set(self, key: str, value: str, ttl: float, now: float) -> None:
        await self._store.kv_write(
            Op(
                "INSERT OR REPLACE INTO ephemeral (key, value, expires_at) VALUES (?, ?, ?)",
                (key, value, now + ttl),
            )
        )

    async def set_many(self, items: Sequence[tuple[str, str]], ttl: float, now: float) -> None:
        if items:
            await self._store.kv_write(
                Op(
                    "INSERT OR REPLACE INTO ephemeral (key, value, expires_at) VALUES (?, ?, ?)",
                    [(key, value, now + ttl) for key, value in items],
                    many=True,
                )
            )

    async def add(self, key: str, value: str, ttl: float, now: float) -> bool:
        changed = await self._store.kv_write(
            Op(
                "INSERT INTO ephemeral (key, value, expires_at) VALUES (?, ?, ?)"
                " ON CONFLICT (key) DO UPDATE SET value = excluded.value,"
                " expires_at = excluded.expires_at WHERE ephemeral.expires_at <= ?",
                (key, value, now + ttl, now),
            )
        )
        return changed == 1

    async def replace(
        self, key: str, expected: str, value: str, ttl: float, now: float
    ) -> bool:
        changed = await self._store.kv_write(
            Op(
                "UPDATE ephemeral SET value = ?, expires_at = ?"
                " WHERE key = ? AND value = ? AND expires_at > ?",
                (value, now + ttl, key, expected, now),
            )
        )
        return changed == 1

    async def delete(self, key: str, now: float, expected: str | None = None) -> bool:
        if expected is None:
            op = Op("DELETE FROM ephemeral WHERE key = ? AND expires_at > ?", (key, now))
        else:
            op = Op(
                "DELETE FROM ephemeral WHERE key = ? AND value = ? AND expires_at > ?",
                (key, expected, now),
            )
        return await self._store.kv_write(op) == 1

    async def incr(self, key: str, ttl: float, now: float) -> int:
        rows = await self._store.kv_write(
            Op(
                "INSERT INTO ephemeral (key, value, expires_at) VALUES (?, '1', ?)"
                " ON CONFLICT (key) DO UPDATE SET"
                " value = CASE WHEN ephemeral.expires_at <= ? THEN '1'"
                " ELSE CAST(CAST(ephemeral.value AS INTEGER) + 1 AS TEXT) END,"
                " expires_at = CASE WHEN ephemeral.expires_at <= ? THEN excluded.expires_at"
                " ELSE ephemeral.expires_at END RETURNING value",
                (key, now + ttl, now, now),
                rows=True,
            )
        )
        assert isinstance(rows, list)
        return int(rows[0][0])

    async def purge(self, now: float) -> None:
        await self._store.kv_write(Op("DELETE FROM ephemeral WHERE expires_at <= ?", (now,)))
