"""The shared air: where each simulated host stands, and who hears whose adverts.

Every registered advertisement is aired every advertising interval (plus BLE's random
0–10 ms advDelay) to every other powered host, at an RSSI drawn from the path-loss
model for the current distance; each host's :class:`~hw.sim.bluez.HostBluez` then
decides, like bluetoothd, whether a scanning client gets to hear it.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import structlog
from dbus_fast import BusType
from dbus_fast.aio import MessageBus

from hw.dbus_daemon import PrivateBus, start_private_bus
from hw.radio_model import DEFAULT_TX_POWER, RadioModel
from hw.sim.advertising import Transmission
from hw.sim.bluez import HostBluez

DEFAULT_INTERVAL_S = 0.1  # the iBeacon-recommended advertising interval
DEFAULT_DEVICE_TIMEOUT_S = 30.0  # bluetoothd's TemporaryTimeout (main.c DEFAULT_TEMPORARY_TIMEOUT)
DEFAULT_SENSITIVITY_DBM = -100  # a typical BLE receiver's floor
ADV_DELAY_MAX_S = 0.010

_HOST_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,31}$")
_log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class HostSpec:
    """A host to simulate: its name and where it stands (metres)."""

    name: str
    x: float
    y: float


def parse_host_spec(text: str) -> HostSpec:
    """``NAME@X,Y`` → HostSpec, with a message that says what is wrong."""
    name, at, position = text.partition("@")
    if not at:
        raise ValueError(f"host {text!r} must look like NAME@X,Y (e.g. room-a@0,0)")
    if not _HOST_NAME.match(name):
        raise ValueError(
            f"host name {name!r} must be 1-32 letters, digits, '.', '_' or '-' "
            "and start with a letter or digit"
        )
    parts = position.split(",")
    if len(parts) != 2:
        raise ValueError(f"host {text!r}: position must be X,Y in metres")
    try:
        x, y = float(parts[0]), float(parts[1])
    except ValueError:
        raise ValueError(f"host {text!r}: X and Y must be numbers (metres)") from None
    return HostSpec(name, x, y)


@dataclass(frozen=True, slots=True)
class AirConfig:
    """How the air behaves; everything a run needs besides the hosts."""

    noise_db: float = 0.0
    seed: int = 0
    interval_s: float = DEFAULT_INTERVAL_S
    device_timeout_s: float = DEFAULT_DEVICE_TIMEOUT_S
    tx_power_1m: int = DEFAULT_TX_POWER
    path_loss_exponent: float = 2.0
    sensitivity_dbm: int = DEFAULT_SENSITIVITY_DBM
    experimental: bool = False  # bluetoothd -E: AdvertisementMonitorManager1 and more


class Air:
    """Positions, airing tasks and delivery; one per simulated floor."""

    def __init__(
        self,
        config: AirConfig,
        rng: random.Random,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._config = config
        self._model = RadioModel(
            path_loss_exponent=config.path_loss_exponent, noise_db=config.noise_db
        )
        self._rng = rng
        self._now = monotonic
        self._positions: dict[str, tuple[float, float]] = {}
        self._hosts: dict[str, HostBluez] = {}
        self._airing: dict[tuple[str, tuple[str, str]], asyncio.Task[None]] = {}

    def add_host(self, spec: HostSpec, bluez: HostBluez) -> None:
        self._positions[spec.name] = (spec.x, spec.y)
        self._hosts[spec.name] = bluez

    # AirLink ---------------------------------------------------------------------

    def start_airing(self, host: str, key: tuple[str, str], transmission: Transmission) -> None:
        self.stop_airing(host, key)
        task = asyncio.get_running_loop().create_task(self._air(host, transmission))
        self._airing[(host, key)] = task

    def stop_airing(self, host: str, key: tuple[str, str]) -> None:
        task = self._airing.pop((host, key), None)
        if task is not None:
            task.cancel()

    def move_host(self, name: str, x: float, y: float) -> None:
        if name not in self._positions:
            raise KeyError(name)
        self._positions[name] = (x, y)
        _log.info("host_moved", host=name, x=x, y=y)

    def host_positions(self) -> list[tuple[str, float, float]]:
        return [(name, x, y) for name, (x, y) in self._positions.items()]

    # delivery --------------------------------------------------------------------

    async def _air(self, host: str, transmission: Transmission) -> None:
        while True:
            self.deliver(host, transmission)
            delay = transmission.interval_s + self._rng.uniform(0.0, ADV_DELAY_MAX_S)
            await asyncio.sleep(delay)

    def deliver(self, source: str, transmission: Transmission) -> None:
        """One advertising event: every other powered host within range hears it."""
        sender = self._hosts[source]
        if not sender.powered:
            return
        origin = self._positions[source]
        for name, receiver in self._hosts.items():
            if name == source or not receiver.powered:
                continue
            rssi = self._model.sample_rssi(
                self._config.tx_power_1m, origin, self._positions[name], self._rng
            )
            if rssi < self._config.sensitivity_dbm:
                continue
            receiver.receive(transmission, rssi)

    async def close(self) -> None:
        tasks = list(self._airing.values())
        self._airing.clear()
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task


async def run_air(
    hosts: Sequence[HostSpec],
    config: AirConfig,
    stop: asyncio.Event,
    on_ready: Callable[[str, str], None],
) -> None:
    """Start a bus and a BlueZ per host, report each as ready, run until ``stop`` is set."""
    names = [h.name for h in hosts]
    if len(set(names)) != len(names):
        raise ValueError("host names must be unique")
    rng = random.Random(config.seed)
    air = Air(config, rng)
    buses: list[PrivateBus] = []
    bluezes: list[HostBluez] = []
    try:
        for spec in hosts:
            private = await asyncio.to_thread(start_private_bus, None, spec.name)
            buses.append(private)
            bus = await MessageBus(bus_address=private.address, bus_type=BusType.SYSTEM).connect()
            bluez = HostBluez(
                host=spec.name,
                bus=bus,
                air=air,
                monotonic=time.monotonic,
                device_timeout_s=config.device_timeout_s,
                interval_s=config.interval_s,
                experimental=config.experimental,
                scan_phase_s=rng.uniform(0.0, 1.0),
            )
            await bluez.start()
            bluezes.append(bluez)
            air.add_host(spec, bluez)
            _log.info("host_ready", host=spec.name, address=private.address)
            on_ready(spec.name, private.address)
        await stop.wait()
    finally:
        await air.close()
        for bluez in bluezes:
            with contextlib.suppress(Exception):
                await bluez.close()
        for private in buses:
            private.stop()
