"""The client daemon against a real relay, the simulated air with real beacons, and logind.

The decisions are tested on the pure core (``test_core.py``); these run the same core in
its asyncio shell, over the real radio path (bleak on the simulated BlueZ), a real relay
and the logind stand-in.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest

from client import operations as op
from client.api import ControlApi
from client.daemon import ClientDaemon
from client.tray.app import CommandTrayActions, fetch_tray_state, remote_actions
from client.tray.menu import Action, build_menu, dispatch_action
from client.views import HandoffView, JoinOutcome, JoinView, NearbyEntry, PairStarted
from hw.control_socket import ControlError, ControlServer
from hw.standin.logind import LogindStandIn
from relay.protocol import wire
from relay.protocol.link import RelayLink
from tests.client.conftest import RelayHarness, StartRelay, World, eventually


def _names(daemon: ClientDaemon) -> list[str]:
    return [n.name for n in daemon.core.nearby(time.monotonic())]


async def _all_heard(daemon: ClientDaemon) -> list[NearbyEntry]:
    await eventually(
        lambda: {"Alice's desk phone", "Kitchen speakerphone", "Room 4.01"} <= set(_names(daemon)),
        within=15,
        what="the phone, the speakerphone and the room resolved and ranked",
    )
    nearby = await daemon.execute(op.GetNearby())
    assert isinstance(nearby, list)
    return nearby


async def _connect(daemon: ClientDaemon, phone: str | None = None) -> PairStarted:
    started = await daemon.execute(op.Connect(phone=phone))
    assert isinstance(started, PairStarted)
    return started


async def _pair(daemon: ClientDaemon, phone_link: RelayLink) -> None:
    await _all_heard(daemon)
    started = await _connect(daemon)
    prompt = await phone_link.next_event("pair.prompt")
    assert isinstance(prompt, wire.PairPrompt)
    assert prompt.code == started.code
    await phone_link.pair_confirm(prompt.request_id, True)
    await daemon.execute(op.Confirm())
    outcome = await daemon.execute(op.WaitPair(request_id=started.request_id, timeout=5))
    assert getattr(outcome, "outcome", None) == "paired"


async def _pair_and_watch_the_lock(daemon: ClientDaemon, phone_link: RelayLink) -> None:
    await _pair(daemon, phone_link)
    await eventually(lambda: daemon.core.lock_status == "watching", what="lock watch started")


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
    relay: RelayHarness, world: World, make_daemon: Any
) -> None:
    running = await make_daemon(relay.url, world.alice_credential.token)
    daemon = running.daemon
    await _all_heard(daemon)
    expected = ["Alice's desk phone", "Kitchen speakerphone", "Room 4.01"]
    # The first device heard leads until a nearer one has beaten it for the dwell time.
    await eventually(lambda: _names(daemon) == expected, what="nearest first")
    nearby = await _all_heard(daemon)
    names = [d.name for d in nearby]
    phone, speaker, room = nearby
    assert phone.own and phone.connectable and phone.kind == "desk_phone"
    assert not speaker.own and not speaker.connectable
    assert room.kind == "room_system" and not room.connectable
    assert phone.distance_m < speaker.distance_m < room.distance_m
    # Bob's phone is on the air too, but the relay never tells Alice who it is.
    assert daemon.core.adverts_heard > 0
    assert "Bob's desk phone" not in names


async def test_phones_of_others_are_not_offered_for_connection(
    relay: RelayHarness, world: World, make_daemon: Any
) -> None:
    running = await make_daemon(relay.url, world.alice_credential.token)
    daemon = running.daemon
    await _all_heard(daemon)
    with pytest.raises(ControlError) as shared:
        await _connect(daemon, "Kitchen speakerphone")
    assert shared.value.code == "not_connectable" and shared.value.source == "client"
    with pytest.raises(ControlError) as bobs:
        await _connect(daemon, world.bob_phone.id)
    assert (bobs.value.code, bobs.value.source) == ("wrong_account", "relay")
    offered = [p.name for p in daemon.tray_state().phones]
    assert offered == ["Alice's desk phone"]


async def test_connect_completes_only_when_both_ends_confirm(
    relay: RelayHarness, world: World, make_daemon: Any, phone_link: RelayLink
) -> None:
    running = await make_daemon(relay.url, world.alice_credential.token)
    daemon = running.daemon
    await _all_heard(daemon)
    started = await _connect(daemon)
    assert started.phone_id == world.phone.id and len(started.code) == 6
    await daemon.execute(op.Confirm())
    waiting = await daemon.execute(op.WaitPair(request_id=started.request_id, timeout=0.3))
    assert getattr(waiting, "outcome", None) == "pending"
    assert daemon.core.pairings == {}
    prompt = await phone_link.next_event("pair.prompt")
    await phone_link.pair_confirm(prompt.request_id, True)  # type: ignore[attr-defined]
    outcome = await daemon.execute(op.WaitPair(request_id=started.request_id, timeout=5))
    assert getattr(outcome, "outcome", None) == "paired"
    assert list(daemon.core.pairings) == [world.phone.id]
    pairings = await daemon.execute(op.ListPairings())
    assert [p.phone_id for p in pairings] == [world.phone.id]  # type: ignore[attr-defined]
    # Connecting again says the phone is paired already, not that none is nearby.
    for phone in (None, "alice's desk phone"):
        with pytest.raises(ControlError) as again:
            await _connect(daemon, phone)
        assert again.value.code == "already_paired", again.value.message
        assert "Alice's desk phone" in again.value.message


async def test_laptop_lock_and_unlock_reach_the_paired_phone(
    relay: RelayHarness,
    world: World,
    make_daemon: Any,
    phone_link: RelayLink,
    logind: LogindStandIn,
) -> None:
    running = await make_daemon(relay.url, world.alice_credential.token)
    daemon = running.daemon
    await _pair_and_watch_the_lock(daemon, phone_link)
    logind.desktop_lock()
    command = await phone_link.next_event("lock.command")
    assert isinstance(command, wire.LockCommand)
    assert (command.state, command.laptop_id) == ("locked", "laptop-test")
    await phone_link.lock_ack(command.seq)
    await eventually(lambda: world.phone.id in daemon.core.lock_applied, what="lock.applied")
    logind.desktop_unlock()
    command = await phone_link.next_event("lock.command")
    assert isinstance(command, wire.LockCommand) and command.state == "unlocked"


async def test_relay_restart_reconnects_and_resends_the_latest_lock_state(
    start_relay: StartRelay,
    relay: RelayHarness,
    world: World,
    make_daemon: Any,
    phone_link: RelayLink,
    logind: LogindStandIn,
) -> None:
    running = await make_daemon(relay.url, world.alice_credential.token)
    daemon = running.daemon
    await _pair_and_watch_the_lock(daemon, phone_link)
    await relay.server.stop()
    await eventually(lambda: daemon.link is None, what="the client noticed the relay left")
    logind.desktop_lock()  # while the relay is away
    await eventually(lambda: daemon.core.reporter.pending, what="the lock is queued")
    await asyncio.sleep(0.3)
    restarted = await start_relay(port=relay.port)
    await eventually(lambda: daemon.link is not None, what="the client reconnected")
    assert daemon.core.reconnects >= 2
    assert (await _next_lock_command(restarted.url, world.phone_credential.token)).state == "locked"
    await eventually(
        lambda: daemon.core.reporter.last_confirmed == "locked", what="lock.set confirmed"
    )


async def test_connect_refused_when_better_together_is_disabled(
    relay: RelayHarness, world: World, make_daemon: Any, phone_link: RelayLink
) -> None:
    running = await make_daemon(relay.url, world.alice_credential.token)
    await _all_heard(running.daemon)
    await relay.admin.set_user_policy(world.alice.id, world.disabled.id)
    with pytest.raises(ControlError) as refused:
        await _connect(running.daemon)
    assert (refused.value.code, refused.value.source) == ("policy_denied", "relay")
    assert "Disabled" in refused.value.message


async def test_actions_fail_clearly_while_the_relay_is_unreachable(
    start_relay: StartRelay, world: World, relay: RelayHarness, make_daemon: Any
) -> None:
    await relay.server.stop()
    running = await make_daemon(relay.url, world.alice_credential.token)
    daemon = running.daemon
    await eventually(lambda: daemon.core.relay_error, what="a relay error")
    assert "cannot reach the relay" in (daemon.core.relay_error or "")
    with pytest.raises(ControlError) as unreachable:
        await _connect(daemon, world.phone.id)
    assert unreachable.value.code == "relay_unreachable"
    assert daemon.status().relay.connected is False


async def test_bad_credential_is_reported_in_status(
    relay: RelayHarness, world: World, make_daemon: Any
) -> None:
    running = await make_daemon(relay.url, "not-a-credential")
    await eventually(lambda: running.daemon.core.relay_error, what="a relay error")
    assert "HTTP 401" in (running.daemon.core.relay_error or "")


def _in_process(daemon: ClientDaemon, on_quit: Any) -> CommandTrayActions:
    async def run(kind: type[op.Command[Any]], args: Any) -> object:
        return await daemon.execute(kind.model_validate(args))

    return CommandTrayActions(run, lambda: daemon.core.meeting_id, on_quit)


async def test_tray_menu_drives_connecting_my_phone(
    relay: RelayHarness, world: World, make_daemon: Any, phone_link: RelayLink
) -> None:
    running = await make_daemon(relay.url, world.alice_credential.token)
    daemon = running.daemon
    await _all_heard(daemon)
    quits: list[bool] = []
    actions = _in_process(daemon, lambda: quits.append(True))

    def entry(prefix: str) -> Any:
        return next(e for e in build_menu(daemon.tray_state()) if e.label.startswith(prefix))

    await eventually(lambda: daemon.link is not None)
    connect = entry("Connect Alice's desk phone")
    assert connect.enabled and connect.action is not None
    await dispatch_action(connect.action, actions)
    prompt = await phone_link.next_event("pair.prompt")
    confirm = entry("Confirm connecting Alice's desk phone")
    assert f"code {prompt.code}" in confirm.label  # type: ignore[attr-defined]
    await phone_link.pair_confirm(prompt.request_id, True)  # type: ignore[attr-defined]
    assert confirm.action is not None
    await dispatch_action(confirm.action, actions)
    await eventually(lambda: daemon.core.pairings, what="paired through the tray")
    lock_row = entry("Lock my phone with this laptop")
    assert lock_row.enabled and lock_row.checked is True
    assert lock_row.action is not None
    await dispatch_action(lock_row.action, actions)
    assert daemon.core.reporter.enabled is False
    assert running.saved[-1].lock_sync is False
    await dispatch_action(entry("Quit").action, actions)  # type: ignore[arg-type]
    # Quit stops the client, then closes the tray.
    assert quits == [True]
    await eventually(lambda: running.task.done(), what="the client stopped")


async def test_audio_goes_to_the_paired_phone_and_back_and_a_nearby_room_joins(
    relay: RelayHarness, world: World, make_daemon: Any, phone_link: RelayLink
) -> None:
    running = await make_daemon(relay.url, world.alice_credential.token)
    daemon = running.daemon
    with pytest.raises(ControlError) as unpaired:
        await daemon.execute(op.AudioOn(meeting="m-1", wait=0))
    assert unpaired.value.code == "not_paired"
    await _pair(daemon, phone_link)

    async def phone_takes_over() -> None:
        command = await phone_link.next_event("audio.command")
        assert isinstance(command, wire.AudioCommand) and command.action == "take"
        assert command.meeting_id == "m-1"
        await phone_link.audio_ack(command.handoff_id, ok=True)

    phone_side = asyncio.create_task(phone_takes_over())
    active = await daemon.execute(op.AudioOn(meeting="m-1", wait=5))
    await phone_side
    assert isinstance(active, HandoffView)
    assert active.state == "active" and active.phone_id == world.phone.id
    assert daemon.tray_state().audio_phone_id == world.phone.id
    released = await daemon.execute(op.AudioOff(wait=5))
    assert isinstance(released, HandoffView) and released.state == "released"
    release = await phone_link.next_event("audio.command")
    assert isinstance(release, wire.AudioCommand) and release.action == "release"

    room = await RelayLink.connect(relay.url, world.room_credential.token)
    try:
        # Names match case-insensitively.
        joined = await daemon.execute(op.Join(room="room 4.01", wait=5))
        assert isinstance(joined, JoinView)
        assert joined.outcome == "accepted" and joined.meeting_id == "m-1"
        command = await room.next_event("join.command")
        assert isinstance(command, wire.JoinCommand) and command.meeting_id == "m-1"
        assert daemon.tray_state().last_join == JoinOutcome(
            join_id=joined.join_id, room_name="Room 4.01", outcome="accepted", meeting_id="m-1"
        )
        # A word of the name is enough when one room has it; a room not nearby is not sent.
        again = await daemon.execute(op.Join(room="4.01", meeting="m-2", wait=5))
        assert isinstance(again, JoinView) and again.outcome == "accepted"
        with pytest.raises(ControlError) as far:
            await daemon.execute(op.Join(room="Borealis", wait=5))
        assert far.value.code == "no_room" and "'Room 4.01'" in far.value.message
    finally:
        await room.close()


async def test_a_tray_attached_over_the_control_socket_drives_the_running_client(
    tmp_path: Path, relay: RelayHarness, world: World, make_daemon: Any, phone_link: RelayLink
) -> None:
    running = await make_daemon(relay.url, world.alice_credential.token)
    daemon = running.daemon
    path = tmp_path / "control.sock"
    server = ControlServer(path, ControlApi(daemon.execute).handle)
    await server.start()
    quits: list[bool] = []
    actions = remote_actions(path, lambda: None, lambda: quits.append(True))
    try:
        await _all_heard(daemon)
        await eventually(lambda: daemon.link is not None)
        state = await fetch_tray_state(path)
        assert state == daemon.tray_state()
        menu = build_menu(state)
        connect = next(e for e in menu if e.label.startswith("Connect Alice's desk phone"))
        assert connect.action is not None
        await dispatch_action(connect.action, actions)
        prompt = await phone_link.next_event("pair.prompt")
        await phone_link.pair_confirm(prompt.request_id, True)  # type: ignore[attr-defined]
        state = await fetch_tray_state(path)
        assert state.pending is not None and state.pending.needs_my_confirmation
        await dispatch_action(Action("confirm_pairing", (world.phone.id,)), actions)
        await eventually(lambda: daemon.core.pairings, what="paired from the attached tray")
        await dispatch_action(Action("set_meeting", ("weekly",)), actions)
        assert daemon.core.meeting_id == "weekly"
        assert (await fetch_tray_state(path)).meeting_id == "weekly"
        await dispatch_action(Action("leave_meeting"), actions)
        assert daemon.core.meeting_id is None
        await dispatch_action(Action("quit"), actions)
        # Quit stops the client the tray is attached to, then closes the tray.
        assert quits == [True]
        await eventually(lambda: running.task.done(), what="the client stopped")
        assert running.task.exception() is None
    finally:
        await server.stop()
    assert (await fetch_tray_state(path)).relay_connected is False


async def test_a_second_client_with_the_same_laptop_id_is_not_fought_over(
    relay: RelayHarness, world: World, make_daemon: Any
) -> None:
    first = await make_daemon(relay.url, world.alice_credential.token, reconnect_max_s=5.0)
    await eventually(lambda: first.daemon.link is not None, what="the first client connected")
    second = await make_daemon(relay.url, world.alice_credential.token, reconnect_max_s=5.0)
    await eventually(lambda: first.daemon.link is None, what="the first client was replaced")
    assert "another client with this laptop id" in (first.daemon.core.relay_error or "")
    await asyncio.sleep(1.0)  # the replaced client backs off to the cap instead of retrying now
    assert first.daemon.link is None and second.daemon.link is not None


async def test_a_lock_the_relay_never_confirmed_survives_a_client_restart(
    start_relay: StartRelay,
    relay: RelayHarness,
    world: World,
    make_daemon: Any,
    phone_link: RelayLink,
    logind: LogindStandIn,
) -> None:
    stored: list[Any] = [None]
    persistence = {"save_unsent_lock": lambda state: stored.__setitem__(0, state)}
    first = await make_daemon(relay.url, world.alice_credential.token, persistence)
    await _pair_and_watch_the_lock(first.daemon, phone_link)
    await relay.server.stop()
    await eventually(lambda: first.daemon.link is None, what="the client noticed the relay left")
    logind.desktop_lock()
    await eventually(lambda: stored[0] == "locked", what="the unsent lock was saved")
    first.daemon.stop()
    await first.task
    restarted = await start_relay(port=relay.port)
    second = await make_daemon(
        restarted.url, world.alice_credential.token, {**persistence, "unsent_lock": stored[0]}
    )
    assert (await _next_lock_command(restarted.url, world.phone_credential.token)).state == "locked"
    await eventually(lambda: stored[0] is None, what="the saved lock cleared once confirmed")
    assert second.daemon.core.reporter.last_confirmed == "locked"


async def test_a_hand_off_the_relay_forgot_in_a_restart_is_shown_released(
    start_relay: Any, relay: RelayHarness, world: World, make_daemon: Any, phone_link: RelayLink
) -> None:
    running = await make_daemon(relay.url, world.alice_credential.token)
    daemon = running.daemon
    await _pair(daemon, phone_link)

    async def phone_takes_over() -> None:
        command = await phone_link.next_event("audio.command")
        assert isinstance(command, wire.AudioCommand)
        await phone_link.audio_ack(command.handoff_id, ok=True)

    phone_side = asyncio.create_task(phone_takes_over())
    active = await daemon.execute(op.AudioOn(meeting="m-1", wait=5))
    await phone_side
    assert isinstance(active, HandoffView) and active.state == "active"
    port = relay.server.port
    await relay.server.stop()
    await start_relay(port=port)  # short-lived state is gone; the client reconnects
    await eventually(
        lambda: daemon.tray_state().audio_phone_id is None, what="the hand-off shown released"
    )
    with pytest.raises(ControlError) as nothing:
        await daemon.execute(op.AudioOff(wait=1))
    assert nothing.value.code == "no_audio"
