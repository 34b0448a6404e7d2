"""Fixtures for the OS-facing pieces: private system and session buses, lock stand-ins."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator

import pytest

from hw.dbus_daemon import PrivateBus, start_private_bus
from hw.lock import LockEvent


@pytest.fixture
def system_bus() -> Iterator[PrivateBus]:
    with start_private_bus(name="system", bus_type="system") as bus:
        yield bus


@pytest.fixture
def session_bus() -> Iterator[PrivateBus]:
    with start_private_bus(name="session", bus_type="session") as bus:
        yield bus


class EventReader:
    """Reads a lock watcher's event stream with timeouts, so a missing event fails fast."""

    def __init__(self, events: AsyncIterator[LockEvent]) -> None:
        self._events = events

    async def next(self, timeout: float = 3.0) -> LockEvent:
        return await asyncio.wait_for(anext(self._events), timeout)

    async def nothing_within(self, seconds: float) -> None:
        try:
            event = await asyncio.wait_for(anext(self._events), seconds)
        except TimeoutError:
            return
        raise AssertionError(f"unexpected lock event {event}")
