"""The life of a pair request and of an audio hand-off, written down as data.

Like h11's connection state machine, each lifecycle is one table: a (state, event) pair
that is not a key of the table is not allowed, and nothing else decides what may follow
what. The relay applies these tables (:mod:`relay.domain.pairing`, :mod:`relay.domain.service`); the
protocol reference prints them; clients may read them to know what to expect.
Pure data, no I/O.
"""

from __future__ import annotations

from enum import StrEnum


class PairState(StrEnum):
    AWAITING_BOTH = "awaiting_both"
    AWAITING_PHONE = "awaiting_phone"  # the laptop's user accepted
    AWAITING_LAPTOP = "awaiting_laptop"  # the phone accepted
    PAIRED = "paired"
    DECLINED = "declined"
    EXPIRED = "expired"


class PairEvent(StrEnum):
    PHONE_ACCEPTS = "phone_accepts"
    LAPTOP_ACCEPTS = "laptop_accepts"
    PHONE_DECLINES = "phone_declines"
    LAPTOP_DECLINES = "laptop_declines"
    DEADLINE_PASSES = "deadline_passes"


_S, _E = PairState, PairEvent
TRANSITIONS: dict[tuple[PairState, PairEvent], PairState] = {
    (_S.AWAITING_BOTH, _E.PHONE_ACCEPTS): _S.AWAITING_LAPTOP,
    (_S.AWAITING_BOTH, _E.LAPTOP_ACCEPTS): _S.AWAITING_PHONE,
    (_S.AWAITING_BOTH, _E.PHONE_DECLINES): _S.DECLINED,
    (_S.AWAITING_BOTH, _E.LAPTOP_DECLINES): _S.DECLINED,
    (_S.AWAITING_BOTH, _E.DEADLINE_PASSES): _S.EXPIRED,
    (_S.AWAITING_PHONE, _E.PHONE_ACCEPTS): _S.PAIRED,
    (_S.AWAITING_PHONE, _E.PHONE_DECLINES): _S.DECLINED,
    (_S.AWAITING_PHONE, _E.LAPTOP_DECLINES): _S.DECLINED,
    (_S.AWAITING_PHONE, _E.DEADLINE_PASSES): _S.EXPIRED,
    (_S.AWAITING_LAPTOP, _E.LAPTOP_ACCEPTS): _S.PAIRED,
    (_S.AWAITING_LAPTOP, _E.LAPTOP_DECLINES): _S.DECLINED,
    (_S.AWAITING_LAPTOP, _E.PHONE_DECLINES): _S.DECLINED,
    (_S.AWAITING_LAPTOP, _E.DEADLINE_PASSES): _S.EXPIRED,
}

TERMINAL_STATES = frozenset({PairState.PAIRED, PairState.DECLINED, PairState.EXPIRED})


class HandoffState(StrEnum):
    PENDING = "pending"  # the phone was told to take the meeting's audio
    ACTIVE = "active"  # it did
    RELEASING = "releasing"  # it was told to give the audio back
    FAILED = "failed"  # it could not take it
    RELEASED = "released"  # the audio is back with the laptop


class HandoffEvent(StrEnum):
    PHONE_TOOK = "phone_took"  # audio.ack ok
    PHONE_FAILED = "phone_failed"  # audio.ack not ok
    RELEASE = "release"  # the laptop released it, unpaired, or the phone changed account
    PHONE_RELEASED = "phone_released"  # audio.ack of the release
    PARTY_GONE = "party_gone"  # the laptop or the phone disconnected


_H, _HE = HandoffState, HandoffEvent
HANDOFF_TRANSITIONS: dict[tuple[HandoffState, HandoffEvent], HandoffState] = {
    (_H.PENDING, _HE.PHONE_TOOK): _H.ACTIVE,
    (_H.PENDING, _HE.PHONE_FAILED): _H.FAILED,
    (_H.PENDING, _HE.RELEASE): _H.RELEASING,
    (_H.PENDING, _HE.PARTY_GONE): _H.RELEASED,
    (_H.ACTIVE, _HE.RELEASE): _H.RELEASING,
    (_H.ACTIVE, _HE.PARTY_GONE): _H.RELEASED,
    (_H.RELEASING, _HE.PHONE_RELEASED): _H.RELEASED,
    (_H.RELEASING, _HE.PARTY_GONE): _H.RELEASED,
}

HANDOFF_TERMINAL_STATES = frozenset({HandoffState.FAILED, HandoffState.RELEASED})
