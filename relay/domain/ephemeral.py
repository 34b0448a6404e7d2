"""Short-lived shared state with expiry: the interface, and the in-process implementation.

Everything the relay keeps for seconds to minutes — pending pair requests, audio
hand-offs, join prompts, recent sightings, login codes and their requests, guess
counters and lock-outs — goes through :class:`EphemeralState`, never through a
dictionary of one process, so that several relay nodes share it (Redis) and a
timer is a TTL, not one node's tick. Values are strings (the callers store JSON).

Every method takes ``now`` for the in-process implementation's expiry (so tests can
move time); a backend with its own clock (Redis) uses the TTL alone. Writes that
must not race are compare-and-set: :meth:`add` (only if absent), :meth:`replace`
and :meth:`delete` with ``expected`` (only if the value is still what the caller
read).
"""

from __future__ import annotations

import heapq
from collections.abc import Sequence
from typing import Protocol


class EphemeralState(Protocol):
    async def get(self, key: str, now: float) -> str | None: ...

    async def get_many(self, keys: Sequence[str], now: float) -> list[str | None]: ...

    async def set(self, key: str, value: str, ttl: float, now: float) -> None: ...

    async def set_many(self, items: Sequence[tuple[str, str]], ttl: float, now: float) -> None:
        """Set several keys with one TTL (one round trip where the backend allows)."""

    async def add(self, key: str, value: str, ttl: float, now: float) -> bool:
        """Set ``key`` only if it is absent (or expired); True if it was set."""

    async def replace(
        self, key: str, expected: str, value: str, ttl: float, now: float
    ) -> bool:
        """Set ``key`` to ``value`` only if it still holds ``expected``."""

    async def delete(self, key: str, now: float, expected: str | None = None) -> bool:
        """Delete ``key`` (only if it holds ``expected``, when given); True if it did."""

    async def incr(self, key: str, ttl: float, now: float) -> int:
        """Add one to a counter and return it; a new counter expires ``ttl`` from now."""

    async def purge(self, now: float) -> None:
        """Drop expired entries (a no-op where the backend expires them itself)."""


class MemoryEphemeral:
    """:class:`EphemeralState` in this process: the embedded default (one relay, no Redis).

    Expired entries read as absent at once and are dropped by :meth:`purge` (the relay
    calls it every second), so memory follows what is live, not what was ever written.
    """

    def __init__(self) -> None:
        self._values: dict[str, tuple[str, float]] = {}
        # Heap of (expires_at, keys written together with it); rows may be stale. A batch
        # (a sighting report marks up to 64 devices fresh) is one row, not one per key.
        self._expiry: list[tuple[float, tuple[str, ...]]] = []

    def __len__(self) -> int:
        return len(self._values)

    def _live(self, key: str, now: float) -> str | None:
        entry = self._values.get(key)
        if entry is None:
            return None
        if entry[1] <= now:
            del self._values[key]
            return None
        return entry[0]

    def _put(self, key: str, value: str, ttl: float, now: float) -> None:
        expires_at = now + ttl
        previous = self._values.get(key)
        self._values[key] = (value, expires_at)
        if previous is None or previous[1] != expires_at:
            heapq.heappush(self._expiry, (expires_at, (key,)))

    async def get(self, key: str, now: float) -> str | None:
        return self._live(key, now)

    async def get_many(self, keys: Sequence[str], now: float) -> list[str | None]:
        return [self._live(key, now) for key in keys]

    async def set(self, key: str, value: str, ttl: float, now: float) -> None:
        self._put(key, value, ttl, now)

    async def set_many(self, items: Sequence[tuple[str, str]], ttl: float, now: float) -> None:
        expires_at = now + ttl
        values = self._values
        for key, value in items:
            values[key] = (value, expires_at)
        if items:
            heapq.heappush(self._expiry, (expires_at, tuple(key for key, _ in items)))

    async def add(self, key: str, value: str, ttl: float, now: float) -> bool:
        if self._live(key, now) is not None:
            return False
        self._put(key, value, ttl, now)
        return True

    async def replace(
        self, key: str, expected: str, value: str, ttl: float, now: float
    ) -> bool:
        if self._live(key, now) != expected:
            return False
        self._put(key, value, ttl, now)
        return True

    async def delete(self, key: str, now: float, expected: str | None = None) -> bool:
        current = self._live(key, now)
        if current is None or (expected is not None and current != expected):
            return False
        del self._values[key]
        return True

    async def incr(self, key: str, ttl: float, now: float) -> int:
        current = self._live(key, now)
        if current is None:
            self._put(key, "1", ttl, now)
            return 1
        value = int(current) + 1
        self._values[key] = (str(value), self._values[key][1])
        return value

    async def purge(self, now: float) -> None:
        heap = self._expiry
        while heap and heap[0][0] <= now:
            _, keys = heapq.heappop(heap)
            for key in keys:
                entry = self._values.get(key)
                if entry is not None and entry[1] <= now:
                    del self._values[key]
        # Keys rewritten with a later expiry leave stale heap rows; rebuild when they dominate.
        if len(heap) > 4 * len(self._values) + 1024:
            self._expiry = [(exp, (key,)) for key, (_, exp) in self._values.items()]
            heapq.heapify(self._expiry)
