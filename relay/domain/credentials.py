"""Connection credentials: random bearer tokens, stored only as SHA-256 hashes.

Tokens carry 256 bits of randomness, so a plain (unsalted) SHA-256 is enough to make
a stolen database useless for connecting, and it lets the relay find a credential
by its hash with one indexed lookup.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable

TOKEN_PREFIX = "btg_"  # noqa: S105 - a prefix, not a secret
TokenSource = Callable[[int], str]


def new_token(token_hex: TokenSource = secrets.token_hex) -> str:
    """A fresh credential token (shown once to whoever provisions the subject)."""
    return TOKEN_PREFIX + token_hex(32)


def hash_token(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8", "surrogateescape")).digest()


def bearer_token(authorization: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header, or None."""
    if not authorization:
        return None
    scheme, _, token = authorization.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token or len(token) > 256:
        return None
    return token
