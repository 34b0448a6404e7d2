"""The real tray under Xvfb with a tray host: the icon is embedded, a click reaches TrayActions."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from client.tray.icon import MEETING_DIALOG_TITLE
from client.tray.menu import build_menu
from hw.dbus_daemon import PrivateBus
from hw.standin.notifications import NotificationsStandIn
from tests.desktop_harness import tray_display, tray_env
from tests.os.tray_child import STATE

REPO = Path(__file__).resolve().parents[2]


def _x(display: str, *args: str) -> str:
    result = subprocess.run(
        args, env={**os.environ, "DISPLAY": display}, capture_output=True, text=True, timeout=10
    )
    return result.stdout


def _geometry(display: str, window: str) -> tuple[int, int, int, int]:
    values = dict(
        line.split("=", 1)
        for line in _x(display, "xdotool", "getwindowgeometry", "--shell", window).split()
    )
    return int(values["X"]), int(values["Y"]), int(values["WIDTH"]), int(values["HEIGHT"])


def _visible(display: str, name: str) -> list[str]:
    return _x(display, "xdotool", "search", "--onlyvisible", "--name", f"^{name}$").split()


async def _poll(check: object, timeout: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not check():  # type: ignore[operator]
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {check}")
        await asyncio.sleep(0.1)


@pytest.fixture
def display() -> Iterator[str]:
    with tray_display("xdotool") as name:
        yield name


@pytest.fixture
async def notifications(session_bus: PrivateBus) -> AsyncIterator[NotificationsStandIn]:
    # pystray's GTK backend closes its notification when it stops and hangs without a daemon.
    async with NotificationsStandIn(session_bus.address) as standin:
        yield standin


async def test_tray_icon_is_embedded_and_its_menu_reaches_the_client(
    display: str, session_bus: PrivateBus, notifications: NotificationsStandIn
) -> None:
    # trayer maps its panel once it owns the tray selection; slow on a loaded machine.
    await _poll(lambda: _visible(display, "panel"), timeout=30.0)
    panel_x, panel_y, panel_w, panel_h = _geometry(display, _visible(display, "panel")[0])
    child = await asyncio.create_subprocess_exec(
        sys.executable, str(REPO / "tests/os/tray_child.py"),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        env={**tray_env(display, session_bus.address), "PYTHONPATH": str(REPO)},
    )  # fmt: skip
    assert child.stdin is not None and child.stdout is not None
    stdin, stdout = child.stdin, child.stdout

    async def line() -> str:
        return (await asyncio.wait_for(stdout.readline(), 10)).decode().strip()

    async def send(command: str) -> None:
        stdin.write(command.encode() + b"\n")
        await stdin.drain()

    try:
        first = await line()
        if first.startswith("unavailable:"):
            pytest.skip(f"the tray cannot run here: {first}")
        assert first == "shown"

        # The icon is drawn inside the tray host's panel, i.e. trayer embedded it.
        def embedded() -> list[tuple[int, int, int, int]]:
            found = []
            for window in _visible(display, "btogether"):
                x, y, w, h = _geometry(display, window)
                inside = panel_x <= x and x + w <= panel_x + panel_w
                if w > 1 and inside and panel_y <= y and y + h <= panel_y + panel_h:
                    found.append((x, y, w, h))
            return found

        await _poll(embedded)
        x, y, w, h = embedded()[0]
        icons = _visible(display, "btogether")

        # A real right-click opens the menu; the keyboard picks "Use Desk phone for audio".
        _x(display, "xdotool", "mousemove", "--sync", str(x + w // 2), str(y + h // 2))
        _x(display, "xdotool", "click", "3")
        await _poll(lambda: len(_visible(display, "btogether")) > len(icons))
        rows = [e for e in build_menu(STATE) if e.enabled and e.action is not None]
        downs = [e.label for e in rows].index("Use Desk phone for audio") + 1
        _x(display, "xdotool", "key", *(["Down"] * downs), "Return")
        assert json.loads(await line()) == {"call": "audio_on", "arg": "phone-1"}

        # pystray's own API reaches the same TrayActions.
        await send("invoke Unpair Desk phone")
        assert json.loads(await line()) == {"call": "unpair", "arg": "phone-1"}

        # "Set meeting…" asks in a dialog; what is typed there reaches the client.
        await send("invoke Set meeting…")
        await _poll(lambda: _visible(display, MEETING_DIALOG_TITLE))
        dialog = _visible(display, MEETING_DIALOG_TITLE)[0]
        _x(display, "xdotool", "windowactivate", "--sync", dialog)
        _x(display, "xdotool", "key", "--window", dialog, "ctrl+a")
        _x(display, "xdotool", "type", "--window", dialog, "https://meet.jit.si/Weekly")
        _x(display, "xdotool", "key", "--window", dialog, "Return")
        assert json.loads(await line()) == {
            "call": "set_meeting",
            "arg": "https://meet.jit.si/Weekly",
        }

        # A pairing code is notified through the desktop's notification service.
        await send("pairing")
        assert await line() == "updated"
        await _poll(lambda: notifications.interface.shown)
        shown = notifications.interface.shown[0]
        assert shown.summary == "Connect Spare phone?" and "428113" in shown.body

        # A new state refreshes the menu: without the relay the row is greyed out.
        await send("disconnect")
        assert await line() == "updated"
        await send("invoke Unpair Desk phone")
        assert await line() == "refused Unpair Desk phone"

        await send("stop")
        assert await line() == "stopped"
        assert await asyncio.wait_for(child.wait(), 10) == 0
    finally:
        if child.returncode is None:
            child.kill()
            await child.wait()


async def _run_child_without(display: str, env: dict[str, str]) -> tuple[int, str]:
    """Start the tray child, make it notify, stop it: (exit code, stderr)."""
    child = await asyncio.create_subprocess_exec(
        sys.executable, str(REPO / "tests/os/tray_child.py"),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**env, "PYTHONPATH": str(REPO)},
    )  # fmt: skip
    assert child.stdin is not None and child.stdout is not None
    try:
        first = (await asyncio.wait_for(child.stdout.readline(), 15)).decode().strip()
        if first.startswith("unavailable:"):
            pytest.skip(f"the tray cannot run here: {first}")
        assert first == "shown"
        child.stdin.write(b"pairing\nstop\n")
        await child.stdin.drain()
        out, err = await asyncio.wait_for(child.communicate(), 15)
    finally:
        if child.returncode is None:
            child.kill()
            await child.wait()
    assert out.decode().split() == ["updated", "stopped"]
    return child.returncode or 0, err.decode()


async def test_without_a_session_bus_the_tray_says_notifications_are_off_and_still_quits(
    display: str, tmp_path: Path
) -> None:
    env = {k: v for k, v in tray_env(display, "").items() if k != "DBUS_SESSION_BUS_ADDRESS"}
    env["XDG_RUNTIME_DIR"] = str(tmp_path)  # no bus socket there
    code, err = await _run_child_without(display, env)
    assert code == 0, err
    assert "Traceback" not in err and "dbus-launch" not in err, err
    said = [line for line in err.splitlines() if line.startswith("btogether client tray:")]
    assert said == [
        "btogether client tray: notifications are off: no D-Bus session bus "
        "(DBUS_SESSION_BUS_ADDRESS is not set); pairing codes and join results show in the "
        "menu only"
    ]


async def test_without_a_notification_daemon_the_tray_says_so_and_still_quits(
    display: str, session_bus: PrivateBus
) -> None:
    code, err = await _run_child_without(display, tray_env(display, session_bus.address))
    assert code == 0, err
    assert "Traceback" not in err and "GDBus" not in err, err
    said = [line for line in err.splitlines() if line.startswith("btogether client tray:")]
    assert said == [
        "btogether client tray: notifications are off: no notification service "
        "(org.freedesktop.Notifications) on the session bus; pairing codes and join results "
        "show in the menu only"
    ]
