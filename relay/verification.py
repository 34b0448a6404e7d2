"""Verification codes, device login codes, and the throttling of guesses. Pure.

The provisioning flow (as administrators know it from Teams' remote provisioning):
the administrator generates a 6-digit verification code for a listed device; someone
types it on the device; the relay binds the device to the tenant.  A code is valid for
24 hours and for one use, and generating a new one voids the old.  Six digits are
guessable, so guesses are throttled twice: per device (a few wrong codes lock the
device out for a while, and the administrator sees why) and per source address (a
token bucket, so one machine cannot sweep many devices).

Login codes are what a device waiting for sign-in shows: alphanumeric, read aloud or
typed by an administrator, so from an alphabet without look-alikes, and compared
without regard to case, spaces or dashes.

Time and randomness are arguments; nothing here does I/O.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import random
from dataclasses import dataclass, replace

from relay.protocol.login_code import (
    LOGIN_CODE_ALPHABET,
    LOGIN_CODE_LEN,
    generate_login_code,
    normalize_login_code,
)

__all__ = [
    "LOGIN_CODE_ALPHABET",
    "LOGIN_CODE_LEN",
    "LOGIN_CODE_TTL_S",
    "CodeCheck",
    "DeviceGuesses",
    "IssuedCode",
    "SourceBucket",
    "ThrottlePolicy",
    "check_code",
    "hash_code",
    "mark_used",
    "new_login_code",
    "new_verification_code",
    "normalize_login_code",
    "normalize_verification_code",
]

VERIFICATION_CODE_DIGITS = 6
VERIFICATION_CODE_TTL_S = 24 * 3600.0
LOGIN_CODE_TTL_S = 15 * 60.0


def hash_code(scope: str, code: str) -> str:
    """Store codes only hashed, bound to what they are for (a device id)."""
    return hashlib.sha256(f"{scope}\x00{code}".encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class IssuedCode:
    """A code as the relay keeps it: its hash and its lifetime."""

    code_hash: str
    issued_at: float
    expires_at: float
    used_at: float | None = None


def new_verification_code(
    scope: str, now: float, rng: random.Random, ttl_s: float = VERIFICATION_CODE_TTL_S
) -> tuple[str, IssuedCode]:
    """A fresh 6-digit code (shown once to the administrator) and its stored form."""
    code = f"{rng.randrange(10**VERIFICATION_CODE_DIGITS):0{VERIFICATION_CODE_DIGITS}d}"
    return code, IssuedCode(hash_code(scope, code), now, now + ttl_s)


def normalize_verification_code(text: str) -> str | None:
    """The code as typed, without spaces and dashes; None if it cannot be a code."""
    digits = "".join(c for c in text if c not in " -")
    if len(digits) != VERIFICATION_CODE_DIGITS or not digits.isascii() or not digits.isdigit():
        return None
    return digits


def new_login_code(
    scope: str, now: float, rng: random.Random, ttl_s: float = LOGIN_CODE_TTL_S
) -> tuple[str, IssuedCode]:
    """A fresh login code shown as ``XXXX-XXXX`` and its stored form."""
    shown, raw = generate_login_code(rng)
    return shown, IssuedCode(hash_code(scope, raw), now, now + ttl_s)


class CodeCheck(enum.Enum):
    ACCEPTED = "accepted"
    WRONG = "wrong"
    EXPIRED = "expired"
    USED = "used"
    NONE_ISSUED = "none_issued"


def check_code(scope: str, issued: IssuedCode | None, typed: str | None, now: float) -> CodeCheck:
    """Judge a typed (already normalised) code against the one issued for ``scope``."""
    if issued is None:
        return CodeCheck.NONE_ISSUED
    if typed is None or not hmac.compare_digest(issued.code_hash, hash_code(scope, typed)):
        return CodeCheck.WRONG
    if issued.used_at is not None:
        return CodeCheck.USED
    if now >= issued.expires_at:
        return CodeCheck.EXPIRED
    return CodeCheck.ACCEPTED


def mark_used(issued: IssuedCode, now: float) -> IssuedCode:
    return replace(issued, used_at=now)


@dataclass(frozen=True, slots=True)
class ThrottlePolicy:
    """How many wrong guesses are tolerated.

    Five wrong codes in a row lock a device out for 15 minutes: a person mistyping
    never gets there, and a guesser gets 480 tries a day out of a million codes.
    Per source, 20 attempts per minute with a burst of 20.
    """

    max_failures: int = 5
    lockout_s: float = 15 * 60.0
    source_burst: float = 20.0
    source_per_minute: float = 20.0


@dataclass(frozen=True, slots=True)
class DeviceGuesses:
    """Wrong guesses against one device, and whether it is locked out."""

    failures: int = 0
    locked_until: float | None = None

    def locked(self, now: float) -> bool:
        return self.locked_until is not None and now < self.locked_until

    def after_failure(self, now: float, policy: ThrottlePolicy) -> DeviceGuesses:
        failures = self.failures + 1
        if failures >= policy.max_failures:
            return DeviceGuesses(failures=0, locked_until=now + policy.lockout_s)
        return DeviceGuesses(failures=failures, locked_until=self.locked_until)


@dataclass(frozen=True, slots=True)
class SourceBucket:
    """A token bucket of attempts for one source address."""

    tokens: float
    updated_at: float

    @classmethod
    def full(cls, now: float, policy: ThrottlePolicy) -> SourceBucket:
        return cls(policy.source_burst, now)

    def take(self, now: float, policy: ThrottlePolicy) -> tuple[bool, SourceBucket]:
        """Spend one attempt if there is one; returns (allowed, new bucket)."""
        elapsed = max(0.0, now - self.updated_at)
        tokens = min(policy.source_burst, self.tokens + elapsed * policy.source_per_minute / 60.0)
        if tokens < 1.0:
            return False, SourceBucket(tokens, now)
        return True, SourceBucket(tokens - 1.0, now)
