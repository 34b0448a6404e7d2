"""Scoring a tracker against a scenario: accuracy, time to switch, spurious switches.

A *trace* is the tracker's answer over time as a step function: ``[(t, top), ...]``
with one entry at the scenario's start and one each time the top-ranked room changes
(``top`` is None while the tracker has no answer).  The scorer asks the tracker for its
top after every advert it delivers, the only moments its input changes.

Definitions (``start``/``end`` are the scenario's first and last waypoint times; a
*true change* is a ``room_at`` entry strictly inside (start, end) naming a different
room from the one before it):

accuracy
    The fraction of *counted* time during which the top equals the true room.  Counted
    time is [start, end) minus the first 2 s after the start and after every true
    change (the grace period the issue allows for).
time to switch
    For a true change at time c to room R, with the next true change (or the end) at c':
    0 if the top is already R at c; otherwise the first time in (c, c') at which the top
    becomes R, minus c.  If the top never becomes R before c', the switch is *missed*
    and counts as c' − c (a lower bound; missed switches are also counted separately).
    Changes into a room the laptop stays in for less than 3 s (c' − c < 3, such as
    clipping the corner of a neighbour's area on a diagonal walk) are left out of the
    switch figures: no tracker meeting a 3 s target could be asked to show them, and a
    miss among the others therefore always counts at least 3 s.  They still count in
    accuracy.
    The median is the usual one (mean of the middle two); p95 is the nearest-rank
    95th percentile: the ⌈0.95·k⌉-th smallest of the k switch times.
switch, and spurious switch while stationary
    A switch is a change of the top from one room to another room or to None (a change
    from None to a room is the tracker's first answer, not a switch).  The *arrival* of
    a true room R that became true at c is the first switch to R in (c, c'); it is the
    one switch the change deserves.  Any other switch that happens at an instant when
    the laptop is stationary is spurious — including a switch back to the true room
    after flapping away from it, so a flap there and back counts two.  The laptop is
    stationary on every path segment whose two waypoints are at the same position.
spurious per hour
    Spurious switches divided by the total stationary time in hours (None if the laptop
    never stands still).
"""

from __future__ import annotations

import bisect
import itertools
import math
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

from client.proximity.advert_model import Advert
from client.proximity.scenario import Scenario

GRACE_S = 2.0
MIN_STAY_S = 3.0

Trace = list[tuple[float, str | None]]


class RoomTracker(Protocol):
    """What the scorer needs of a tracker (ProximityTracker and the baselines)."""

    def observe(self, device_id: str, rssi: float, tx_power: float, t: float) -> None: ...

    def top(self, t: float) -> str | None: ...


@dataclass(frozen=True, slots=True)
class Score:
    """The figures of one run; None where a figure is undefined (no switches, never still)."""

    accuracy: float
    switch_median_s: float | None
    switch_p95_s: float | None
    spurious_per_hour: float | None
    switches: int
    missed_switches: int
    spurious: int
    stationary_hours: float
    counted_s: float = 0.0
    switch_times: tuple[float, ...] = ()

    def as_json(self) -> dict[str, float | None]:
        return {
            "accuracy": self.accuracy,
            "switch_median_s": self.switch_median_s,
            "switch_p95_s": self.switch_p95_s,
            "spurious_per_hour": self.spurious_per_hour,
        }


def run_tracker(tracker: RoomTracker, adverts: Iterable[Advert], start: float) -> Trace:
    """Feed adverts to the tracker; return its answer over time as a trace."""
    trace: Trace = [(start, tracker.top(start))]
    current = trace[0][1]
    for advert in adverts:
        tracker.observe(advert.device, advert.rssi, advert.tx_power, advert.t)
        top = tracker.top(advert.t)
        if top != current:
            trace.append((advert.t, top))
            current = top
    return trace


def percentile_nearest_rank(values: Sequence[float], fraction: float) -> float:
    """The ⌈fraction·k⌉-th smallest of k values."""
    ordered = sorted(values)
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[rank - 1]


def _top_at(trace: Trace, times: list[float], t: float) -> str | None:
    i = bisect.bisect_right(times, t)
    return trace[i - 1][1] if i > 0 else None


class _Intervals:
    """Half-open intervals, sorted by start, where a later start never ends earlier."""

    def __init__(self, intervals: list[tuple[float, float]]) -> None:
        self._starts = [a for a, _ in intervals]
        self._ends = [b for _, b in intervals]

    def __contains__(self, t: float) -> bool:
        i = bisect.bisect_right(self._starts, t)
        return i > 0 and t < self._ends[i - 1]


def score_trace(scenario: Scenario, trace: Trace) -> Score:
    """Score a trace (as run_tracker returns or a --trace file holds) against a scenario."""
    start, end = scenario.start, scenario.end
    trace = sorted(((t, top) for t, top in trace if t < end), key=lambda e: e[0])
    if not trace or trace[0][0] > start:
        trace.insert(0, (start, None))
    times = [t for t, _ in trace]
    changes = scenario.true_changes()
    epochs = [(start, scenario.true_room(start)), *changes]  # (from, true room)

    # Accuracy: walk the segments between every breakpoint.
    grace = _Intervals([(c, c + GRACE_S) for c, _ in epochs])
    points = sorted(
        {start, end, *(t for t in times if start < t < end)}
        | {c for c, _ in changes}
        | {c + GRACE_S for c, _ in epochs if c + GRACE_S < end}
    )
    counted = correct = 0.0
    for a, b in itertools.pairwise(points):
        if a in grace:
            continue
        counted += b - a
        if _top_at(trace, times, a) == scenario.true_room(a):
            correct += b - a
    accuracy = correct / counted if counted > 0 else 1.0

    # Time to switch, and which switch is each epoch's arrival.
    arrivals: set[float] = set()
    switch_times: list[float] = []
    missed = 0
    for k, (c, room) in enumerate(epochs):
        c_next = epochs[k + 1][0] if k + 1 < len(epochs) else end
        arrival: float | None = None
        if _top_at(trace, times, c) != room:
            for t, top in trace[bisect.bisect_right(times, c) :]:
                if t >= c_next:
                    break
                if top == room:
                    arrival = t
                    arrivals.add(t)
                    break
        if k == 0 or c_next - c < MIN_STAY_S:
            continue  # the start is not a change; a brief stay is not scored
        if _top_at(trace, times, c) == room:
            switch_times.append(0.0)
        elif arrival is not None:
            switch_times.append(arrival - c)
        else:
            missed += 1
            switch_times.append(c_next - c)

    # Spurious switches while stationary.
    still_list = scenario.stationary_intervals()
    still = _Intervals(still_list)
    spurious = 0
    for (_, before), (t, after) in itertools.pairwise(trace):
        if before is None or t in arrivals or not start <= t < end:
            continue
        if after != before and t in still:
            spurious += 1
    still_hours = sum(min(b, end) - max(a, start) for a, b in still_list if b > start and a < end)
    still_hours /= 3600.0

    return Score(
        accuracy=accuracy,
        switch_median_s=statistics.median(switch_times) if switch_times else None,
        switch_p95_s=percentile_nearest_rank(switch_times, 0.95) if switch_times else None,
        spurious_per_hour=spurious / still_hours if still_hours > 0 else None,
        switches=len(switch_times),
        missed_switches=missed,
        spurious=spurious,
        stationary_hours=still_hours,
        counted_s=counted,
        switch_times=tuple(switch_times),
    )


def pool_scores(scores: Sequence[Score]) -> Score:
    """Several runs (say, seeds) as one: time-weighted accuracy, all switches, all hours."""
    counted = sum(s.counted_s for s in scores)
    times = [t for s in scores for t in s.switch_times]
    hours = sum(s.stationary_hours for s in scores)
    spurious = sum(s.spurious for s in scores)
    return Score(
        accuracy=(sum(s.accuracy * s.counted_s for s in scores) / counted if counted > 0 else 1.0),
        switch_median_s=statistics.median(times) if times else None,
        switch_p95_s=percentile_nearest_rank(times, 0.95) if times else None,
        spurious_per_hour=spurious / hours if hours > 0 else None,
        switches=len(times),
        missed_switches=sum(s.missed_switches for s in scores),
        spurious=spurious,
        stationary_hours=hours,
        counted_s=counted,
        switch_times=tuple(times),
    )
