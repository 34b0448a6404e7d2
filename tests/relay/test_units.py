"""The pure parts of the relay: the pairing table, the token bucket (the EID index: tests/unit)."""

from __future__ import annotations

from pathlib import Path

import pytest

from relay.domain.errors import RelayError
from relay.domain.pairing import (
    TERMINAL_STATES,
    TRANSITIONS,
    PairEvent,
    PairState,
    PendingPair,
    next_state,
)
from relay.net.ratelimit import TokenBucket, Verdict
from relay.protocol import wire


def _pending(expires_at: float = 100.0) -> PendingPair:
    return PendingPair(
        "pr_1", "123456", "t", "u", "alice", "l", "laptop", "d", "phone", 0.0, expires_at
    )


def test_every_non_terminal_state_can_expire_and_terminal_states_are_final() -> None:
    for state in PairState:
        if state in TERMINAL_STATES:
            assert not [key for key in TRANSITIONS if key[0] is state]
        else:
            assert TRANSITIONS[(state, PairEvent.DEADLINE_PASSES)] is PairState.EXPIRED


def test_both_orders_of_acceptance_reach_paired() -> None:
    phone_first = (
        _pending().advance(PairEvent.PHONE_ACCEPTS, 1).advance(PairEvent.LAPTOP_ACCEPTS, 2)
    )
    laptop_first = (
        _pending().advance(PairEvent.LAPTOP_ACCEPTS, 1).advance(PairEvent.PHONE_ACCEPTS, 2)
    )
    assert phone_first.state is laptop_first.state is PairState.PAIRED


def test_transitions_outside_the_table_are_wrong_state() -> None:
    with pytest.raises(RelayError) as info:
        next_state(PairState.PAIRED, PairEvent.PHONE_ACCEPTS)
    assert info.value.code == wire.ErrorCode.WRONG_STATE


def test_an_event_after_the_deadline_finds_the_request_expired() -> None:
    with pytest.raises(RelayError) as info:
        _pending(expires_at=10).advance(PairEvent.PHONE_ACCEPTS, 10)
    assert info.value.code == wire.ErrorCode.EXPIRED


def test_token_bucket_refills_with_time() -> None:
    bucket = TokenBucket(rate=2.0, burst=2.0, strikes=1)
    assert [bucket.take(0.0) for _ in range(4)] == [
        Verdict.ALLOW,
        Verdict.ALLOW,
        Verdict.REFUSE,
        Verdict.CLOSE,
    ]
    bucket = TokenBucket(rate=2.0, burst=2.0, strikes=1)
    assert [bucket.take(0.0), bucket.take(0.0), bucket.take(0.0)][-1] is Verdict.REFUSE
    assert bucket.take(0.5) is Verdict.ALLOW  # one token back after half a second


def test_docgen_check_fails_on_a_stale_document(tmp_path: Path) -> None:
    from btogether import docgen

    target = tmp_path / "protocol.md"
    assert docgen.main(["--check", "--output", str(target)]) == 1
    assert docgen.main(["--output", str(target)]) == 0
    assert docgen.main(["--check", "--output", str(target)]) == 0
    assert "`lock.set`" in target.read_text() and "`no_fresh_sighting`" in target.read_text()
    target.write_text(target.read_text().replace("lock.set", "lock.sett"))
    assert docgen.main(["--check", "--output", str(target)]) == 1


def test_a_trusted_message_is_the_validated_one_without_validating() -> None:
    fields = {
        "device_id": "d_1",
        "eid": "00112233aabbccdd",
        "name": "Room 1",
        "kind": "room_system",
        "mode": "meeting_room",
        "location": "floor 1",
        "capabilities": ["join", "audio"],
        "own": False,
        "rssi": -60,
    }
    validated = wire.DeviceDescriptor(**fields)
    trusted = wire.DeviceDescriptor.trusted(dict(fields))
    assert trusted == validated
    assert trusted.model_fields_set == validated.model_fields_set
    assert trusted.model_dump_json() == validated.model_dump_json()
    result = wire.SightingsResult(devices=[trusted])
    assert wire.encode_result(7, result) == wire.encode_result(
        7, wire.SightingsResult(devices=[validated])
    )
    with pytest.raises(Exception, match="frozen"):
        trusted.name = "changed"  # type: ignore[misc]


def test_the_sighting_descriptors_cache_is_bounded_and_follows_the_device_object() -> None:
    from relay.domain.model import Device
    from relay.domain.service import SightingDescriptors

    def room(n: int, name: str = "Room") -> Device:
        return Device(f"d{n}", "t", f"{name} {n}", "room_system", "meeting_room", bytes(16), 10)

    descriptors = SightingDescriptors()
    descriptors.MAX_DEVICES = 2
    for n in range(3):
        descriptors.fields(room(n), "00" * 8, False, -50)
        assert len(descriptors) <= 2
    first = room(7)
    assert descriptors.fields(first, "aa" * 8, True, -40)["name"] == "Room 7"
    renamed = room(7, "Hall")  # the directory's new object for a changed device
    fields = descriptors.fields(renamed, "bb" * 8, False, -41)
    assert (fields["name"], fields["eid"], fields["own"], fields["rssi"]) == (
        "Hall 7", "bb" * 8, False, -41,
    )
