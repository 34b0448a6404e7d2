"""Per-connection flood control: a token bucket, and when to give up on a connection.

Pure: the caller passes the time. A request that finds the bucket empty is refused
with ``rate_limited`` and not processed; a connection that keeps sending after
``strikes`` such refusals in a row is closed (1008).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class Verdict(Enum):
    ALLOW = "allow"
    REFUSE = "refuse"
    CLOSE = "close"


@dataclass(slots=True)
class TokenBucket:
    rate: float  # tokens per second
    burst: float
    strikes: int
    tokens: float = -1.0
    updated: float = 0.0
    refused_in_a_row: int = 0

    def take(self, now: float) -> Verdict:
        if self.tokens < 0:
            self.tokens, self.updated = self.burst, now
        self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            self.refused_in_a_row = 0
            return Verdict.ALLOW
        self.refused_in_a_row += 1
        return Verdict.CLOSE if self.refused_in_a_row > self.strikes else Verdict.REFUSE
