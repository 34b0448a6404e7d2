"""The in-process advert model draws exactly the shared radio physics."""

from __future__ import annotations

import itertools
import random
import statistics
from collections import defaultdict

import pytest

from client.proximity.advert_model import scenario_adverts
from client.proximity.scenario import parse_scenario
from client.proximity.scoring import run_tracker, score_trace
from client.proximity.tracker import ProximityTracker, TrackerConfig

FLOOR = """
[radio]
path_loss_exponent = 2.5
noise_db = {noise}
advert_interval_ms = 200
seed = 5

[[room]]
name = "near"
x = 0
y = 0

[[room]]
name = "behind-wall"
x = 6
y = 0
tx_power = -65

[[wall]]
x1 = 4
y1 = -5
x2 = 4
y2 = 5
loss_db = 7

[[laptop]]
path = [{{t = 0, x = 2, y = 0}}, {{t = {end}, x = 2, y = 0}}]
room_at = [{{t = 0, room = "near"}}]
"""


def test_adverts_follow_the_interval_with_up_to_ten_ms_of_jitter() -> None:
    scenario = parse_scenario(FLOOR.format(noise=0.0, end=60))
    adverts = list(scenario_adverts(scenario, random.Random(1)))
    times: dict[str, list[float]] = defaultdict(list)
    for a in adverts:
        times[a.device].append(a.t)
    assert [a.t for a in adverts] == sorted(a.t for a in adverts)
    for ts in times.values():
        assert 0.0 <= ts[0] < 0.2
        gaps = [b - a for a, b in itertools.pairwise(ts)]
        assert min(gaps) >= 0.2 - 1e-9
        assert max(gaps) <= 0.21 + 1e-9
        assert max(gaps) - min(gaps) > 0.005  # the jitter is really there
        assert ts[-1] < 60.0


def test_without_noise_every_advert_has_the_model_value_with_walls() -> None:
    scenario = parse_scenario(FLOOR.format(noise=0.0, end=10))
    by_device = {a.device: a for a in scenario_adverts(scenario, random.Random(1))}
    # near: -59 - 25·log10(2) = -66.5 → -67 (rounded); behind: -65 - 25·log10(4) - 7 = -87.1
    assert by_device["near"].rssi == -67
    assert by_device["behind-wall"].rssi == -87
    assert by_device["behind-wall"].tx_power == -65


def test_noise_has_the_scenario_spread_and_a_seed_repeats_exactly() -> None:
    scenario = parse_scenario(FLOOR.format(noise=5.0, end=600))
    adverts = list(scenario_adverts(scenario, random.Random(7)))
    near = [a.rssi for a in adverts if a.device == "near"]
    expected = scenario.radio.expected_rssi(-59, (0, 0), (2, 0))
    assert statistics.fmean(near) == pytest.approx(expected, abs=0.4)
    assert statistics.stdev(near) == pytest.approx(5.0, abs=0.3)
    assert adverts == list(scenario_adverts(scenario, random.Random(7)))
    assert adverts != list(scenario_adverts(scenario, random.Random(8)))


WALK = """
[radio]
path_loss_exponent = 2.0
noise_db = 6.0
advert_interval_ms = 100
seed = 9

[[room]]
name = "west"
x = 0
y = 0

[[room]]
name = "east"
x = 8
y = 0

[[laptop]]
path = [{t = 0, x = 1.5, y = 1}, {t = 120, x = 1.5, y = 1}, {t = 125, x = 7, y = 1},
        {t = 240, x = 7, y = 1}, {t = 245, x = 3.5, y = 0}, {t = 600, x = 3.5, y = 0}]
room_at = [{t = 0, room = "west"}, {t = 122.273, room = "east"}, {t = 244.286, room = "west"}]
"""


def test_the_tracker_beats_both_baselines_on_a_short_walk() -> None:
    scenario = parse_scenario(WALK)
    scores = {}
    for name, config in (
        ("proximity", TrackerConfig()),
        ("naive", TrackerConfig.naive()),
        ("strongest", TrackerConfig.strongest()),
    ):
        adverts = scenario_adverts(scenario, random.Random(scenario.seed))
        scores[name] = score_trace(
            scenario, run_tracker(ProximityTracker(config), adverts, scenario.start)
        )
    ours = scores["proximity"]
    assert ours.accuracy >= 0.98
    assert ours.switch_p95_s is not None and ours.switch_p95_s <= 3.0
    assert ours.spurious == 0
    assert (scores["strongest"].spurious_per_hour or 0) > 100
    assert (scores["naive"].switch_p95_s or 0) > ours.switch_p95_s
