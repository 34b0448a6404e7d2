"""Real bleak scanning and our real BlueZ advertiser against the simulated air."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable

import pytest
from dbus_fast import BusType, Message, MessageType
from dbus_fast.aio import MessageBus

from beacon.advertising import BeaconConfig, RotatingBeacon, payload_at
from hw.advertiser import AdvertiserError, AdvertiserUnavailable, AdvertPayload, UnavailableReason
from hw.advertiser.bluez import BlueZAdvertiser, advertisement_properties
from hw.radio_model import RadioModel
from hw.scanner import (
    AdvertLost,
    AdvertScanner,
    RawAdvert,
    ScanEvent,
    ScanMode,
    ScannerUnavailable,
    ScanOptions,
    create_scanner,
)
from hw.sim.launch import AirProcess
from relay.protocol.eid import eid_at
from relay.protocol.frame import DEFAULT_COMPANY_ID, decode_manufacturer_data
from tests.radio.conftest import KEY_A, KEY_B, Collector

TX_1M = -59


def eid_of(event: ScanEvent) -> bytes | None:
    if not isinstance(event, RawAdvert):
        return None
    frame = decode_manufacturer_data(event.manufacturer_data)
    return frame.eid if frame else None


def heard(address: str | None = None) -> Callable[[ScanEvent], bool]:
    return lambda e: isinstance(e, RawAdvert) and (address is None or e.address == address)


async def advertise(air: AirProcess, host: str, key: bytes, now: float) -> BlueZAdvertiser:
    advertiser = BlueZAdvertiser(bus_address=air.bus_address(host))
    await advertiser.start(payload_at(BeaconConfig(key), now))
    return advertiser


@contextlib.asynccontextmanager
async def advertising(
    air: AirProcess, host: str, key: bytes, now: float
) -> AsyncIterator[BlueZAdvertiser]:
    advertiser = await advertise(air, host, key, now)
    try:
        yield advertiser
    finally:
        await advertiser.stop()


@contextlib.asynccontextmanager
async def scanning(
    collector: Collector, options: ScanOptions | None = None
) -> AsyncIterator[AdvertScanner]:
    """A started scanner on the host the test process is on (see ``on_host``)."""
    scanner = create_scanner(collector, options or ScanOptions(DEFAULT_COMPANY_ID))
    await scanner.start()
    try:
        yield scanner
    finally:
        await scanner.stop()


async def test_beacon_is_heard_with_its_eid_and_the_rssi_of_its_distance(
    make_air: Callable[..., AirProcess],
    on_host: Callable[[AirProcess, str], None],
    collector: Collector,
) -> None:
    air = make_air(("room-a", 0, 0), ("phone", 4, 0))
    on_host(air, "phone")
    now = time.time()
    async with scanning(collector) as scanner, advertising(air, "room-a", KEY_A, now):
        event = await collector.wait_for(heard())
        assert scanner.mode_in_use is ScanMode.ACTIVE and scanner.reports_every_advert
        assert eid_of(event) == eid_at(KEY_A, now, 10)
        assert isinstance(event, RawAdvert)
        expected = RadioModel().expected_rssi(TX_1M, (0, 0), (4, 0))
        assert event.rssi == round(expected)  # no noise configured: exactly the model


async def test_moving_a_host_away_lowers_the_rssi_and_back_raises_it(
    make_air: Callable[..., AirProcess],
    on_host: Callable[[AirProcess, str], None],
    collector: Collector,
) -> None:
    air = make_air(("room-a", 0, 0), ("phone", 1, 0))
    on_host(air, "phone")
    async with scanning(collector), advertising(air, "room-a", KEY_A, time.time()):
        near = await collector.wait_for(heard())
        assert isinstance(near, RawAdvert)
        await air.amove("phone", 12, 0)
        far = await collector.wait_for(
            lambda e: isinstance(e, RawAdvert) and e.rssi < near.rssi, start=len(collector.events)
        )
        assert isinstance(far, RawAdvert)
        assert far.rssi == round(RadioModel().expected_rssi(TX_1M, (0, 0), (12, 0)))
        await air.amove("phone", 2, 0)
        closer = await collector.wait_for(
            lambda e: isinstance(e, RawAdvert) and e.rssi > far.rssi, start=len(collector.events)
        )
        assert isinstance(closer, RawAdvert) and closer.rssi < near.rssi


async def test_after_a_rotation_the_scanner_reports_the_new_eid(
    make_air: Callable[..., AirProcess],
    on_host: Callable[[AirProcess, str], None],
    collector: Collector,
) -> None:
    air = make_air(("room-a", 0, 0), ("phone", 2, 0))
    on_host(air, "phone")
    # A fake wall clock that jumps to the next window once the current EID was heard.
    fake_now = [1_700_000_000.0]

    async def sleep(seconds: float) -> None:
        current = eid_at(KEY_A, fake_now[0], 4)
        await collector.wait_for(lambda e: eid_of(e) == current)
        await asyncio.sleep(0.1)
        fake_now[0] += seconds

    advertiser = BlueZAdvertiser(bus_address=air.bus_address("room-a"))
    config = BeaconConfig(KEY_A, rotation_exponent=4)
    beacon = RotatingBeacon(advertiser, config, lambda: fake_now[0], sleep)
    async with scanning(collector):
        task = asyncio.ensure_future(beacon.run())
        try:
            first = eid_at(KEY_A, fake_now[0], 4)
            await collector.wait_for(lambda e: eid_of(e) == first)
            second = eid_at(KEY_A, fake_now[0] + 16, 4)
            assert second != first
            await collector.wait_for(lambda e: eid_of(e) == second)
            addresses = {e.address for e in collector.events if isinstance(e, RawAdvert)}
            assert len(addresses) == 1  # same beacon, new EID
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            await advertiser.stop()


async def test_an_rssi_discovery_filter_hides_the_far_beacon(
    make_air: Callable[..., AirProcess],
    on_host: Callable[[AirProcess, str], None],
    collector: Collector,
) -> None:
    air = make_air(("room-a", 0, 0), ("room-b", 30, 0), ("laptop", 1, 0))
    on_host(air, "laptop")
    now = time.time()
    async with (
        scanning(collector, ScanOptions(DEFAULT_COMPANY_ID, min_rssi=-75)) as scanner,
        advertising(air, "room-a", KEY_A, now),
        advertising(air, "room-b", KEY_B, now),
    ):
        assert scanner.mode_in_use is ScanMode.ACTIVE
        await collector.wait_for(lambda e: eid_of(e) == eid_at(KEY_A, now, 10))
        await asyncio.sleep(1.0)  # ten advertising intervals of the far beacon
        eids = {eid_of(e) for e in collector.events}
        assert eid_at(KEY_B, now, 10) not in eids


async def test_passive_scanning_needs_bluetoothd_experimental(
    make_air: Callable[..., AirProcess],
    on_host: Callable[[AirProcess, str], None],
    collector: Collector,
) -> None:
    air = make_air(("room-a", 0, 0), ("phone", 2, 0))
    on_host(air, "phone")
    with pytest.raises(ScannerUnavailable, match="only when started with -E") as caught:
        async with scanning(collector, ScanOptions(DEFAULT_COMPANY_ID, mode=ScanMode.PASSIVE)):
            pass
    assert caught.value.reason == "no-passive-scanning"


async def test_auto_scans_actively_even_where_bluetoothd_offers_monitors(
    make_air: Callable[..., AirProcess],
    on_host: Callable[[AirProcess, str], None],
    collector: Collector,
) -> None:
    air = make_air(("room-a", 0, 0), ("phone", 2, 0), experimental=True)
    on_host(air, "phone")
    now = time.time()
    async with scanning(collector) as scanner, advertising(air, "room-a", KEY_A, now):
        await collector.wait_for(heard())
        assert scanner.mode_in_use is ScanMode.ACTIVE


async def test_a_still_beacon_keeps_being_reported_in_active_mode(
    make_air: Callable[..., AirProcess],
    on_host: Callable[[AirProcess, str], None],
    collector: Collector,
) -> None:
    # No noise: every advert has the same RSSI and data, which bluetoothd signals only
    # because the scanner's filter asks for it (filtered discovery, DuplicateData).
    air = make_air(("room-a", 0, 0), ("phone", 2, 0))
    on_host(air, "phone")
    async with scanning(collector), advertising(air, "room-a", KEY_A, time.time()):
        await collector.wait_for(heard())
        start = len(collector.events)
        await asyncio.sleep(1.0)
        assert len(collector.events) - start >= 5  # ten adverts a second are sent


async def test_passive_scanning_reports_a_known_still_beacon_and_its_loss(
    make_air: Callable[..., AirProcess],
    on_host: Callable[[AirProcess, str], None],
    collector: Collector,
) -> None:
    air = make_air(("room-a", 0, 0), ("phone", 2, 0), experimental=True)
    on_host(air, "phone")
    now = time.time()
    advertiser = await advertise(air, "room-a", KEY_A, now)
    try:
        # BlueZ learns the device from an active scan first: in passive scanning it
        # will not signal it again (same RSSI, same data), only the monitor hears it.
        async with scanning(collector):
            await collector.wait_for(heard())
        collector.events.clear()
        options = ScanOptions(DEFAULT_COMPANY_ID, mode=ScanMode.PASSIVE, lost_after_s=2)
        async with scanning(collector, options) as scanner:
            assert scanner.mode_in_use is ScanMode.PASSIVE and not scanner.reports_every_advert
            event = await collector.wait_for(heard())
            assert eid_of(event) == eid_at(KEY_A, now, 10)
            await asyncio.sleep(3.0)  # longer than the monitor's lost timeout: still there
            assert not any(isinstance(e, AdvertLost) for e in collector.events)
            stopped = time.monotonic()
            await advertiser.stop()
            lost = await collector.wait_for(lambda e: isinstance(e, AdvertLost), timeout=10)
            assert isinstance(lost, AdvertLost) and lost.address == event.address
            assert time.monotonic() - stopped < 2 + 2  # RSSILowTimeout, in whole seconds
    finally:
        await advertiser.stop()


async def test_scanner_ignores_adverts_of_other_companies(
    make_air: Callable[..., AirProcess],
    on_host: Callable[[AirProcess, str], None],
    collector: Collector,
) -> None:
    air = make_air(("room-a", 0, 0), ("room-b", 1, 0), ("phone", 2, 0))
    on_host(air, "phone")
    async with scanning(collector, ScanOptions(DEFAULT_COMPANY_ID, mode=ScanMode.ACTIVE)):
        other = BlueZAdvertiser(bus_address=air.bus_address("room-b"))
        await other.start(AdvertPayload({0x004C: b"\x02\x15" + bytes(21)}))
        try:
            async with advertising(air, "room-a", KEY_A, time.time()):
                await collector.wait_for(heard())
                await asyncio.sleep(0.5)
                assert all(
                    isinstance(e, RawAdvert) and DEFAULT_COMPANY_ID in e.manufacturer_data
                    for e in collector.events
                )
        finally:
            await other.stop()


async def test_registering_an_advert_signals_only_the_instance_counts(
    make_air: Callable[..., AirProcess],
) -> None:
    # add_client_complete emits SupportedInstances and ActiveInstances, nothing else.
    air = make_air(("room-a", 0, 0))
    bus = await MessageBus(bus_address=air.bus_address("room-a"), bus_type=BusType.SYSTEM).connect()
    changes: list[dict[str, object]] = []

    def watch(msg: Message) -> None:
        if msg.member == "PropertiesChanged" and msg.body[0] == "org.bluez.LEAdvertisingManager1":
            changes.append(msg.body[1])

    bus.add_message_handler(watch)
    await bus.call(
        Message(
            destination="org.freedesktop.DBus",
            path="/org/freedesktop/DBus",
            interface="org.freedesktop.DBus",
            member="AddMatch",
            signature="s",
            body=["type='signal',member='PropertiesChanged',path='/org/bluez/hci0'"],
        )
    )
    try:
        advertiser = await advertise(air, "room-a", KEY_A, time.time())
        await advertiser.stop()
        await asyncio.sleep(0.3)
    finally:
        bus.disconnect()
    assert [set(c) for c in changes] == [{"SupportedInstances", "ActiveInstances"}] * 2
    assert [c["ActiveInstances"].value for c in changes] == [1, 0]  # type: ignore[attr-defined]


async def test_an_advert_too_long_for_31_bytes_is_refused_with_a_reason(
    make_air: Callable[..., AirProcess],
) -> None:
    air = make_air(("room-a", 0, 0))
    advertiser = BlueZAdvertiser(bus_address=air.bus_address("room-a"))
    # 3 bytes of Flags + 4 + 25 bytes of manufacturer data: 32.
    payload = AdvertPayload({DEFAULT_COMPANY_ID: bytes(25)}, discoverable=True)
    with pytest.raises(AdvertiserError, match="does not fit in 31 bytes"):
        await advertiser.start(payload)
    await advertiser.stop()


async def test_bluetoothd_refuses_an_overlong_advert_it_is_given_anyway(
    make_air: Callable[..., AirProcess],
) -> None:
    """What our advertiser's own check spares the user: BlueZ's one generic answer."""
    air = make_air(("room-a", 0, 0))
    payload = AdvertPayload({DEFAULT_COMPANY_ID: bytes(25)}, discoverable=True)
    bus = await MessageBus(bus_address=air.bus_address("room-a"), bus_type=BusType.SYSTEM).connect()
    props = advertisement_properties(payload)

    def answer(msg: Message) -> Message | None:
        if msg.member == "GetAll" and msg.path == "/ad":
            return Message.new_method_return(msg, "a{sv}", [props])
        return None

    bus.add_message_handler(answer)
    try:
        reply = await bus.call(
            Message(
                destination="org.bluez",
                path="/org/bluez/hci0",
                interface="org.bluez.LEAdvertisingManager1",
                member="RegisterAdvertisement",
                signature="oa{sv}",
                body=["/ad", {}],
            )
        )
    finally:
        bus.disconnect()
    assert reply is not None and reply.message_type == MessageType.ERROR
    assert reply.error_name == "org.bluez.Error.Failed"
    assert reply.body == ["Failed to parse advertisement."]


async def test_losing_the_bus_mid_run_is_reported_as_unavailable(
    make_air: Callable[..., AirProcess],
) -> None:
    air = make_air(("room-a", 0, 0))
    advertiser = await advertise(air, "room-a", KEY_A, time.time())
    air.stop()
    await asyncio.sleep(0.5)  # let the connection notice that its bus is gone
    with pytest.raises(AdvertiserUnavailable, match="lost the connection") as caught:
        await advertiser.replace(payload_at(BeaconConfig(KEY_A), time.time() + 1024))
    assert caught.value.reason is UnavailableReason.NO_SYSTEM_BUS
    await advertiser.stop()
