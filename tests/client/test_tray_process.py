"""``btogether client tray`` as a process under Xvfb with a tray host: starts, serves, stops."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from client.control import call
from hw.dbus_daemon import PrivateBus, start_private_bus
from hw.standin.notifications import NotificationsStandIn
from tests.client.conftest import Air, RelayHarness, World, btogether_argv, eventually
from tests.client.test_commands import login

TOOLS = ("Xvfb", "trayer")


@pytest.fixture
def display() -> Iterator[str]:
    missing = [tool for tool in TOOLS if shutil.which(tool) is None]
    if missing:
        pytest.skip(f"needs {', '.join(missing)} (Debian: xvfb, trayer)")
    read_end, write_end = os.pipe()
    xvfb = subprocess.Popen(
        ["Xvfb", "-displayfd", str(write_end), "-screen", "0", "640x480x24", "-nolisten", "tcp"],
        pass_fds=(write_end,),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    os.close(write_end)
    with os.fdopen(read_end) as reader:
        number = reader.readline().strip()
    if not number:
        xvfb.wait(timeout=5)
        pytest.skip("Xvfb did not start")
    name = f":{number}"
    trayer = subprocess.Popen(
        ["trayer", "--edge", "top", "--widthtype", "pixel", "--width", "200"],
        env={**os.environ, "DISPLAY": name},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield name
    finally:
        for process in (trayer, xvfb):
            process.terminate()
            process.wait(timeout=5)


@pytest.fixture
def session_bus() -> Iterator[PrivateBus]:
    with start_private_bus(name="session", bus_type="session") as bus:
        yield bus


@pytest.fixture
async def notifications(session_bus: PrivateBus) -> AsyncIterator[NotificationsStandIn]:
    # pystray's GTK backend hangs in stop() without a notification daemon.
    async with NotificationsStandIn(session_bus.address) as standin:
        yield standin


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
        **os.environ,
        "DISPLAY": display,
        "DBUS_SESSION_BUS_ADDRESS": session_bus.address,
        "DBUS_SYSTEM_BUS_ADDRESS": air.address("laptop"),
        "PYSTRAY_BACKEND": "gtk",
        "NO_AT_BRIDGE": "1",
    }
    tray = await asyncio.create_subprocess_exec(
        *btogether_argv("--log-level", "info", "client", "tray", "--state-dir", str(state)),
        env=env,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    try:

        async def serving() -> bool:
            if tray.returncode is not None:
                raise AssertionError("the tray exited early")
            try:
                status = await call(state / "control.sock", "status")
            except Exception:
                return False
            return bool(status["relay"]["connected"])

        await eventually(serving, within=20, every=0.2, what="the tray's client reached the relay")
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
