"""Fixtures for the OS-facing pieces: private system and session buses, lock stand-ins."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import AsyncIterator, Iterator

import pytest

from hw.dbus_daemon import PrivateBus, start_private_bus
from hw.lock import LockEvent
from hw.standin.pulseaudio import (
    HeadlessPulseAudio,
    PulseAudioUnavailable,
    start_headless_pulseaudio,
)


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


@pytest.fixture
def pulse() -> Iterator[HeadlessPulseAudio]:
    """A headless PulseAudio with a laptop's and a desk phone's null devices."""
    if shutil.which("pacat") is None:
        pytest.skip("pacat is missing (Debian: pulseaudio-utils); the tests need running streams")
    try:
        server = start_headless_pulseaudio(
            sinks=("laptop_speaker", "phone_speaker", "headset"),
            sources=("laptop_mic", "phone_mic"),
        )
    except PulseAudioUnavailable as exc:
        pytest.skip(f"this machine cannot run PulseAudio: {exc}")
    with server:
        yield server
