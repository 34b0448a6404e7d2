"""How every piece of ``hw`` picks its backend: the way bleak picks its own.

By platform (``platform.system()``: Linux, Darwin, Windows), unless the caller names a
backend (``backend=``) or the piece's environment variable does
(``BTOGETHER_ADVERTISER_BACKEND``, ``BTOGETHER_SCANNER_BACKEND``,
``BTOGETHER_LOCK_BACKEND``, ``BTOGETHER_AUDIO_BACKEND``). Each piece lists its backends
as an enum and says which one each platform gets; a platform with none is told so in
words. Pure apart from reading the environment and the platform, which tests pass in.
"""

from __future__ import annotations

import enum
import os
import platform
from collections.abc import Mapping
from typing import TypeVar

B = TypeVar("B", bound=enum.StrEnum)


class UnknownBackend(ValueError):
    """A backend name that the piece does not have."""


class NoBackendForPlatform(RuntimeError):
    """This platform has no backend for the piece (yet)."""


def choose_backend(
    backends: type[B],
    for_system: Mapping[str, B],
    *,
    what: str,
    env_var: str,
    chosen: B | str | None = None,
    environ: Mapping[str, str] | None = None,
    system: str | None = None,
) -> B:
    """The backend to use: ``chosen``, else the environment's, else the platform's."""
    name = chosen if chosen is not None else (environ or os.environ).get(env_var) or None
    if name is not None:
        try:
            return backends(str(name).lower())
        except ValueError:
            names = ", ".join(b.value for b in backends)
            source = "backend" if chosen is not None else env_var
            raise UnknownBackend(
                f"{source}={name!r} is not a {what} backend (choose from {names})"
            ) from None
    system = system or platform.system()
    found = for_system.get(system)
    if found is None:
        raise NoBackendForPlatform(f"{what} is not supported on {system} yet")
    return found
