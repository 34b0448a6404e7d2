"""Screen lock: watch this machine's lock state (laptop) or lock this device's session (phone).

One backend per platform, chosen here the way bleak chooses its backends; Linux uses logind
and the screensaver services over D-Bus (:mod:`hw.lock.linux`).
"""

from __future__ import annotations

import sys

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


def create_lock_watcher(
    config: LockBusConfig, *, request_grace: float | None = 2.0, platform: str = sys.platform
) -> LockWatcher:
    """The screen-lock watcher for this platform (not started)."""
    if platform.startswith("linux"):
        from hw.lock.linux import LogindLockWatcher

        return LogindLockWatcher(config, request_grace=request_grace)
    raise UnsupportedPlatformError(f"watching the screen lock is not supported on {platform} yet")


def create_session_locker(
    config: LockBusConfig, *, confirm_timeout: float = 2.0, platform: str = sys.platform
) -> SessionLocker:
    """The session locker for this platform (not started)."""
    if platform.startswith("linux"):
        from hw.lock.linux import LogindSessionLocker

        return LogindSessionLocker(config, confirm_timeout=confirm_timeout)
    raise UnsupportedPlatformError(f"locking the session is not supported on {platform} yet")
