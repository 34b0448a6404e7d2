"""Real bleak scanning and our real BlueZ advertiser against the simulated air."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable

import pytest

from beacon.advertising import BeaconConfig, RotatingBeacon, payload_at
from hw.advertiser import AdvertiserError, AdvertiserUnavailable, AdvertPayload, UnavailableReason
from hw.advertiser.bluez import BlueZAdvertiser
from hw.radio_model import RadioModel
from hw.scanner import AdvertScanner, RawAdvert, ScanEvent, ScanMode, ScanOptions, create_scanner
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
        assert scanner.mode_in_use is ScanMode.PASSIVE
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


async def test_without_an_advertisement_monitor_the_scanner_falls_back_to_active(
    make_air: Callable[..., AirProcess],
    on_host: Callable[[AirProcess, str], None],
    collector: Collector,
) -> None:
    air = make_air(("room-a", 0, 0), ("phone", 2, 0), advertisement_monitor=False)
    on_host(air, "phone")
    now = time.time()
    async with scanning(collector) as scanner, advertising(air, "room-a", KEY_A, now):
        event = await collector.wait_for(heard())
        assert scanner.mode_in_use is ScanMode.ACTIVE
        assert eid_of(event) == eid_at(KEY_A, now, 10)


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


async def test_an_advert_too_long_for_31_bytes_is_refused_with_a_reason(
    make_air: Callable[..., AirProcess],
) -> None:
    air = make_air(("room-a", 0, 0))
    advertiser = BlueZAdvertiser(bus_address=air.bus_address("room-a"))
    payload = payload_at(BeaconConfig(KEY_A, local_name="a-much-too-long-name"), time.time())
    with pytest.raises(AdvertiserError, match="does not fit in 31 bytes"):
        await advertiser.start(payload)
    await advertiser.stop()


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
