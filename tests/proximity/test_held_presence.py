"""Ranking and reporting when the scanner hears a still beacon once (BlueZ passive scanning).

Silence then proves nothing: the tracker and the sighting book keep a device until the
radio stack says it is lost, instead of after their timeouts.
"""

from __future__ import annotations

from client.proximity.nearby import SightingBook
from client.proximity.tracker import ProximityTracker
from relay.protocol import wire

EID_A, EID_B = b"\x0a" * 8, b"\x0b" * 8


def descriptor(device_id: str, eid: bytes) -> wire.DeviceDescriptor:
    return wire.DeviceDescriptor(
        device_id=device_id,
        eid=eid.hex(),
        name=device_id,
        kind="room_system",
        mode="meeting_room",
        location="",
        own=False,
        capabilities=[],
        rssi=-60,
    )


def test_a_silent_device_drops_out_after_the_timeout_unless_held() -> None:
    tracker = ProximityTracker()
    tracker.observe("room-a", -60, -59, 0.0)
    assert tracker.top(11.0) is None
    held = ProximityTracker()
    held.hold_until_lost = True
    held.observe("room-a", -60, -59, 0.0)
    assert held.top(600.0) == "room-a"
    held.forget("room-a")
    assert held.top(600.0) is None


def test_the_book_keeps_reporting_a_held_eid_until_its_address_is_lost() -> None:
    book = SightingBook(fresh_s=3.0, forget_after_s=10.0)
    book.hold_until_lost = True
    book.heard(EID_A, -60, -59, 0.0, address="C0:00:00:00:00:0A")
    book.heard(EID_B, -70, -59, 0.0, address="C0:00:00:00:00:0B")
    book.resolved([(EID_A, -60)], [descriptor("room-a", EID_A)], 0.0)
    assert {eid for eid, _ in book.batch(120.0)} == {EID_A, EID_B}
    assert book.descriptor("room-a") is not None
    assert book.lost("C0:00:00:00:00:0A") == ["room-a"]
    assert {eid for eid, _ in book.batch(120.5)} == {EID_B}


def test_a_rotated_eid_is_not_held_for_its_address() -> None:
    book = SightingBook(fresh_s=3.0, forget_after_s=10.0)
    book.hold_until_lost = True
    book.heard(EID_A, -60, -59, 0.0, address="C0:00:00:00:00:0A")
    book.heard(EID_B, -60, -59, 1.0, address="C0:00:00:00:00:0A")  # the next window's EID
    assert [eid for eid, _ in book.batch(60.0)] == [EID_B]


def test_without_holding_silence_still_ages_out() -> None:
    book = SightingBook(fresh_s=3.0, forget_after_s=10.0)
    book.heard(EID_A, -60, -59, 0.0, address="C0:00:00:00:00:0A")
    assert book.batch(4.0) == []
