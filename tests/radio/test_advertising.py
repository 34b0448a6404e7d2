"""The beacon's rotation loop, driven by a fake clock against a recording advertiser."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from beacon.advertising import BeaconConfig, RotatingBeacon, Rotation, payload_at
from hw.advertiser import AdvertPayload
from relay.protocol.eid import eid_at
from relay.protocol.frame import decode_manufacturer_data
from tests.radio.conftest import KEY_A

T0 = 1_700_000_000.0  # the start of a 2**4 s window


class RecordingAdvertiser:
    def __init__(self) -> None:
        self.calls: list[tuple[str, AdvertPayload]] = []

    async def start(self, payload: AdvertPayload) -> None:
        self.calls.append(("start", payload))

    async def replace(self, payload: AdvertPayload) -> None:
        self.calls.append(("replace", payload))

    async def stop(self) -> None:
        self.calls.append(("stop", AdvertPayload({})))


def test_payload_carries_the_frame_of_the_current_window() -> None:
    config = BeaconConfig(KEY_A, rotation_exponent=4, tx_power=-62, local_name="ra")
    payload = payload_at(config, T0 + 3)
    frame = decode_manufacturer_data(payload.manufacturer_data)
    assert frame is not None
    assert frame.eid == eid_at(KEY_A, T0, 4) and frame.tx_power == -62
    assert frame.rotation_exponent == 4 and payload.local_name == "ra"


def test_config_refuses_out_of_range_values() -> None:
    with pytest.raises(ValueError):
        BeaconConfig(KEY_A, rotation_exponent=16)
    with pytest.raises(ValueError):
        BeaconConfig(KEY_A, tx_power=40)


async def test_beacon_registers_once_then_replaces_at_each_rotation() -> None:
    now = [T0 + 10.0]
    sleeps: list[float] = []

    async def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        now[0] += seconds
        if len(sleeps) >= 3:
            await asyncio.Event().wait()  # park: the test has seen enough
        await asyncio.sleep(0)

    advertiser = RecordingAdvertiser()
    rotations: list[Rotation] = []
    beacon = RotatingBeacon(
        advertiser,
        BeaconConfig(KEY_A, rotation_exponent=4),
        lambda: now[0],
        sleep,
        rotations.append,
    )
    task = asyncio.ensure_future(beacon.run())
    await asyncio.sleep(0.05)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    assert [kind for kind, _ in advertiser.calls] == ["start", "replace", "replace"]
    assert pytest.approx(sleeps[0], abs=0.01) == 6.0  # until the window ends at T0 + 16
    assert [r.eid for r in rotations] == [
        eid_at(KEY_A, T0, 4),
        eid_at(KEY_A, T0 + 16, 4),
        eid_at(KEY_A, T0 + 32, 4),
    ]
