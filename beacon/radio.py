"""Switches the rotating EID advert on and off, and keeps it on through radio failures.

While on, a :class:`~beacon.advertising.RotatingBeacon` runs; if the advertiser fails
(BlueZ restarting, adapter powered off) the failure is logged and advertising is tried
again after ``retry_s``, for as long as it should be on.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

import structlog

from beacon.advertising import BeaconConfig, RotatingBeacon, Rotation
from hw.advertiser import Advertiser, AdvertiserError

_log = structlog.get_logger(__name__)


class AdvertisingSwitch:
    def __init__(
        self,
        advertiser: Advertiser,
        config: BeaconConfig,
        *,
        retry_s: float,
        wall_time: Callable[[], float],
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        on_rotation: Callable[[Rotation], None] | None = None,
    ) -> None:
        self._advertiser = advertiser
        self._config = config
        self._retry_s = retry_s
        self._wall_time = wall_time
        self._sleep = sleep
        self._on_rotation = on_rotation
        self._task: asyncio.Task[None] | None = None
        self.eid: bytes | None = None
        self.error: str | None = None

    @property
    def on(self) -> bool:
        return self._task is not None

    async def set(self, on: bool) -> None:
        if on and self._task is None:
            self._task = asyncio.create_task(self._keep_on_air(), name="advertising")
            _log.info("advertising_on")
        elif not on and self._task is not None:
            task, self._task = self._task, None
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            await self._stop_advertiser()
            self.eid = None
            _log.info("advertising_off")

    async def _keep_on_air(self) -> None:
        while True:
            beacon = RotatingBeacon(
                self._advertiser, self._config, self._wall_time, self._sleep, self._rotated
            )
            try:
                await beacon.run()
            except Exception as exc:  # a radio failure is retried, never fatal
                self.error = str(exc) or type(exc).__name__
                self.eid = None
                _log.error("advertising_failed", error=str(exc), retry_in_s=self._retry_s)
                await self._stop_advertiser()
                await self._sleep(self._retry_s)

    def _rotated(self, rotation: Rotation) -> None:
        self.eid = rotation.eid
        self.error = None
        if self._on_rotation is not None:
            self._on_rotation(rotation)

    async def _stop_advertiser(self) -> None:
        try:
            await self._advertiser.stop()
        except AdvertiserError as exc:
            _log.warning("advertising_stop_failed", error=str(exc))
