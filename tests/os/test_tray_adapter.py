"""The pystray adapter without a display: backend choice, menu conversion, action delivery."""

from __future__ import annotations

import asyncio
import sys
import threading
from typing import Any

import pytest

from client.tray.icon import (
    TrayUnavailable,
    asyncio_action_sink,
    choose_backend,
    icon_image,
    to_pystray_menu,
)
from client.tray.menu import Action, build_menu
from client.views import NearbyRoom, PairedPhone, TrayState
from tests.os.test_tray_menu import RecordingActions


@pytest.fixture
def pystray(monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("PYSTRAY_BACKEND", "dummy")  # no display needed to build menus
    import pystray

    return pystray


@pytest.mark.parametrize("backend", ["xorg", "dummy"])
def test_backends_without_a_menu_are_refused(backend: str) -> None:
    with pytest.raises(TrayUnavailable, match="no usable menu"):
        choose_backend("linux", requested=backend)


def test_backend_follows_the_platform(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PYSTRAY_BACKEND", raising=False)
    monkeypatch.setattr(sys, "path", list(sys.path))  # it may add Debian's gi to the path
    assert choose_backend("darwin") == "darwin"
    assert choose_backend("win32") == "win32"
    assert choose_backend("linux") in ("gtk", "appindicator")
    with pytest.raises(TrayUnavailable, match="not supported on sunos5"):
        choose_backend("sunos5")


def test_menu_rows_become_pystray_items_that_deliver_their_action(pystray: Any) -> None:
    state = TrayState(
        relay_connected=True,
        rooms=(NearbyRoom(room_id="room-a", name="Fjord", distance_m=2.0),),
        paired=(PairedPhone(phone_id="phone-1", name="Desk phone"),),
        audio_phone_id="phone-1",
        meeting_id="m-1",
    )
    entries = build_menu(state)
    chosen: list[Action] = []
    menu = to_pystray_menu(pystray, entries, chosen.append)
    items = list(menu.items)
    assert len(items) == len(entries)
    assert [i.text for i in items if i is not pystray.Menu.SEPARATOR] == [
        e.label for e in entries if not e.separator
    ]
    by_text = {i.text: i for i in items if i is not pystray.Menu.SEPARATOR}
    audio = by_text["Use Desk phone for audio"]
    assert (audio.checked, audio.enabled) == (True, True)
    assert by_text["Connected to the relay"].enabled is False
    assert by_text["Connected to the relay"].checked is None
    by_text["Fjord · 2.0 m"](None)
    audio(None)
    by_text["Connected to the relay"](None)  # informational row: nothing happens
    assert chosen == [Action("join_room", ("room-a",)), Action("audio_off", ("phone-1",))]


async def test_actions_chosen_on_the_tray_thread_run_on_the_client_loop() -> None:
    actions = RecordingActions()
    sink = asyncio_action_sink(asyncio.get_running_loop(), actions)
    thread = threading.Thread(target=sink, args=(Action("lock_sync", (True,)),))
    thread.start()
    thread.join()
    for _ in range(100):
        if actions.calls:
            break
        await asyncio.sleep(0.01)
    assert actions.calls == [("lock_sync", True)]


def test_icon_shows_whether_the_relay_is_reachable() -> None:
    online, offline = icon_image(True), icon_image(False)
    assert online.size == (64, 64)
    assert online.tobytes() != offline.tobytes()
