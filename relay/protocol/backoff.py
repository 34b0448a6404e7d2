"""Reconnect pacing for relay clients: exponential backoff with jitter (pure; RNG passed in).

Shared by every long-lived link to the relay (laptop client, beacon daemon) so that a
relay restart is not met by all its clients at the same instant::

    backoff = Backoff(BackoffPolicy(), random.Random())
    while True:
        try:
            link = await connect()
        except OSError:
            await asyncio.sleep(backoff.next_delay())
            continue
        backoff.reset()          # connected: the next failure starts small again

"Equal jitter": the n-th delay is uniform in [cap/2, cap] with
``cap = min(max_s, initial_s * multiplier**n)``, so it never collapses to zero (no
hot loop against a relay that refuses at once) and still spreads clients out.
"""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class BackoffPolicy:
    """How delays grow: from ``initial_s`` by ``multiplier`` per failure, up to ``max_s``."""

    initial_s: float = 0.5
    max_s: float = 30.0
    multiplier: float = 2.0

    def __post_init__(self) -> None:
        if self.initial_s <= 0 or self.max_s < self.initial_s or self.multiplier < 1:
            raise ValueError(
                "backoff needs 0 < initial_s <= max_s and multiplier >= 1, got "
                f"initial_s={self.initial_s}, max_s={self.max_s}, multiplier={self.multiplier}"
            )

    def ceiling(self, attempt: int) -> float:
        """The largest delay after ``attempt`` consecutive failures (0-based)."""
        # Bound the exponent: past the cap the power would only overflow.
        exponent = min(max(attempt, 0), 64)
        return min(self.max_s, self.initial_s * self.multiplier**exponent)

    def delay(self, attempt: int, rng: random.Random) -> float:
        """The delay before retry number ``attempt`` (0-based), jittered with ``rng``."""
        cap = self.ceiling(attempt)
        return rng.uniform(cap / 2, cap)


class Backoff:
    """Counts consecutive failures and hands out the next delay."""

    def __init__(self, policy: BackoffPolicy, rng: random.Random) -> None:
        self.policy = policy
        self._rng = rng
        self.failures = 0

    def next_delay(self) -> float:
        delay = self.policy.delay(self.failures, self._rng)
        self.failures += 1
        return delay

    def reset(self) -> None:
        self.failures = 0
