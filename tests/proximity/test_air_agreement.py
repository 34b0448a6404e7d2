"""The in-process advert model agrees with the simulated air for the same geometry.

The air re-delivers real adverts through a simulated BlueZ to an unmodified bleak
scanner; the scorer draws from client.proximity.advert_model instead, to run an hour in seconds.
Both must mean the same physics: per-device RSSI mean and spread, and advert rate.
"""

from __future__ import annotations

import asyncio
import random
import shutil
import statistics
import time

import pytest

from beacon.advertising import BeaconConfig, payload_at
from client.proximity.advert_model import scenario_adverts
from client.proximity.scenario import parse_scenario
from hw.advertiser.bluez import BlueZAdvertiser
from hw.radio_model import RadioModel
from hw.scanner import RawAdvert, ScanEvent, ScanMode, ScanOptions, create_scanner
from hw.sim.launch import start_air
from relay.protocol.eid import eids_around
from relay.protocol.frame import DEFAULT_COMPANY_ID, decode_manufacturer_data

KEYS = {
    "room-a": bytes.fromhex("000102030405060708090a0b0c0d0e0f"),
    "room-b": bytes.fromhex("f0e0d0c0b0a090807060504030201000"),
}
POSITIONS = {"room-a": (0.0, 0.0), "room-b": (5.0, 0.0), "laptop": (2.0, 0.0)}
NOISE_DB = 4.0
INTERVAL_S = 0.05
LISTEN_S = 4.0

SAME_FLOOR = f"""
[radio]
path_loss_exponent = 2.0
noise_db = {NOISE_DB}
advert_interval_ms = {INTERVAL_S * 1000:g}
seed = 1

[[room]]
name = "room-a"
x = 0
y = 0

[[room]]
name = "room-b"
x = 5
y = 0

[[laptop]]
path = [{{t = 0, x = 2, y = 0}}, {{t = 600, x = 2, y = 0}}]
room_at = [{{t = 0, room = "room-a"}}]
"""

pytestmark = pytest.mark.skipif(shutil.which("dbus-daemon") is None, reason="needs dbus-daemon")


async def test_rssi_statistics_from_the_air_match_the_in_process_model(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    air = start_air(
        [(name, x, y) for name, (x, y) in POSITIONS.items()],
        noise_db=NOISE_DB,
        seed=7,
        interval_s=INTERVAL_S,
    )
    heard: dict[str, list[int]] = {"room-a": [], "room-b": []}
    now = time.time()
    owner = {w.eid: name for name, key in KEYS.items() for w in eids_around(key, now, 10)}

    def on_event(event: ScanEvent) -> None:
        if isinstance(event, RawAdvert):
            frame = decode_manufacturer_data(event.manufacturer_data)
            if frame is not None and frame.eid in owner:
                heard[owner[frame.eid]].append(event.rssi)

    try:
        monkeypatch.setenv("DBUS_SYSTEM_BUS_ADDRESS", air.bus_address("laptop"))
        scanner = create_scanner(on_event, ScanOptions(DEFAULT_COMPANY_ID, mode=ScanMode.ACTIVE))
        await scanner.start()
        advertisers = []
        for name, key in KEYS.items():
            advertiser = BlueZAdvertiser(bus_address=air.bus_address(name))
            await advertiser.start(payload_at(BeaconConfig(key), now))
            advertisers.append(advertiser)
        await asyncio.sleep(0.5)  # let both start
        for samples in heard.values():
            samples.clear()
        await asyncio.sleep(LISTEN_S)
        counts = {name: len(samples) for name, samples in heard.items()}
        for advertiser in advertisers:
            await advertiser.stop()
        await scanner.stop()
    finally:
        air.stop()

    scenario = parse_scenario(SAME_FLOOR)
    model: dict[str, list[int]] = {"room-a": [], "room-b": []}
    for advert in scenario_adverts(scenario, random.Random(1)):
        model[advert.device].append(advert.rssi)
    radio = RadioModel(noise_db=NOISE_DB)
    for name, samples in heard.items():
        expected_count = LISTEN_S / (INTERVAL_S + 0.005)
        assert counts[name] >= 0.6 * expected_count, (name, counts)
        assert counts[name] <= 1.2 * expected_count, (name, counts)
        expected = radio.expected_rssi(-59, POSITIONS[name], POSITIONS["laptop"])
        air_mean, model_mean = statistics.fmean(samples), statistics.fmean(model[name])
        tolerance = 4 * NOISE_DB / len(samples) ** 0.5  # four standard errors
        assert model_mean == pytest.approx(expected, abs=0.3)
        assert air_mean == pytest.approx(model_mean, abs=tolerance), (name, air_mean)
        air_sd, model_sd = statistics.stdev(samples), statistics.stdev(model[name])
        assert model_sd == pytest.approx(NOISE_DB, abs=0.2)
        assert air_sd == pytest.approx(model_sd, rel=0.3), (name, air_sd)
        assert all(isinstance(v, int) for v in samples)  # whole dBm, as HCI reports
    gap_air = statistics.fmean(heard["room-a"]) - statistics.fmean(heard["room-b"])
    gap_model = statistics.fmean(model["room-a"]) - statistics.fmean(model["room-b"])
    assert gap_air == pytest.approx(gap_model, abs=2.5)
