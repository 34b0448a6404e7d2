"""Device login codes as both ends see them: the alphabet, generation, normalisation. Pure.

A device waiting for sign-in makes up a login code and shows it; the administrator
reads it (aloud, or off a screen) and types it back through the relay.  So the code
uses an alphabet without look-alikes and is compared without regard to case, spaces
or dashes.  It lives in the protocol package because the device generates it and the
relay checks it.
"""

from __future__ import annotations

import random

LOGIN_CODE_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"  # no 0/O, 1/I
LOGIN_CODE_LEN = 8
# A device keeps showing the same code this long, whoever asks for it; the relay accepts a
# reported code for 15 minutes, so a code shown is always one the relay still accepts.
LOGIN_CODE_KEEP_S = 10 * 60.0


def generate_login_code(rng: random.Random) -> tuple[str, str]:
    """A fresh code: (as shown, ``XXXX-XXXX``; normalised, as compared)."""
    raw = "".join(rng.choice(LOGIN_CODE_ALPHABET) for _ in range(LOGIN_CODE_LEN))
    return f"{raw[:4]}-{raw[4:]}", raw


def normalize_login_code(text: str) -> str | None:
    """Upper-case the code and drop spaces and dashes; None if it cannot be a code."""
    raw = "".join(c for c in text if c not in " -").upper()
    if len(raw) != LOGIN_CODE_LEN or any(c not in LOGIN_CODE_ALPHABET for c in raw):
        return None
    return raw
