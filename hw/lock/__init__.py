"""Screen lock: watch this machine's lock state (laptop) or lock this device's session (phone).

One backend per platform, chosen as every piece of ``hw`` chooses (:mod:`hw.backends`, the
bleak way; ``backend=`` or ``BTOGETHER_LOCK_BACKEND`` overrides): Linux uses logind and the
screensaver services over D-Bus (:mod:`hw.lock.linux`).
"""

from __future__ import annotations

import enum

from hw.backends import NoBackendForPlatform, UnknownBackend, choose_backend
from hw.lock.base import (
    LockBackendError,
    LockBusConfig,
    LockOutcome,
    LockWatcher,
    SessionLocker,
    UnsupportedPlatformError,
)
from hw.lock.state import LockEvent, LockSource, LockStateMerger

__all__ = [
    "LockBackendError",
    "LockBusConfig",
    "LockEvent",
    "LockOutcome",
    "LockSource",
    "LockStateMerger",
    "LockWatcher",
    "SessionLocker",
    "UnsupportedPlatformError",
    "create_lock_watcher",
    "create_session_locker",
]


BACKEND_ENV = "BTOGETHER_LOCK_BACKEND"


class LockBackend(enum.StrEnum):
    LOGIND = "logind"


FOR_SYSTEM = {"Linux": LockBackend.LOGIND}


def _backend(what: str, chosen: LockBackend | str | None, system: str | None) -> LockBackend:
    try:
        return choose_backend(
            LockBackend, FOR_SYSTEM, what=what, env_var=BACKEND_ENV, chosen=chosen, system=system
        )
    except (UnknownBackend, NoBackendForPlatform) as exc:
        raise UnsupportedPlatformError(str(exc)) from None


def create_lock_watcher(
    config: LockBusConfig,
    *,
    request_grace: float | None = 2.0,
    backend: LockBackend | str | None = None,
    system: str | None = None,
) -> LockWatcher:
    """The screen-lock watcher for this platform (not started)."""
    _backend("watching the screen lock", backend, system)
    from hw.lock.linux import LogindLockWatcher

    return LogindLockWatcher(config, request_grace=request_grace)


def create_session_locker(
    config: LockBusConfig,
    *,
    confirm_timeout: float = 2.0,
    backend: LockBackend | str | None = None,
    system: str | None = None,
) -> SessionLocker:
    """The session locker for this platform (not started)."""
    _backend("locking the session", backend, system)
    from hw.lock.linux import LogindSessionLocker

    return LogindSessionLocker(config, confirm_timeout=confirm_timeout)
