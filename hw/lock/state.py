"""Merges screen-lock observations from several sources into one de-duplicated stream.

Sans-I/O: the D-Bus shell feeds observations and the current time in, and gets back the
events to report. The rules:

* A *confirmation* (logind's ``LockedHint`` changing, or a screensaver's ``ActiveChanged``)
  says what the screen is now. It is reported at once unless it repeats the state already
  reported; the last confirmation wins, so a source that never clears cannot wedge the state.
* A *request* (logind's ``Lock``/``Unlock`` signal) only asks the desktop to lock. Desktops
  that confirm (set ``LockedHint`` or emit ``ActiveChanged``) are believed instead of the
  request. Until any confirmation has been seen, a request that is not confirmed within
  ``request_grace`` seconds is reported anyway, so a desktop that confirms nothing still
  mirrors its lock; once a confirmation has been seen, requests are never reported, so a
  refused lock is not mistaken for a lock. ``request_grace=None`` never trusts requests.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class LockSource(StrEnum):
    """Where a lock observation came from."""

    INITIAL = "initial"
    LOGIND_REQUEST = "logind-request"
    LOGIND_LOCKED_HINT = "logind-locked-hint"
    FREEDESKTOP_SCREENSAVER = "org.freedesktop.ScreenSaver"
    GNOME_SCREENSAVER = "org.gnome.ScreenSaver"


@dataclass(frozen=True)
class LockEvent:
    """The screen became locked or unlocked; ``initial`` marks the state read at start."""

    locked: bool
    source: LockSource
    at: float
    initial: bool = False


@dataclass(frozen=True)
class _PendingRequest:
    locked: bool
    due: float


class LockStateMerger:
    """Decides which lock observations become events (see the module docstring)."""

    def __init__(self, request_grace: float | None = 2.0) -> None:
        if request_grace is not None and request_grace < 0:
            raise ValueError("request_grace must be >= 0 or None")
        self._grace = request_grace
        self._state: bool | None = None
        self._desktop_confirms = False
        self._pending: _PendingRequest | None = None

    @property
    def locked(self) -> bool | None:
        """The last reported state, or None before anything was known."""
        return self._state

    @property
    def desktop_confirms(self) -> bool:
        """Whether a confirmation has been seen, so requests are no longer trusted."""
        return self._desktop_confirms

    def initial(self, locked: bool | None, source: LockSource, now: float) -> LockEvent | None:
        """Record the state read at start-up (None when nothing could be read)."""
        if locked is None:
            return None
        self._state = locked
        return LockEvent(locked=locked, source=source, at=now, initial=True)

    def confirmed(self, locked: bool, source: LockSource, now: float) -> LockEvent | None:
        """A source reports what the screen now is."""
        self._desktop_confirms = True
        self._pending = None
        return self._report(locked, source, now)

    def requested(self, locked: bool, now: float) -> None:
        """logind asked the desktop to lock or unlock."""
        if self._grace is None or self._desktop_confirms:
            return
        if locked == self._state:
            self._pending = None
            return
        self._pending = _PendingRequest(locked=locked, due=now + self._grace)

    def deadline(self) -> float | None:
        """When :meth:`tick` must next be called, or None if nothing is waiting."""
        return None if self._pending is None else self._pending.due

    def tick(self, now: float) -> LockEvent | None:
        """Report an unconfirmed request whose grace period is over."""
        pending = self._pending
        if pending is None or now < pending.due:
            return None
        self._pending = None
        return self._report(pending.locked, LockSource.LOGIND_REQUEST, now)

    def _report(self, locked: bool, source: LockSource, now: float) -> LockEvent | None:
        if locked == self._state:
            return None
        self._state = locked
        return LockEvent(locked=locked, source=source, at=now)
