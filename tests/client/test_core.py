"""The client core against a real relay, the simulated air with real beacons, and logind."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from client.api import ControlApi
from client.daemon import ClientCore, CoreTrayActions
from client.tray_app import RemoteTrayActions, fetch_tray_state
from client.tray_menu import Action, JoinOutcome, build_menu, dispatch_action
from hw.control_socket import ControlError, ControlServer
from hw.standin.logind import LogindStandIn
from relay.protocol import wire
from relay.protocol.link import RelayLink
from tests.client.conftest import RelayHarness, StartRelay, World, eventually


def _names(core: ClientCore) -> list[str]:
    return [n.name for n in core.nearby()]


async def _all_heard(core: ClientCore) -> list[dict[str, Any]]:
    await eventually(
        lambda: {"Alice's desk phone", "Kitchen speakerphone", "Room 4.01"} <= set(_names(core)),
        within=15,
        what="the phone, the speakerphone and the room resolved and ranked",
    )
    return core.nearby_json()


async def _pair(core: ClientCore, phone_link: RelayLink) -> None:
    await _all_heard(core)
    started = await core.pair_start(None)
    prompt = await phone_link.next_event("pair.prompt")
    assert isinstance(prompt, wire.PairPrompt)
    assert prompt.code == started["code"]
    await phone_link.pair_confirm(prompt.request_id, True)
    await core.pair_confirm(None, True)
    outcome = await core.pair_wait(started["request_id"], 5)
    assert outcome["outcome"] == "paired"


async def _pair_and_watch_the_lock(core: ClientCore, phone_link: RelayLink) -> None:
    await _pair(core, phone_link)
    await eventually(lambda: core.lock_status == "watching", what="lock watch started")


async def _next_lock_command(relay_url: str, phone_token: str) -> wire.LockCommand:
    """The first ``lock.command`` a phone that connects now is sent."""
    phone = await RelayLink.connect(relay_url, phone_token)
    try:
        command = await phone.next_event("lock.command", within=10)
    finally:
        await phone.close()
    assert isinstance(command, wire.LockCommand)
    return command


async def test_nearby_lists_rooms_and_my_phone_by_name_nearest_first(
    relay: RelayHarness, world: World, make_core: Any
) -> None:
    running = await make_core(relay.url, world.alice_credential.token)
    await _all_heard(running.core)
    expected = ["Alice's desk phone", "Kitchen speakerphone", "Room 4.01"]
    # The first device heard leads until a nearer one has beaten it for the dwell time.
    await eventually(lambda: _names(running.core) == expected, what="nearest first")
    nearby = running.core.nearby_json()
    names = [d["name"] for d in nearby]
    phone, speaker, room = nearby
    assert phone["own"] and phone["connectable"] and phone["kind"] == "desk_phone"
    assert not speaker["own"] and not speaker["connectable"]
    assert room["kind"] == "room_system" and not room["connectable"]
    assert phone["distance_m"] < speaker["distance_m"] < room["distance_m"]
    # Bob's phone is on the air too, but the relay never tells Alice who it is.
    assert running.core.adverts_heard > 0
    assert "Bob's desk phone" not in names


async def test_phones_of_others_are_not_offered_for_connection(
    relay: RelayHarness, world: World, make_core: Any
) -> None:
    running = await make_core(relay.url, world.alice_credential.token)
    core = running.core
    await _all_heard(core)
    with pytest.raises(ControlError) as shared:
        await core.pair_start("Kitchen speakerphone")
    assert shared.value.code == "not_connectable" and shared.value.source == "client"
    with pytest.raises(ControlError) as bobs:
        await core.pair_start(world.bob_phone.id)
    assert (bobs.value.code, bobs.value.source) == ("wrong_account", "relay")
    offered = [p.name for p in core.tray_state().phones]
    assert offered == ["Alice's desk phone"]


async def test_connect_completes_only_when_both_ends_confirm(
    relay: RelayHarness, world: World, make_core: Any, phone_link: RelayLink
) -> None:
    running = await make_core(relay.url, world.alice_credential.token)
    core = running.core
    await _all_heard(core)
    started = await core.pair_start(None)
    assert started["phone_id"] == world.phone.id and len(started["code"]) == 6
    await core.pair_confirm(None, True)
    assert (await core.pair_wait(started["request_id"], 0.3))["outcome"] == "pending"
    assert core.pairings == {}
    prompt = await phone_link.next_event("pair.prompt")
    await phone_link.pair_confirm(prompt.request_id, True)  # type: ignore[attr-defined]
    outcome = await core.pair_wait(started["request_id"], 5)
    assert outcome["outcome"] == "paired"
    assert list(core.pairings) == [world.phone.id]
    assert [p["phone_id"] for p in await core.list_pairings()] == [world.phone.id]
    # Connecting again says the phone is paired already, not that none is nearby.
    for phone in (None, "alice's desk phone"):
        with pytest.raises(ControlError) as again:
            await core.pair_start(phone)
        assert again.value.code == "already_paired", again.value.message
        assert "Alice's desk phone" in again.value.message


async def test_laptop_lock_and_unlock_reach_the_paired_phone(
    relay: RelayHarness,
    world: World,
    make_core: Any,
    phone_link: RelayLink,
    logind: LogindStandIn,
) -> None:
    running = await make_core(relay.url, world.alice_credential.token)
    core = running.core
    await _pair_and_watch_the_lock(core, phone_link)
    logind.desktop_lock()
    command = await phone_link.next_event("lock.command")
    assert isinstance(command, wire.LockCommand)
    assert (command.state, command.laptop_id) == ("locked", "laptop-test")
    await phone_link.lock_ack(command.seq)
    await eventually(lambda: world.phone.id in core.lock_applied, what="lock.applied")
    logind.desktop_unlock()
    command = await phone_link.next_event("lock.command")
    assert isinstance(command, wire.LockCommand) and command.state == "unlocked"


async def test_lock_sync_off_sends_nothing(
    relay: RelayHarness,
    world: World,
    make_core: Any,
    phone_link: RelayLink,
    logind: LogindStandIn,
) -> None:
    running = await make_core(relay.url, world.alice_credential.token)
    core = running.core
    await _pair_and_watch_the_lock(core, phone_link)
    core.set_lock_sync(False)
    assert running.saved[-1].lock_sync is False
    logind.desktop_lock()
    await eventually(lambda: core.locked is True, what="the client saw the lock")
    with pytest.raises(TimeoutError):
        await phone_link.next_event("lock.command", within=1.0)
    assert core.reporter.last_confirmed is None


async def test_relay_restart_reconnects_and_resends_the_latest_lock_state(
    start_relay: StartRelay,
    relay: RelayHarness,
    world: World,
    make_core: Any,
    phone_link: RelayLink,
    logind: LogindStandIn,
) -> None:
    running = await make_core(relay.url, world.alice_credential.token)
    core = running.core
    await _pair_and_watch_the_lock(core, phone_link)
    await relay.server.stop()
    await eventually(lambda: core.link is None, what="the client noticed the relay left")
    logind.desktop_lock()  # while the relay is away
    await eventually(lambda: core.reporter.pending, what="the lock is queued")
    await asyncio.sleep(0.3)
    restarted = await start_relay(port=relay.port)
    await eventually(lambda: core.link is not None, what="the client reconnected")
    assert core.reconnects >= 2
    assert (await _next_lock_command(restarted.url, world.phone_credential.token)).state == "locked"
    await eventually(lambda: core.reporter.last_confirmed == "locked", what="lock.set confirmed")


async def test_connect_refused_when_better_together_is_disabled(
    relay: RelayHarness, world: World, make_core: Any, phone_link: RelayLink
) -> None:
    running = await make_core(relay.url, world.alice_credential.token)
    await _all_heard(running.core)
    await relay.admin.set_user_policy(world.alice.id, world.disabled.id)
    with pytest.raises(ControlError) as refused:
        await running.core.pair_start(None)
    assert (refused.value.code, refused.value.source) == ("policy_denied", "relay")
    assert "Disabled" in refused.value.message


async def test_actions_fail_clearly_while_the_relay_is_unreachable(
    start_relay: StartRelay, world: World, relay: RelayHarness, make_core: Any
) -> None:
    await relay.server.stop()
    running = await make_core(relay.url, world.alice_credential.token)
    core = running.core
    await eventually(lambda: core.relay_error, what="a relay error")
    assert "cannot reach the relay" in (core.relay_error or "")
    with pytest.raises(ControlError) as unreachable:
        await core.pair_start(world.phone.id)
    assert unreachable.value.code == "relay_unreachable"
    assert core.status()["relay"]["connected"] is False


async def test_bad_credential_is_reported_in_status(
    relay: RelayHarness, world: World, make_core: Any
) -> None:
    running = await make_core(relay.url, "not-a-credential")
    await eventually(lambda: running.core.relay_error, what="a relay error")
    assert "HTTP 401" in (running.core.relay_error or "")


async def test_tray_menu_drives_connecting_my_phone(
    relay: RelayHarness, world: World, make_core: Any, phone_link: RelayLink
) -> None:
    running = await make_core(relay.url, world.alice_credential.token)
    core = running.core
    await _all_heard(core)
    quits: list[bool] = []
    actions = CoreTrayActions(core, lambda: quits.append(True))

    def entry(prefix: str) -> Any:
        return next(e for e in build_menu(core.tray_state()) if e.label.startswith(prefix))

    await eventually(lambda: core.link is not None)
    connect = entry("Connect Alice's desk phone")
    assert connect.enabled and connect.action is not None
    await dispatch_action(connect.action, actions)
    prompt = await phone_link.next_event("pair.prompt")
    confirm = entry("Confirm connecting Alice's desk phone")
    assert f"code {prompt.code}" in confirm.label  # type: ignore[attr-defined]
    await phone_link.pair_confirm(prompt.request_id, True)  # type: ignore[attr-defined]
    assert confirm.action is not None
    await dispatch_action(confirm.action, actions)
    await eventually(lambda: core.pairings, what="paired through the tray")
    lock_row = entry("Lock my phone with this laptop")
    assert lock_row.enabled and lock_row.checked is True
    assert lock_row.action is not None
    await dispatch_action(lock_row.action, actions)
    assert core.reporter.enabled is False
    await dispatch_action(entry("Quit").action, actions)  # type: ignore[arg-type]
    assert quits == [True]


async def test_audio_goes_to_the_paired_phone_and_back_and_a_nearby_room_joins(
    relay: RelayHarness, world: World, make_core: Any, phone_link: RelayLink
) -> None:
    running = await make_core(relay.url, world.alice_credential.token)
    core = running.core
    with pytest.raises(ControlError) as unpaired:
        await core.audio_on(None, "m-1", wait_s=0)
    assert unpaired.value.code == "not_paired"
    await _pair(core, phone_link)

    async def phone_takes_over() -> None:
        command = await phone_link.next_event("audio.command")
        assert isinstance(command, wire.AudioCommand) and command.action == "take"
        assert command.meeting_id == "m-1"
        await phone_link.audio_ack(command.handoff_id, ok=True)

    phone_side = asyncio.create_task(phone_takes_over())
    active = await core.audio_on(None, "m-1", wait_s=5)
    await phone_side
    assert active["state"] == "active" and active["phone_id"] == world.phone.id
    assert core.tray_state().audio_phone_id == world.phone.id
    released = await core.audio_off(None, wait_s=5)
    assert released["state"] == "released"
    release = await phone_link.next_event("audio.command")
    assert isinstance(release, wire.AudioCommand) and release.action == "release"

    room = await RelayLink.connect(relay.url, world.room_credential.token)
    try:
        joined = await core.join("room 4.01", None, wait_s=5)  # names match case-insensitively
        assert joined["outcome"] == "accepted" and joined["meeting_id"] == "m-1"
        command = await room.next_event("join.command")
        assert isinstance(command, wire.JoinCommand) and command.meeting_id == "m-1"
        assert core.tray_state().last_join == JoinOutcome(
            joined["join_id"], "Room 4.01", "accepted", "m-1"
        )
        # A word of the name is enough when one room has it; a room not nearby is not sent.
        assert (await core.join("4.01", "m-2", wait_s=5))["outcome"] == "accepted"
        with pytest.raises(ControlError) as far:
            await core.join("Borealis", None, wait_s=5)
        assert far.value.code == "no_room" and "'Room 4.01'" in far.value.message
    finally:
        await room.close()


async def test_a_tray_attached_over_the_control_socket_drives_the_running_client(
    tmp_path: Path, relay: RelayHarness, world: World, make_core: Any, phone_link: RelayLink
) -> None:
    running = await make_core(relay.url, world.alice_credential.token)
    core = running.core
    path = tmp_path / "control.sock"
    server = ControlServer(path, ControlApi(core).handle)
    await server.start()
    quits: list[bool] = []
    actions = RemoteTrayActions(path, lambda: None, lambda: quits.append(True))
    try:
        await _all_heard(core)
        await eventually(lambda: core.link is not None)
        state = await fetch_tray_state(path)
        assert state == core.tray_state()
        menu = build_menu(state)
        connect = next(e for e in menu if e.label.startswith("Connect Alice's desk phone"))
        assert connect.action is not None
        await dispatch_action(connect.action, actions)
        prompt = await phone_link.next_event("pair.prompt")
        await phone_link.pair_confirm(prompt.request_id, True)  # type: ignore[attr-defined]
        state = await fetch_tray_state(path)
        assert state.pending is not None and state.pending.needs_my_confirmation
        await dispatch_action(Action("confirm_pairing", (world.phone.id,)), actions)
        await eventually(lambda: core.pairings, what="paired from the attached tray")
        await dispatch_action(Action("set_meeting", ("weekly",)), actions)
        assert core.meeting_id == "weekly" and (await fetch_tray_state(path)).meeting_id == "weekly"
        await dispatch_action(Action("leave_meeting"), actions)
        assert core.meeting_id is None
        await dispatch_action(Action("quit"), actions)
        # Quit stops the client the tray is attached to, then closes the tray.
        assert quits == [True]
        await eventually(lambda: running.task.done(), what="the client stopped")
        assert running.task.exception() is None
    finally:
        await server.stop()
    assert (await fetch_tray_state(path)).relay_connected is False


async def test_a_second_client_with_the_same_laptop_id_is_not_fought_over(
    relay: RelayHarness, world: World, make_core: Any
) -> None:
    first = await make_core(relay.url, world.alice_credential.token, reconnect_max_s=5.0)
    await eventually(lambda: first.core.link is not None, what="the first client connected")
    second = await make_core(relay.url, world.alice_credential.token, reconnect_max_s=5.0)
    await eventually(lambda: first.core.link is None, what="the first client was replaced")
    assert "another client with this laptop id" in (first.core.relay_error or "")
    await asyncio.sleep(1.0)  # the replaced client backs off to the cap instead of retrying now
    assert first.core.link is None and second.core.link is not None


async def test_a_lock_the_relay_never_confirmed_survives_a_client_restart(
    start_relay: StartRelay,
    relay: RelayHarness,
    world: World,
    make_core: Any,
    phone_link: RelayLink,
    logind: LogindStandIn,
) -> None:
    stored: list[Any] = [None]
    persistence = {"save_unsent_lock": lambda state: stored.__setitem__(0, state)}
    first = await make_core(relay.url, world.alice_credential.token, persistence)
    await _pair_and_watch_the_lock(first.core, phone_link)
    await relay.server.stop()
    await eventually(lambda: first.core.link is None, what="the client noticed the relay left")
    logind.desktop_lock()
    await eventually(lambda: stored[0] == "locked", what="the unsent lock was saved")
    first.core.stop()
    await first.task
    restarted = await start_relay(port=relay.port)
    second = await make_core(
        restarted.url, world.alice_credential.token, {**persistence, "unsent_lock": stored[0]}
    )
    assert (await _next_lock_command(restarted.url, world.phone_credential.token)).state == "locked"
    await eventually(lambda: stored[0] is None, what="the saved lock cleared once confirmed")
    assert second.core.reporter.last_confirmed == "locked"


async def test_a_hand_off_the_relay_forgot_in_a_restart_is_shown_released(
    start_relay: Any, relay: RelayHarness, world: World, make_core: Any, phone_link: RelayLink
) -> None:
    running = await make_core(relay.url, world.alice_credential.token)
    core = running.core
    await _pair(core, phone_link)

    async def phone_takes_over() -> None:
        command = await phone_link.next_event("audio.command")
        assert isinstance(command, wire.AudioCommand)
        await phone_link.audio_ack(command.handoff_id, ok=True)

    phone_side = asyncio.create_task(phone_takes_over())
    active = await core.audio_on(None, "m-1", wait_s=5)
    await phone_side
    assert active["state"] == "active"
    port = relay.server.port
    await relay.server.stop()
    await start_relay(port=port)  # short-lived state is gone; the client reconnects
    await eventually(
        lambda: core.tray_state().audio_phone_id is None, what="the hand-off shown released"
    )
    with pytest.raises(ControlError) as nothing:
        await core.audio_off(None, wait_s=1)
    assert nothing.value.code == "no_audio"
