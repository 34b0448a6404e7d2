"""Sightings from raw adverts: decoding, naming by key, NEW/CHG/DEL."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from client.proximity.scanning import KeyRing, SightingTracker
from hw.scanner import AdvertLost, RawAdvert
from relay.protocol.eid import eid_at
from relay.protocol.frame import Frame, encode_frame
from tests.radio.conftest import KEY_A, KEY_B

T0 = 1_700_000_000.0


def advert(
    key: bytes, rssi: int, t: float, address: str = "AA:BB:CC:DD:EE:01", k: int = 10
) -> RawAdvert:
    frame = Frame(eid_at(key, t, k), -59, k)
    return RawAdvert(address, {0xFFFF: encode_frame(frame)}, rssi, None, None, t - T0, t)


def test_first_advert_is_new_with_name_and_distance() -> None:
    tracker = SightingTracker(keys=KeyRing({"room-a": KEY_A}))
    [event] = tracker.on_advert(advert(KEY_A, -65, T0))
    assert event.kind == "new"
    assert event.sighting.name == "room-a"
    assert abs(event.sighting.distance_m - 2.0) < 0.01
    assert event.as_json()["eid"] == eid_at(KEY_A, T0, 10).hex()


def test_unknown_keys_stay_unnamed() -> None:
    tracker = SightingTracker(keys=KeyRing({"room-a": KEY_A}))
    [event] = tracker.on_advert(advert(KEY_B, -65, T0))
    assert event.sighting.name is None and event.as_json()["name"] is None


def test_small_rssi_wobble_is_quiet_and_a_step_or_new_eid_is_a_change() -> None:
    tracker = SightingTracker(rssi_step_db=3)
    tracker.on_advert(advert(KEY_A, -65, T0))
    assert tracker.on_advert(advert(KEY_A, -66, T0 + 1)) == []
    [moved] = tracker.on_advert(advert(KEY_A, -68, T0 + 2))
    assert moved.kind == "change" and moved.sighting.rssi == -68
    [rotated] = tracker.on_advert(advert(KEY_A, -68, T0 + 1024))
    assert rotated.kind == "change" and rotated.sighting.eid == eid_at(KEY_A, T0 + 1024, 10)


def test_a_rotated_eid_still_resolves_to_its_name() -> None:
    tracker = SightingTracker(keys=KeyRing({"room-a": KEY_A}))
    tracker.on_advert(advert(KEY_A, -65, T0))
    [rotated] = tracker.on_advert(advert(KEY_A, -65, T0 + 5000))
    assert rotated.sighting.name == "room-a"


def test_lost_when_the_stack_forgets_it_or_it_goes_quiet() -> None:
    tracker = SightingTracker(lost_after_s=5)
    tracker.on_advert(advert(KEY_A, -65, T0, address="A"))
    tracker.on_advert(advert(KEY_B, -65, T0, address="B"))
    [lost] = tracker.on_lost(AdvertLost("A", 1.0, T0 + 1))
    assert lost.kind == "lost" and lost.sighting.address == "A"
    assert tracker.on_lost(AdvertLost("A", 1.0, T0 + 1)) == []
    assert tracker.expire(4.0) == []
    [quiet] = tracker.expire(5.1)
    assert quiet.sighting.address == "B"
    [again] = tracker.on_advert(advert(KEY_B, -65, T0 + 6, address="B"))
    assert again.kind == "new"


def test_garbage_and_other_companies_are_ignored() -> None:
    tracker = SightingTracker()
    junk = RawAdvert("A", {0xFFFF: b"\x09garbage"}, -50, None, None, 0.0, T0)
    other = RawAdvert("A", {0x004C: b"\x02\x15"}, -50, None, None, 0.0, T0)
    assert tracker.on_advert(junk) == [] and tracker.on_advert(other) == []
    assert tracker.current == []


@given(
    st.dictionaries(st.integers(0, 0xFFFF), st.binary(max_size=40), max_size=4),
    st.integers(-127, 20),
)
def test_tracker_never_raises_on_hostile_manufacturer_data(
    data: dict[int, bytes], rssi: int
) -> None:
    tracker = SightingTracker(keys=KeyRing({"room-a": KEY_A}))
    events = tracker.on_advert(RawAdvert("A", data, rssi, None, None, 0.0, T0))
    assert all(e.kind == "new" for e in events)
