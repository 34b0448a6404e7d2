"""What a pairing allows and who may add a room to a meeting: every refusal of ``lock.*``,
``audio.*``, ``join.*``, ``console.join`` and ``login_code.report``, and the flows they guard."""

from __future__ import annotations

from dataclasses import replace

import pytest

from relay.domain.service import DevicePrincipal, LaptopPrincipal, Rules
from relay.protocol import wire
from relay.protocol.wire import ErrorCode
from tests.domain.conftest import Domain, World, build_domain, build_world, events, refused


def laptop_at(world: World, laptop_id: str = "laptop-1") -> str:
    return f"laptop/{world.alice.user.id}/{laptop_id}"


# --- lock --------------------------------------------------------------------------------------
async def test_a_lock_change_is_sent_to_every_paired_phone_with_a_growing_seq(
    domain: Domain, world: World
) -> None:
    laptop, _ = await domain.paired(world.alice)
    second = await domain.admin.create_device(world.contoso.id, "desk 2", "desk_phone", "personal")
    await domain.admin.sign_in_device(second.id, world.alice.user.id)
    await domain.admin.pair(world.alice.user.id, "laptop-1", second.id)
    phones = sorted([world.alice.phone.id, second.id])
    outcome = await domain.send(laptop, wire.LockSet(id=1, state="locked"))
    assert outcome.result == wire.LockSetResult(
        state="locked", phones=[wire.PhoneLockSeq(phone_id=p, seq=1) for p in phones]
    )
    assert [(d.address, d.event) for d in outcome.deliveries] == [
        (f"device/{p}", wire.LockCommand(seq=1, state="locked", laptop_id="laptop-1"))
        for p in phones
    ]
    again = await domain.send(laptop, wire.LockSet(id=2, state="unlocked"))
    assert isinstance(again.result, wire.LockSetResult)
    assert [p.seq for p in again.result.phones] == [2, 2]


async def test_a_lock_change_from_an_unpaired_laptop_is_not_paired(
    domain: Domain, world: World
) -> None:
    laptop = await domain.laptop(world.alice)
    error = await refused(domain.send(laptop, wire.LockSet(id=1, state="locked")))
    assert (error.code, error.message) == (
        ErrorCode.NOT_PAIRED,
        "this laptop is not paired with a phone",
    )


async def test_a_paired_phone_given_to_another_account_takes_no_lock(
    domain: Domain, world: World
) -> None:
    laptop, _ = await domain.paired(world.alice)
    # By hand: the phone now names bob but the pairing row stayed.
    phone_id = world.alice.phone.id
    domain.store.devices_[phone_id] = replace(
        domain.store.devices_[phone_id], user_id=world.bob.user.id
    )
    domain.store._changed("devices", [phone_id])
    error = await refused(domain.send(laptop, wire.LockSet(id=1, state="locked")))
    assert error.code is ErrorCode.NOT_PAIRED


async def test_a_paired_phone_not_signed_in_takes_no_lock(domain: Domain, world: World) -> None:
    laptop, _ = await domain.paired(world.alice)
    phone_id = world.alice.phone.id
    domain.store.devices_[phone_id] = replace(
        domain.store.devices_[phone_id], state="waiting_for_sign_in"
    )
    domain.store._changed("devices", [phone_id])
    error = await refused(domain.send(laptop, wire.LockSet(id=1, state="locked")))
    assert error.code is ErrorCode.NOT_PAIRED


async def test_a_pairing_row_naming_another_tenants_phone_gives_no_control(
    domain: Domain, world: World
) -> None:
    # Written by hand: carol's phone signed in as alice, and paired with alice's laptop.
    phone_id = world.carol.phone.id
    domain.store.devices_[phone_id] = replace(
        domain.store.devices_[phone_id], user_id=world.alice.user.id
    )
    domain.store._changed("devices", [phone_id])
    await domain.admin.store.add_pairing(
        replace(
            (await domain.admin.pair(world.alice.user.id, "laptop-1", world.alice.phone.id)),
            phone_id=phone_id,
        )
    )
    await domain.store.remove_pairing(world.alice.user.id, "laptop-1", world.alice.phone.id)
    laptop = await domain.laptop(world.alice)
    error = await refused(domain.send(laptop, wire.LockSet(id=1, state="locked")))
    assert error.code is ErrorCode.NOT_PAIRED
    error = await refused(
        domain.send(laptop, wire.AudioSelect(id=2, phone_id=phone_id, meeting_id="m"))
    )
    assert error.code is ErrorCode.NOT_FOUND


async def test_a_lock_change_under_a_disabled_policy_is_denied(
    domain: Domain, world: World
) -> None:
    laptop, _ = await domain.paired(world.dave)
    error = await refused(domain.send(laptop, wire.LockSet(id=1, state="locked")))
    assert error.code is ErrorCode.POLICY_DENIED
    assert await domain.store.lock_record(world.dave.phone.id) is None


async def test_a_lock_ack_tells_the_laptop_once_the_current_command_is_applied(
    domain: Domain, world: World
) -> None:
    laptop, phone = await domain.paired(world.alice)
    await domain.send(laptop, wire.LockSet(id=1, state="locked"))
    await domain.send(laptop, wire.LockSet(id=2, state="unlocked"))
    superseded = await domain.send(phone, wire.LockAck(id=3, seq=1))
    assert superseded.result == wire.Done() and superseded.deliveries == []
    current = await domain.send(phone, wire.LockAck(id=4, seq=2))
    assert [(d.address, d.event) for d in current.deliveries] == [
        (
            laptop_at(world),
            wire.LockApplied(phone_id=world.alice.phone.id, seq=2, state="unlocked"),
        )
    ]
    repeated = await domain.send(phone, wire.LockAck(id=5, seq=2))
    assert repeated.deliveries == []
    record = await domain.store.lock_record(world.alice.phone.id)
    assert record is not None and record.acked_seq == 2


async def test_a_lock_ack_for_a_command_never_sent_is_wrong_state(
    domain: Domain, world: World
) -> None:
    laptop, phone = await domain.paired(world.alice)
    error = await refused(domain.send(phone, wire.LockAck(id=1, seq=1)))
    assert (error.code, error.message) == (ErrorCode.WRONG_STATE, "no lock command with seq 1")
    await domain.send(laptop, wire.LockSet(id=2, state="locked"))
    error = await refused(domain.send(phone, wire.LockAck(id=3, seq=2)))
    assert (error.code, error.message) == (ErrorCode.WRONG_STATE, "no lock command with seq 2")


# --- audio -------------------------------------------------------------------------------------
async def _selected(domain: Domain, world: World) -> tuple[LaptopPrincipal, DevicePrincipal, str]:
    laptop, phone = await domain.paired(world.alice)
    outcome = await domain.send(
        laptop, wire.AudioSelect(id=1, phone_id=world.alice.phone.id, meeting_id="m-1")
    )
    assert isinstance(outcome.result, wire.AudioSelectResult)
    return laptop, phone, outcome.result.handoff_id


async def test_selecting_the_phone_for_audio_sends_it_a_take_command(
    domain: Domain, world: World
) -> None:
    laptop, _ = await domain.paired(world.alice)
    outcome = await domain.send(
        laptop, wire.AudioSelect(id=1, phone_id=world.alice.phone.id, meeting_id="m-1")
    )
    assert outcome.result == wire.AudioSelectResult(handoff_id="ho_1")
    assert [(d.address, d.event) for d in outcome.deliveries] == [
        (
            f"device/{world.alice.phone.id}",
            wire.AudioCommand(
                handoff_id="ho_1", action="take", meeting_id="m-1", laptop_id="laptop-1"
            ),
        )
    ]


async def test_an_audio_hand_off_to_another_tenants_phone_is_not_found(
    domain: Domain, world: World
) -> None:
    laptop = await domain.laptop(world.alice)
    phone_id = world.carol.phone.id
    error = await refused(
        domain.send(laptop, wire.AudioSelect(id=1, phone_id=phone_id, meeting_id="m"))
    )
    assert (error.code, error.message) == (ErrorCode.NOT_FOUND, f"no device {phone_id!r}")


async def test_an_audio_hand_off_to_an_unpaired_phone_is_not_paired(
    domain: Domain, world: World
) -> None:
    await domain.paired(world.alice)
    laptop = await domain.laptop(world.alice, "laptop-2")
    error = await refused(
        domain.send(laptop, wire.AudioSelect(id=1, phone_id=world.alice.phone.id, meeting_id="m"))
    )
    assert (error.code, error.message) == (
        ErrorCode.NOT_PAIRED,
        "this laptop is not paired with that phone",
    )


async def test_an_audio_hand_off_to_a_phone_now_of_another_account_is_not_paired(
    domain: Domain, world: World
) -> None:
    laptop, _ = await domain.paired(world.alice)
    phone_id = world.alice.phone.id
    domain.store.devices_[phone_id] = replace(
        domain.store.devices_[phone_id], user_id=world.bob.user.id
    )
    domain.store._changed("devices", [phone_id])
    error = await refused(
        domain.send(laptop, wire.AudioSelect(id=1, phone_id=phone_id, meeting_id="m"))
    )
    assert error.code is ErrorCode.NOT_PAIRED


async def test_an_audio_hand_off_under_a_disabled_policy_is_denied(
    domain: Domain, world: World
) -> None:
    laptop, _ = await domain.paired(world.dave)
    error = await refused(
        domain.send(laptop, wire.AudioSelect(id=1, phone_id=world.dave.phone.id, meeting_id="m"))
    )
    assert error.code is ErrorCode.POLICY_DENIED


async def test_an_audio_hand_off_to_an_offline_phone_is_refused(
    domain: Domain, world: World
) -> None:
    laptop, _ = await domain.paired(world.alice)
    domain.offline(world.alice.phone)
    error = await refused(
        domain.send(laptop, wire.AudioSelect(id=1, phone_id=world.alice.phone.id, meeting_id="m"))
    )
    assert error.code is ErrorCode.DEVICE_OFFLINE


async def test_a_phone_busy_with_another_laptops_audio_is_busy(
    domain: Domain, world: World
) -> None:
    await _selected(domain, world)
    await domain.admin.pair(world.alice.user.id, "laptop-2", world.alice.phone.id)
    other = await domain.laptop(world.alice, "laptop-2")
    error = await refused(
        domain.send(other, wire.AudioSelect(id=1, phone_id=world.alice.phone.id, meeting_id="m"))
    )
    assert (error.code, error.message) == (
        ErrorCode.BUSY,
        "the phone is already handling a meeting's audio",
    )


async def test_choosing_another_phone_releases_the_first(domain: Domain, world: World) -> None:
    laptop, _, first = await _selected(domain, world)
    second = await domain.admin.create_device(world.contoso.id, "desk 2", "desk_phone", "personal")
    await domain.admin.sign_in_device(second.id, world.alice.user.id)
    await domain.admin.pair(world.alice.user.id, "laptop-1", second.id)
    domain.online(second)
    outcome = await domain.send(
        laptop, wire.AudioSelect(id=2, phone_id=second.id, meeting_id="m-2")
    )
    assert events(outcome) == [
        (f"device/{world.alice.phone.id}", "audio.command"),
        (laptop_at(world), "audio.state"),
        (f"device/{second.id}", "audio.command"),
    ]
    release = outcome.deliveries[0].event
    assert isinstance(release, wire.AudioCommand) and release.action == "release"
    assert release.handoff_id == first and release.reason == "the laptop chose another phone"


async def test_the_phones_ack_makes_the_hand_off_active(domain: Domain, world: World) -> None:
    _, phone, handoff_id = await _selected(domain, world)
    outcome = await domain.send(phone, wire.AudioAck(id=2, handoff_id=handoff_id, ok=True))
    assert [(d.address, d.event) for d in outcome.deliveries] == [
        (
            laptop_at(world),
            wire.AudioState(handoff_id=handoff_id, phone_id=world.alice.phone.id, state="active"),
        )
    ]
    error = await refused(domain.send(phone, wire.AudioAck(id=3, handoff_id=handoff_id, ok=True)))
    assert (error.code, error.message) == (
        ErrorCode.WRONG_STATE,
        "the hand-off is active; cannot phone took",
    )


async def test_a_phone_that_cannot_take_the_audio_frees_itself(
    domain: Domain, world: World
) -> None:
    laptop, phone, handoff_id = await _selected(domain, world)
    outcome = await domain.send(
        phone, wire.AudioAck(id=2, handoff_id=handoff_id, ok=False, detail="no sink")
    )
    assert [(d.address, d.event) for d in outcome.deliveries] == [
        (
            laptop_at(world),
            wire.AudioState(
                handoff_id=handoff_id,
                phone_id=world.alice.phone.id,
                state="failed",
                reason="no sink",
            ),
        )
    ]
    # The phone is free again and the laptop holds nothing.
    (welcome,) = await domain.service.welcome(laptop, domain.now)
    assert isinstance(welcome, wire.Welcome) and welcome.handoffs == []
    again = await domain.send(
        laptop, wire.AudioSelect(id=3, phone_id=world.alice.phone.id, meeting_id="m")
    )
    assert isinstance(again.result, wire.AudioSelectResult)


async def test_another_phone_cannot_acknowledge_a_hand_off(domain: Domain, world: World) -> None:
    _, _, handoff_id = await _selected(domain, world)
    bob_phone = await domain.phone(world.bob)
    error = await refused(
        domain.send(bob_phone, wire.AudioAck(id=2, handoff_id=handoff_id, ok=True))
    )
    assert (error.code, error.message) == (ErrorCode.NOT_FOUND, f"no hand-off {handoff_id!r}")
    error = await refused(domain.send(bob_phone, wire.AudioAck(id=3, handoff_id="ho_9", ok=True)))
    assert (error.code, error.message) == (ErrorCode.NOT_FOUND, "no hand-off 'ho_9'")


async def test_a_hand_off_changed_meanwhile_is_wrong_state(
    domain: Domain, world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, phone, handoff_id = await _selected(domain, world)

    async def lost(key: str, expected: str, value: str, ttl: float, now: float) -> bool:
        return False

    monkeypatch.setattr(domain.ephemeral, "replace", lost)
    error = await refused(domain.send(phone, wire.AudioAck(id=2, handoff_id=handoff_id, ok=True)))
    assert (error.code, error.message) == (ErrorCode.WRONG_STATE, "the hand-off changed meanwhile")


async def test_releasing_the_audio_tells_the_phone_and_the_laptop(
    domain: Domain, world: World
) -> None:
    laptop, phone, handoff_id = await _selected(domain, world)
    outcome = await domain.send(laptop, wire.AudioRelease(id=2, handoff_id=handoff_id))
    assert [(d.address, d.event) for d in outcome.deliveries] == [
        (
            f"device/{world.alice.phone.id}",
            wire.AudioCommand(
                handoff_id=handoff_id,
                action="release",
                meeting_id="m-1",
                laptop_id="laptop-1",
                reason="released by the laptop",
            ),
        ),
        (
            laptop_at(world),
            wire.AudioState(
                handoff_id=handoff_id,
                phone_id=world.alice.phone.id,
                state="released",
                reason="released by the laptop",
            ),
        ),
    ]
    # Releasing twice: the first release is under way.
    error = await refused(domain.send(laptop, wire.AudioRelease(id=3, handoff_id=handoff_id)))
    assert (error.code, error.message) == (
        ErrorCode.NOT_FOUND,
        f"no active hand-off {handoff_id!r}",
    )
    # The phone's ack of the release closes it.
    done = await domain.send(phone, wire.AudioAck(id=4, handoff_id=handoff_id, ok=True))
    assert done.result == wire.Done() and done.deliveries == []
    assert await domain.ephemeral.get(f"handoff:{handoff_id}", domain.now) is None


async def test_another_laptop_cannot_release_a_hand_off(domain: Domain, world: World) -> None:
    _, _, handoff_id = await _selected(domain, world)
    for other in (await domain.laptop(world.bob), await domain.laptop(world.alice, "laptop-2")):
        error = await refused(domain.send(other, wire.AudioRelease(id=2, handoff_id=handoff_id)))
        assert error.code is ErrorCode.NOT_FOUND
    error = await refused(domain.send(other, wire.AudioRelease(id=3, handoff_id="ho_9")))
    assert error.code is ErrorCode.NOT_FOUND


async def test_a_departing_laptop_releases_its_hand_off(domain: Domain, world: World) -> None:
    laptop, _, _handoff_id = await _selected(domain, world)
    out = await domain.service.disconnected(laptop, domain.now)
    assert [(d.address, d.event.type) for d in out] == [
        (f"device/{world.alice.phone.id}", "audio.command")
    ]
    command = out[0].event
    assert isinstance(command, wire.AudioCommand) and command.reason == "laptop disconnected"
    assert await domain.service.disconnected(laptop, domain.now) == []


async def test_a_departing_phone_tells_the_laptop_its_audio_is_released(
    domain: Domain, world: World
) -> None:
    _, phone, handoff_id = await _selected(domain, world)
    out = await domain.service.disconnected(phone, domain.now)
    assert [(d.address, d.event) for d in out] == [
        (
            laptop_at(world),
            wire.AudioState(
                handoff_id=handoff_id,
                phone_id=world.alice.phone.id,
                state="released",
                reason="phone disconnected",
            ),
        )
    ]
    assert await domain.ephemeral.get(f"handoff:{handoff_id}", domain.now) is None
    assert await domain.service.disconnected(phone, domain.now) == []
    assert await domain.service.end_phone_handoff(world.alice.phone.id, "x", domain.now) == []


async def test_a_phone_taken_away_ends_its_hand_off(domain: Domain, world: World) -> None:
    _, _, _handoff_id = await _selected(domain, world)
    out = await domain.service.end_phone_handoff(world.alice.phone.id, "gone", domain.now)
    assert events_types(out) == ["audio.command", "audio.state"]


def events_types(deliveries: list) -> list[str]:  # type: ignore[type-arg]
    return [d.event.type for d in deliveries]


# --- proximity join ------------------------------------------------------------------------------
async def _join_ready(domain: Domain, world: World, room: str = "room") -> LaptopPrincipal:
    laptop = await domain.laptop(world.bob)
    target = getattr(world, room)
    domain.online(target)
    await domain.sight(laptop, target)
    return laptop


async def test_a_room_that_joins_at_once_is_sent_the_meeting(domain: Domain, world: World) -> None:
    laptop = await _join_ready(domain, world)
    outcome = await domain.send(
        laptop, wire.JoinRequest(id=1, room_id=world.room.id, meeting_id="m-1")
    )
    assert outcome.result == wire.JoinRequestResult(join_id="jn_1", outcome="accepted")
    assert [(d.address, d.event) for d in outcome.deliveries] == [
        (
            f"device/{world.room.id}",
            wire.JoinCommand(join_id="jn_1", meeting_id="m-1", user_name="bob"),
        )
    ]


async def test_a_room_that_prompts_is_asked_and_its_answer_reaches_the_laptop(
    domain: Domain, world: World
) -> None:
    laptop = await _join_ready(domain, world, "prompt_room")
    outcome = await domain.send(
        laptop, wire.JoinRequest(id=1, room_id=world.prompt_room.id, meeting_id="m-1")
    )
    assert outcome.result == wire.JoinRequestResult(join_id="jn_1", outcome="pending")
    assert [(d.address, d.event) for d in outcome.deliveries] == [
        (
            f"device/{world.prompt_room.id}",
            wire.JoinPrompt(
                join_id="jn_1", meeting_id="m-1", user_name="bob", expires_at=domain.now + 60
            ),
        )
    ]
    room = await domain.device(world.credentials[world.prompt_room.id])
    answered = await domain.send(room, wire.JoinRespond(id=2, join_id="jn_1", accept=True))
    assert [(d.address, d.event) for d in answered.deliveries] == [
        (
            f"laptop/{world.bob.user.id}/laptop-1",
            wire.JoinResult(join_id="jn_1", room_id=world.prompt_room.id, outcome="accepted"),
        )
    ]
    error = await refused(domain.send(room, wire.JoinRespond(id=3, join_id="jn_1", accept=True)))
    assert error.code is ErrorCode.NOT_FOUND
    domain.clock.advance(61)
    assert await domain.service.tick(domain.now) == []


async def test_a_declined_prompt_is_declined(domain: Domain, world: World) -> None:
    laptop = await _join_ready(domain, world, "prompt_room")
    await domain.send(laptop, wire.JoinRequest(id=1, room_id=world.prompt_room.id, meeting_id="m"))
    room = await domain.device(world.credentials[world.prompt_room.id])
    answered = await domain.send(room, wire.JoinRespond(id=2, join_id="jn_1", accept=False))
    result = answered.deliveries[0].event
    assert isinstance(result, wire.JoinResult) and result.outcome == "declined"


async def test_an_unanswered_prompt_expires_for_the_laptop(domain: Domain, world: World) -> None:
    laptop = await _join_ready(domain, world, "prompt_room")
    await domain.send(laptop, wire.JoinRequest(id=1, room_id=world.prompt_room.id, meeting_id="m"))
    assert await domain.service.tick(domain.now + 59) == []
    domain.clock.advance(60)
    assert [(d.address, d.event) for d in await domain.service.tick(domain.now)] == [
        (
            f"laptop/{world.bob.user.id}/laptop-1",
            wire.JoinResult(join_id="jn_1", room_id=world.prompt_room.id, outcome="expired"),
        )
    ]
    room = await domain.device(world.credentials[world.prompt_room.id])
    error = await refused(domain.send(room, wire.JoinRespond(id=2, join_id="jn_1", accept=True)))
    assert error.code is ErrorCode.NOT_FOUND


async def test_answering_a_prompt_after_its_deadline_is_expired(
    domain: Domain, world: World
) -> None:
    laptop = await _join_ready(domain, world, "prompt_room")
    await domain.send(laptop, wire.JoinRequest(id=1, room_id=world.prompt_room.id, meeting_id="m"))
    room = await domain.device(world.credentials[world.prompt_room.id])
    domain.clock.advance(60)
    error = await refused(domain.send(room, wire.JoinRespond(id=2, join_id="jn_1", accept=True)))
    assert (error.code, error.message) == (ErrorCode.EXPIRED, "the join prompt has expired")


async def test_a_room_cannot_answer_a_prompt_it_was_not_sent(domain: Domain, world: World) -> None:
    laptop = await _join_ready(domain, world, "prompt_room")
    await domain.send(laptop, wire.JoinRequest(id=1, room_id=world.prompt_room.id, meeting_id="m"))
    other = await domain.device(world.credentials[world.room.id])
    error = await refused(domain.send(other, wire.JoinRespond(id=2, join_id="jn_1", accept=True)))
    assert (error.code, error.message) == (ErrorCode.NOT_FOUND, "no join prompt 'jn_1'")


async def test_a_prompt_answered_meanwhile_on_another_node_is_not_found(
    domain: Domain, world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    laptop = await _join_ready(domain, world, "prompt_room")
    await domain.send(laptop, wire.JoinRequest(id=1, room_id=world.prompt_room.id, meeting_id="m"))
    room = await domain.device(world.credentials[world.prompt_room.id])

    async def lost(key: str, now: float, expected: str | None = None) -> bool:
        return False

    monkeypatch.setattr(domain.ephemeral, "delete", lost)
    error = await refused(domain.send(room, wire.JoinRespond(id=2, join_id="jn_1", accept=True)))
    assert (error.code, error.message) == (ErrorCode.NOT_FOUND, "no join prompt 'jn_1'")
    domain.clock.advance(60)
    assert await domain.service.tick(domain.now) == []


@pytest.mark.parametrize("which", ["other tenant", "unknown"])
async def test_a_join_naming_another_tenants_or_no_room_is_not_found(
    domain: Domain, world: World, which: str
) -> None:
    laptop = await domain.laptop(world.bob)
    room_id = world.fabrikam_room.id if which == "other tenant" else "d_nowhere"
    error = await refused(
        domain.send(laptop, wire.JoinRequest(id=1, room_id=room_id, meeting_id="m"))
    )
    assert (error.code, error.message) == (ErrorCode.NOT_FOUND, f"no device {room_id!r}")


@pytest.mark.parametrize("device", ["alice_phone", "common_phone"])
async def test_a_join_naming_a_device_that_is_not_a_meeting_room_is_forbidden(
    domain: Domain, world: World, device: str
) -> None:
    target = world.alice.phone if device == "alice_phone" else world.common_phone
    laptop = await domain.laptop(world.alice)
    domain.online(target)
    await domain.sight(laptop, target)
    error = await refused(
        domain.send(laptop, wire.JoinRequest(id=1, room_id=target.id, meeting_id="m"))
    )
    assert (error.code, error.message) == (
        ErrorCode.FORBIDDEN,
        f"{target.name!r} is not a meeting room",
    )


@pytest.mark.parametrize(
    ("kind", "mode"), [("room_system", "common_area"), ("conference_phone", "meeting_room")]
)
async def test_a_room_system_or_a_phone_in_meeting_room_mode_takes_a_join(
    domain: Domain, world: World, kind: str, mode: str
) -> None:
    device = await domain.admin.create_device(world.contoso.id, "Room-ish", kind, mode)  # type: ignore[arg-type]
    await domain.settled()
    laptop = await domain.laptop(world.bob)
    domain.online(device)
    await domain.sight(laptop, device)
    outcome = await domain.send(laptop, wire.JoinRequest(id=1, room_id=device.id, meeting_id="m"))
    assert isinstance(outcome.result, wire.JoinRequestResult)


async def test_a_join_naming_a_room_not_signed_in_is_wrong_state(
    domain: Domain, world: World
) -> None:
    laptop = await _join_ready(domain, world)
    await domain.store.sign_in_device(world.room.id, None, "waiting_for_sign_in")
    error = await refused(
        domain.send(laptop, wire.JoinRequest(id=1, room_id=world.room.id, meeting_id="m"))
    )
    assert (error.code, error.message) == (ErrorCode.WRONG_STATE, "'Room 4.01' is not signed in")


async def test_a_join_without_a_fresh_sighting_is_refused(domain: Domain, world: World) -> None:
    laptop = await domain.laptop(world.bob)
    domain.online(world.room)
    error = await refused(
        domain.send(laptop, wire.JoinRequest(id=1, room_id=world.room.id, meeting_id="m"))
    )
    assert (error.code, error.message) == (
        ErrorCode.NO_FRESH_SIGHTING,
        "report a sighting of the room within 120 s first",
    )


async def test_a_join_in_a_room_whose_policy_turns_it_off_is_denied(
    domain: Domain, world: World
) -> None:
    laptop = await _join_ready(domain, world, "off_room")
    error = await refused(
        domain.send(laptop, wire.JoinRequest(id=1, room_id=world.off_room.id, meeting_id="m"))
    )
    assert (error.code, error.message) == (
        ErrorCode.POLICY_DENIED,
        "proximity join is off in the room's policy 'No proximity join'",
    )


async def test_a_join_in_an_offline_room_is_refused(domain: Domain, world: World) -> None:
    laptop = await _join_ready(domain, world)
    domain.offline(world.room)
    error = await refused(
        domain.send(laptop, wire.JoinRequest(id=1, room_id=world.room.id, meeting_id="m"))
    )
    assert (error.code, error.message) == (ErrorCode.DEVICE_OFFLINE, "'Room 4.01' is not connected")


async def test_join_requests_are_capped_per_credential_and_minute() -> None:
    domain = await build_domain(rules=Rules(pushes_per_minute=3))
    try:
        world = await build_world(domain)
        laptop = await _join_ready(domain, world)
        for n in range(3):
            await domain.send(laptop, wire.JoinRequest(id=n, room_id=world.room.id, meeting_id="m"))
        error = await refused(
            domain.send(laptop, wire.JoinRequest(id=4, room_id=world.room.id, meeting_id="m"))
        )
        assert (error.code, error.message) == (
            ErrorCode.RATE_LIMITED,
            "at most 3 pair or join requests a minute",
        )
        # Another credential has its own allowance.
        other = await _join_ready(domain, world)
        other = replace(other, credential_id="c_other")
        await domain.send(other, wire.JoinRequest(id=5, room_id=world.room.id, meeting_id="m"))
    finally:
        await domain.directory.close()


# --- consoles ----------------------------------------------------------------------------------
async def test_a_console_joins_its_room_to_a_meeting(domain: Domain, world: World) -> None:
    console = await domain.device(world.credentials[world.console.id])
    domain.online(world.room)
    outcome = await domain.send(console, wire.ConsoleJoin(id=1, meeting_id="m-1"))
    assert outcome.result == wire.JoinRequestResult(join_id="jn_1", outcome="accepted")
    assert [(d.address, d.event) for d in outcome.deliveries] == [
        (
            f"device/{world.room.id}",
            wire.JoinCommand(join_id="jn_1", meeting_id="m-1", user_name="Room 4.01 panel"),
        )
    ]


async def test_a_device_that_is_not_a_console_cannot_join_a_room(
    domain: Domain, world: World
) -> None:
    phone = await domain.phone(world.alice)
    error = await refused(domain.send(phone, wire.ConsoleJoin(id=1, meeting_id="m")))
    assert (error.code, error.message) == (
        ErrorCode.FORBIDDEN,
        "this device is not a console paired with a room",
    )


async def test_a_console_join_from_a_laptop_is_forbidden_even_called_directly(
    domain: Domain, world: World
) -> None:
    laptop = await domain.laptop(world.alice)
    error = await refused(
        domain.consoles.console_join(laptop, wire.ConsoleJoin(id=1, meeting_id="m"), domain.now)
    )
    assert (error.code, error.message) == (
        ErrorCode.FORBIDDEN,
        "only a console device may send this",
    )


async def test_a_console_whose_room_is_gone_or_elsewhere_joins_nothing(
    domain: Domain, world: World
) -> None:
    console = await domain.device(world.credentials[world.console.id])
    # By hand: the console paired with another tenant's room.
    domain.store.consoles_[world.console.id] = replace(
        domain.store.consoles_[world.console.id], room_id=world.fabrikam_room.id
    )
    domain.online(world.fabrikam_room)
    error = await refused(domain.send(console, wire.ConsoleJoin(id=1, meeting_id="m")))
    assert (error.code, error.message) == (ErrorCode.NOT_FOUND, "the paired room no longer exists")
    domain.store.consoles_[world.console.id] = replace(
        domain.store.consoles_[world.console.id], room_id="d_gone"
    )
    error = await refused(domain.send(console, wire.ConsoleJoin(id=2, meeting_id="m")))
    assert error.code is ErrorCode.NOT_FOUND


async def test_a_console_of_a_removed_device_record_joins_nothing(
    domain: Domain, world: World
) -> None:
    console = await domain.device(world.credentials[world.console.id])
    pairing = domain.store.consoles_[world.console.id]
    await domain.store.remove_device(world.console.id, domain.now)
    domain.store.consoles_[world.console.id] = pairing  # a row left behind
    error = await refused(domain.send(console, wire.ConsoleJoin(id=1, meeting_id="m")))
    assert error.code is ErrorCode.NOT_FOUND


async def test_a_console_join_to_a_room_not_signed_in_or_offline_is_refused(
    domain: Domain, world: World
) -> None:
    console = await domain.device(world.credentials[world.console.id])
    error = await refused(domain.send(console, wire.ConsoleJoin(id=1, meeting_id="m")))
    assert (error.code, error.message) == (ErrorCode.DEVICE_OFFLINE, "'Room 4.01' is not connected")
    domain.online(world.room)
    await domain.store.sign_in_device(world.room.id, None, "waiting_for_sign_in")
    error = await refused(domain.send(console, wire.ConsoleJoin(id=2, meeting_id="m")))
    assert (error.code, error.message) == (ErrorCode.WRONG_STATE, "'Room 4.01' is not signed in")


# --- login codes -----------------------------------------------------------------------------------
async def _asked(domain: Domain, world: World) -> tuple[DevicePrincipal, str]:
    await domain.admin.sign_out_device(world.alice.phone.id)
    phone = await domain.phone(world.alice)
    device = await domain.store.device(world.alice.phone.id)
    assert device is not None
    request_id, event = await domain.provisioning.ask_login_code(device, domain.now)
    assert event == wire.LoginCodeRequest(request_id=request_id)
    return phone, request_id


async def test_a_device_reports_the_login_code_it_was_asked_for(
    domain: Domain, world: World
) -> None:
    phone, request_id = await _asked(domain, world)
    outcome = await domain.send(
        phone, wire.LoginCodeReport(id=1, request_id=request_id, code="abcd efgh")
    )
    assert outcome.result == wire.Done() and outcome.deliveries == []
    shown = await domain.provisioning.shown_login_code(world.alice.phone.id, domain.now)
    assert shown is not None and shown.expires_at == domain.now + 900
    assert (
        await domain.provisioning.device_showing(world.contoso.id, "ABCDEFGH", domain.now)
        == world.alice.phone.id
    )
    assert (
        await domain.provisioning.device_showing(world.fabrikam.id, "ABCDEFGH", domain.now) is None
    )
    code, expires = await domain.provisioning.wait_login_code(request_id, domain.clock)
    assert (code, expires) == ("ABCD-EFGH", domain.now + 900)


async def test_a_device_cannot_answer_another_devices_login_code_request(
    domain: Domain, world: World
) -> None:
    _, request_id = await _asked(domain, world)
    other = await domain.phone(world.bob)
    error = await refused(
        domain.send(other, wire.LoginCodeReport(id=1, request_id=request_id, code="ABCD-EFGH"))
    )
    assert (error.code, error.message) == (
        ErrorCode.NOT_FOUND,
        f"no login code request {request_id!r}",
    )
    assert await domain.provisioning.shown_login_code(world.bob.phone.id, domain.now) is None


async def test_a_report_without_a_request_is_not_found(domain: Domain, world: World) -> None:
    phone = await domain.phone(world.alice)
    error = await refused(
        domain.send(phone, wire.LoginCodeReport(id=1, request_id="lc_9", code="ABCD-EFGH"))
    )
    assert (error.code, error.message) == (ErrorCode.NOT_FOUND, "no login code request 'lc_9'")


async def test_a_malformed_login_code_is_invalid(domain: Domain, world: World) -> None:
    phone, request_id = await _asked(domain, world)
    error = await refused(
        domain.send(phone, wire.LoginCodeReport(id=1, request_id=request_id, code="ABC"))
    )
    assert (error.code, error.message) == (
        ErrorCode.INVALID_REQUEST,
        "a login code is 8 letters and digits, e.g. ABCD-EFGH",
    )


async def test_a_login_code_report_from_a_laptop_is_forbidden_even_called_directly(
    domain: Domain, world: World
) -> None:
    _, request_id = await _asked(domain, world)
    laptop = await domain.laptop(world.alice)
    report = wire.LoginCodeReport(id=1, request_id=request_id, code="ABCD-EFGH")
    error = await refused(domain.provisioning.login_code_report(laptop, report, domain.now))
    assert (error.code, error.message) == (
        ErrorCode.FORBIDDEN,
        "only a device reports its login code",
    )


async def test_an_audio_hand_off_needs_this_laptops_pairing_with_that_very_phone(
    domain: Domain, world: World
) -> None:
    laptop, _ = await domain.paired(world.alice)
    second = await domain.admin.create_device(world.contoso.id, "desk 2", "desk_phone", "personal")
    await domain.admin.sign_in_device(second.id, world.alice.user.id)  # alice's, not paired here
    domain.online(second)
    error = await refused(
        domain.send(laptop, wire.AudioSelect(id=1, phone_id=second.id, meeting_id="m"))
    )
    assert error.code is ErrorCode.NOT_PAIRED


async def test_a_hand_off_whose_record_is_gone_is_no_hand_off(domain: Domain, world: World) -> None:
    laptop, phone, handoff_id = await _selected(domain, world)
    await domain.ephemeral.delete(f"handoff:{handoff_id}", domain.now)  # expired on another node
    assert await domain.service.disconnected(laptop, domain.now) == []
    assert await domain.service.disconnected(phone, domain.now) == []
