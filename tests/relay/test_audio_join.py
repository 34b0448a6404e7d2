"""Audio hand-off to a paired phone, and proximity join of a meeting room."""

from __future__ import annotations

from relay.admin.store_admin import IssuedCredential
from relay.domain.model import Device
from relay.protocol import wire
from relay.protocol.link import RelayLink
from tests.relay.conftest import RelayHarness, World
from tests.relay.helpers import pair, paired_alice, refusal, sight


async def _room_in_sight(
    relay: RelayHarness, world: World, credential: IssuedCredential, room: Device
) -> tuple[RelayLink, RelayLink]:
    """A room system connected, and a laptop of alice's connected that has just sighted it."""
    room_link = await relay.device(credential)
    laptop = await relay.laptop(world.alice)
    await sight(relay, laptop, room)
    return laptop, room_link


async def test_audio_handoff_take_ack_release(relay: RelayHarness, world: World) -> None:
    laptop, phone = await paired_alice(relay, world, "laptop-a")
    assert world.alice.phone is not None
    selected = await laptop.audio_select(world.alice.phone.id, "meeting-42")
    take = await phone.next_event("audio.command")
    assert isinstance(take, wire.AudioCommand)
    assert (take.action, take.meeting_id, take.handoff_id) == (
        "take",
        "meeting-42",
        selected.handoff_id,
    )
    await phone.audio_ack(selected.handoff_id, ok=True)
    active = await laptop.next_event("audio.state")
    assert isinstance(active, wire.AudioState) and active.state == "active"

    await laptop.audio_release(selected.handoff_id)
    release = await phone.next_event("audio.command")
    assert isinstance(release, wire.AudioCommand) and release.action == "release"
    released = await laptop.next_event("audio.state")
    assert isinstance(released, wire.AudioState) and released.state == "released"
    await phone.audio_ack(selected.handoff_id, ok=True)
    # The phone is free again.
    again = await laptop.audio_select(world.alice.phone.id, "meeting-43")
    assert again.handoff_id != selected.handoff_id
    await laptop.close()
    await phone.close()


async def test_one_handoff_per_phone(relay: RelayHarness, world: World) -> None:
    laptop, phone = await paired_alice(relay, world, "laptop-a")
    assert world.alice.phone is not None
    other = await relay.laptop(world.alice, "laptop-b")
    await pair(relay, other, phone, world.alice.phone)
    await laptop.audio_select(world.alice.phone.id, "m1")
    code = await refusal(other.audio_select(world.alice.phone.id, "m2"))
    assert code == wire.ErrorCode.BUSY
    for link in (laptop, other, phone):
        await link.close()


async def test_failed_take_is_reported_to_the_laptop(relay: RelayHarness, world: World) -> None:
    laptop, phone = await paired_alice(relay, world, "laptop-a")
    assert world.alice.phone is not None
    selected = await laptop.audio_select(world.alice.phone.id, "m1")
    await phone.next_event("audio.command")
    await phone.audio_ack(selected.handoff_id, ok=False, detail="no audio device")
    failed = await laptop.next_event("audio.state")
    assert isinstance(failed, wire.AudioState)
    assert (failed.state, failed.reason) == ("failed", "no audio device")
    await laptop.close()
    await phone.close()


async def test_laptop_disconnect_releases_the_phone(relay: RelayHarness, world: World) -> None:
    laptop, phone = await paired_alice(relay, world, "laptop-a")
    assert world.alice.phone is not None
    selected = await laptop.audio_select(world.alice.phone.id, "m1")
    await phone.next_event("audio.command")
    await laptop.close()
    release = await phone.next_event("audio.command")
    assert isinstance(release, wire.AudioCommand)
    assert (release.action, release.handoff_id, release.reason) == (
        "release",
        selected.handoff_id,
        "laptop disconnected",
    )
    await phone.close()


async def test_unpair_releases_the_handoff(relay: RelayHarness, world: World) -> None:
    laptop, phone = await paired_alice(relay, world, "laptop-a")
    assert world.alice.phone is not None
    await laptop.audio_select(world.alice.phone.id, "m1")
    await phone.next_event("audio.command")
    await laptop.pair_remove(world.alice.phone.id)
    release = await phone.next_event("audio.command")
    assert isinstance(release, wire.AudioCommand) and release.reason == "unpaired"
    released = await laptop.next_event("audio.state")
    assert isinstance(released, wire.AudioState) and released.state == "released"
    await laptop.close()
    await phone.close()


async def test_phone_disconnect_tells_the_laptop(relay: RelayHarness, world: World) -> None:
    laptop, phone = await paired_alice(relay, world, "laptop-a")
    assert world.alice.phone is not None
    await laptop.audio_select(world.alice.phone.id, "m1")
    await phone.close()
    released = await laptop.next_event("audio.state")
    assert isinstance(released, wire.AudioState) and released.reason == "phone disconnected"
    await laptop.close()


async def test_audio_refusals(relay: RelayHarness, world: World) -> None:
    assert world.alice.phone is not None and world.bob.phone is not None
    laptop, phone = await paired_alice(relay, world, "laptop-a")
    unpaired = await relay.laptop(world.alice, "laptop-z")
    code = await refusal(unpaired.audio_select(world.alice.phone.id, "m"))
    assert code == wire.ErrorCode.NOT_PAIRED
    assert await refusal(laptop.audio_select(world.bob.phone.id, "m")) == wire.ErrorCode.NOT_PAIRED
    carol = await relay.laptop(world.carol)
    assert await refusal(carol.audio_select(world.alice.phone.id, "m")) == wire.ErrorCode.NOT_FOUND
    await phone.close()
    code = await refusal(laptop.audio_select(world.alice.phone.id, "m"))
    assert code == wire.ErrorCode.DEVICE_OFFLINE
    assert await refusal(laptop.audio_release("ho_nothing")) == wire.ErrorCode.NOT_FOUND
    for link in (laptop, unpaired, carol):
        await link.close()


async def test_auto_accept_room_joins_at_once(relay: RelayHarness, world: World) -> None:
    laptop, room = await _room_in_sight(relay, world, world.room_credential, world.room)
    result = await laptop.join_request(world.room.id, "meeting-7")
    assert result.outcome == "accepted"
    command = await room.next_event("join.command")
    assert isinstance(command, wire.JoinCommand)
    assert (command.meeting_id, command.user_name, command.join_id) == (
        "meeting-7",
        "alice",
        result.join_id,
    )
    await laptop.close()
    await room.close()


async def test_prompting_room_decides(relay: RelayHarness, world: World) -> None:
    laptop, room = await _room_in_sight(
        relay, world, world.prompt_room_credential, world.prompt_room
    )
    first = await laptop.join_request(world.prompt_room.id, "m1")
    assert first.outcome == "pending"
    prompt = await room.next_event("join.prompt")
    assert isinstance(prompt, wire.JoinPrompt) and prompt.join_id == first.join_id
    await room.join_respond(first.join_id, accept=True)
    outcome = await laptop.next_event("join.result")
    assert isinstance(outcome, wire.JoinResult) and outcome.outcome == "accepted"

    second = await laptop.join_request(world.prompt_room.id, "m2")
    await room.next_event("join.prompt")
    await room.join_respond(second.join_id, accept=False)
    outcome = await laptop.next_event("join.result")
    assert isinstance(outcome, wire.JoinResult) and outcome.outcome == "declined"
    await laptop.close()
    await room.close()


async def test_unanswered_join_prompt_expires(relay: RelayHarness, world: World) -> None:
    laptop, room = await _room_in_sight(
        relay, world, world.prompt_room_credential, world.prompt_room
    )
    pending = await laptop.join_request(world.prompt_room.id, "m1")
    relay.clock.advance(relay.settings.join_prompt_ttl_s + 1)
    assert await refusal(room.join_respond(pending.join_id)) == wire.ErrorCode.EXPIRED
    outcome = await laptop.next_event("join.result", within=5)
    assert isinstance(outcome, wire.JoinResult) and outcome.outcome == "expired"
    await laptop.close()
    await room.close()


async def test_join_refusals(relay: RelayHarness, world: World) -> None:
    room = await relay.device(world.room_credential)
    laptop = await relay.laptop(world.alice)
    code = await refusal(laptop.join_request(world.room.id, "m"))
    assert code == wire.ErrorCode.NO_FRESH_SIGHTING
    carol = await relay.laptop(world.carol)
    assert await refusal(carol.join_request(world.room.id, "m")) == wire.ErrorCode.NOT_FOUND
    off = await relay.admin.create_policy(world.contoso.id, "No join", proximity_join="off")
    await relay.admin.set_device_policy(world.room.id, off.id)
    await sight(relay, laptop, world.room)
    assert await refusal(laptop.join_request(world.room.id, "m")) == wire.ErrorCode.POLICY_DENIED
    await relay.admin.set_device_policy(world.room.id, None)
    await room.close()
    code = await refusal(laptop.join_request(world.room.id, "m"))
    assert code == wire.ErrorCode.DEVICE_OFFLINE
    for link in (laptop, carol):
        await link.close()
