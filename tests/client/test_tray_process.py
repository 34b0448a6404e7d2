"""``btogether client tray`` as a process under Xvfb with a tray host: starts, serves, stops."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from hw.control_socket import call
from hw.dbus_daemon import PrivateBus, start_private_bus
from hw.standin.notifications import NotificationsStandIn
from tests.client.conftest import Air, RelayHarness, World, btogether_argv, eventually
from tests.client.test_commands import login
from tests.desktop_harness import tray_display, tray_env


@pytest.fixture
def display() -> Iterator[str]:
    with tray_display() as name:
        yield name


@pytest.fixture
def session_bus() -> Iterator[PrivateBus]:
    with start_private_bus(name="session", bus_type="session") as bus:
        yield bus


@pytest.fixture
async def notifications(session_bus: PrivateBus) -> AsyncIterator[NotificationsStandIn]:
    # pystray's GTK backend hangs in stop() without a notification daemon.
    async with NotificationsStandIn(session_bus.address) as standin:
        yield standin


async def _serving(tray: asyncio.subprocess.Process, state: Path) -> None:
    """Wait until the tray's client answers and has reached the relay."""

    async def serving() -> bool:
        if tray.returncode is not None:
            raise AssertionError("the tray exited early")
        try:
            status = await call(state / "control.sock", "status")
        except Exception:
            return False
        return bool(status["relay"]["connected"])

    await eventually(serving, within=20, every=0.2, what="the tray's client reached the relay")


async def test_client_tray_runs_the_client_and_stops_on_sigterm(
    tmp_path: Path,
    display: str,
    session_bus: PrivateBus,
    notifications: NotificationsStandIn,
    air: Air,
    relay: RelayHarness,
    world: World,
) -> None:
    state = tmp_path / "state"
    code, _, err = await login(state, relay, world.alice_credential.token)
    assert code == 0, err
    env = {
        **tray_env(display, session_bus.address),
        "DBUS_SYSTEM_BUS_ADDRESS": air.address("laptop"),
    }
    tray = await asyncio.create_subprocess_exec(
        *btogether_argv("--log-level", "info", "client", "tray", "--state-dir", str(state)),
        env=env,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        await _serving(tray, state)
        await eventually(
            lambda: call(state / "control.sock", "nearby"), within=15, what="devices nearby"
        )
    finally:
        if tray.returncode is None:
            tray.send_signal(signal.SIGTERM)
        _, log = await asyncio.wait_for(tray.communicate(), 20)
    text = log.decode()
    if "cannot start" in text or "PyGObject is missing" in text:
        pytest.skip(f"no tray here: {text[-300:]}")
    assert tray.returncode == 0, text[-2000:]
    assert "tray_shown" in text
    assert not (state / "control.sock").exists()


async def test_client_tray_without_a_session_bus_says_so_and_stops_on_sigterm(
    tmp_path: Path, display: str, air: Air, relay: RelayHarness, world: World
) -> None:
    state = tmp_path / "state"
    code, _, err = await login(state, relay, world.alice_credential.token)
    assert code == 0, err
    env = {k: v for k, v in tray_env(display, "").items() if k != "DBUS_SESSION_BUS_ADDRESS"}
    env.update(XDG_RUNTIME_DIR=str(tmp_path), DBUS_SYSTEM_BUS_ADDRESS=air.address("laptop"))
    tray = await asyncio.create_subprocess_exec(
        *btogether_argv("client", "tray", "--state-dir", str(state)),
        env=env,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        await _serving(tray, state)
    finally:
        if tray.returncode is None:
            tray.send_signal(signal.SIGTERM)
        _, log = await asyncio.wait_for(tray.communicate(), 20)
    text = log.decode()
    if "cannot start" in text or "PyGObject is missing" in text:
        pytest.skip(f"no tray here: {text[-300:]}")
    assert tray.returncode == 0, text[-2000:]
    assert "Traceback" not in text and "dbus-launch" not in text, text[-2000:]
    said = [line for line in text.splitlines() if line.startswith("btogether client tray:")]
    assert said == [
        "btogether client tray: notifications are off: no D-Bus session bus "
        "(DBUS_SESSION_BUS_ADDRESS is not set); pairing codes and join results show in the "
        "menu only"
    ]
