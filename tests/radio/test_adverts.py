"""What the simulated bluetoothd does with adverts and filters, without any bus."""

from __future__ import annotations

import pytest
from dbus_fast import Variant

from hw.sim.adverts import (
    AD_MANUFACTURER,
    Advertisement,
    DiscoveryFilter,
    InvalidAdvertisement,
    InvalidFilter,
    OrPattern,
    ad_length,
    ad_structures,
    filter_accepts,
    matches_or_patterns,
    merge_filters,
    parse_advertisement,
    parse_discovery_filter,
)
from hw.sim.air import parse_host_spec

FRAME = bytes(11)


def test_advertisement_properties_are_read_with_bluez_types() -> None:
    ad = parse_advertisement(
        {
            "Type": Variant("s", "broadcast"),
            "ManufacturerData": Variant("a{qv}", {0xFFFF: Variant("ay", FRAME)}),
            "LocalName": Variant("s", "ra"),
        }
    )
    assert ad.manufacturer_data == {0xFFFF: FRAME}
    assert ad.local_name == "ra"


@pytest.mark.parametrize(
    "props, message",
    [
        ({}, "Type is missing"),
        ({"Type": Variant("s", "beacon")}, "Type must be"),
        (
            {"Type": Variant("s", "broadcast"), "ManufacturerData": Variant("a{sv}", {})},
            "ManufacturerData must be of type a{qv}",
        ),
    ],
)
def test_malformed_advertisements_are_refused_with_a_reason(props: dict, message: str) -> None:
    with pytest.raises(InvalidAdvertisement, match=message):
        parse_advertisement(props)


def test_our_frame_and_a_short_name_fit_in_a_legacy_advert() -> None:
    ad = Advertisement("broadcast", {0xFFFF: FRAME}, local_name="x" * 14)
    assert ad_length(ad_structures(ad, "host")) == 31
    longer = Advertisement("broadcast", {0xFFFF: FRAME}, local_name="x" * 15)
    assert ad_length(ad_structures(longer, "host")) == 32


def test_manufacturer_ad_starts_with_the_little_endian_company_id() -> None:
    structures = ad_structures(Advertisement("broadcast", {0x004C: b"\x02"}), "host")
    assert structures == [(AD_MANUFACTURER, b"\x4c\x00\x02")]


def test_or_patterns_match_on_type_offset_and_content() -> None:
    structures = ad_structures(Advertisement("broadcast", {0xFFFF: FRAME}), "host")
    assert matches_or_patterns(structures, [OrPattern(0, AD_MANUFACTURER, b"\xff\xff")])
    assert not matches_or_patterns(structures, [OrPattern(0, AD_MANUFACTURER, b"\x4c\x00")])
    assert not matches_or_patterns(structures, [OrPattern(0, 0x16, b"\xff\xff")])


def test_discovery_filter_as_bleak_sends_it() -> None:
    flt = parse_discovery_filter(
        {
            "Transport": Variant("s", "le"),
            "DuplicateData": Variant("b", False),
            "RSSI": Variant("n", -70),
        }
    )
    assert flt == DiscoveryFilter(rssi=-70, transport="le", duplicate_data=False)
    with pytest.raises(InvalidFilter):
        parse_discovery_filter({"Transport": Variant("s", "radio")})


def test_the_adapter_serves_the_loosest_filter_of_its_clients() -> None:
    merged = merge_filters(
        [DiscoveryFilter(rssi=-70, duplicate_data=False), DiscoveryFilter(rssi=-90)]
    )
    assert merged.rssi == -90 and merged.duplicate_data
    assert merge_filters([DiscoveryFilter(rssi=-70), DiscoveryFilter()]).rssi is None


def test_rssi_and_pathloss_filters_drop_faint_adverts() -> None:
    kwargs = {"address": "C0:00:00:00:00:01", "name": None, "uuids": []}
    assert filter_accepts(DiscoveryFilter(rssi=-70), rssi=-70, tx_power=None, **kwargs)
    assert not filter_accepts(DiscoveryFilter(rssi=-70), rssi=-71, tx_power=None, **kwargs)
    assert not filter_accepts(DiscoveryFilter(pathloss=10), rssi=-60, tx_power=0, **kwargs)
    assert not filter_accepts(DiscoveryFilter(transport="bredr"), rssi=-1, tx_power=None, **kwargs)


@pytest.mark.parametrize("text", ["room-a", "@1,2", "a@1", "a@x,2", "a b@1,2"])
def test_malformed_host_specs_are_refused(text: str) -> None:
    with pytest.raises(ValueError):
        parse_host_spec(text)


def test_host_spec_reads_name_and_metres() -> None:
    spec = parse_host_spec("room-a@-1.5,3")
    assert (spec.name, spec.x, spec.y) == ("room-a", -1.5, 3.0)
