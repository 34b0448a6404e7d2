"""When the laptop tells the relay its screen locked or unlocked (pure).

The laptop reports *transitions* of its lock state (``lock.set``) while lock sync is on
and it is paired. The latest state is kept until the relay confirms it durable (the
``lock.set`` result), so a lock that happens while the relay is unreachable, or whose
reply was lost with the connection, is sent after the next connect; only the latest
state matters (locked then unlocked while offline sends ``unlocked``). The first state
the watcher reads at start is a baseline, not a transition, and is not sent; a state read
when the watcher restarts (logind went away and came back) that differs from the last one
known is a transition that happened meanwhile, and is.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

LockState = Literal["locked", "unlocked"]
Outcome = Literal["confirmed", "connection_lost", "not_paired", "refused"]


@dataclass
class LockReporter:
    """Tracks the latest lock state and whether the relay still has to hear it."""

    enabled: bool = True
    state: LockState | None = None
    pending: bool = False
    in_flight: LockState | None = None
    last_confirmed: LockState | None = None
    last_error: str | None = None

    def observed(self, locked: bool, *, initial: bool, paired: bool | None) -> None:
        """The watcher saw a state; ``paired`` None means not known yet (never connected)."""
        state: LockState = "locked" if locked else "unlocked"
        if initial and self.state is None:
            self.state = state
            return
        if state == self.state:
            return  # a repeat (e.g. LockedHint after the Lock request): nothing new
        self.state = state
        self.pending = self.enabled and paired is not False

    def set_enabled(self, enabled: bool) -> None:
        self.enabled = enabled
        if not enabled:
            self.pending = False

    def next_to_send(self, *, connected: bool, paired: bool | None) -> LockState | None:
        """The state to send now, if any; the caller then reports :meth:`finished`."""
        if not self.pending or self.in_flight is not None or not connected:
            return None
        if paired is False:
            self.pending = False
            return None
        if paired is None:
            return None  # wait for the pairings of this connection
        assert self.state is not None
        self.in_flight = self.state
        self.pending = False
        return self.in_flight

    def finished(self, sent: LockState, outcome: Outcome, detail: str = "") -> None:
        """How sending ``sent`` ended."""
        self.in_flight = None
        if outcome == "confirmed":
            self.last_confirmed = sent
            self.last_error = None
            return
        if outcome == "connection_lost":
            if self.state == sent:
                self.pending = self.enabled  # send it again after the reconnect
            return
        self.last_error = detail or outcome
        # not_paired / refused: dropped; a newer state (if any) is still pending.
