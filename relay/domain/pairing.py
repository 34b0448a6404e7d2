"""Better Together pair requests: the states, the events and every allowed transition, as data.

Like h11's connection state machine, the whole lifecycle is the table
:data:`~relay.protocol.states.TRANSITIONS` of the protocol package; nothing else decides
what may follow what; this module applies it. A laptop asks
(``pair.request``); the relay prompts the phone and the laptop's user with the same
6-digit code; each side accepts or declines, in either order; the request expires
after a deadline. Pure: time comes in as an argument.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from relay.domain.errors import RelayError
from relay.protocol.states import TERMINAL_STATES, TRANSITIONS, PairEvent, PairState
from relay.protocol.wire import ErrorCode

__all__ = ["TERMINAL_STATES", "TRANSITIONS", "PairEvent", "PairState", "PendingPair", "next_state"]


def next_state(state: PairState, event: PairEvent) -> PairState:
    """The state after ``event``, or a ``wrong_state`` refusal if the table does not allow it."""
    try:
        return TRANSITIONS[(state, event)]
    except KeyError:
        if state is PairState.EXPIRED:
            raise RelayError(ErrorCode.EXPIRED, "the pair request has expired") from None
        raise RelayError(
            ErrorCode.WRONG_STATE, f"cannot {event.value.replace('_', ' ')} when {state.value}"
        ) from None


def confirmation_event(side_is_phone: bool, accept: bool) -> PairEvent:
    if side_is_phone:
        return PairEvent.PHONE_ACCEPTS if accept else PairEvent.PHONE_DECLINES
    return PairEvent.LAPTOP_ACCEPTS if accept else PairEvent.LAPTOP_DECLINES


@dataclass(frozen=True, slots=True)
class PendingPair:
    """One pair request in flight (kept in memory: only finished pairings are stored)."""

    request_id: str
    code: str
    tenant_id: str
    user_id: str
    user_name: str
    laptop_id: str
    laptop_name: str
    phone_id: str
    phone_name: str
    created_at: float
    expires_at: float
    state: PairState = PairState.AWAITING_BOTH

    def advance(self, event: PairEvent, now: float) -> PendingPair:
        """Apply an event at time ``now`` (a request past its deadline expires first)."""
        if now >= self.expires_at and self.state not in TERMINAL_STATES:
            expired = replace(self, state=next_state(self.state, PairEvent.DEADLINE_PASSES))
            if event is PairEvent.DEADLINE_PASSES:
                return expired
            return expired.advance(event, now)
        return replace(self, state=next_state(self.state, event))
