"""How fast a scanner hears a beacon, over the simulated air.

Two measurements, each over --trials trials (default 20), with the real BlueZ
advertiser on host "room-a" and the real bleak scanner on host "phone" (2 m away):

* discovery: from the moment a beacon starts advertising (connect, find the adapter,
  register) until the scanner reports an advert with its EID;
* rotation: from the moment the beacon starts re-registering with its next EID until
  the scanner reports the new EID (the rotation loop runs on a fake clock that jumps
  to the next window after a short random real pause, so rotations come fast).

Printed as min / median / p95 next to the configured advertising interval: a scanner
cannot hear a frame before it is sent.  The air sends a new advertisement's first
frame as soon as it is registered, so these figures are the software path
(bluetoothd stand-in, D-Bus, bleak); on real radios add up to one interval and the
scan window's duty cycle.  The air reports like bluetoothd 5.66 (``btogether air
--help``); passive scanning needs its ``--experimental`` (bluetoothd ``-E``), which
this script turns on for ``--mode passive``.

    python bench/discovery.py [--trials 20] [--interval-ms 100] [--mode auto|active|passive]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from beacon.advertising import BeaconConfig, RotatingBeacon, payload_at
from btogether.logs import configure_logging
from hw.advertiser import AdvertPayload
from hw.advertiser.bluez import BlueZAdvertiser
from hw.scanner import RawAdvert, ScanEvent, ScanMode, ScanOptions, create_scanner
from hw.sim.launch import start_air
from relay.protocol.eid import eid_at
from relay.protocol.frame import DEFAULT_COMPANY_ID, decode_manufacturer_data

WAIT_S = 15.0


class EidWatch:
    """Scanner callback that records when each EID was first reported."""

    def __init__(self) -> None:
        self.first_seen: dict[bytes, float] = {}
        self.changed = asyncio.Event()

    def __call__(self, event: ScanEvent) -> None:
        if not isinstance(event, RawAdvert):
            return
        frame = decode_manufacturer_data(event.manufacturer_data)
        if frame is not None and frame.eid not in self.first_seen:
            self.first_seen[frame.eid] = event.monotonic
            self.changed.set()

    async def wait(self, eid: bytes) -> float:
        deadline = time.monotonic() + WAIT_S
        while eid not in self.first_seen:
            self.changed.clear()
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"EID {eid.hex()} not reported within {WAIT_S} s")
            # asyncio.timeout, not wait_for: 3.11's wait_for can swallow a cancellation.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(remaining):
                    await self.changed.wait()
        return self.first_seen[eid]


class TimedAdvertiser:
    """Notes when each start/replace began, so rotation latency starts there."""

    def __init__(self, inner: BlueZAdvertiser, marks: list[float]) -> None:
        self._inner = inner
        self._marks = marks

    async def start(self, payload: AdvertPayload) -> None:
        self._marks.append(time.monotonic())
        await self._inner.start(payload)

    async def replace(self, payload: AdvertPayload) -> None:
        self._marks.append(time.monotonic())
        await self._inner.replace(payload)

    async def stop(self) -> None:
        await self._inner.stop()


def summary(name: str, samples_s: list[float]) -> str:
    ms = sorted(s * 1000 for s in samples_s)
    p95 = ms[min(len(ms) - 1, round(0.95 * (len(ms) - 1)))]
    return (
        f"{name:<34} n={len(ms):<3} min {ms[0]:7.1f} ms   median {statistics.median(ms):7.1f} ms"
        f"   p95 {p95:7.1f} ms"
    )


async def measure(
    args: argparse.Namespace, bus_of: Callable[[str], str]
) -> tuple[list[float], list[float], str]:
    os.environ["DBUS_SYSTEM_BUS_ADDRESS"] = bus_of("phone")
    watch = EidWatch()
    scanner = create_scanner(watch, ScanOptions(DEFAULT_COMPANY_ID, mode=ScanMode(args.mode)))
    await scanner.start()
    rng = random.Random(args.seed)
    discovery: list[float] = []
    rotation: list[float] = []
    try:
        for trial in range(args.trials):
            key = rng.randbytes(16)
            now = time.time()
            advertiser = BlueZAdvertiser(bus_address=bus_of("room-a"))
            started = time.monotonic()
            await advertiser.start(payload_at(BeaconConfig(key), now))
            heard = await watch.wait(eid_at(key, now, 10))
            discovery.append(heard - started)
            await advertiser.stop()
            await asyncio.sleep(rng.uniform(0.05, 0.15))
            del trial

        fake_now = [1_700_000_000.0]
        config = BeaconConfig(rng.randbytes(16), rotation_exponent=2)

        beacon: RotatingBeacon | None = None

        async def sleep(seconds: float) -> None:
            # Rotate only once the current EID was heard, after a random pause, so that
            # every rotation is measured and none starts in phase with the last one.
            if beacon is not None and beacon.current_eid is not None:
                await watch.wait(beacon.current_eid)
            await asyncio.sleep(rng.uniform(0.05, 0.2))
            fake_now[0] += seconds

        marks: list[float] = []
        advertiser = BlueZAdvertiser(bus_address=bus_of("room-a"))
        beacon = RotatingBeacon(
            TimedAdvertiser(advertiser, marks), config, lambda: fake_now[0], sleep
        )
        task = asyncio.ensure_future(beacon.run())
        try:
            window = fake_now[0]
            await watch.wait(eid_at(config.identity_key, window, 2))
            for _ in range(args.trials):
                window += 4
                heard = await watch.wait(eid_at(config.identity_key, window, 2))
                rotation.append(heard - marks[-1])
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            await advertiser.stop()
        mode = str(scanner.mode_in_use)
    finally:
        await scanner.stop()
    return discovery, rotation, mode


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--interval-ms", type=float, default=100.0)
    parser.add_argument("--mode", choices=[m.value for m in ScanMode], default="auto")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--max-seconds", type=float, default=120.0, help="give up after this long")
    args = parser.parse_args()
    configure_logging("warning")
    air = start_air(
        [("room-a", 0, 0), ("phone", 2, 0)],
        interval_s=args.interval_ms / 1000,
        experimental=args.mode == ScanMode.PASSIVE.value,
    )
    try:
        started = time.monotonic()
        discovery, rotation, mode = asyncio.run(
            asyncio.wait_for(measure(args, air.bus_address), args.max_seconds)
        )
        elapsed = time.monotonic() - started
    finally:
        air.stop()
    print(f"advertising interval (configured): {args.interval_ms:g} ms   scan mode: {mode}")
    print(summary("discovery (start -> first report)", discovery))
    print(summary("rotation (re-register -> new EID)", rotation))
    print(f"({elapsed:.1f} s wall time)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
