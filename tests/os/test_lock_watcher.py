"""The Linux screen-lock watcher against logind and screensaver stand-ins on private buses."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator

import pytest
from dbus_fast import BusType, Message, MessageType
from dbus_fast.aio import MessageBus

from hw.dbus_daemon import PrivateBus
from hw.lock import (
    LockBackendError,
    LockBusConfig,
    LockSource,
    UnsupportedPlatformError,
    create_lock_watcher,
)
from hw.lock.linux import LogindLockWatcher
from hw.standin.desktop import desktop_lock, screensaver_set_active
from hw.standin.logind import LogindStandIn, SessionSpec, session_object_path
from hw.standin.screensaver import ScreenSaverFlavour, ScreenSaverStandIn
from tests.os.conftest import EventReader


def _config(system: PrivateBus, session: PrivateBus | None = None, **kw: str) -> LockBusConfig:
    return LockBusConfig(
        system_bus_address=system.address,
        session_bus_address=None if session is None else session.address,
        **kw,
    )


async def _watch(watcher: LogindLockWatcher) -> AsyncIterator[EventReader]:
    await watcher.start()
    try:
        yield EventReader(watcher.events())
    finally:
        await watcher.stop()


async def test_desktop_lock_through_logind_is_reported_once(system_bus: PrivateBus) -> None:
    async with LogindStandIn(system_bus.address) as logind:
        watcher = LogindLockWatcher(_config(system_bus), request_grace=0.2)
        async for reader in _watch(watcher):
            initial = await reader.next()
            assert (initial.locked, initial.initial) == (False, True)

            await desktop_lock(system_bus.address)  # Lock() request, then LockedHint=true
            event = await reader.next()
            assert (event.locked, event.source) == (True, LockSource.LOGIND_LOCKED_HINT)
            # The Lock request must not be reported a second time after its grace period.
            await reader.nothing_within(0.5)
            assert watcher.locked is True

            logind.desktop_unlock()
            event = await reader.next()
            assert (event.locked, event.source) == (False, LockSource.LOGIND_LOCKED_HINT)


@pytest.mark.parametrize("flavour", list(ScreenSaverFlavour))
async def test_screensaver_alone_reports_lock_and_unlock(
    system_bus: PrivateBus, session_bus: PrivateBus, flavour: ScreenSaverFlavour
) -> None:
    async with (
        LogindStandIn(system_bus.address),
        ScreenSaverStandIn(session_bus.address, flavour),
    ):
        watcher = LogindLockWatcher(_config(system_bus, session_bus), request_grace=0.2)
        async for reader in _watch(watcher):
            assert watcher.watching_screensaver
            assert (await reader.next()).initial
            await screensaver_set_active(session_bus.address, True, flavour)
            event = await reader.next()
            assert event.locked is True
            assert event.source == LockSource(flavour.bus_name)
            await screensaver_set_active(session_bus.address, False, flavour)
            assert (await reader.next()).locked is False


async def test_hint_and_screensaver_confirming_the_same_lock_give_one_event(
    system_bus: PrivateBus, session_bus: PrivateBus
) -> None:
    async with (
        LogindStandIn(system_bus.address) as logind,
        ScreenSaverStandIn(session_bus.address, ScreenSaverFlavour.GNOME) as saver,
    ):
        watcher = LogindLockWatcher(_config(system_bus, session_bus), request_grace=0.2)
        async for reader in _watch(watcher):
            await reader.next()
            logind.desktop_lock()
            saver.set_active(True)
            assert (await reader.next()).locked is True
            await reader.nothing_within(0.4)
            saver.set_active(False)
            logind.desktop_unlock()
            assert (await reader.next()).locked is False
            await reader.nothing_within(0.4)


async def test_screensaver_started_after_the_watcher_is_still_heard(
    system_bus: PrivateBus, session_bus: PrivateBus
) -> None:
    async with LogindStandIn(system_bus.address):
        watcher = LogindLockWatcher(_config(system_bus, session_bus), request_grace=0.2)
        async for reader in _watch(watcher):
            await reader.next()
            async with ScreenSaverStandIn(session_bus.address) as saver:
                await asyncio.sleep(0.1)  # let NameOwnerChanged arrive first
                saver.set_active(True)
                assert (await reader.next()).locked is True


async def test_manager_lock_sessions_locks_every_session(system_bus: PrivateBus) -> None:
    sessions = (SessionSpec("1"), SessionSpec("2"))
    async with LogindStandIn(system_bus.address, sessions, desktop_sets_hint=True) as logind:
        watcher = LogindLockWatcher(_config(system_bus, session_id="2"))
        async for reader in _watch(watcher):
            await reader.next()
            bus = await MessageBus(bus_address=system_bus.address).connect()
            for member in ("LockSessions", "UnlockSessions"):
                reply = await bus.call(
                    Message(
                        destination="org.freedesktop.login1",
                        path="/org/freedesktop/login1",
                        interface="org.freedesktop.login1.Manager",
                        member=member,
                    )
                )
                assert reply is not None and reply.message_type == MessageType.METHOD_RETURN
                assert (await reader.next()).locked is (member == "LockSessions")
            bus.disconnect()
            assert [logind.session(i).lock_calls for i in ("1", "2")] == [1, 1]


async def test_unconfirmed_lock_request_is_reported_after_grace_on_a_hintless_desktop(
    system_bus: PrivateBus,
) -> None:
    async with LogindStandIn(system_bus.address):
        watcher = LogindLockWatcher(_config(system_bus), request_grace=0.2)
        async for reader in _watch(watcher):
            await reader.next()
            await desktop_lock(system_bus.address, set_hint=False)
            event = await reader.next()
            assert (event.locked, event.source) == (True, LockSource.LOGIND_REQUEST)


async def test_lock_request_refused_by_a_confirming_desktop_is_not_reported(
    system_bus: PrivateBus,
) -> None:
    async with LogindStandIn(system_bus.address) as logind:
        watcher = LogindLockWatcher(_config(system_bus), request_grace=0.2)
        async for reader in _watch(watcher):
            await reader.next()
            logind.desktop_lock()
            assert (await reader.next()).locked is True
            logind.desktop_unlock()
            assert (await reader.next()).locked is False
            # This desktop confirms its locks; a bare request it never confirms is not a lock.
            logind.session().request_lock()
            await reader.nothing_within(0.5)
            assert watcher.locked is False


async def test_initial_state_is_locked_when_the_session_already_is(
    system_bus: PrivateBus,
) -> None:
    async with LogindStandIn(system_bus.address) as logind:
        logind.desktop_lock()
        watcher = LogindLockWatcher(_config(system_bus))
        async for reader in _watch(watcher):
            event = await reader.next()
            assert (event.locked, event.initial) == (True, True)


async def test_missing_session_bus_only_disables_screensaver_watching(
    system_bus: PrivateBus, tmp_path: os.PathLike[str]
) -> None:
    config = LockBusConfig(
        system_bus_address=system_bus.address,
        session_bus_address=f"unix:path={tmp_path}/no-such-bus",
    )
    async with LogindStandIn(system_bus.address) as logind:
        watcher = LogindLockWatcher(config, request_grace=0.2)
        async for reader in _watch(watcher):
            assert not watcher.watching_screensaver
            await reader.next()
            logind.desktop_lock()
            assert (await reader.next()).locked is True


async def test_activechanged_from_someone_other_than_the_screensaver_is_ignored(
    system_bus: PrivateBus, session_bus: PrivateBus
) -> None:
    async with (
        LogindStandIn(system_bus.address),
        ScreenSaverStandIn(session_bus.address) as saver,
    ):
        watcher = LogindLockWatcher(_config(system_bus, session_bus), request_grace=0.2)
        async for reader in _watch(watcher):
            await reader.next()
            impostor = await MessageBus(
                bus_address=session_bus.address, bus_type=BusType.SESSION
            ).connect()
            try:
                await impostor.send(
                    Message.new_signal(
                        "/org/freedesktop/ScreenSaver",
                        "org.freedesktop.ScreenSaver",
                        "ActiveChanged",
                        "b",
                        [True],
                    )
                )
                await reader.nothing_within(0.4)
            finally:
                impostor.disconnect()
            saver.set_active(True)
            assert (await reader.next()).locked is True


async def test_watcher_follows_only_the_configured_session(system_bus: PrivateBus) -> None:
    sessions = (SessionSpec("1"), SessionSpec("c2", user_name="other"))
    async with LogindStandIn(system_bus.address, sessions) as logind:
        watcher = LogindLockWatcher(_config(system_bus, session_id="c2"), request_grace=0.2)
        async for reader in _watch(watcher):
            assert watcher.session_path == session_object_path("c2")
            await reader.next()
            logind.desktop_lock("1")
            await reader.nothing_within(0.4)
            logind.desktop_lock("c2")
            assert (await reader.next()).locked is True


async def test_session_is_found_by_pid_then_by_auto(system_bus: PrivateBus) -> None:
    sessions = (SessionSpec("1"), SessionSpec("7", pids=frozenset({4242})))
    async with LogindStandIn(system_bus.address, sessions):
        by_pid = LogindLockWatcher(_config(system_bus), pid=4242)
        await by_pid.start()
        await by_pid.stop()
        assert by_pid.session_path == session_object_path("7")
        assert by_pid.watching == "session 7 (the session this process runs in)"
        fallback = LogindLockWatcher(_config(system_bus), pid=1)
        await fallback.start()
        await fallback.stop()
        assert fallback.session_path == session_object_path("1")
        # Not silent: `client status` shows which session and that logind picked it.
        assert fallback.watching == (
            "session 1 (logind's choice for this user, as this process is in no session)"
        )
        named = LogindLockWatcher(
            LockBusConfig.from_environ(
                {"DBUS_SYSTEM_BUS_ADDRESS": system_bus.address, "XDG_SESSION_ID": "7"}
            )
        )
        await named.start()
        await named.stop()
        assert named.watching == "session 7 (XDG_SESSION_ID)"


async def test_a_service_outside_any_session_uses_the_only_session(system_bus: PrivateBus) -> None:
    async with LogindStandIn(system_bus.address, caller_in_session=False):
        watcher = LogindLockWatcher(_config(system_bus), pid=1)
        await watcher.start()
        await watcher.stop()
        assert watcher.session_path == session_object_path("1")
        assert watcher.watching == "session 1 (the only session there is)"
    two = (SessionSpec("1"), SessionSpec("2"))
    async with LogindStandIn(system_bus.address, two, caller_in_session=False):
        with pytest.raises(LockBackendError, match=r"2 sessions \(1, 2\); set the session id"):
            await LogindLockWatcher(_config(system_bus), pid=1).start()


async def test_losing_the_system_bus_ends_the_stream_and_says_why(
    system_bus: PrivateBus,
) -> None:
    async with LogindStandIn(system_bus.address):
        watcher = LogindLockWatcher(_config(system_bus))
        async for reader in _watch(watcher):
            await reader.next()
            assert watcher.failure is None
            system_bus.process.terminate()
            with pytest.raises(StopAsyncIteration):
                await reader.next()
            assert watcher.failure is not None
            assert "lost the system bus" in str(watcher.failure)


def test_session_id_comes_from_the_environment_unless_overridden() -> None:
    environ = {
        "DBUS_SYSTEM_BUS_ADDRESS": "unix:path=/tmp/s",
        "DBUS_SESSION_BUS_ADDRESS": "unix:path=/tmp/u",
        "XDG_SESSION_ID": "3",
    }
    config = LockBusConfig.from_environ(environ)
    assert (config.system_bus_address, config.session_bus_address, config.session_id) == (
        "unix:path=/tmp/s",
        "unix:path=/tmp/u",
        "3",
    )
    assert LockBusConfig.from_environ(environ, session_id="9").session_id == "9"
    bare = LockBusConfig.from_environ({})
    assert bare.session_bus_address is None
    assert bare.system_bus_address == "unix:path=/run/dbus/system_bus_socket"


async def test_unknown_session_is_a_clear_error(system_bus: PrivateBus) -> None:
    async with LogindStandIn(system_bus.address):
        watcher = LogindLockWatcher(_config(system_bus, session_id="nope"))
        with pytest.raises(LockBackendError, match=r"no session for us.*nope"):
            await watcher.start()


async def test_no_logind_and_no_bus_are_clear_errors(
    system_bus: PrivateBus, tmp_path: os.PathLike[str]
) -> None:
    with pytest.raises(LockBackendError, match="no session for us"):
        await LogindLockWatcher(_config(system_bus)).start()
    missing = LockBusConfig(system_bus_address=f"unix:path={tmp_path}/none")
    with pytest.raises(LockBackendError, match="cannot connect to the system bus"):
        await LogindLockWatcher(missing).start()


def test_other_platforms_say_they_are_not_supported() -> None:
    with pytest.raises(UnsupportedPlatformError, match="not supported on Darwin"):
        create_lock_watcher(LockBusConfig(), system="Darwin")
    assert isinstance(create_lock_watcher(LockBusConfig(), system="Linux"), LogindLockWatcher)


async def test_standin_runs_as_a_process_and_desktop_commands_drive_it(
    system_bus: PrivateBus, session_bus: PrivateBus
) -> None:
    server = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "hw.standin", "serve",
        "--system-bus", system_bus.address, "--session-bus", session_bus.address,
        "--screensaver", "freedesktop", "--notifications",
        stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        assert server.stdout is not None
        assert await asyncio.wait_for(server.stdout.readline(), 10) == b"ready\n"
        watcher = LogindLockWatcher(_config(system_bus, session_bus), request_grace=0.2)
        async for reader in _watch(watcher):
            await reader.next()
            lock = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "hw.standin", "lock", "--system-bus", system_bus.address
            )
            assert await lock.wait() == 0
            assert (await reader.next()).source == LockSource.LOGIND_LOCKED_HINT
            probe = await MessageBus(
                bus_address=session_bus.address, bus_type=BusType.SESSION
            ).connect()
            reply = await probe.call(
                Message(
                    destination="org.freedesktop.Notifications",
                    path="/org/freedesktop/Notifications",
                    interface="org.freedesktop.Notifications",
                    member="GetCapabilities",
                )
            )
            probe.disconnect()
            assert reply is not None and reply.message_type == MessageType.METHOD_RETURN
    finally:
        server.terminate()
        assert await asyncio.wait_for(server.wait(), 10) == 0
