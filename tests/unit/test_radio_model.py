"""The shared path-loss model: the formula the scenarios and the air both rely on."""

from __future__ import annotations

import random
import statistics

import pytest

from hw.radio_model import RadioModel, Wall, distance_from_rssi, mean_rssi, wall_loss


def test_rssi_at_one_metre_is_the_calibrated_power() -> None:
    assert mean_rssi(-59, 1.0, 2.0) == pytest.approx(-59)


def test_rssi_falls_by_ten_n_db_per_decade() -> None:
    assert mean_rssi(-59, 10.0, 2.5) == pytest.approx(-84)


def test_distances_below_half_a_metre_are_clamped() -> None:
    assert mean_rssi(-59, 0.0, 2.0) == mean_rssi(-59, 0.5, 2.0)


def test_distance_estimate_inverts_the_model() -> None:
    assert distance_from_rssi(mean_rssi(-59, 7.0, 2.2), -59, 2.2) == pytest.approx(7.0)


def test_only_walls_actually_crossed_attenuate() -> None:
    walls = [Wall(5, -10, 5, 10, 8.0), Wall(20, -10, 20, 10, 5.0)]
    assert wall_loss(walls, (0, 0), (10, 0)) == 8.0
    assert wall_loss(walls, (0, 0), (30, 0)) == 13.0
    assert wall_loss(walls, (0, 0), (4, 3)) == 0.0


def test_samples_scatter_around_the_expected_value_with_the_given_noise() -> None:
    model = RadioModel(path_loss_exponent=2.0, noise_db=4.0)
    rng = random.Random(1)
    samples = [model.sample_rssi(-59, (0, 0), (4, 0), rng) for _ in range(4000)]
    expected = model.expected_rssi(-59, (0, 0), (4, 0))
    assert statistics.fmean(samples) == pytest.approx(expected, abs=0.3)
    assert statistics.stdev(samples) == pytest.approx(4.0, abs=0.3)
    assert all(isinstance(s, int) for s in samples)
