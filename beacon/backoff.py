"""When to try the relay again: jittered exponential backoff, as a pure policy.

The delay before the n-th retry grows as ``initial · factor^n`` up to ``cap``, and is
then jittered ("equal jitter": half fixed, half random) so that a fleet of devices that
lost the relay together does not come back in lockstep.  Randomness is passed in, so
the policy is reproducible in tests; nothing here sleeps.
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
        # Compare exponents rather than computing factor**attempt, which overflows.
        delay = self.initial_s
        for _ in range(attempt):
            delay *= self.factor
            if delay >= self.cap_s:
                return self.cap_s
        return min(delay, self.cap_s)

    def delay(self, attempt: int, rng: random.Random) -> float:
        """The jittered delay before retry ``attempt``: in [ceiling/2, ceiling]."""
        ceiling = self.ceiling(attempt)
        return ceiling / 2 + rng.uniform(0, ceiling / 2)
