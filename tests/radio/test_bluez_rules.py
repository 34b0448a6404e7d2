"""bluetoothd 5.66's reporting rules as the air models them, without any bus.

Discovery sessions and filters (src/adapter.c), what a device signals (src/device.c,
src/shared/ad.c) and advertisement monitors (src/adv_monitor.c).
"""

from __future__ import annotations

import pytest
from dbus_fast import Variant

from hw.sim.discovery import (
    SCAN_TYPE_DUAL,
    SCAN_TYPE_LE,
    DiscoveryError,
    DiscoveryFilter,
    DiscoverySessions,
    InvalidFilter,
    KernelDiscovery,
    device_is_discoverable,
    is_filter_match,
    kernel_accepts,
    merge_discovery_filters,
    parse_discovery_filter,
)
from hw.sim.monitors import (
    InvalidMonitor,
    MonitoredDevice,
    OrPattern,
    RssiParameters,
    content_matches,
    parse_monitor,
)
from hw.sim.reporting import (
    AD_FLAGS,
    AD_MANUFACTURER,
    RemoteDevice,
    apply_advert,
    changed_properties,
    invalidate_rssi_and_tx_power,
    parse_eir,
)

FRAME = bytes(11)
OUR_AD = ((AD_FLAGS, b"\x06"), (AD_MANUFACTURER, b"\xff\xff" + FRAME))
HEART_RATE = "0000180d-0000-1000-8000-00805f9b34fb"


# ---- SetDiscoveryFilter (parse_discovery_filter_dict) and the merge ------------------


def test_bleaks_filter_with_duplicate_data_is_a_filter() -> None:
    flt = parse_discovery_filter(
        {"Transport": Variant("s", "le"), "DuplicateData": Variant("b", True)}
    )
    assert flt == DiscoveryFilter(scan_type=SCAN_TYPE_LE, duplicate_data=True)


def test_an_empty_filter_is_no_filter_and_defaults_follow_bluetoothd() -> None:
    assert parse_discovery_filter({}) is None
    flt = parse_discovery_filter({"UUIDs": Variant("as", ["180D"])})
    assert flt is not None
    assert flt.uuids == (HEART_RATE,)  # bt_uuid_to_uuid128
    assert not flt.duplicate_data and flt.scan_type == SCAN_TYPE_DUAL


@pytest.mark.parametrize(
    "raw",
    [
        {"Transport": Variant("s", "radio")},
        {"RSSI": Variant("n", -128)},
        {"Pathloss": Variant("n", 10)},  # must be uint16, as bluetoothctl sends it
        {"Pathloss": Variant("q", 138)},
        {"RSSI": Variant("n", -70), "Pathloss": Variant("q", 10)},
        {"Colour": Variant("s", "red")},
    ],
)
def test_filters_bluetoothd_refuses(raw: dict[str, Variant]) -> None:
    with pytest.raises(InvalidFilter):
        parse_discovery_filter(raw)


def test_the_kernel_filters_on_the_lowest_rssi_only_when_every_filter_has_one() -> None:
    a, b = DiscoveryFilter(rssi=-70), DiscoveryFilter(rssi=-90)
    assert merge_discovery_filters([a, b]) == KernelDiscovery(SCAN_TYPE_DUAL, True, -90)
    assert merge_discovery_filters([a, DiscoveryFilter()]).rssi is None
    assert merge_discovery_filters([a, DiscoveryFilter(pathloss=20)]).rssi is None
    regular_and_filtered = merge_discovery_filters([a, None])
    assert regular_and_filtered.service and regular_and_filtered.rssi is None
    assert not merge_discovery_filters([None]).service


def test_kernel_drops_quiet_reports_and_reports_without_a_wanted_uuid() -> None:
    kernel = KernelDiscovery(SCAN_TYPE_LE, True, rssi=-70, uuids=(HEART_RATE,))
    assert kernel_accepts(kernel, -70, [HEART_RATE])
    assert not kernel_accepts(kernel, -71, [HEART_RATE])
    assert not kernel_accepts(kernel, -50, [])


def test_is_filter_matchs_proximity_test_never_rejects() -> None:
    # The OR in is_filter_match: no RSSI in a Pathloss filter, no Pathloss in an RSSI one.
    for flt in (DiscoveryFilter(rssi=-40), DiscoveryFilter(pathloss=5)):
        assert is_filter_match([flt], services=[], rssi=-99, tx_power=0)
    assert not is_filter_match([DiscoveryFilter(uuids=(HEART_RATE,))], services=[], rssi=-1,
                               tx_power=None)


def test_unfiltered_discovery_reports_only_discoverable_adverts() -> None:
    kwargs = {"address": "C0:00:00:00:00:01", "name": "room-a"}
    assert not device_is_discoverable([None], filtered=False, flags=0x04, **kwargs)
    assert device_is_discoverable([None], filtered=False, flags=0x06, **kwargs)
    assert device_is_discoverable([None], filtered=False, flags=0x05, **kwargs)
    assert device_is_discoverable([DiscoveryFilter()], filtered=True, flags=0, **kwargs)


def test_a_pattern_filter_decides_alone() -> None:
    kwargs = {"flags": 0x06, "filtered": True, "address": "C0:00:00:00:00:01"}
    assert device_is_discoverable([DiscoveryFilter(pattern="room")], name="room-a", **kwargs)
    assert not device_is_discoverable(
        [DiscoveryFilter(pattern="phone"), None], name="room-a", **kwargs
    )
    assert device_is_discoverable([DiscoveryFilter(pattern="")], name=None, **kwargs)


def test_sessions_keep_a_filter_across_stop_and_start() -> None:
    sessions = DiscoverySessions()
    flt = DiscoveryFilter(scan_type=SCAN_TYPE_LE, duplicate_data=True)
    sessions.set_filter(":1.5", flt, 0.0)
    assert not sessions.discovering
    sessions.start(":1.5", 0.0)
    assert sessions.filters() == [flt] and sessions.duplicate_data()
    with pytest.raises(DiscoveryError, match="InProgress"):
        sessions.start(":1.5", 0.0)
    assert sessions.stop(":1.5", 1.0)
    assert sessions.filter_of(":1.5") == flt  # discovery_remove keeps it in set_filter_list
    with pytest.raises(DiscoveryError, match="No discovery started"):
        sessions.stop(":1.5", 1.0)


def test_regular_discovery_listens_10_24_s_of_every_15_24_s_and_filtered_always() -> None:
    regular = DiscoverySessions()
    regular.start(":1.1", 100.0)
    assert regular.listening_le(100.0) and regular.listening_le(110.2)
    assert not regular.listening_le(110.3) and not regular.listening_le(115.2)
    assert regular.listening_le(115.3)
    filtered = DiscoverySessions()
    filtered.set_filter(":1.2", DiscoveryFilter(scan_type=SCAN_TYPE_LE), 100.0)
    filtered.start(":1.2", 100.0)
    assert all(filtered.listening_le(100.0 + t) for t in (0, 11, 13, 600))


def test_bredr_only_discovery_hears_no_le_advert() -> None:
    sessions = DiscoverySessions()
    sessions.set_filter(":1.1", parse_discovery_filter({"Transport": Variant("s", "bredr")}), 0)
    sessions.start(":1.1", 0.0)
    assert not sessions.listening_le(1.0)


# ---- what a device signals (device.c, shared/ad.c) ----------------------------------------


def test_unfiltered_rssi_is_signalled_only_after_an_8_db_move() -> None:
    device = RemoteDevice("C0:00:00:00:00:01", "public")
    ad = parse_eir(OUR_AD)
    assert apply_advert(device, ad, -60, filtered=False, duplicate=False)[0] == "RSSI"
    assert "RSSI" not in apply_advert(device, ad, -67, filtered=False, duplicate=False)
    assert "RSSI" not in apply_advert(device, ad, -53, filtered=False, duplicate=False)
    assert "RSSI" in apply_advert(device, ad, -68, filtered=False, duplicate=False)
    assert device.rssi == -68  # the threshold is from the last value signalled


def test_filtered_discovery_signals_every_reports_rssi_even_unchanged() -> None:
    device = RemoteDevice("C0:00:00:00:00:01", "public")
    ad = parse_eir(OUR_AD)
    apply_advert(device, ad, -60, filtered=True, duplicate=False)
    assert apply_advert(device, ad, -60, filtered=True, duplicate=False) == ["RSSI"]


def test_manufacturer_data_is_signalled_when_it_changes_or_duplicates_are_asked_for() -> None:
    device = RemoteDevice("C0:00:00:00:00:01", "public")
    ad = parse_eir(OUR_AD)
    assert "ManufacturerData" in apply_advert(device, ad, -60, filtered=False, duplicate=False)
    assert "ManufacturerData" not in apply_advert(device, ad, -60, filtered=False, duplicate=False)
    assert "ManufacturerData" in apply_advert(device, ad, -60, filtered=True, duplicate=True)
    other = parse_eir(((AD_MANUFACTURER, b"\xff\xff" + bytes([1]) * 11),))
    assert "ManufacturerData" in apply_advert(device, other, -60, filtered=False, duplicate=False)


def test_other_companies_data_accumulates_unless_duplicates_are_asked_for() -> None:
    device = RemoteDevice("C0:00:00:00:00:01", "public")
    apply_advert(device, parse_eir(OUR_AD), -60, filtered=False, duplicate=False)
    apple = parse_eir(((AD_MANUFACTURER, b"\x4c\x00\x02"),))
    apply_advert(device, apple, -60, filtered=False, duplicate=False)
    assert set(device.manufacturer_data) == {0xFFFF, 0x004C}
    apply_advert(device, apple, -60, filtered=True, duplicate=True)
    assert set(device.manufacturer_data) == {0x004C}  # bt_ad_clear_manufacturer_data


def test_ending_discovery_invalidates_rssi_and_tx_power() -> None:
    device = RemoteDevice("C0:00:00:00:00:01", "public", rssi=-60, tx_power=-8)
    values, invalidated = changed_properties(
        device, invalidate_rssi_and_tx_power(device), "/org/bluez/hci0"
    )
    assert values == {} and invalidated == ["RSSI", "TxPower"]


# ---- advertisement monitors (adv_monitor.c) --------------------------------------------


def monitor_props(**extra: Variant) -> dict[str, Variant]:
    return {
        "Type": Variant("s", "or_patterns"),
        "Patterns": Variant("a(yyay)", [[0, 0xFF, b"\xff\xff"]]),
        **extra,
    }


def test_a_monitor_without_rssi_parameters_has_no_rssi_filter() -> None:
    spec = parse_monitor(monitor_props())
    assert spec.rssi is None and spec.patterns == (OrPattern(0, 0xFF, b"\xff\xff"),)


def test_partial_rssi_parameters_are_filled_in_like_bluetoothd() -> None:
    spec = parse_monitor(monitor_props(RSSILowThreshold=Variant("n", -90)))
    assert spec.rssi == RssiParameters(-90, -90, 10, 5, 0xFF)


@pytest.mark.parametrize(
    "props",
    [
        {"Type": Variant("s", "and_patterns"), "Patterns": Variant("a(yyay)", [[0, 0xFF, b"x"]])},
        {"Type": Variant("s", "or_patterns")},
        {"Type": Variant("s", "or_patterns"), "Patterns": Variant("a(yyay)", [])},
        monitor_props(RSSIHighThreshold=Variant("n", -90), RSSILowThreshold=Variant("n", -80)),
        monitor_props(RSSILowTimeout=Variant("q", 301)),
        monitor_props(RSSISamplingPeriod=Variant("q", 256 + 1)),
        monitor_props(RSSIHighThreshold=Variant("q", 3)),
    ],
)
def test_monitors_bluetoothd_releases(props: dict[str, Variant]) -> None:
    with pytest.raises(InvalidMonitor):
        parse_monitor(props)


def test_or_patterns_match_on_type_offset_and_content() -> None:
    assert content_matches(OUR_AD, [OrPattern(0, AD_MANUFACTURER, b"\xff\xff")])
    assert content_matches(OUR_AD, [OrPattern(2, AD_MANUFACTURER, FRAME[:3])])
    assert not content_matches(OUR_AD, [OrPattern(0, AD_MANUFACTURER, b"\x4c\x00")])
    assert not content_matches(OUR_AD, [OrPattern(12, AD_MANUFACTURER, b"\x00\x00")])
    assert not content_matches(OUR_AD, [OrPattern(0, 0x16, b"\xff\xff")])


def test_rssi_monitor_finds_after_the_high_timeout_and_loses_after_the_low_timeout() -> None:
    device = MonitoredDevice(RssiParameters(-70, -80, 2, 3, 0))
    assert device.heard(-60, 100.0) is None
    assert device.heard(-60, 101.0) is None
    assert device.heard(-60, 102.0) == "found"
    assert device.lost_deadline() == 105.0  # no report for RSSILowTimeout: DeviceLost
    assert device.heard(-85, 103.0) is None
    assert device.heard(-85, 105.5) is None
    assert device.heard(-85, 106.0) == "lost"
    assert not device.found and device.lost_deadline() is None


def test_a_quiet_report_resets_the_high_rssi_count() -> None:
    device = MonitoredDevice(RssiParameters(-70, -80, 2, 3, 0))
    device.heard(-60, 100.0)
    device.heard(-75, 101.0)
    assert device.heard(-60, 102.0) is None
    assert device.heard(-60, 104.0) == "found"
