"""Which tenant, account, device or policy an administrator means: by id, MAC address or name.

Pure matching for ``btogether admin``: the command line lists the candidates through the
relay and :func:`pick` chooses. In order: an exact id; for devices, a MAC address in any
common notation; a name, ignoring case and repeated spaces; then other labels (a device's
location). Nothing fuzzy: a prefix or a typo is "not found", and a name several share is
refused with their ids, never guessed.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from relay.domain.device_import import InvalidMac, parse_mac

# Ids the relay makes: a short prefix, an underscore, 16 hex digits (t_…, u_…, d_…, p_…).
_ID = re.compile(r"^[a-z]{1,3}_[0-9a-f]{16}$")


class NotFound(LookupError):
    """Nothing matches; the message says what was looked for and where to look."""


class Ambiguous(LookupError):
    """Several match; the message lists them with their ids."""


@dataclass(frozen=True, slots=True)
class Candidate:
    id: str
    name: str
    mac: str | None = None
    other_labels: tuple[str, ...] = ()
    detail: str = ""  # shown when several match, e.g. the MAC and the location


def looks_like_id(text: str) -> bool:
    """True for the shape of an id the relay made: such text is passed on as it is."""
    return bool(_ID.match(text.strip()))


def _fold(text: str) -> str:
    return " ".join(text.split()).casefold()


def pick(kind: str, text: str, candidates: Sequence[Candidate], where: str = "") -> str:
    """The id of the one candidate ``text`` names; NotFound or Ambiguous otherwise.

    ``kind`` is the singular noun ("device") and ``where`` describes the search scope for
    messages (" in Contoso").
    """
    wanted = text.strip()
    for candidate in candidates:
        if candidate.id == wanted:
            return candidate.id
    try:
        mac = parse_mac(wanted)
    except InvalidMac:
        mac = None
    tiers = [
        [c for c in candidates if mac is not None and c.mac == mac],
        [c for c in candidates if _fold(c.name) == _fold(wanted)],
        [c for c in candidates if any(_fold(label) == _fold(wanted) for label in c.other_labels)],
    ]
    for found in tiers:
        if len(found) == 1:
            return found[0].id
        if len(found) > 1:
            listed = ", ".join(f"{c.id} ({c.detail or c.name})" for c in found[:10])
            more = f" and {len(found) - 10} more" if len(found) > 10 else ""
            raise Ambiguous(
                f"{len(found)} {kind}s{where} are called {wanted!r}: {listed}{more}; use the id"
                + (" or the MAC address" if kind == "device" else "")
            )
    raise NotFound(f"no {kind} {wanted!r}{where} (`btogether admin {kind}s list` shows them)")
