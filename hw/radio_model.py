"""The log-distance path-loss model: RSSI from distance, and distance from RSSI.

One model for everything that needs radio physics: the simulated air delivers adverts
with it, the scenario scorer's in-process model draws from it, and the client inverts
it to estimate distance.  The physics are fixed so every tool means the same thing:

    rssi = tx_power − 10·n·log10(max(d, 0.5)) − Σ loss_db of walls crossed + N(0, noise_db)

rounded to a whole dBm, as HCI reports RSSI as a signed byte.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

DEFAULT_TX_POWER = -59  # dBm at 1 m, the usual iBeacon-style calibration
DEFAULT_PATH_LOSS_EXPONENT = 2.0
MIN_DISTANCE_M = 0.5
RSSI_FLOOR = -127


@dataclass(frozen=True, slots=True)
class Wall:
    """A straight wall segment that attenuates any signal crossing it."""

    x1: float
    y1: float
    x2: float
    y2: float
    loss_db: float


def _orientation(ax: float, ay: float, bx: float, by: float, cx: float, cy: float) -> float:
    return (bx - ax) * (cy - ay) - (by - ay) * (cx - ax)


def crosses(wall: Wall, a: tuple[float, float], b: tuple[float, float]) -> bool:
    """Whether the segment a→b properly crosses the wall (touching an end does not count)."""
    d1 = _orientation(wall.x1, wall.y1, wall.x2, wall.y2, a[0], a[1])
    d2 = _orientation(wall.x1, wall.y1, wall.x2, wall.y2, b[0], b[1])
    d3 = _orientation(a[0], a[1], b[0], b[1], wall.x1, wall.y1)
    d4 = _orientation(a[0], a[1], b[0], b[1], wall.x2, wall.y2)
    return d1 * d2 < 0 and d3 * d4 < 0


def wall_loss(walls: Iterable[Wall], a: tuple[float, float], b: tuple[float, float]) -> float:
    """Sum of the losses of every wall the straight line a→b crosses."""
    return sum(w.loss_db for w in walls if crosses(w, a, b))


def mean_rssi(tx_power: float, distance_m: float, path_loss_exponent: float) -> float:
    """The expected RSSI at a distance, before walls and noise."""
    return tx_power - 10.0 * path_loss_exponent * math.log10(max(distance_m, MIN_DISTANCE_M))


def distance_from_rssi(
    rssi: float, tx_power: float, path_loss_exponent: float = DEFAULT_PATH_LOSS_EXPONENT
) -> float:
    """Invert the model: the distance at which ``rssi`` is the expected value."""
    return float(10.0 ** ((tx_power - rssi) / (10.0 * path_loss_exponent)))


@dataclass(frozen=True, slots=True)
class RadioModel:
    """Path-loss exponent, shadowing noise and walls of one simulated floor."""

    path_loss_exponent: float = DEFAULT_PATH_LOSS_EXPONENT
    noise_db: float = 0.0
    walls: Sequence[Wall] = field(default_factory=tuple)

    def expected_rssi(
        self, tx_power: float, a: tuple[float, float], b: tuple[float, float]
    ) -> float:
        """RSSI without noise between two positions (metres)."""
        d = math.dist(a, b)
        return mean_rssi(tx_power, d, self.path_loss_exponent) - wall_loss(self.walls, a, b)

    def sample_rssi(
        self,
        tx_power: float,
        a: tuple[float, float],
        b: tuple[float, float],
        rng: random.Random,
    ) -> int:
        """One advert's RSSI: expected value plus fresh Gaussian noise, whole dBm."""
        noise = rng.gauss(0.0, self.noise_db) if self.noise_db > 0 else 0.0
        value = round(self.expected_rssi(tx_power, a, b) + noise)
        return max(RSSI_FLOOR, min(20, value))
