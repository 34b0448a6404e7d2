"""Is a beacon that keeps advertising ever reported lost, and how fast is one that stops?

    ./dev.sh bench presence [--seconds 300] [--modes auto,active,passive] [--noise-db 0]

One ``btogether beacon advertise`` on host room-a and one ``btogether client scan
--json`` per scan mode on its own host 2 m away, all real processes over the simulated
air (a stock bluetoothd; an ``--experimental`` one for passive scanning, as passive
needs bluetoothd's ``-E``).  For ``--seconds`` the beacon keeps advertising: every
``lost`` a scan prints then is a false loss.  Then the beacon is stopped (SIGTERM) and
the time until each scan reports it lost is measured.  No noise by default: a still
beacon at a constant RSSI is the case where bluetoothd signals least.

The documented bounds: active scanning (auto, active) reports a beacon lost when no
advert has been heard for ``--lost-after`` (10 s); passive scanning when BlueZ's
advertisement monitor says so, after ``--lost-after`` whole seconds without an advert.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]

sys.path.insert(0, str(_HERE.parent))

from bench.common import machine  # noqa: E402
from hw.sim.launch import AirProcess, start_air  # noqa: E402

KEY = "000102030405060708090a0b0c0d0e0f"


@dataclass
class ScanRun:
    mode: str
    process: asyncio.subprocess.Process
    events: list[tuple[float, dict[str, object]]] = field(default_factory=list)

    async def read(self) -> None:
        assert self.process.stdout is not None
        while line := await self.process.stdout.readline():
            self.events.append((time.monotonic(), json.loads(line)))

    def count(self, kind: str, before: float = float("inf")) -> int:
        return sum(1 for t, e in self.events if e["event"] == kind and t < before)

    def lost_after(self, stopped: float) -> float | None:
        return next(
            (t - stopped for t, e in self.events if e["event"] == "lost" and t >= stopped), None
        )


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "btogether.cli", "--log-level", "warning", *args]


async def _spawn(env: dict[str, str], *args: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        *_cli(*args),
        env={**os.environ, **env},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )


async def measure(args: argparse.Namespace, airs: dict[str, AirProcess]) -> list[str]:
    beacons = []
    for air in {id(a): a for a in airs.values()}.values():
        beacon = await _spawn(
            air.env("room-a"), "beacon", "advertise", "--key", KEY, "--name", "room-a"
        )
        assert beacon.stdout is not None
        await asyncio.wait_for(beacon.stdout.readline(), 30)  # "EID …": on the air
        beacons.append(beacon)
    runs = []
    for mode, air in airs.items():
        scan = await _spawn(
            air.env(f"laptop-{mode}"),
            "client", "scan", "--json", "--mode", mode, "--key", f"room-a={KEY}",
            "--lost-after", f"{args.lost_after:g}",
        )  # fmt: skip
        runs.append(ScanRun(mode, scan))
    readers = [asyncio.ensure_future(run.read()) for run in runs]
    started = time.monotonic()
    await asyncio.sleep(args.seconds)
    stopped = time.monotonic()
    for beacon in beacons:
        beacon.send_signal(signal.SIGTERM)
        await beacon.wait()
    deadline = stopped + args.lost_after + 40
    while time.monotonic() < deadline and any(r.lost_after(stopped) is None for r in runs):
        await asyncio.sleep(0.1)
    for run in runs:
        run.process.send_signal(signal.SIGINT)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(run.process.wait(), 10)
    for reader in readers:
        reader.cancel()
    lines = [
        machine(),
        f"beacon advertising for {stopped - started:.0f} s, noise {args.noise_db:g} dB, "
        f"lost after {args.lost_after:g} s without an advert",
        "baseline: the documented bounds, 0 losses while advertising and a loss "
        f"{args.lost_after:g} s after the last advert (whole seconds, for passive)",
        "",
        "| scan mode | new | changes | lost while advertising | lost after stop |",
        "|---|---:|---:|---:|---:|",
    ]
    for run in runs:
        after = run.lost_after(stopped)
        lines.append(
            f"| {run.mode} | {run.count('new', stopped)} | {run.count('change', stopped)} "
            f"| {run.count('lost', stopped)} | "
            + ("never" if after is None else f"{after:.1f} s")
            + " |"
        )
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=300.0)
    parser.add_argument("--modes", default="auto,active,passive")
    parser.add_argument("--noise-db", type=float, default=0.0)
    parser.add_argument("--lost-after", type=float, default=10.0)
    args = parser.parse_args()
    modes = args.modes.split(",")
    stock_modes = [m for m in modes if m != "passive"]
    airs: dict[str, AirProcess] = {}
    started: list[AirProcess] = []
    try:
        if stock_modes:
            stock = start_air(
                [("room-a", 0, 0), *((f"laptop-{m}", 2, 0) for m in stock_modes)],
                noise_db=args.noise_db,
                seed=1,
            )
            started.append(stock)
            airs.update(dict.fromkeys(stock_modes, stock))
        if "passive" in modes:
            experimental = start_air(
                [("room-a", 0, 0), ("laptop-passive", 2, 0)],
                noise_db=args.noise_db,
                seed=2,
                experimental=True,
            )
            started.append(experimental)
            airs["passive"] = experimental
        lines = asyncio.run(measure(args, airs))
    finally:
        for air in started:
            air.stop()
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
