"""What the simulated bluetoothd does with a client's advertisement, without any bus.

Each rule is BlueZ 5.66's src/advertising.c (parsers, parse_advertisement,
refresh_legacy_adv) as hw.sim.adverts models it.
"""

from __future__ import annotations

import pytest
from dbus_fast import Variant

from hw.sim.adverts import (
    FLAG_GENERAL,
    FLAG_LIMITED,
    FLAG_NO_BREDR,
    Advertisement,
    InvalidAdvertisement,
    ad_flags,
    ad_length,
    layout_advertisement,
    parse_advertisement,
)
from hw.sim.air import parse_host_spec
from hw.sim.reporting import AD_FLAGS, AD_MANUFACTURER, AD_NAME_COMPLETE, AD_NAME_SHORT

FRAME = bytes(11)
OUR_ADVERT = {
    "Type": Variant("s", "peripheral"),
    "ManufacturerData": Variant("a{qv}", {0xFFFF: Variant("ay", FRAME)}),
    "LocalName": Variant("s", "room-a"),
    "Discoverable": Variant("b", True),
}


def layout(ad: Advertisement, *, discoverable_adapter: bool = False, flags: int | None = None):  # type: ignore[no-untyped-def]
    if flags is None:
        flags = ad_flags(ad, adapter_bredr=True, adapter_discoverable=discoverable_adapter)
    return layout_advertisement(
        ad, flags=flags, adapter_name="host", adapter_discoverable=discoverable_adapter
    )


def test_our_beacon_advert_is_read_with_bluez_types() -> None:
    ad = parse_advertisement(OUR_ADVERT)
    assert ad.manufacturer_data == {0xFFFF: FRAME}
    assert ad.local_name == "room-a" and ad.discoverable and ad.connectable


def test_discoverable_puts_general_discoverable_and_no_bredr_flags_in_the_advert() -> None:
    # set_flags: General, plus "BR/EDR not supported" while the adapter is not discoverable.
    ad = parse_advertisement(OUR_ADVERT)
    pdu = layout(ad).adv_data
    assert (AD_FLAGS, bytes([FLAG_GENERAL | FLAG_NO_BREDR])) in pdu
    assert (AD_MANUFACTURER, b"\xff\xff" + FRAME) in pdu
    assert ad_length(pdu) == 3 + 4 + len(FRAME)
    discoverable_adapter = layout(ad, discoverable_adapter=True).adv_data
    assert (AD_FLAGS, bytes([FLAG_GENERAL])) in discoverable_adapter


def test_a_peripheral_without_discoverable_carries_flags_only_while_the_adapter_is_discoverable() -> None:
    # get_adv_flags: MGMT_ADV_FLAG_DISCOV for a connectable advert without Flags of its own.
    ad = Advertisement("peripheral", {0xFFFF: FRAME})
    assert not any(t == AD_FLAGS for t, _ in layout(ad).adv_data)
    assert (AD_FLAGS, bytes([FLAG_GENERAL])) in layout(ad, discoverable_adapter=True).adv_data


def test_a_discoverable_broadcast_is_refused_as_bluez_refuses_it() -> None:
    props = {**OUR_ADVERT, "Type": Variant("s", "broadcast")}
    with pytest.raises(InvalidAdvertisement, match="Broadcast cannot set flags"):
        parse_advertisement(props)


def test_discoverable_timeout_makes_the_flag_limited() -> None:
    ad = parse_advertisement({**OUR_ADVERT, "DiscoverableTimeout": Variant("q", 30)})
    assert ad_flags(ad, adapter_bredr=True, adapter_discoverable=False) & FLAG_LIMITED


def test_the_name_goes_in_the_scan_response_shortened_to_fit() -> None:
    ad = Advertisement("broadcast", {0xFFFF: FRAME}, local_name="x" * 40)
    result = layout(ad)
    assert not any(t in (AD_NAME_COMPLETE, AD_NAME_SHORT) for t, _ in result.adv_data)
    assert result.scan_response == ((AD_NAME_SHORT, b"x" * 29),)
    assert result.scannable and not result.connectable


def test_data_beyond_31_bytes_is_refused() -> None:
    fits = Advertisement("peripheral", {0xFFFF: bytes(24)}, discoverable=True)
    assert ad_length(layout(fits).adv_data) == 31
    too_long = Advertisement("peripheral", {0xFFFF: bytes(25)}, discoverable=True)
    with pytest.raises(InvalidAdvertisement, match="too long"):
        layout(too_long)


def test_tx_power_include_costs_three_bytes_even_before_it_is_added() -> None:
    # calc_max_adv_len: 31 - 3 for MGMT_ADV_FLAG_TX_POWER.
    ad = Advertisement("broadcast", {0xFFFF: bytes(25)}, includes=("tx-power",))
    with pytest.raises(InvalidAdvertisement):
        layout(ad)


@pytest.mark.parametrize(
    "props, reason",
    [
        ({"Type": Variant("s", "beacon")}, "Type"),
        ({"ManufacturerData": Variant("a{sv}", {})}, "ManufacturerData"),
        ({"ManufacturerData": Variant("a{qv}", {1: Variant("ay", bytes(28))})}, "too long"),
        ({"ServiceUUIDs": Variant("as", ["not-a-uuid"])}, "ServiceUUIDs"),
        (
            {"Includes": Variant("as", ["local-name"]), "LocalName": Variant("s", "x")},
            "Local name already included",
        ),
        ({"Timeout": Variant("q", 5), "DiscoverableTimeout": Variant("q", 9),
          "Type": Variant("s", "peripheral"), "Discoverable": Variant("b", True)},
         "DiscoverableTimeout > Timeout"),
    ],
)
def test_unusable_advertisements_are_refused_with_bluetoothds_log_line(
    props: dict[str, Variant], reason: str
) -> None:
    with pytest.raises(InvalidAdvertisement, match=reason):
        parse_advertisement(props)


def test_a_missing_type_is_a_broadcast_and_unknown_includes_are_skipped() -> None:
    ad = parse_advertisement({"Includes": Variant("as", ["rsi", "tx-power"])})
    assert ad.type == "broadcast" and ad.includes == ("tx-power",)


def test_intervals_and_tx_power_count_only_with_experimental() -> None:
    props = {"MinInterval": Variant("u", 200), "MaxInterval": Variant("u", 300)}
    assert parse_advertisement(props).min_interval_ms == 0
    assert parse_advertisement(props, experimental=True).min_interval_ms == 200
    with pytest.raises(InvalidAdvertisement, match="MinInterval must be less"):
        parse_advertisement(
            {"MinInterval": Variant("u", 300), "MaxInterval": Variant("u", 200)},
            experimental=True,
        )


@pytest.mark.parametrize("text", ["room-a", "@1,2", "a@1", "a@x,2", "a b@1,2"])
def test_malformed_host_specs_are_refused(text: str) -> None:
    with pytest.raises(ValueError):
        parse_host_spec(text)


def test_host_spec_reads_name_and_metres() -> None:
    spec = parse_host_spec("room-a@-1.5,3")
    assert (spec.name, spec.x, spec.y) == ("room-a", -1.5, 3.0)
