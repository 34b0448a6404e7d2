"""A beacon's advertising: our frame with the current EID, re-registered at each rotation.

The frame for a moment is a pure function of the identity key and the time; the loop
around it puts that frame on the air and sleeps until the EID changes.  Wall time and
sleep are passed in, so tests and benchmarks can drive rotations as fast as they like.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import structlog

from hw.advertiser import Advertiser, AdvertPayload
from hw.radio_model import DEFAULT_TX_POWER
from relay.protocol.eid import (
    DEFAULT_ROTATION_EXPONENT,
    check_rotation_exponent,
    eid_at,
    seconds_until_rotation,
)
from relay.protocol.frame import DEFAULT_COMPANY_ID, Frame, encode_frame

# Wake a little after the boundary so the wall clock is surely in the new window.
_ROTATION_MARGIN_S = 0.005
_log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class BeaconConfig:
    """Who the beacon is (identity key) and how it advertises."""

    identity_key: bytes
    rotation_exponent: int = DEFAULT_ROTATION_EXPONENT
    tx_power: int = DEFAULT_TX_POWER
    company_id: int = DEFAULT_COMPANY_ID
    local_name: str | None = None

    def __post_init__(self) -> None:
        check_rotation_exponent(self.rotation_exponent)
        Frame(bytes(8), self.tx_power, self.rotation_exponent)  # validates tx power


def frame_at(config: BeaconConfig, unix_time: float) -> Frame:
    return Frame(
        eid=eid_at(config.identity_key, unix_time, config.rotation_exponent),
        tx_power=config.tx_power,
        rotation_exponent=config.rotation_exponent,
    )


def payload_at(config: BeaconConfig, unix_time: float) -> AdvertPayload:
    """What the beacon puts on the air at ``unix_time``."""
    return AdvertPayload(
        manufacturer_data={config.company_id: encode_frame(frame_at(config, unix_time))},
        local_name=config.local_name,
        # Discoverable, so that unfiltered scans (`bluetoothctl scan on`) list the room.
        discoverable=True,
    )


@dataclass(frozen=True, slots=True)
class Rotation:
    """The beacon started advertising a new EID."""

    eid: bytes
    wall: float
    valid_for_s: float


class RotatingBeacon:
    """Keeps the current EID on the air until cancelled."""

    def __init__(
        self,
        advertiser: Advertiser,
        config: BeaconConfig,
        wall_time: Callable[[], float],
        sleep: Callable[[float], Awaitable[None]],
        on_rotation: Callable[[Rotation], None] | None = None,
    ) -> None:
        self._advertiser = advertiser
        self._config = config
        self._wall_time = wall_time
        self._sleep = sleep
        self._on_rotation = on_rotation
        self.current_eid: bytes | None = None

    async def run(self) -> None:
        """Advertise, rotating forever; the caller cancels it and stops the advertiser."""
        k = self._config.rotation_exponent
        while True:
            now = self._wall_time()
            eid = eid_at(self._config.identity_key, now, k)
            if eid != self.current_eid:
                payload = payload_at(self._config, now)
                if self.current_eid is None:
                    await self._advertiser.start(payload)
                else:
                    await self._advertiser.replace(payload)
                self.current_eid = eid
                rotation = Rotation(eid, now, seconds_until_rotation(now, k))
                _log.info("eid_rotated", eid=eid.hex(), valid_for_s=round(rotation.valid_for_s, 3))
                if self._on_rotation is not None:
                    self._on_rotation(rotation)
            await self._sleep(seconds_until_rotation(self._wall_time(), k) + _ROTATION_MARGIN_S)
