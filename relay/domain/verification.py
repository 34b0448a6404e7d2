"""Verification codes, device login codes, and the throttling of guesses. Pure.

The provisioning flow (as administrators know it from Teams' remote provisioning):
the administrator generates a 6-digit verification code for a listed device; someone
types it on the device; the relay binds the device to the tenant.  A code is valid for
24 hours and for one use, and generating a new one voids the old.  Six digits are
guessable, so guesses are throttled (see :class:`ThrottlePolicy`): per device and
source address, per source address, and per device over all sources.

Login codes are what a device waiting for sign-in shows: alphanumeric, read aloud or
typed by an administrator, so from an alphabet without look-alikes, and compared
without regard to case, spaces or dashes.

Time and randomness are arguments; nothing here does I/O.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import json
import random
from dataclasses import asdict, dataclass, replace

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
    "IssuedCode",
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


def dump_code(issued: IssuedCode) -> str:
    return json.dumps(asdict(issued), separators=(",", ":"))


def load_code(text: str) -> IssuedCode:
    return IssuedCode(**json.loads(text))


@dataclass(frozen=True, slots=True)
class ThrottlePolicy:
    """How many wrong guesses are tolerated, and from whom.

    Guesses are counted per (device, source address): five wrong codes from one source
    refuse *that source* for that device for 15 minutes and alert the administrators
    (an audit entry and the device list), without locking the real device out — so a
    stranger cannot keep a device from being provisioned by typing junk. Per source,
    20 attempts a minute over all devices. Per device, over all sources, 100 wrong
    codes in a day void the device's verification code: a guesser with many addresses
    gets at most 100 tries out of a million codes per code issued, and the
    administrator, alerted, issues a new one.
    """

    max_failures: int = 5
    lockout_s: float = 15 * 60.0
    source_per_minute: int = 20
    device_failures_per_day: int = 100
