"""The scorer's figures on a scenario and traces whose answers are worked out by hand."""

from __future__ import annotations

import pytest

from client.proximity.scenario import parse_scenario
from client.proximity.scoring import percentile_nearest_rank, pool_scores, run_tracker, score_trace

# Still at (1, 0) for 10 s, walks to (9, 0) by t = 20, still until t = 40.  The true room
# changes at t = 15.  Stationary: [0, 10) and [20, 40), 30 s in all.
KNOWN = """
[radio]
path_loss_exponent = 2.0
noise_db = 0.0
advert_interval_ms = 100
seed = 1

[[room]]
name = "a"
x = 0
y = 0

[[room]]
name = "b"
x = 10
y = 0

[[laptop]]
path = [{t = 0, x = 1, y = 0}, {t = 10, x = 1, y = 0}, {t = 20, x = 9, y = 0},
        {t = 40, x = 9, y = 0}]
room_at = [{t = 0, room = "a"}, {t = 15, room = "b"}]
"""


def test_figures_of_a_flapping_trace() -> None:
    scenario = parse_scenario(KNOWN)
    trace: list[tuple[float, str | None]] = [
        (0, None),
        (1, "a"),
        (5, "b"),
        (6, "a"),
        (18, "b"),
        (30, "a"),
        (31, "b"),
    ]
    score = score_trace(scenario, trace)
    # Counted: [2, 15) and [17, 40) = 36 s.  Right: [2,5) [6,15) [18,30) [31,40) = 33 s.
    assert score.accuracy == pytest.approx(33 / 36)
    # The change at 15 is answered at 18.
    assert score.switch_median_s == pytest.approx(3.0)
    assert score.switch_p95_s == pytest.approx(3.0)
    assert (score.switches, score.missed_switches) == (1, 0)
    # Spurious: 5 (a→b) and 6 (b→a) while still before the walk; 30 and 31 after it.
    # The switch at 18 is the change's arrival (and happens while walking anyway).
    assert score.spurious == 4
    assert score.stationary_hours == pytest.approx(30 / 3600)
    assert score.spurious_per_hour == pytest.approx(480.0)
    assert score.as_json() == {
        "accuracy": pytest.approx(33 / 36),
        "switch_median_s": 3.0,
        "switch_p95_s": 3.0,
        "spurious_per_hour": pytest.approx(480.0),
    }


def test_a_switch_that_never_comes_counts_until_the_next_change() -> None:
    scenario = parse_scenario(KNOWN)
    score = score_trace(scenario, [(0, "a")])
    assert score.accuracy == pytest.approx(13 / 36)
    assert score.switch_median_s == pytest.approx(25.0)
    assert score.missed_switches == 1
    assert score.spurious == 0


def test_a_tracker_already_on_the_new_room_switched_in_no_time() -> None:
    scenario = parse_scenario(KNOWN)
    score = score_trace(scenario, [(0, "a"), (12, "b")])
    assert score.switch_median_s == 0.0
    assert score.accuracy == pytest.approx((13 - 3 + 23) / 36)  # wrong on [12, 15)
    assert score.spurious == 0  # t = 12 is mid-walk


def test_brief_stays_are_left_out_of_switch_times_but_not_accuracy() -> None:
    text = KNOWN.replace(
        'room_at = [{t = 0, room = "a"}, {t = 15, room = "b"}]',
        'room_at = [{t = 0, room = "a"}, {t = 15, room = "b"}, {t = 16, room = "a"},'
        ' {t = 20, room = "b"}]',
    )
    scenario = parse_scenario(text)
    score = score_trace(scenario, [(0, "a"), (21, "b")])
    assert score.switches == 2  # the 1 s stay in b from 15 is not scored
    assert sorted([score.switch_median_s or 0, score.switch_p95_s or 0]) == [0.5, 1.0]


def test_nearest_rank_percentile() -> None:
    values = [float(v) for v in range(20, 0, -1)]
    assert percentile_nearest_rank(values, 0.95) == 19.0
    assert percentile_nearest_rank(values, 0.5) == 10.0
    assert percentile_nearest_rank([7.0], 0.95) == 7.0


class Scripted:
    """A tracker whose answer is a fixed function of time, to check run_tracker."""

    def observe(self, device_id: str, rssi: float, tx_power: float, t: float) -> None:
        self.t = t

    def top(self, t: float) -> str | None:
        return None if t < 1 else ("a" if t < 15.5 else "b")


def test_run_tracker_records_the_start_and_each_change() -> None:
    from client.proximity.advert_model import Advert

    adverts = [Advert(k * 0.5, "a", -60, -59.0) for k in range(80)]
    trace = run_tracker(Scripted(), adverts, 0.0)
    assert trace == [(0.0, None), (1.0, "a"), (15.5, "b")]


def test_pooled_runs_weigh_accuracy_by_time_and_share_switches() -> None:
    scenario = parse_scenario(KNOWN)
    flapping = score_trace(
        scenario, [(0, None), (1, "a"), (5, "b"), (6, "a"), (18, "b"), (30, "a"), (31, "b")]
    )
    stuck = score_trace(scenario, [(0, "a")])
    pooled = pool_scores([flapping, stuck])
    assert pooled.accuracy == pytest.approx((33 + 13) / 72)
    assert pooled.switch_median_s == pytest.approx(14.0)  # of 3 and 25
    assert pooled.switch_p95_s == pytest.approx(25.0)
    assert pooled.spurious_per_hour == pytest.approx(4 / (60 / 3600))
    assert (pooled.switches, pooled.missed_switches) == (2, 1)
