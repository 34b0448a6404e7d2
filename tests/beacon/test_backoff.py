"""The reconnection backoff policy, as pure code."""

from __future__ import annotations

import random

import pytest

from relay.protocol.backoff import Backoff


def test_ceiling_doubles_from_the_initial_delay_up_to_the_cap() -> None:
    policy = Backoff(initial_s=0.5, cap_s=30.0)
    assert [policy.ceiling(n) for n in range(9)] == [0.5, 1, 2, 4, 8, 16, 30, 30, 30]
    assert policy.ceiling(10_000) == 30.0  # no overflow after a very long outage


def test_jittered_delay_stays_between_half_and_the_whole_ceiling() -> None:
    policy = Backoff(initial_s=1.0, cap_s=30.0)
    rng = random.Random(3)
    for attempt in range(12):
        ceiling = policy.ceiling(attempt)
        delays = [policy.delay(attempt, rng) for _ in range(200)]
        assert all(ceiling / 2 <= d <= ceiling for d in delays)
        assert len(set(delays)) > 100  # jittered: a fleet does not retry in lockstep


def test_the_same_seed_gives_the_same_delays() -> None:
    policy = Backoff()
    first = [policy.delay(n, random.Random(11)) for n in range(8)]
    assert first == [policy.delay(n, random.Random(11)) for n in range(8)]


@pytest.mark.parametrize(("initial", "cap", "factor"), [(0, 1, 2), (5, 1, 2), (1, 5, 0.5)])
def test_nonsense_policies_are_refused(initial: float, cap: float, factor: float) -> None:
    with pytest.raises(ValueError):
        Backoff(initial, cap, factor)
