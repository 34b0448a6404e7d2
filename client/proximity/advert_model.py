"""The in-process advert model: what a scenario's laptop hears, advert by advert.

The same physics as the simulated air (``hw.radio_model.RadioModel.sample_rssi``),
without D-Bus in between, so an hour of a floor takes seconds.  Every room device
advertises every ``advert_interval`` plus a uniform 0–10 ms of jitter (as real
advertisers do), starting at a random phase; each advert's RSSI is drawn independently
at the laptop's position at that instant.  All randomness comes from the ``rng`` passed
in, so a seed gives the same adverts every time.
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Iterator
from dataclasses import dataclass

from client.proximity.scenario import ADVERT_JITTER_S, Scenario


@dataclass(frozen=True, slots=True)
class Advert:
    """One advert as the laptop's scanner reports it."""

    t: float
    device: str
    rssi: int
    tx_power: float


def scenario_adverts(scenario: Scenario, rng: random.Random) -> Iterator[Advert]:
    """Every advert the laptop hears from the scenario's start to its end, in time order."""
    interval = scenario.advert_interval_s
    start, end = scenario.start, scenario.end
    queue: list[tuple[float, int]] = [
        (start + rng.uniform(0.0, interval), i) for i in range(len(scenario.rooms))
    ]
    heapq.heapify(queue)
    rooms = scenario.rooms
    radio = scenario.radio
    while queue:
        t, i = queue[0]
        if t >= end:
            break
        room = rooms[i]
        rssi = radio.sample_rssi(room.tx_power, room.position, scenario.position(t), rng)
        yield Advert(t, room.name, rssi, room.tx_power)
        heapq.heapreplace(queue, (t + interval + rng.uniform(0.0, ADVERT_JITTER_S), i))
