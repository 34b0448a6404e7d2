"""The proximity tracker on hand-made advert sequences, one behaviour per test."""

from __future__ import annotations

import pytest

from client.proximity.tracker import ProximityTracker, TrackerConfig
from hw.radio_model import distance_from_rssi

TX = -59.0
STEP = 0.1  # each device advertises 10 times a second


def feed(
    tracker: ProximityTracker, start: float, seconds: float, levels: dict[str, float]
) -> float:
    """Every device advertises at its fixed RSSI every STEP; returns the end time."""
    t = start
    for k in range(round(seconds / STEP)):
        t = start + k * STEP
        for i, (device, rssi) in enumerate(levels.items()):
            tracker.observe(device, rssi, TX, t + i * 0.01)
    return t + STEP


def test_one_wild_advert_is_ignored() -> None:
    tracker = ProximityTracker()
    t = feed(tracker, 0.0, 20.0, {"a": -60.0, "b": -66.0})
    before = {r.device_id: r.rssi for r in tracker.ranking(t)}
    tracker.observe("b", -30.0, TX, t)  # a reflection 36 dB too strong
    tracker.observe("a", -95.0, TX, t + 0.01)  # a deep fade
    after = {r.device_id: r.rssi for r in tracker.ranking(t + 0.01)}
    assert after["a"] == pytest.approx(before["a"], abs=0.01)
    assert after["b"] == pytest.approx(before["b"], abs=0.01)
    assert tracker.top(t + 0.5) == "a"


def test_a_real_move_is_followed_within_seconds() -> None:
    tracker = ProximityTracker()
    t = feed(tracker, 0.0, 60.0, {"a": -60.0, "b": -70.0})
    assert tracker.top(t) == "a"
    moved_at = t
    switched_at = None
    while t < moved_at + 10.0:
        t = feed(tracker, t, STEP, {"a": -70.0, "b": -60.0})
        if switched_at is None and tracker.top(t) == "b":
            switched_at = t
    assert switched_at is not None
    assert switched_at - moved_at < 3.0
    assert tracker.top(t) == "b"


def test_a_still_laptop_on_a_boundary_does_not_flap() -> None:
    # b's adverts alternate around a's: half of them are stronger, by up to 1.5 dB.
    pattern = [-61.5, -64.5, -62.0, -64.0]
    tracker = ProximityTracker()
    strongest = ProximityTracker(TrackerConfig.strongest())
    tops, strongest_tops = set(), set()
    for k in range(1200):  # two minutes
        t = k * STEP
        for trk in (tracker, strongest):
            trk.observe("a", -63.0, TX, t)
            trk.observe("b", pattern[k % len(pattern)], TX, t + 0.01)
        if t > 1.0:
            tops.add(tracker.top(t + 0.01))
            strongest_tops.add(strongest.top(t + 0.01))
    assert tops == {"a"}
    assert strongest_tops == {"a", "b"}  # the sequence really is a boundary


def test_a_silent_device_is_dropped_after_the_timeout() -> None:
    tracker = ProximityTracker(TrackerConfig(timeout_s=10.0))
    feed(tracker, 0.0, 5.0, {"a": -55.0, "b": -70.0})
    last_a = max(r.last_seen for r in tracker.ranking(5.0) if r.device_id == "a")
    t = feed(tracker, 5.0, 5.0, {"b": -70.0})
    assert tracker.top(t) == "a"
    assert {r.device_id for r in tracker.ranking(last_a + 9.9)} == {"a", "b"}
    feed(tracker, t, 6.0, {"b": -70.0})
    assert [r.device_id for r in tracker.ranking(last_a + 10.5)] == ["b"]
    assert tracker.top(last_a + 10.5) == "b"
    assert tracker.top(last_a + 100.0) is None


def test_calibration_offset_changes_distance_and_rank() -> None:
    plain = ProximityTracker()
    calibrated = ProximityTracker(TrackerConfig(calibration_db={"b": 6.0}))
    for trk in (plain, calibrated):
        feed(trk, 0.0, 10.0, {"a": -65.0, "b": -62.0})
    assert plain.top(10.0) == "b"
    assert calibrated.top(10.0) == "a"  # b is really 6 dB louder at 1 m than it says
    distances = {r.device_id: r.distance_m for r in calibrated.ranking(10.0)}
    assert distances["a"] == pytest.approx(distance_from_rssi(-65.0, TX), rel=1e-3)
    assert distances["b"] == pytest.approx(distance_from_rssi(-62.0, TX + 6.0), rel=1e-3)
    assert distances["b"] == pytest.approx(2.82, abs=0.01)


def test_devices_advertising_different_powers_are_ranked_by_distance() -> None:
    tracker = ProximityTracker()
    t = 0.0
    for k in range(100):
        t = k * STEP
        tracker.observe("loud", -70.0, -50.0, t)  # 20 dB below its 1 m power: 10 m
        tracker.observe("quiet", -72.0, -66.0, t + 0.01)  # 6 dB below: 2 m
    ranking = tracker.ranking(t + 0.01)
    assert [r.device_id for r in ranking] == ["quiet", "loud"]
    assert ranking[0].distance_m == pytest.approx(2.0, rel=0.01)
    assert ranking[1].distance_m == pytest.approx(10.0, rel=0.01)
    assert ranking[0].rssi == pytest.approx(-72.0, abs=0.01)


def test_nothing_is_named_until_the_first_ranking_has_settled() -> None:
    tracker = ProximityTracker()
    assert tracker.top(0.0) is None
    assert tracker.ranking(0.0) == []
    tracker.observe("a", -80.0, TX, 1.0)
    assert tracker.top(1.0) is None and tracker.ranking(1.0) == []
    feed(tracker, 1.1, 0.1, {"a": -80.0})
    assert tracker.top(1.25) is None  # a single device still waits settle_min_s
    assert tracker.top(1.3) == "a"
    assert [r.device_id for r in tracker.ranking(1.3)] == ["a"]


def test_the_first_advert_heard_does_not_name_its_room() -> None:
    # The weaker room happens to be heard first; the stronger, 8 dB louder, a moment later.
    tracker, tops = ProximityTracker(), []
    t = 0.0
    for k in range(30):
        t = k * STEP
        tracker.observe("far", -70.0, TX, t)
        tracker.observe("near", -62.0, TX, t + 0.05)
        tops.append(tracker.top(t + 0.05))
    named = [top for top in tops if top is not None]
    assert named and set(named) == {"near"}  # never the first-heard, farther one
    assert tops.index("near") * STEP <= 0.4  # a clear lead settles quickly


def test_close_levels_wait_for_the_longest_settling_time() -> None:
    tracker = ProximityTracker()
    t = feed(tracker, 0.0, 0.9, {"a": -62.0, "b": -63.0})
    assert tracker.top(t) is None
    t = feed(tracker, t, 0.2, {"a": -62.0, "b": -63.0})
    assert tracker.top(t) == "a"
    # The baselines name at once, as they always did.
    naive = ProximityTracker(TrackerConfig.naive())
    naive.observe("b", -70.0, TX, 0.0)
    assert naive.top(0.0) == "b"


def test_levels_changing_on_several_devices_mean_the_laptop_is_moving() -> None:
    tracker = ProximityTracker()
    t = feed(tracker, 0.0, 30.0, {"a": -60.0, "b": -70.0, "c": -75.0})
    assert not tracker.moving(t)
    t = feed(tracker, t, 2.0, {"a": -68.0, "b": -62.0, "c": -75.0})
    assert tracker.moving(t)
    t = feed(tracker, t, 30.0, {"a": -68.0, "b": -62.0, "c": -75.0})
    assert not tracker.moving(t)


def test_the_naive_baseline_needs_three_db_for_one_and_a_half_seconds() -> None:
    tracker = ProximityTracker(TrackerConfig.naive())
    t = feed(tracker, 0.0, 20.0, {"a": -60.0, "b": -62.5})
    assert tracker.top(t) == "a"
    t = feed(tracker, t, 20.0, {"a": -60.0, "b": -57.5})  # 2.5 dB ahead: not enough
    assert tracker.top(t) == "a"
    start = t
    t = feed(tracker, t, 1.4, {"a": -60.0, "b": -50.0})
    assert tracker.top(t) == "a"
    while tracker.top(t) != "b":
        t = feed(tracker, t, STEP, {"a": -60.0, "b": -50.0})
    assert 1.5 <= t - start < 3.0


def test_non_finite_readings_are_ignored() -> None:
    tracker = ProximityTracker()
    t = feed(tracker, 0.0, 5.0, {"a": -60.0})
    tracker.observe("a", float("nan"), TX, t)
    tracker.observe("b", -40.0, float("inf"), t)
    ranking = tracker.ranking(t)
    assert [r.device_id for r in ranking] == ["a"]
    assert ranking[0].rssi == pytest.approx(-60.0, abs=0.01)


def test_a_small_step_while_sitting_does_not_switch_on_the_relaxed_moving_rule() -> None:
    # b steps 3.5 dB up and ends 1.5 dB ahead of a: enough to raise b's movement alarm
    # and to pass the relaxed "moving" margin, but the two levels together moved far less
    # than a walk moves them, so the still-laptop margin (2 dB) still applies.
    def run(config: TrackerConfig) -> str | None:
        tracker = ProximityTracker(config)
        t = feed(tracker, 0.0, 60.0, {"a": -60.0, "b": -62.0})
        assert tracker.top(t) == "a"
        t = feed(tracker, t, 20.0, {"a": -60.0, "b": -58.5})
        return tracker.top(t)

    assert run(TrackerConfig()) == "a"
    assert run(TrackerConfig(moving_change_db=0.0)) == "b"  # without the guard it flips
