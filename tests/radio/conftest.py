"""Fixtures for the radio tests: a simulated air, programs run "on" its hosts, waiting."""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field

import pytest

from hw.scanner import ScanEvent
from hw.sim.launch import AirProcess, start_air

KEY_A = bytes.fromhex("000102030405060708090a0b0c0d0e0f")
KEY_B = bytes.fromhex("f0e0d0c0b0a090807060504030201000")
INTERVAL_S = 0.1


@pytest.fixture
def make_air() -> Iterator[Callable[..., AirProcess]]:
    """Start an air with the given hosts (short advertising interval); stopped at the end."""
    started: list[AirProcess] = []

    def make(*hosts: tuple[str, float, float], **kwargs: object) -> AirProcess:
        kwargs.setdefault("interval_s", INTERVAL_S)
        air = start_air(hosts, **kwargs)  # type: ignore[arg-type]
        started.append(air)
        return air

    yield make
    for air in started:
        air.stop()


@pytest.fixture
def on_host(
    monkeypatch: pytest.MonkeyPatch, make_air: Callable[..., AirProcess]
) -> Callable[[AirProcess, str], None]:
    """Put this test process (its bleak scanner) on a host of the air."""

    def put(air: AirProcess, name: str) -> None:
        monkeypatch.setenv("DBUS_SYSTEM_BUS_ADDRESS", air.bus_address(name))

    return put


@dataclass
class Collector:
    """Scan events as they arrive, with a way to wait for one that matches."""

    events: list[ScanEvent] = field(default_factory=list)
    _changed: asyncio.Event = field(default_factory=asyncio.Event)

    def __call__(self, event: ScanEvent) -> None:
        self.events.append(event)
        self._changed.set()

    async def wait_for(
        self, predicate: Callable[[ScanEvent], bool], timeout: float = 15.0, start: int = 0
    ) -> ScanEvent:
        deadline = time.monotonic() + timeout
        seen = start
        while True:
            for event in self.events[seen:]:
                if predicate(event):
                    return event
            seen = len(self.events)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"no matching scan event within {timeout} s")
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(remaining):
                    await self._changed.wait()


@pytest.fixture
def collector() -> Collector:
    return Collector()


def host_env(
    air: AirProcess | None, name: str | None, address: str | None = None
) -> dict[str, str]:
    env = dict(os.environ)
    env["DBUS_SYSTEM_BUS_ADDRESS"] = address if address is not None else air.bus_address(name)  # type: ignore[union-attr,arg-type]
    return env


@pytest.fixture
async def processes() -> AsyncIterator[list[asyncio.subprocess.Process]]:
    """Subprocesses a test starts; killed at the end if still running."""
    started: list[asyncio.subprocess.Process] = []
    yield started
    for proc in started:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
