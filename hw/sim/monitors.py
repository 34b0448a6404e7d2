"""Advertisement monitors as bluetoothd 5.66 reads and runs them (pure).

``src/adv_monitor.c``: an ``org.bluez.AdvertisementMonitor1`` object is read from its
app's properties (:func:`parse_monitor`: monitor_process, parse_rssi_and_timeout,
parse_patterns); an advert whose AD data matches one of its or-patterns
(bt_ad_pattern_match, ``src/shared/ad.c``) is passed through its RSSI filter
(:class:`MonitoredDevice`: adv_monitor_filter_rssi), which decides when to call
``DeviceFound`` and ``DeviceLost``.  Doc: ``doc/advertisement-monitor-api.txt``.
Without controller offload (the air has none) ``RSSISamplingPeriod`` is only checked
and kept: "Currently this is unimplemented in user space".
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from dbus_fast import Variant

UNSET_RSSI = 127
MIN_RSSI, MAX_RSSI = -127, 20
UNSET_TIMEOUT = 0
MIN_TIMEOUT, MAX_TIMEOUT = 1, 300
DEFAULT_LOW_TIMEOUT, DEFAULT_HIGH_TIMEOUT = 5, 10
UNSET_SAMPLING_PERIOD = 256
MAX_SAMPLING_PERIOD = 255
DEFAULT_SAMPLING_PERIOD = 0xFF  # main.c: btd_opts.advmon.rssi_sampling_period
AD_TYPE_MAX = 0x3D  # BT_AD_3D_INFO_DATA: ad_is_type_valid


class InvalidMonitor(ValueError):
    """A monitor bluetoothd rejects (it then calls the monitor's Release())."""


@dataclass(frozen=True, slots=True)
class OrPattern:
    """One pattern: AD type, offset in that AD's data, bytes to find there."""

    start: int
    ad_type: int
    content: bytes


@dataclass(frozen=True, slots=True)
class RssiParameters:
    high_rssi: int
    low_rssi: int
    high_timeout: int
    low_timeout: int
    sampling_period: int


@dataclass(frozen=True, slots=True)
class MonitorSpec:
    patterns: tuple[OrPattern, ...]
    rssi: RssiParameters | None  # None: rssi_is_unset


def _get(props: Mapping[str, Any], name: str, signature: str) -> Any:
    value = props.get(name)
    if value is None:
        return None
    if not isinstance(value, Variant) or value.signature != signature:
        raise InvalidMonitor(f"Invalid argument of property {name}")
    return value.value


def parse_monitor(props: Mapping[str, Any]) -> MonitorSpec:
    """monitor_process over an object's AdvertisementMonitor1 properties."""
    kind = _get(props, "Type", "s")
    if kind is None:
        raise InvalidMonitor("Failed to retrieve property Type")
    if kind != "or_patterns":
        raise InvalidMonitor("Invalid argument of property Type")
    rssi = _parse_rssi(props)
    raw = _get(props, "Patterns", "a(yyay)")
    if raw is None:
        raise InvalidMonitor("Failed to retrieve property Patterns")
    patterns = []
    for item in raw:
        start, ad_type, content = item
        content = bytes(content)
        # bt_ad_pattern_new: a known AD type, 1..31 bytes that fit in 31 from the offset.
        if (
            not content
            or not 0 <= int(start) < 31
            or int(start) + len(content) > 31
            or not (0x01 <= int(ad_type) <= AD_TYPE_MAX or int(ad_type) == 0xFF)
        ):
            raise InvalidMonitor("Invalid argument of property Patterns")
        patterns.append(OrPattern(int(start), int(ad_type), content))
    if not patterns:
        raise InvalidMonitor("Invalid argument of property Patterns")
    return MonitorSpec(tuple(patterns), rssi)


def _parse_rssi(props: Mapping[str, Any]) -> RssiParameters | None:
    """parse_rssi_and_timeout: all unset is no RSSI filter; partial sets get filled in."""
    high = _get(props, "RSSIHighThreshold", "n")
    high_timeout = _get(props, "RSSIHighTimeout", "q")
    low = _get(props, "RSSILowThreshold", "n")
    low_timeout = _get(props, "RSSILowTimeout", "q")
    period = _get(props, "RSSISamplingPeriod", "q")
    high = UNSET_RSSI if high is None else int(high)
    low = UNSET_RSSI if low is None else int(low)
    high_timeout = UNSET_TIMEOUT if high_timeout is None else int(high_timeout)
    low_timeout = UNSET_TIMEOUT if low_timeout is None else int(low_timeout)
    period = UNSET_SAMPLING_PERIOD if period is None else int(period)
    if (high, low, high_timeout, low_timeout, period) == (
        UNSET_RSSI,
        UNSET_RSSI,
        UNSET_TIMEOUT,
        UNSET_TIMEOUT,
        UNSET_SAMPLING_PERIOD,
    ):
        return None
    if low == UNSET_RSSI:
        low = MIN_RSSI
    if high == UNSET_RSSI:
        high = low
    if low_timeout == UNSET_TIMEOUT:
        low_timeout = DEFAULT_LOW_TIMEOUT
    if high_timeout == UNSET_TIMEOUT:
        high_timeout = DEFAULT_HIGH_TIMEOUT
    if period == UNSET_SAMPLING_PERIOD:
        period = DEFAULT_SAMPLING_PERIOD
    if not (MIN_RSSI <= low <= MAX_RSSI and MIN_RSSI <= high <= MAX_RSSI) or high < low:
        raise InvalidMonitor("Invalid argument of RSSI thresholds and timeouts")
    if not (
        MIN_TIMEOUT <= high_timeout <= MAX_TIMEOUT and MIN_TIMEOUT <= low_timeout <= MAX_TIMEOUT
    ):
        raise InvalidMonitor("Invalid argument of RSSI thresholds and timeouts")
    if period > MAX_SAMPLING_PERIOD:
        raise InvalidMonitor("Invalid argument of RSSI thresholds and timeouts")
    return RssiParameters(high, low, high_timeout, low_timeout, period)


def content_matches(structures: Iterable[tuple[int, bytes]], patterns: Sequence[OrPattern]) -> bool:
    """btd_adv_monitor_content_filter for one monitor: any pattern matches the report.

    The report is parsed like bt_ad_new_with_data: an AD type outside the known ones
    makes it unparsable (no match at all), and a later AD of the same type replaces an
    earlier one (ad_replace_data).  A pattern matches an AD of its type that holds its
    bytes at its offset (pattern_ad_data_match).
    """
    by_type: dict[int, bytes] = {}
    for ad_type, data in structures:
        if not (0x01 <= ad_type <= AD_TYPE_MAX or ad_type == 0xFF):
            return False
        by_type[ad_type] = bytes(data)
    for pattern in patterns:
        found = by_type.get(pattern.ad_type)
        end = pattern.start + len(pattern.content)
        if (
            found is not None
            and len(found) >= end
            and found[pattern.start : end] == pattern.content
        ):
            return True
    return False


class MonitoredDevice:
    """adv_monitor_filter_rssi for one (monitor, device) pair with RSSI parameters.

    Times are whole seconds as ``time(NULL)`` gives them to bluetoothd (``now`` is
    floored), so a 1 s timeout takes 1–2 s.  After each report of a found device a
    lost timer of ``low_timeout`` runs; :meth:`lost_deadline` says when it fires.
    """

    def __init__(self, rssi: RssiParameters) -> None:
        self._p = rssi
        self.found = False
        self._last_seen: int | None = None
        self._high_first: int | None = None
        self._low_first: int | None = None
        self._lost_at: float | None = None

    def heard(self, rssi: int, now: float) -> str | None:
        """A matched report at ``rssi``: "found", "lost" or None (nothing to call)."""
        p = self._p
        t = math.floor(now)
        self._lost_at = None
        if self._last_seen is not None:
            if t - self._last_seen > p.high_timeout:
                self._high_first = None
            if t - self._last_seen > p.low_timeout:
                self._low_first = None
        self._last_seen = t
        action: str | None = None
        if not self.found and rssi > p.high_rssi:
            if self._high_first is not None:
                if t - self._high_first >= p.high_timeout:
                    self.found = True
                    action = "found"
            else:
                self._high_first = t
        else:
            self._high_first = None
        if self.found and rssi < p.low_rssi:
            if self._low_first is not None:
                if t - self._low_first >= p.low_timeout:
                    self.found = False
                    action = "lost"
            else:
                self._low_first = t
        else:
            self._low_first = None
        if self.found:
            self._lost_at = now + p.low_timeout
        return action

    def lost_deadline(self) -> float | None:
        """When handle_device_lost_timeout calls DeviceLost, if nothing is heard before."""
        return self._lost_at

    def lost_timer_fired(self) -> None:
        """handle_device_lost_timeout: DeviceLost was called; the device is not found."""
        self._lost_at = None
        self.found = False
