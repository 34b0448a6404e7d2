"""Which room (or phone) is nearest: RSSI smoothing, distance, ranking with hysteresis.

Pure and clock-free: feed it adverts with ``observe(device_id, rssi, tx_power, t)`` and
ask ``ranking(t)`` / ``top(t)``; ``t`` is seconds on any monotonic clock, read once by
the caller.  The laptop daemon uses it to rank the rooms and phones it hears; the
scenario scorer (``btogether sim score``) uses it unchanged.

How it works, per device, on the calibrated level ``z = rssi − (tx_power + offset)``
(minus the path loss, so devices advertising different powers compare fairly; ``offset``
is the per-device calibration, the measured RSSI at 1 m minus the advertised power):

1. **Smoothing**: a one-dimensional Kalman filter on the level with a random-walk model
   (measurement noise ``noise_db``², drift ``still_drift_db2_per_s`` while the laptop sits
   still).  While still it converges to a long average (≈0.6 dB standard error at
   6 dB noise and 10 adverts/s), which is what stops flapping on a boundary.
2. **Outliers**: an advert more than ``outlier_sigmas`` standard deviations from the
   prediction is ignored — unless it is the ``max_rejected + 1``-th in a row on the same
   side, which is a real change (the filter then restarts from the new level).
3. **Adapting to movement**: a two-sided CUSUM on the normalised innovations (slack
   ``change_slack`` σ, threshold ``change_threshold``) detects a level that has moved; the
   filter then forgets (its variance goes back to one advert's) and re-converges in a few
   adverts.  The *laptop* is taken to be moving for ``moving_hold_s`` when
   ``moving_quorum`` devices have moved within ``moving_hold_s``, or (with
   ``directional_alarm``) when one device has moved *towards a switch*: the top's level
   falling or another's rising.  While moving every filter drifts faster
   (``moving_drift_db2_per_s``) and the hysteresis is relaxed.
4. **Hysteresis**: the top changes only when another device's level has led the current
   top's by at least ``margin_db`` for ``dwell_s``; while moving, by ``moving_margin_db``
   for ``moving_dwell_s``, and only once the two levels have together moved at least
   ``moving_change_db`` from where they were when the laptop started moving.  That guard
   is what makes a single-device alarm safe: a false alarm while sitting (one every
   few minutes per device) restarts a filter near where it was, so the pair moves a dB
   or two and the relaxed hysteresis never applies, while a real walk moves them by
   several dB.  Errors while walking cost little; a flap while sitting is what users
   notice, so the still thresholds are the stricter ones.
5. **Timeout**: a device not heard for ``timeout_s`` is dropped; if it was the top, the
   best remaining device becomes the top at once.  With a scanner that does not report
   every advert (BlueZ's passive scanning), silence proves nothing: set
   ``hold_until_lost`` and call :meth:`ProximityTracker.forget` when the stack says a
   device is gone.
6. **Settling**: when the tracker starts hearing devices (at start-up, or after hearing
   none), it names nothing until the ranking has settled: at least ``settle_min_s`` after
   the first advert, and then as soon as the strongest device leads every other by
   ``settle_lead_db``, or at the latest ``settle_s`` after it. Naming the device of the
   first advert heard, as before, named the wrong room in 40–84 % of starts on the
   scenarios' floors and switched a second later; see "Which room am I in" in the README.

Distance is ``hw.radio_model.distance_from_rssi`` of the smoothed RSSI against the
calibrated power.  Ranking uses the level, which orders devices exactly as distance does.

Why these numbers (measured with the scorer over the scenarios in ``scenarios/`` as
first drafted, seeds 1–3, mean of the per-seed figures; the README's proximity section
has the final table): a median of 5 adverts followed by an EMA (α 0.1–0.2, margins 2–3
dB) flapped 18–105 times an hour on the boundary and still took 3.1–4.2 s at p95; the
fixed-gain EMA baseline does not flap but takes 4–6 s; a constant-velocity (level +
slope) Kalman filter did not switch faster in the large room and flapped more in high
noise; the random-walk Kalman filter with CUSUM restarts keeps both low. CUSUM slack
0.25 σ with threshold 10 detects the slow level changes of walking in a large room (≈0.5
σ per advert) sooner than 0.5/7 without more false alarms; a quorum of 2 removed the
boundary flaps that single-device alarms caused (0.7–10 per hour → 0 on seeds 1–3; over
21 seeds about one an hour remains, against 0.3 for the slower naive baseline); holding
"moving" for 5 s with a drift of 2 dB²/s cut the p95 switch time by ≈0.5 s on the
open-plan floor and the large room against 3 s and no extra drift. A margin of 2 dB for
1 s while still and (before the guard below) 1 dB for 0.3 s while moving (holding 0.6 s
while still was 0.06–0.09 s faster at p95 but, over 16 more seeds of the boundary,
flapped 2.25 times an hour against 1.25; holding 0.1 s while moving was 0.3 s faster but
flapped 17 times an hour in high noise): margins of 1–1.5 dB while still (measured
before the quorum was added) flapped 10–44 times an hour on the boundary, 2.5 dB only
slowed switching, and a still drift of 0.1–0.4 dB²/s instead of 0.05 slowed the large
room's p95 by 0.4–1 s. Switching on accumulated evidence (∫(lead − 1 dB)dt ≥ 1–2 dB·s)
instead of margin × dwell (seeds 1–5 pooled, final scenarios) was up to 0.15 s faster at
p95 on the open floors, no faster in the large room, and flapped 0.8–1.6 times an hour
on the boundary and twice as often in high noise. Estimating each device's noise from
its innovations (instead of a fixed ``noise_db``) removed the high-noise floor's flaps
(4.1 → 0–0.3 an hour) but brought 0.7–1.3 an hour to the boundary, where 6 dB is the
truth; so ``noise_db`` stays a setting, to raise where a site is known to be noisier.

The large room's switch p95 (3.58 s with the quorum of 2 alone) was the one target
missed: far from both devices walking moves each level by 1–2 dB/s against 5 dB of
noise, so a CUSUM against a fixed level needs 3–5 s, and waiting for the second device
to alarm costs a second more.  Measured on seeds 1–5 pooled (large room p95 / boundary
spurious per hour), every way of detecting movement sooner on its own lands on one
trade-off, 2.8–2.9 s with 10–11 flaps an hour or 3.1–3.4 s with 1–4: a quorum of 1
(2.93 / 11.2), CUSUM 0.25/7 (3.36 / 18.4) or 0.15/12 (3.34 / 1.6), a CUSUM on the
pair's *difference* (the challenger's innovations minus the top's) setting "moving"
(threshold 10: 3.22 / 18.8 with restarts, 3.12 / 4.4 without; 12 without: 3.32 / 1.2),
a single alarm setting "moving" only in the direction of a switch (2.80 / 10.4), and
only when the pair-difference CUSUM agrees (3.11–3.52 / 8.4–0.4), a separate, milder
hysteresis for single alarms (3.15–3.52 / 5.2–1.2), restarting filters to a quarter of
one advert's variance (3.08 / 4.0), holding "moving" for 3, 7 or 10 s (worse or no
change).  What moved the trade-off was making the relaxed hysteresis need a real change
of level (``moving_change_db``): with the directional single alarm, 6 dB of total
change of the two levels since moving began gives 2.80 / 0.0 (4 dB: 2.93 / 4.0; 5 dB:
3.02 / 0.8, both with the old 1 dB / 0.3 s while moving).  Guarding on the change of
the *lead* instead of the sum of the two changes left the open-plan floor's p95 at
3.8 s: two devices both far away when a walk starts need not have changed their lead
when the laptop passes between them.  The guard then allowed a lighter moving
hysteresis, 0.5 dB for 0.25 s (1 dB / 0.3 s: large room 3.05; 0.5 dB / 0.3 s: 2.80 on
seeds 1–5 but the open-plan floor 3.02 on seeds 6–10; 0.5 dB / 0.2 s: 2.70 but 10.6
flaps an hour on the high-noise floor).  With 0.5 dB / 0.25 s, seeds 1–5 → 6–10: large
room p95 2.80 → 2.92 s, open plan 2.69 → 2.86 s, boundary 0.0 → 0.8 flaps an hour
(0.0 → 1.2 before; over seeds 1–21, 1.1 against 1.0 before); high noise (9 dB, not a
target) 7.2 → 4.9 an hour, against 4.1 → 3.1 before — the price of faster switching
where the noise exceeds ``noise_db``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from hw.radio_model import DEFAULT_PATH_LOSS_EXPONENT, distance_from_rssi

Smoothing = Literal["adaptive", "ema", "raw"]


@dataclass(frozen=True, slots=True)
class TrackerConfig:
    """Parameters of a ProximityTracker; the defaults are the measured choice.

    ``smoothing`` selects the method: "adaptive" (the tracker described in the module
    docstring), or the two baselines it is compared against: "ema" (per-advert
    exponential smoothing with ``ema_alpha``) and "raw" (the latest advert only).
    """

    smoothing: Smoothing = "adaptive"
    path_loss_exponent: float = DEFAULT_PATH_LOSS_EXPONENT
    calibration_db: Mapping[str, float] = field(default_factory=dict)
    timeout_s: float = 10.0
    noise_db: float = 6.0
    still_drift_db2_per_s: float = 0.05
    outlier_sigmas: float = 3.5
    max_rejected: int = 3
    change_slack: float = 0.25
    change_threshold: float = 10.0
    moving_quorum: int = 2
    directional_alarm: bool = True
    moving_hold_s: float = 5.0
    moving_drift_db2_per_s: float = 2.0
    margin_db: float = 2.0
    dwell_s: float = 1.0
    moving_margin_db: float = 0.5
    moving_dwell_s: float = 0.25
    moving_change_db: float = 6.0
    settle_min_s: float = 0.3
    settle_lead_db: float = 4.0
    settle_s: float = 1.0
    ema_alpha: float = 0.1

    @classmethod
    def naive(cls, **overrides: Any) -> TrackerConfig:
        """Baseline: exponential smoothing (α 0.1 per advert), a fixed 3 dB margin for 1.5 s."""
        base: dict[str, Any] = {
            "smoothing": "ema",
            "margin_db": 3.0,
            "dwell_s": 1.5,
            "moving_margin_db": 3.0,
            "moving_dwell_s": 1.5,
            "settle_min_s": 0.0,
            "settle_s": 0.0,
        }
        return cls(**(base | overrides))

    @classmethod
    def strongest(cls, **overrides: Any) -> TrackerConfig:
        """Baseline: whichever device's latest advert was strongest, at once."""
        base: dict[str, Any] = {
            "smoothing": "raw",
            "margin_db": 0.0,
            "dwell_s": 0.0,
            "moving_margin_db": 0.0,
            "moving_dwell_s": 0.0,
            "settle_min_s": 0.0,
            "settle_s": 0.0,
        }
        return cls(**(base | overrides))


@dataclass(frozen=True, slots=True)
class RankedDevice:
    """One device as the tracker sees it now."""

    device_id: str
    rssi: float  # smoothed, dBm
    distance_m: float  # estimated from the smoothed RSSI and the calibrated power
    last_seen: float


class _Device:
    """One device's filter state, on the calibrated level (dB relative to 1 m)."""

    __slots__ = (
        "alarm_at",
        "cusum_high",
        "cusum_low",
        "last_seen",
        "level",
        "reference_power",
        "rejected",
        "rejected_sign",
        "variance",
    )

    def __init__(self, level: float, reference_power: float, t: float, variance: float) -> None:
        self.level = level
        self.variance = variance
        self.reference_power = reference_power
        self.last_seen = t
        self.rejected = 0
        self.rejected_sign = 0
        self.cusum_high = 0.0
        self.cusum_low = 0.0
        self.alarm_at = -math.inf


class ProximityTracker:
    """Ranks the devices heard by estimated distance, with hysteresis on the top one."""

    def __init__(self, config: TrackerConfig | None = None) -> None:
        self.config = config or TrackerConfig()
        self._devices: dict[str, _Device] = {}
        self._top: str | None = None
        self._beaten_since: float | None = None
        self._moving_until = -math.inf
        # Each device's level when the laptop last started moving: what a switch while
        # moving must have moved away from (see moving_change_db).
        self._moving_from: dict[str, float] = {}
        # When the tracker last went from hearing nothing to hearing something.
        self._heard_since: float | None = None
        # True when silence does not mean gone (the scanner reports a still device once).
        self.hold_until_lost = False

    def forget(self, device_id: str) -> None:
        """The radio stack says ``device_id`` is gone: drop it now, whatever the timeout."""
        self._devices.pop(device_id, None)
        self._moving_from.pop(device_id, None)

    def observe(self, device_id: str, rssi: float, tx_power: float, t: float) -> None:
        """One advert: its device, RSSI (dBm), advertised power at 1 m (dBm), time (s)."""
        cfg = self.config
        if not (math.isfinite(rssi) and math.isfinite(tx_power)):
            return  # nothing a radio reports; never let it poison a filter
        reference = tx_power + cfg.calibration_db.get(device_id, 0.0)
        z = rssi - reference
        dev = self._devices.get(device_id)
        if not self._devices:
            self._heard_since = t
        if dev is None:
            self._devices[device_id] = _Device(z, reference, t, cfg.noise_db**2)
        else:
            dt = max(0.0, t - dev.last_seen)
            dev.last_seen = max(dev.last_seen, t)
            dev.reference_power = reference
            if cfg.smoothing == "raw":
                dev.level = z
            elif cfg.smoothing == "ema":
                dev.level += cfg.ema_alpha * (z - dev.level)
            else:
                self._filter(dev, z, dt)
        self._update(t)

    def _filter(self, dev: _Device, z: float, dt: float) -> None:
        cfg = self.config
        r = cfg.noise_db**2
        moving = dev.last_seen < self._moving_until
        drift = cfg.moving_drift_db2_per_s if moving else cfg.still_drift_db2_per_s
        dev.variance += drift * dt
        innovation = z - dev.level
        u = innovation / math.sqrt(dev.variance + r)
        if abs(u) > cfg.outlier_sigmas:
            sign = 1 if u > 0 else -1
            dev.rejected = dev.rejected + 1 if sign == dev.rejected_sign else 1
            dev.rejected_sign = sign
            if dev.rejected <= cfg.max_rejected:
                return
            self._restart(dev, r)  # a run of surprises the same way is a move
        else:
            dev.rejected = dev.rejected_sign = 0
            dev.cusum_high = max(0.0, dev.cusum_high + u - cfg.change_slack)
            dev.cusum_low = max(0.0, dev.cusum_low - u - cfg.change_slack)
            if max(dev.cusum_high, dev.cusum_low) > cfg.change_threshold:
                rising = dev.cusum_high > dev.cusum_low
                is_top = self._top is not None and self._devices.get(self._top) is dev
                self._restart(dev, r, towards_switch=rising != is_top)
        gain = dev.variance / (dev.variance + r)
        dev.level += gain * innovation
        dev.variance *= 1.0 - gain

    def _restart(self, dev: _Device, r: float, towards_switch: bool = False) -> None:
        """The level has moved: forget the past, and see whether the laptop is moving.

        ``towards_switch``: the move is the top's level falling or another's rising.
        """
        cfg = self.config
        dev.variance = max(dev.variance, r)
        dev.cusum_high = dev.cusum_low = 0.0
        dev.rejected = dev.rejected_sign = 0
        now = dev.alarm_at = dev.last_seen
        recent = sum(1 for d in self._devices.values() if now - d.alarm_at <= cfg.moving_hold_s)
        quorum = recent >= min(cfg.moving_quorum, len(self._devices))
        if quorum or (towards_switch and cfg.directional_alarm):
            if now >= self._moving_until:
                self._moving_from = {n: d.level for n, d in self._devices.items()}
            self._moving_until = max(self._moving_until, now + cfg.moving_hold_s)

    def _update(self, t: float) -> None:
        cfg = self.config
        timeout = math.inf if self.hold_until_lost else cfg.timeout_s
        for name in [n for n, d in self._devices.items() if t - d.last_seen > timeout]:
            del self._devices[name]
        if not self._devices:
            self._top, self._beaten_since = None, None
            return
        best = max(self._devices, key=lambda n: self._devices[n].level)
        if self._top is None and not self._settled(t):
            return
        if self._top is None or self._top not in self._devices:
            self._top, self._beaten_since = best, None
            return
        moving = t < self._moving_until
        margin = cfg.moving_margin_db if moving else cfg.margin_db
        dwell = cfg.moving_dwell_s if moving else cfg.dwell_s
        lead = self._devices[best].level - self._devices[self._top].level
        if moving and not self._moved_enough(best, self._top):
            lead = -math.inf
        if best == self._top or lead < margin:
            self._beaten_since = None
            return
        if self._beaten_since is None:
            self._beaten_since = t
        if t - self._beaten_since >= dwell:
            self._top, self._beaten_since = best, None

    def _settled(self, t: float) -> bool:
        """Whether the first ranking since the tracker started hearing devices may be named."""
        cfg = self.config
        waited = t - (self._heard_since if self._heard_since is not None else t)
        if waited >= cfg.settle_s:
            return True
        if waited < cfg.settle_min_s:
            return False
        levels = sorted((d.level for d in self._devices.values()), reverse=True)
        return len(levels) == 1 or levels[0] - levels[1] >= cfg.settle_lead_db

    def _moved_enough(self, challenger: str, top: str) -> bool:
        """Whether the two levels have moved far enough, in total, to be a walk.

        A false alarm on a boundary restarts a filter near where it was, so the levels
        move little; a real walk moves them by several dB.  A device first heard while
        moving has no earlier level and passes.
        """
        before = self._moving_from
        if challenger not in before or top not in before:
            return True
        moved = abs(self._devices[challenger].level - before[challenger])
        moved += abs(self._devices[top].level - before[top])
        return moved >= self.config.moving_change_db

    def moving(self, t: float) -> bool:
        """Whether the laptop is taken to be moving at time t (several levels changing)."""
        return t < self._moving_until

    def top(self, t: float) -> str | None:
        """The device the laptop is taken to be nearest at time t, or None if none is heard."""
        self._update(t)
        return self._top

    def ranking(self, t: float) -> list[RankedDevice]:
        """Every device heard within the timeout: the top one first, then nearest first;
        nothing while the first ranking is settling (see the module docstring)."""
        self._update(t)
        if self._top is None:
            return []
        n = self.config.path_loss_exponent
        ranked = [
            RankedDevice(
                device_id=name,
                rssi=d.level + d.reference_power,
                distance_m=distance_from_rssi(d.level + d.reference_power, d.reference_power, n),
                last_seen=d.last_seen,
            )
            for name, d in self._devices.items()
        ]
        ranked.sort(key=lambda r: (r.device_id != self._top, r.distance_m))
        return ranked
