"""The Linux session locker (phone / room device side) against the logind stand-in."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from hw.dbus_daemon import PrivateBus, start_private_bus
from hw.lock import (
    LockBackendError,
    LockBusConfig,
    LockOutcome,
    UnsupportedPlatformError,
    create_session_locker,
)
from hw.lock.linux import LogindSessionLocker
from hw.standin.logind import LogindStandIn, SessionSpec


async def test_lock_and_unlock_take_effect_on_a_desktop_that_sets_the_hint(
    system_bus: PrivateBus,
) -> None:
    async with (
        LogindStandIn(system_bus.address, desktop_sets_hint=True) as logind,
        LogindSessionLocker(LockBusConfig(system_bus.address)) as locker,
    ):
        assert await locker.is_locked() is False
        assert await locker.lock() == LockOutcome(locked=True, confirmed=True)
        assert logind.session().locked_hint is True
        assert await locker.is_locked() is True
        assert await locker.unlock() == LockOutcome(locked=False, confirmed=True)
        assert logind.session().locked_hint is False
        assert (logind.session().lock_calls, logind.session().unlock_calls) == (1, 1)


async def test_unconfirmed_lock_is_sent_but_reported_as_unconfirmed(
    system_bus: PrivateBus,
) -> None:
    async with LogindStandIn(system_bus.address) as logind:
        config = LockBusConfig(system_bus.address)
        async with LogindSessionLocker(config, confirm_timeout=0.2) as locker:
            assert await locker.lock() == LockOutcome(locked=True, confirmed=False)
            assert logind.session().lock_calls == 1


async def test_locker_locks_only_its_own_session(system_bus: PrivateBus) -> None:
    sessions = (SessionSpec("1"), SessionSpec("2"))
    async with LogindStandIn(system_bus.address, sessions, desktop_sets_hint=True) as logind:
        config = LockBusConfig(system_bus.address, session_id="2")
        async with LogindSessionLocker(config) as locker:
            assert (await locker.lock()).confirmed
        assert logind.session("2").locked_hint is True
        assert logind.session("1").locked_hint is False


async def test_locker_reconnects_after_logind_and_the_bus_restart(tmp_path: Path) -> None:
    first = start_private_bus(tmp_path, name="system")
    try:
        async with LogindStandIn(first.address, desktop_sets_hint=True):
            locker = LogindSessionLocker(LockBusConfig(first.address))
            await locker.start()
            assert (await locker.lock()).confirmed
    finally:
        first.stop()
    # Same socket path, a new dbus-daemon and a new logind: the next call reconnects.
    with start_private_bus(tmp_path, name="system") as second:
        async with LogindStandIn(second.address, desktop_sets_hint=True) as logind:
            for _ in range(50):
                if locker._bus is not None and not locker._bus.connected:
                    break
                await asyncio.sleep(0.02)
            assert (await locker.lock()).confirmed
            assert logind.session().lock_calls == 1
        await locker.stop()


async def test_locker_without_logind_is_a_clear_error(system_bus: PrivateBus) -> None:
    with pytest.raises(LockBackendError, match="logind has no session"):
        await LogindSessionLocker(LockBusConfig(system_bus.address)).start()
    with pytest.raises(LockBackendError, match="not started"):
        await LogindSessionLocker(LockBusConfig(system_bus.address)).lock()


def test_locker_on_other_platforms_says_not_supported() -> None:
    with pytest.raises(UnsupportedPlatformError, match="not supported on Windows"):
        create_session_locker(LockBusConfig(), system="Windows")
