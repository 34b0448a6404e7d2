"""The whole story with real processes: relay, air, beacon daemons, laptop client.

One cast is set up per module through the real administrator flow (it takes most of a
minute), then each test plays one part of the story or one way it can go wrong, in
order: the tests build on each other's state, as the story does.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from btogether.demo import DEVICES, FLOOR, LAPTOP_IN_ROOM_B, Demo, Narrator, set_the_stage
from btogether.stage import Stage
from tests.web.conftest import (  # noqa: F401 - browser is the fixture
    browser,
    needs_browser,
    screenshot,
    sign_in,
)

pytestmark = pytest.mark.timeout(300)

SAM_PHONE = {
    "mac": "02:00:5E:10:00:0D",
    "name": "Sam's desk phone",
    "kind": "desk_phone",
    "location": "Room Aurora, desk 4",
    "account": "Sam Roe",
}


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Demo]:
    workdir = Path(tmp_path_factory.mktemp("e2e"))
    with Stage(workdir) as stage:
        cast = Demo(
            stage,
            Narrator(json_lines=True),
            audio=True,
            floor={**FLOOR, "sam-phone": (0.2, 1.8)},
            devices={**DEVICES, "sam-phone": SAM_PHONE},
        )
        try:
            set_the_stage(cast, cast.narrator)
            yield cast
        finally:
            cast.close()


def machine_has_pulseaudio() -> bool:
    """Whether this machine was set up for the audio steps (./dev.sh test installs both)."""
    return shutil.which("pulseaudio") is not None and importlib.util.find_spec("pulsectl") is not None


def nearby_by_id(demo: Demo) -> dict[str, dict[str, Any]]:
    return {d["device_id"]: d for d in demo.nearby()}


def client_fails(demo: Demo, *args: str) -> dict[str, Any]:
    done = demo.stage.run(demo.stage.argv("client", *args, "--json"), env=demo.host_env("laptop"),
                          check=False, timeout=60)
    assert done.returncode != 0, done.stdout
    answer: dict[str, Any] = json.loads(done.stdout)
    assert answer["ok"] is False
    return dict(answer["error"])


@needs_browser
async def test_admin_center_shows_the_demo_rooms_and_phones_live(
    demo: Demo, browser: Any  # noqa: F811 - the imported fixture
) -> None:
    """What `btogether demo --serve` leaves running: the owner signs in to the admin center
    with the printed password and sees the rooms and phones, signed in and online."""
    web = demo.stage.relay_url.replace("ws://", "http://", 1).rstrip("/")
    page = await browser.new_page()
    await sign_in(page, web, "Demo Admin", demo.admin_password)
    await page.wait_for_url(f"{web}/admin/")
    await page.wait_for_selector("#live.on")
    for host in ("room-a", "room-b", "phone"):
        row = page.locator(f"#devices tr[data-device={demo.device_ids[host]}]")
        await row.locator("td.state", has_text="Signed in").wait_for()
        await row.locator("td.online", has_text="Online").wait_for()
        assert DEVICES[host]["name"] in await row.inner_text()
    await screenshot(page, "admin-center-demo")


def test_laptop_discovers_rooms_and_phones_with_the_nearest_room_on_top(demo: Demo) -> None:
    demo.discover()
    demo.nearest_room("room-a")
    near = nearby_by_id(demo)
    assert near[demo.device_ids["phone"]]["own"] is True
    assert near[demo.device_ids["phone"]]["name"] == "Alex's desk phone"


def test_phone_of_another_account_is_never_offered_for_connection(demo: Demo) -> None:
    sams = demo.device_ids["sam-phone"]
    # Sam's phone sits between the laptop and Alex's phone and beacons all along, but the
    # relay resolves a personal phone only for its own user: the laptop never learns it.
    assert demo.device_status("sam-phone")["advertising"] is True
    for _ in range(3):
        assert sams not in nearby_by_id(demo)
    error = client_fails(demo, "connect", sams, "--yes", "--timeout", "5")
    assert error["code"] in {"not_found", "wrong_account", "no_fresh_sighting"}, error
    assert demo.device_status("sam-phone")["prompts"] == []


def test_connecting_my_phone_needs_both_ends_to_confirm(demo: Demo) -> None:
    demo.connect_phone("phone")
    pairings = demo.on("laptop", "client", "pairings", "--json")
    assert [p["phone_id"] for p in pairings] == [demo.device_ids["phone"]]


def test_laptop_lock_and_unlock_are_mirrored_on_the_phone(demo: Demo) -> None:
    demo.lock_laptop(True)
    assert demo.phone_session_locked("phone")
    assert not demo.phone_session_locked("sam-phone")
    demo.lock_laptop(False)


def test_phone_offline_while_the_laptop_locks_locks_when_it_comes_back(demo: Demo) -> None:
    demo.stage.stop("beacon-phone")
    demo.lock_laptop_session(True)
    demo.stage.wait_for(
        lambda: demo.on("laptop", "client", "status", "--json")["lock"]["locked"] is True,
        "the laptop client to see its own lock")
    assert not demo.phone_session_locked("phone")
    demo.stage.spawn("beacon-phone", demo.stage.argv("beacon", "run"), env=demo.host_env("phone"))
    demo.stage.wait_for(lambda: demo.phone_session_locked("phone") or None,
                        "the phone to lock once it is back", timeout=30)
    demo.lock_laptop(False)


def test_relay_restart_daemons_reconnect_and_the_lock_state_converges(demo: Demo) -> None:
    demo.stage.stop("relay")
    demo.lock_laptop_session(True)
    demo.stage.restart_relay()
    demo.stage.wait_for(lambda: demo.phone_session_locked("phone") or None,
                        "the phone to lock after the relay came back", timeout=45)
    demo.lock_laptop(False)
    assert demo.device_status("phone")["connected"] is True
    assert demo.on("laptop", "client", "status", "--json")["relay"]["connected"] is True


def test_the_phone_becomes_the_meetings_audio_device_and_gives_it_back(demo: Demo) -> None:
    if demo.pulse is None:
        if machine_has_pulseaudio():
            pytest.fail(f"PulseAudio is installed but the demo skipped audio: {demo.pulse_note}")
        pytest.skip(demo.pulse_note)
    import pulsectl

    demo.audio(True)
    assert demo.device_status("phone")["audio"]["meeting_id"] == "weekly-sync-42"
    with pulsectl.Pulse("e2e", server=demo.pulse.server) as pulse:
        info = pulse.server_info()
        assert (info.default_sink_name, info.default_source_name) == (
            "speakerphone", "speakerphone_mic")
    demo.audio(False)
    assert demo.device_status("phone")["audio"] is None
    with pulsectl.Pulse("e2e", server=demo.pulse.server) as pulse:
        info = pulse.server_info()
        assert (info.default_sink_name, info.default_source_name) == ("handset", "handset_mic")


def test_better_together_disabled_by_policy_refuses_to_connect(demo: Demo) -> None:
    demo.on("laptop", "client", "unpair", demo.device_ids["phone"], "--json")
    policy = demo.admin("policies", "create", "No Better Together", "--tenant", demo.tenant_id,
                        "--better-together", "Disabled")
    demo.admin("policies", "assign", "user", demo.users["Alex Doe"], "--policy", policy["id"])
    error = client_fails(demo, "connect", demo.device_ids["phone"], "--yes", "--timeout", "10")
    assert error["code"] == "policy_denied", error
    assert demo.device_status("phone")["prompts"] == []


def test_walking_to_the_other_room_moves_it_to_the_top(demo: Demo) -> None:
    demo.walk()
    rooms = [d for d in demo.nearby() if d["kind"] == "room_system"]
    assert rooms[0]["device_id"] == demo.device_ids["room-b"]
    assert LAPTOP_IN_ROOM_B[0] > 10
