"""Password hashing for people's sign-in: scrypt (memory-hard), self-describing hashes.

A stored hash reads ``scrypt$<n>$<r>$<p>$<salt b64>$<hash b64>``, so the cost can be
raised later without breaking existing hashes (:func:`needs_rehash`). Checking runs in
a worker thread (:func:`verify_async`): one check costs about 16 MiB and tens of
milliseconds, which must not stall the relay's event loop. Pure functions otherwise;
the salt source is a parameter for tests.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

MIN_PASSWORD_CHARS = 10
MAX_PASSWORD_CHARS = 1024  # bounds the work an attacker can make one check cost


@dataclass(frozen=True, slots=True)
class ScryptCost:
    n: int = 2**14
    r: int = 8
    p: int = 1

    @property
    def maxmem(self) -> int:
        return 2 * 128 * self.r * self.n * self.p + 1024 * 1024


DEFAULT_COST = ScryptCost()


class WeakPassword(ValueError):
    """The password is too short or too long; the message says which."""


def check_password_rules(password: str) -> None:
    if len(password) < MIN_PASSWORD_CHARS:
        raise WeakPassword(f"a password needs at least {MIN_PASSWORD_CHARS} characters")
    if len(password) > MAX_PASSWORD_CHARS:
        raise WeakPassword(f"a password has at most {MAX_PASSWORD_CHARS} characters")


def _derive(password: str, salt: bytes, cost: ScryptCost) -> bytes:
    return hashlib.scrypt(
        password.encode("utf-8", "surrogateescape"),
        salt=salt,
        n=cost.n,
        r=cost.r,
        p=cost.p,
        maxmem=cost.maxmem,
        dklen=32,
    )


def hash_password(
    password: str,
    cost: ScryptCost = DEFAULT_COST,
    salt_source: Callable[[int], bytes] = secrets.token_bytes,
) -> str:
    salt = salt_source(16)
    digest = _derive(password, salt, cost)
    b64 = base64.b64encode
    return f"scrypt${cost.n}${cost.r}${cost.p}${b64(salt).decode()}${b64(digest).decode()}"


def _parse(stored: str) -> tuple[ScryptCost, bytes, bytes] | None:
    parts = stored.split("$")
    if len(parts) != 6 or parts[0] != "scrypt":
        return None
    try:
        cost = ScryptCost(int(parts[1]), int(parts[2]), int(parts[3]))
        return cost, base64.b64decode(parts[4]), base64.b64decode(parts[5])
    except ValueError:
        return None


def verify_password(password: str, stored: str | None) -> bool:
    """Whether ``password`` matches ``stored``; a missing or malformed hash never matches
    (but costs the same work, so timing does not tell an unknown login from a wrong one)."""
    parsed = _parse(stored) if stored else None
    if parsed is None or len(password) > MAX_PASSWORD_CHARS:
        _derive(password[:MAX_PASSWORD_CHARS], b"\0" * 16, DEFAULT_COST)
        return False
    cost, salt, expected = parsed
    return hmac.compare_digest(_derive(password, salt, cost), expected)


async def verify_async(password: str, stored: str | None) -> bool:
    return await asyncio.to_thread(verify_password, password, stored)


async def hash_async(password: str, cost: ScryptCost = DEFAULT_COST) -> str:
    return await asyncio.to_thread(hash_password, password, cost)


def needs_rehash(stored: str, cost: ScryptCost = DEFAULT_COST) -> bool:
    parsed = _parse(stored)
    return parsed is None or parsed[0] != cost


def read_password_file(path: Path) -> str:
    """The password on the first line of a file (bounded read); ValueError says why not."""
    try:
        with path.open("rb") as handle:
            data = handle.read(MAX_PASSWORD_CHARS * 4 + 2)
    except OSError as exc:
        raise ValueError(f"cannot read the password file {path}: {exc.strerror}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise ValueError(f"the password file {path} is not UTF-8 text") from None
    password = text.splitlines()[0] if text.splitlines() else ""
    try:
        check_password_rules(password)
    except WeakPassword as exc:
        raise ValueError(f"{path}: {exc}") from None
    return password
