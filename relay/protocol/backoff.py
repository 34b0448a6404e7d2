"""Reconnect pacing for relay clients: exponential backoff with jitter (pure; RNG passed in).

For every long-lived link to the relay (laptop client, beacon daemon), so that a relay
restart is not met by all its clients at the same instant. The delay before the n-th
retry grows as ``initial · factor^n`` up to ``cap``, then gets "equal jitter": uniform
in [ceiling/2, ceiling], so it never collapses to zero (no hot loop against a relay that
refuses at once) and still spreads a fleet out. Nothing here sleeps::

    retries = Retries(Backoff(), random.Random())
    while True:
        try:
            link = await connect()
        except OSError:
            await asyncio.sleep(retries.next_delay())
            continue
        retries.reset()          # connected: the next failure starts small again
"""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Backoff:
    """Delays between reconnection attempts."""

    initial_s: float = 0.5
    cap_s: float = 30.0
    factor: float = 2.0

    def __post_init__(self) -> None:
        if not 0 < self.initial_s <= self.cap_s:
            raise ValueError("backoff needs 0 < initial_s <= cap_s")
        if self.factor < 1:
            raise ValueError("backoff factor must be at least 1")

    def ceiling(self, attempt: int) -> float:
        """The un-jittered delay before retry number ``attempt`` (0 for the first retry)."""
        if attempt < 0:
            raise ValueError("attempt must be >= 0")
        delay = self.initial_s
        for _ in range(attempt):  # multiply step by step: factor**attempt may overflow
            delay *= self.factor
            if delay >= self.cap_s:
                return self.cap_s
        return min(delay, self.cap_s)

    def delay(self, attempt: int, rng: random.Random) -> float:
        """The jittered delay before retry ``attempt``: in [ceiling/2, ceiling]."""
        ceiling = self.ceiling(attempt)
        return ceiling / 2 + rng.uniform(0, ceiling / 2)


class Retries:
    """Counts consecutive failures and hands out the next delay."""

    def __init__(self, backoff: Backoff, rng: random.Random) -> None:
        self.backoff = backoff
        self._rng = rng
        self.failures = 0

    def next_delay(self) -> float:
        delay = self.backoff.delay(self.failures, self._rng)
        self.failures += 1
        return delay

    def reset(self) -> None:
        self.failures = 0
