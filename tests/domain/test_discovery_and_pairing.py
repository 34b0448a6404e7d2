"""Who may know an EID, and who may pair: every refusal of ``sightings.report``,
``pair.request``, ``pair.confirm`` and ``pair.remove``, and the flows they guard."""

from __future__ import annotations

from dataclasses import replace

import pytest

from relay.domain.service import Rules
from relay.protocol import wire
from relay.protocol.wire import ErrorCode
from tests.domain.conftest import Domain, World, build_domain, build_world, events, refused


async def test_a_laptop_is_told_of_its_tenants_devices_and_its_own_phone_only(
    domain: Domain, world: World
) -> None:
    laptop = await domain.laptop(world.alice)
    sighted = await domain.sight(
        laptop,
        world.room,
        world.alice.phone,
        world.bob.phone,  # another user's personal phone
        world.carol.phone,  # another tenant's phone
        world.fabrikam_room,  # another tenant's room
        world.common_phone,
    )
    assert sighted == [world.room.id, world.alice.phone.id, world.common_phone.id]


async def test_what_a_sighting_describes(domain: Domain, world: World) -> None:
    laptop = await domain.laptop(world.alice)
    eid = domain.eid(world.alice.phone).hex().upper()
    outcome = await domain.send(
        laptop,
        wire.SightingsReport(
            id=1,
            sightings=[
                wire.Sighting(eid=eid, rssi=-61),
                wire.Sighting(eid=domain.eid(world.common_phone).hex(), rssi=-70),
            ],
        ),
    )
    assert outcome.deliveries == []
    assert outcome.result == wire.SightingsResult(
        devices=[
            wire.DeviceDescriptor(
                device_id=world.alice.phone.id,
                eid=eid.lower(),
                name="alice's phone",
                kind="desk_phone",
                mode="personal",
                location="desk",
                capabilities=["lock", "audio"],
                own=True,
                rssi=-61,
            ),
            wire.DeviceDescriptor(
                device_id=world.common_phone.id,
                eid=domain.eid(world.common_phone).hex(),
                name="Lobby phone",
                kind="conference_phone",
                mode="common_area",
                location="",
                capabilities=["join", "audio"],
                own=False,
                rssi=-70,
            ),
        ]
    )


async def test_a_renamed_device_is_described_by_its_new_name_at_the_next_sighting(
    domain: Domain, world: World
) -> None:
    laptop = await domain.laptop(world.alice)
    before = await domain.send(
        laptop,
        wire.SightingsReport(id=1, sightings=[wire.Sighting(eid=domain.eid(world.room).hex(), rssi=-50)]),
    )
    await domain.store.rename_device(world.room.id, "Boardroom", "floor 9")
    await domain.settled()
    after = await domain.send(
        laptop,
        wire.SightingsReport(id=2, sightings=[wire.Sighting(eid=domain.eid(world.room).hex(), rssi=-40)]),
    )
    assert isinstance(before.result, wire.SightingsResult)
    assert isinstance(after.result, wire.SightingsResult)
    assert (before.result.devices[0].name, before.result.devices[0].rssi) != ("Boardroom", -40)
    described = after.result.devices[0]
    assert (described.name, described.location, described.rssi) == ("Boardroom", "floor 9", -40)


async def test_one_report_describes_each_sighting_in_order_with_its_own_power(
    domain: Domain, world: World
) -> None:
    laptop = await domain.laptop(world.alice)
    room, phone = domain.eid(world.room).hex(), domain.eid(world.alice.phone).hex()
    report = wire.SightingsReport(
        id=1,
        sightings=[
            wire.Sighting(eid=phone, rssi=-70),
            wire.Sighting(eid="00" * 8, rssi=-10),
            wire.Sighting(eid=room, rssi=-50),
            wire.Sighting(eid=phone, rssi=-60),
        ],
    )
    outcome = await domain.send(laptop, report)
    assert isinstance(outcome.result, wire.SightingsResult)
    assert [(d.device_id, d.eid, d.rssi, d.own) for d in outcome.result.devices] == [
        (world.alice.phone.id, phone, -70, True),
        (world.room.id, room, -50, False),
        (world.alice.phone.id, phone, -60, True),
    ]
    first, _, third = outcome.result.devices
    assert first.capabilities is not third.capabilities  # each message owns its values


async def test_an_unknown_or_stale_eid_describes_nothing(domain: Domain, world: World) -> None:
    laptop = await domain.laptop(world.alice)
    old = domain.eid(world.room).hex()
    domain.clock.advance(3 * 2**world.room.rotation_exponent)
    await domain.settled()
    unknown = wire.Sighting(eid="00" * 8, rssi=-50)
    stale = wire.Sighting(eid=old, rssi=-50)
    outcome = await domain.send(laptop, wire.SightingsReport(id=1, sightings=[unknown, stale]))
    assert outcome.result == wire.SightingsResult(devices=[])


async def test_a_device_not_signed_in_describes_nothing(domain: Domain, world: World) -> None:
    laptop = await domain.laptop(world.alice)
    await domain.admin.sign_out_device(world.alice.phone.id)
    await domain.settled()
    assert await domain.sight(laptop, world.alice.phone) == []


async def _pair_ready(domain: Domain, world: World) -> tuple[object, object]:
    laptop = await domain.laptop(world.alice)
    phone = await domain.phone(world.alice)
    await domain.sight(laptop, world.alice.phone)
    return laptop, phone


async def test_a_pair_request_prompts_the_phone_and_the_laptop_with_one_code(
    domain: Domain, world: World
) -> None:
    laptop, _ = await _pair_ready(domain, world)
    outcome = await domain.send(laptop, wire.PairRequest(id=1, phone_id=world.alice.phone.id))
    expires = domain.now + 120
    assert outcome.result == wire.PairRequestResult(
        request_id="pr_1", code="123456", expires_at=expires
    )
    prompt = wire.PairPrompt(
        request_id="pr_1",
        code="123456",
        laptop_id="laptop-1",
        laptop_name="alice's laptop",
        phone_id=world.alice.phone.id,
        phone_name="alice's phone",
        user_name="alice",
        expires_at=expires,
    )
    assert [(d.address, d.event) for d in outcome.deliveries] == [
        (f"device/{world.alice.phone.id}", prompt),
        (f"laptop/{world.alice.user.id}/laptop-1", prompt),
    ]


@pytest.mark.parametrize("which", ["other tenant", "unknown"])
async def test_a_pair_request_naming_another_tenants_or_no_phone_is_not_found(
    domain: Domain, world: World, which: str
) -> None:
    laptop = await domain.laptop(world.alice)
    phone_id = world.carol.phone.id if which == "other tenant" else "d_nobody"
    error = await refused(domain.send(laptop, wire.PairRequest(id=1, phone_id=phone_id)))
    assert (error.code, error.message) == (ErrorCode.NOT_FOUND, f"no device {phone_id!r}")


@pytest.mark.parametrize("device", ["room", "common_phone"])
async def test_a_pair_request_naming_a_device_that_is_not_a_personal_phone_is_forbidden(
    domain: Domain, world: World, device: str
) -> None:
    laptop = await domain.laptop(world.alice)
    target = getattr(world, device)
    domain.online(target)
    await domain.sight(laptop, target)
    error = await refused(domain.send(laptop, wire.PairRequest(id=1, phone_id=target.id)))
    assert (error.code, error.message) == (
        ErrorCode.FORBIDDEN,
        "only personal desk phones pair with laptops",
    )


async def test_a_desk_phone_in_a_common_area_is_not_a_personal_phone(
    domain: Domain, world: World
) -> None:
    shared = await domain.admin.create_device(world.contoso.id, "Hall", "desk_phone", "common_area")
    shared = await domain.admin.sign_in_device(shared.id, world.alice.user.id)
    laptop = await domain.laptop(world.alice)
    error = await refused(domain.send(laptop, wire.PairRequest(id=1, phone_id=shared.id)))
    assert error.code is ErrorCode.FORBIDDEN


async def test_a_pair_request_for_a_phone_of_another_account_is_wrong_account(
    domain: Domain, world: World
) -> None:
    laptop = await domain.laptop(world.alice)
    domain.online(world.bob.phone)
    error = await refused(domain.send(laptop, wire.PairRequest(id=1, phone_id=world.bob.phone.id)))
    assert (error.code, error.message) == (
        ErrorCode.WRONG_ACCOUNT,
        "the phone is signed in to another account",
    )


async def test_a_pair_request_for_ones_phone_not_signed_in_is_wrong_account(
    domain: Domain, world: World
) -> None:
    laptop, _ = await _pair_ready(domain, world)
    # The record names alice but the phone waits for sign-in (written by hand).
    await domain.store.sign_in_device(
        world.alice.phone.id, world.alice.user.id, "waiting_for_sign_in"
    )
    error = await refused(
        domain.send(laptop, wire.PairRequest(id=1, phone_id=world.alice.phone.id))
    )
    assert error.code is ErrorCode.WRONG_ACCOUNT


async def test_a_pair_request_under_a_disabled_policy_is_denied(
    domain: Domain, world: World
) -> None:
    laptop = await domain.laptop(world.dave)
    domain.online(world.dave.phone)
    await domain.sight(laptop, world.dave.phone)
    error = await refused(domain.send(laptop, wire.PairRequest(id=1, phone_id=world.dave.phone.id)))
    assert (error.code, error.message) == (
        ErrorCode.POLICY_DENIED,
        "Better Together is Disabled by the account's policy 'No Better Together'",
    )


async def test_the_tenants_default_policy_applies_to_an_account_without_one(
    domain: Domain, world: World
) -> None:
    await domain.admin.set_default_policy(world.contoso.id, world.disabled.id)
    laptop, _ = await _pair_ready(domain, world)
    error = await refused(
        domain.send(laptop, wire.PairRequest(id=1, phone_id=world.alice.phone.id))
    )
    assert error.code is ErrorCode.POLICY_DENIED


async def test_a_pair_request_without_a_fresh_sighting_is_refused(
    domain: Domain, world: World
) -> None:
    laptop = await domain.laptop(world.alice)
    await domain.phone(world.alice)
    error = await refused(
        domain.send(laptop, wire.PairRequest(id=1, phone_id=world.alice.phone.id))
    )
    assert (error.code, error.message) == (
        ErrorCode.NO_FRESH_SIGHTING,
        "report a sighting of the phone in the last 120 s",
    )
    await domain.sight(laptop, world.alice.phone)
    domain.clock.advance(120)  # the sighting is as old as the freshness rule allows: stale
    error = await refused(
        domain.send(laptop, wire.PairRequest(id=1, phone_id=world.alice.phone.id))
    )
    assert error.code is ErrorCode.NO_FRESH_SIGHTING


async def test_another_laptops_sighting_does_not_count(domain: Domain, world: World) -> None:
    other = await domain.laptop(world.alice, "laptop-2")
    await domain.sight(other, world.alice.phone)
    await domain.phone(world.alice)
    laptop = await domain.laptop(world.alice)
    error = await refused(
        domain.send(laptop, wire.PairRequest(id=1, phone_id=world.alice.phone.id))
    )
    assert error.code is ErrorCode.NO_FRESH_SIGHTING


async def test_a_pair_request_for_a_phone_already_paired_is_wrong_state(
    domain: Domain, world: World
) -> None:
    laptop, _ = await domain.paired(world.alice)
    await domain.sight(laptop, world.alice.phone)
    error = await refused(
        domain.send(laptop, wire.PairRequest(id=1, phone_id=world.alice.phone.id))
    )
    assert (error.code, error.message) == (
        ErrorCode.WRONG_STATE,
        "this laptop and phone are already paired",
    )


async def test_a_pair_request_for_an_offline_phone_is_refused(domain: Domain, world: World) -> None:
    laptop = await domain.laptop(world.alice)
    await domain.sight(laptop, world.alice.phone)
    error = await refused(
        domain.send(laptop, wire.PairRequest(id=1, phone_id=world.alice.phone.id))
    )
    assert (error.code, error.message) == (
        ErrorCode.DEVICE_OFFLINE,
        '"alice\'s phone" is not connected',
    )


async def test_pair_requests_are_capped_per_credential_and_minute() -> None:
    domain = await build_domain(rules=Rules(pushes_per_minute=2))
    try:
        world = await build_world(domain)
        laptop, _ = await _pair_ready(domain, world)
        for n in range(2):
            await domain.send(laptop, wire.PairRequest(id=n, phone_id=world.alice.phone.id))
        error = await refused(
            domain.send(laptop, wire.PairRequest(id=3, phone_id=world.alice.phone.id))
        )
        assert (error.code, error.message) == (
            ErrorCode.RATE_LIMITED,
            "at most 2 pair or join requests a minute",
        )
        domain.clock.advance(60)
        await domain.sight(laptop, world.alice.phone)
        await domain.send(laptop, wire.PairRequest(id=4, phone_id=world.alice.phone.id))
    finally:
        await domain.directory.close()


async def test_a_new_pair_request_supersedes_the_phones_pending_one(
    domain: Domain, world: World
) -> None:
    first = await domain.laptop(world.alice)
    second = await domain.laptop(world.alice, "laptop-2")
    await domain.phone(world.alice)
    for laptop in (first, second):
        await domain.sight(laptop, world.alice.phone)
    await domain.send(first, wire.PairRequest(id=1, phone_id=world.alice.phone.id))
    outcome = await domain.send(second, wire.PairRequest(id=2, phone_id=world.alice.phone.id))
    phone, laptop1, laptop2 = (
        f"device/{world.alice.phone.id}",
        f"laptop/{world.alice.user.id}/laptop-1",
        f"laptop/{world.alice.user.id}/laptop-2",
    )
    assert events(outcome) == [
        (phone, "pair.ended"),
        (laptop1, "pair.ended"),
        (phone, "pair.prompt"),
        (laptop2, "pair.prompt"),
    ]
    assert outcome.deliveries[0].event == wire.PairEnded(request_id="pr_1", reason="expired")
    # The same laptop asking again: its own ended request is not announced to it twice.
    await domain.sight(second, world.alice.phone)
    again = await domain.send(second, wire.PairRequest(id=3, phone_id=world.alice.phone.id))
    assert events(again) == [
        (phone, "pair.ended"),
        (phone, "pair.prompt"),
        (laptop2, "pair.prompt"),
    ]


async def _requested(domain: Domain, world: World) -> tuple[object, object, str]:
    laptop, phone = await _pair_ready(domain, world)
    outcome = await domain.send(laptop, wire.PairRequest(id=1, phone_id=world.alice.phone.id))
    assert isinstance(outcome.result, wire.PairRequestResult)
    return laptop, phone, outcome.result.request_id


async def test_both_ends_confirming_pairs_them(domain: Domain, world: World) -> None:
    laptop, phone, request_id = await _requested(domain, world)
    first = await domain.send(phone, wire.PairConfirm(id=2, request_id=request_id, accept=True))
    assert (
        first.result == wire.PairConfirmResult(state="awaiting_laptop") and first.deliveries == []
    )
    assert await domain.store.pairings_of_phone(world.alice.phone.id) == []
    done = await domain.send(laptop, wire.PairConfirm(id=3, request_id=request_id, accept=True))
    assert done.result == wire.PairConfirmResult(state="paired")
    info = wire.PairingInfo(
        laptop_id="laptop-1",
        laptop_name="alice's laptop",
        phone_id=world.alice.phone.id,
        phone_name="alice's phone",
        created_at=domain.now,
    )
    completed = wire.PairCompleted(request_id=request_id, pairing=info)
    assert [(d.address, d.event) for d in done.deliveries] == [
        (f"device/{world.alice.phone.id}", completed),
        (f"laptop/{world.alice.user.id}/laptop-1", completed),
    ]
    listed = await domain.send(laptop, wire.PairingsList(id=4))
    assert listed.result == wire.PairingsResult(pairings=[info])
    assert (await domain.send(phone, wire.PairingsList(id=5))).result == listed.result
    # The request is gone: confirming again finds nothing.
    error = await refused(
        domain.send(laptop, wire.PairConfirm(id=6, request_id=request_id, accept=True))
    )
    assert error.code is ErrorCode.NOT_FOUND
    assert await domain.service._pending_pair_of_phone(world.alice.phone.id, domain.now) is None


async def test_a_decline_ends_the_request_for_the_other_side(domain: Domain, world: World) -> None:
    laptop, phone, request_id = await _requested(domain, world)
    outcome = await domain.send(laptop, wire.PairConfirm(id=2, request_id=request_id, accept=False))
    assert outcome.result == wire.PairConfirmResult(state="declined")
    assert [(d.address, d.event) for d in outcome.deliveries] == [
        (f"device/{world.alice.phone.id}", wire.PairEnded(request_id=request_id, reason="declined"))
    ]
    assert await domain.service._pending_pair_of_phone(world.alice.phone.id, domain.now) is None
    # The phone declining tells the laptop.
    await domain.sight(laptop, world.alice.phone)
    again = await domain.send(laptop, wire.PairRequest(id=3, phone_id=world.alice.phone.id))
    assert isinstance(again.result, wire.PairRequestResult)
    declined = await domain.send(
        phone, wire.PairConfirm(id=4, request_id=again.result.request_id, accept=False)
    )
    assert events(declined) == [(f"laptop/{world.alice.user.id}/laptop-1", "pair.ended")]


async def test_confirming_an_unknown_pair_request_is_not_found(
    domain: Domain, world: World
) -> None:
    phone = await domain.phone(world.alice)
    error = await refused(
        domain.send(phone, wire.PairConfirm(id=1, request_id="pr_9", accept=True))
    )
    assert (error.code, error.message) == (ErrorCode.NOT_FOUND, "no pair request 'pr_9'")


async def test_another_phone_cannot_confirm_a_pair_request(domain: Domain, world: World) -> None:
    _, _, request_id = await _requested(domain, world)
    bob_phone = await domain.phone(world.bob)
    error = await refused(
        domain.send(bob_phone, wire.PairConfirm(id=2, request_id=request_id, accept=True))
    )
    assert (error.code, error.message) == (ErrorCode.NOT_FOUND, f"no pair request {request_id!r}")


@pytest.mark.parametrize("who", ["bob", "alice's other laptop"])
async def test_another_laptop_cannot_confirm_a_pair_request(
    domain: Domain, world: World, who: str
) -> None:
    _, _, request_id = await _requested(domain, world)
    other = await (
        domain.laptop(world.bob) if who == "bob" else domain.laptop(world.alice, "laptop-2")
    )
    error = await refused(
        domain.send(other, wire.PairConfirm(id=2, request_id=request_id, accept=True))
    )
    assert error.code is ErrorCode.NOT_FOUND


async def test_confirming_after_the_deadline_is_expired(domain: Domain, world: World) -> None:
    _, phone, request_id = await _requested(domain, world)
    domain.clock.advance(120)
    error = await refused(
        domain.send(phone, wire.PairConfirm(id=2, request_id=request_id, accept=True))
    )
    assert (error.code, error.message) == (ErrorCode.EXPIRED, "the pair request has expired")


async def test_confirming_twice_is_wrong_state(domain: Domain, world: World) -> None:
    _, phone, request_id = await _requested(domain, world)
    await domain.send(phone, wire.PairConfirm(id=2, request_id=request_id, accept=True))
    error = await refused(
        domain.send(phone, wire.PairConfirm(id=3, request_id=request_id, accept=True))
    )
    assert (error.code, error.message) == (
        ErrorCode.WRONG_STATE,
        "cannot phone accepts when awaiting_laptop",
    )


async def test_a_phone_given_away_while_the_request_was_pending_does_not_pair(
    domain: Domain, world: World
) -> None:
    laptop, phone, request_id = await _requested(domain, world)
    await domain.send(phone, wire.PairConfirm(id=2, request_id=request_id, accept=True))
    await domain.admin.sign_in_device(world.alice.phone.id, world.bob.user.id)
    error = await refused(
        domain.send(laptop, wire.PairConfirm(id=3, request_id=request_id, accept=True))
    )
    assert (error.code, error.message) == (
        ErrorCode.WRONG_ACCOUNT,
        "the phone is now signed in elsewhere",
    )
    assert await domain.store.pairings_of_phone(world.alice.phone.id) == []


@pytest.mark.parametrize("change", ["removed", "signed out"])
async def test_a_phone_removed_or_signed_out_while_pending_does_not_pair(
    domain: Domain, world: World, change: str
) -> None:
    laptop, phone, request_id = await _requested(domain, world)
    await domain.send(phone, wire.PairConfirm(id=2, request_id=request_id, accept=True))
    if change == "removed":
        await domain.store.remove_device(world.alice.phone.id, domain.now)
    else:
        # By hand: the record still names alice, but the phone waits for sign-in.
        await domain.store.sign_in_device(
            world.alice.phone.id, world.alice.user.id, "waiting_for_sign_in"
        )
    error = await refused(
        domain.send(laptop, wire.PairConfirm(id=3, request_id=request_id, accept=True))
    )
    assert error.code is ErrorCode.WRONG_ACCOUNT


async def test_a_policy_disabled_while_the_request_was_pending_does_not_pair(
    domain: Domain, world: World
) -> None:
    laptop, phone, request_id = await _requested(domain, world)
    await domain.send(laptop, wire.PairConfirm(id=2, request_id=request_id, accept=True))
    await domain.admin.set_user_policy(world.alice.user.id, world.disabled.id)
    error = await refused(
        domain.send(phone, wire.PairConfirm(id=3, request_id=request_id, accept=True))
    )
    assert (error.code, error.message) == (
        ErrorCode.POLICY_DENIED,
        "Better Together is now Disabled",
    )
    assert await domain.store.pairings_of_phone(world.alice.phone.id) == []


async def test_a_pair_request_taken_meanwhile_by_another_node_is_wrong_state(
    domain: Domain, world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    laptop, phone, request_id = await _requested(domain, world)
    real_delete, real_replace = domain.ephemeral.delete, domain.ephemeral.replace

    async def lost_delete(key: str, now: float, expected: str | None = None) -> bool:
        return False if key == f"pair:{request_id}" else await real_delete(key, now, expected)

    async def lost_replace(key: str, expected: str, value: str, ttl: float, now: float) -> bool:
        return (
            False
            if key == f"pair:{request_id}"
            else await real_replace(key, expected, value, ttl, now)
        )

    monkeypatch.setattr(domain.ephemeral, "replace", lost_replace)
    error = await refused(
        domain.send(phone, wire.PairConfirm(id=2, request_id=request_id, accept=True))
    )
    assert (error.code, error.message) == (
        ErrorCode.WRONG_STATE,
        "the pair request changed meanwhile",
    )
    monkeypatch.setattr(domain.ephemeral, "replace", real_replace)
    await domain.send(phone, wire.PairConfirm(id=3, request_id=request_id, accept=True))
    monkeypatch.setattr(domain.ephemeral, "delete", lost_delete)
    for accept in (True, False):
        error = await refused(
            domain.send(laptop, wire.PairConfirm(id=4, request_id=request_id, accept=accept))
        )
        assert (error.code, error.message) == (
            ErrorCode.WRONG_STATE,
            "the pair request changed meanwhile",
        )
    assert await domain.store.pairings_of_phone(world.alice.phone.id) == []


async def test_an_unanswered_pair_request_expires_for_both_sides(
    domain: Domain, world: World
) -> None:
    _, _, request_id = await _requested(domain, world)
    assert await domain.service.tick(domain.now + 119) == []
    domain.clock.advance(120)
    ended = wire.PairEnded(request_id=request_id, reason="expired")
    assert [(d.address, d.event) for d in await domain.service.tick(domain.now)] == [
        (f"device/{world.alice.phone.id}", ended),
        (f"laptop/{world.alice.user.id}/laptop-1", ended),
    ]
    assert await domain.service.tick(domain.now) == []
    assert await domain.service._pending_pair_of_phone(world.alice.phone.id, domain.now) is None


async def test_a_pair_request_answered_before_its_deadline_is_not_announced(
    domain: Domain, world: World
) -> None:
    laptop, _, request_id = await _requested(domain, world)
    await domain.send(laptop, wire.PairConfirm(id=2, request_id=request_id, accept=False))
    domain.clock.advance(121)
    assert await domain.service.tick(domain.now) == []


async def test_a_deadline_pushed_back_waits_for_the_real_one(domain: Domain, world: World) -> None:
    _, _, request_id = await _requested(domain, world)
    key = f"pair:{request_id}"
    text = await domain.ephemeral.get(key, domain.now)
    assert text is not None
    later = text.replace(f'"expires_at":{domain.now + 120}', f'"expires_at":{domain.now + 300}')
    assert later != text
    await domain.ephemeral.set(key, later, 600, domain.now)
    domain.clock.advance(120)
    assert await domain.service.tick(domain.now) == []
    domain.clock.advance(180)
    assert events_of(await domain.service.tick(domain.now)) == ["pair.ended", "pair.ended"]


def events_of(deliveries: list) -> list[str]:  # type: ignore[type-arg]
    return [d.event.type for d in deliveries]


async def test_unpairing_from_the_laptop_tells_the_phone(domain: Domain, world: World) -> None:
    laptop, _ = await domain.paired(world.alice)
    outcome = await domain.send(laptop, wire.PairRemove(id=1, peer_id=world.alice.phone.id))
    assert outcome.result == wire.Done()
    assert [(d.address, d.event) for d in outcome.deliveries] == [
        (
            f"device/{world.alice.phone.id}",
            wire.PairRemoved(laptop_id="laptop-1", phone_id=world.alice.phone.id),
        )
    ]
    assert await domain.store.pairings_of_phone(world.alice.phone.id) == []


async def test_unpairing_from_the_phone_tells_the_laptop_and_ends_its_hand_off(
    domain: Domain, world: World
) -> None:
    laptop, phone = await domain.paired(world.alice)
    await domain.send(laptop, wire.AudioSelect(id=1, phone_id=world.alice.phone.id, meeting_id="m"))
    outcome = await domain.send(phone, wire.PairRemove(id=2, peer_id="laptop-1"))
    laptop_address = f"laptop/{world.alice.user.id}/laptop-1"
    assert events(outcome) == [
        (laptop_address, "pair.removed"),
        (f"device/{world.alice.phone.id}", "audio.command"),
        (laptop_address, "audio.state"),
    ]


async def test_unpairing_another_laptop_leaves_this_laptops_hand_off(
    domain: Domain, world: World
) -> None:
    laptop, phone = await domain.paired(world.alice)
    await domain.admin.pair(world.alice.user.id, "laptop-2", world.alice.phone.id)
    await domain.send(laptop, wire.AudioSelect(id=1, phone_id=world.alice.phone.id, meeting_id="m"))
    outcome = await domain.send(phone, wire.PairRemove(id=2, peer_id="laptop-2"))
    assert events(outcome) == [(f"laptop/{world.alice.user.id}/laptop-2", "pair.removed")]


async def test_unpairing_what_is_not_paired_is_not_found(domain: Domain, world: World) -> None:
    laptop, phone = await domain.paired(world.alice)
    error = await refused(domain.send(laptop, wire.PairRemove(id=1, peer_id=world.bob.phone.id)))
    assert (error.code, error.message) == (
        ErrorCode.NOT_FOUND,
        f"not paired with {world.bob.phone.id!r}",
    )
    error = await refused(domain.send(phone, wire.PairRemove(id=2, peer_id="laptop-9")))
    assert (error.code, error.message) == (ErrorCode.NOT_FOUND, "not paired with 'laptop-9'")


async def test_a_phone_cannot_unpair_another_phones_laptop(domain: Domain, world: World) -> None:
    await domain.paired(world.alice)
    bob_phone = await domain.phone(world.bob)
    error = await refused(domain.send(bob_phone, wire.PairRemove(id=1, peer_id="laptop-1")))
    assert error.code is ErrorCode.NOT_FOUND
    assert len(await domain.store.pairings_of_phone(world.alice.phone.id)) == 1


async def test_a_pairing_lists_the_phone_by_id_once_the_phone_is_gone(
    domain: Domain, world: World
) -> None:
    laptop, _ = await domain.paired(world.alice)
    pairing = (await domain.store.pairings_of_laptop(world.alice.user.id, "laptop-1"))[0]
    await domain.store.remove_device(world.alice.phone.id, domain.now)
    info = await domain.service._pairing_info(replace(pairing), domain.now)
    assert info.phone_name == world.alice.phone.id
    assert (await domain.send(laptop, wire.PairingsList(id=1))).result == wire.PairingsResult(
        pairings=[]
    )


def _pending_pair(state: str = "awaiting_both") -> object:
    from relay.domain.pairing import PairState, PendingPair

    return PendingPair(
        "pr_1",
        "123456",
        "t",
        "u",
        "alice",
        "l",
        "laptop",
        "d",
        "phone",
        0.0,
        100.0,
        PairState(state),
    )


def test_a_deadline_passing_expires_a_pending_request_once() -> None:
    from relay.domain.pairing import PairEvent, PairState

    pending = _pending_pair()
    expired = pending.advance(PairEvent.DEADLINE_PASSES, 100.0)  # type: ignore[attr-defined]
    assert expired.state is PairState.EXPIRED


@pytest.mark.parametrize("state", ["paired", "declined"])
def test_a_finished_request_stays_finished_after_its_deadline(state: str) -> None:
    from relay.domain.errors import RelayError
    from relay.domain.pairing import PairEvent

    with pytest.raises(RelayError) as caught:
        _pending_pair(state).advance(PairEvent.PHONE_ACCEPTS, 200.0)  # type: ignore[attr-defined]
    assert (caught.value.code, caught.value.message) == (
        ErrorCode.WRONG_STATE,
        f"cannot phone accepts when {state}",
    )


async def test_an_expiry_leaves_a_request_answered_or_changed_meanwhile(
    domain: Domain, world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    _laptop, phone, request_id = await _requested(domain, world)
    key = f"pair:{request_id}"
    stale = await domain.ephemeral.get(key, domain.now)
    await domain.send(phone, wire.PairConfirm(id=2, request_id=request_id, accept=True))
    real_get = domain.ephemeral.get

    async def read_before_the_change(k: str, now: float) -> str | None:
        return stale if k == key else await real_get(k, now)

    monkeypatch.setattr(domain.ephemeral, "get", read_before_the_change)
    domain.clock.advance(120)
    # The expiry read the record before the phone's answer changed it: it must not delete
    # (compare-and-set) nor announce anything.
    assert await domain.service.tick(domain.now) == []
    assert await real_get(key, domain.now) is not None


async def test_an_expiry_announces_nothing_for_a_request_another_node_ended(
    domain: Domain, world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, _, request_id = await _requested(domain, world)
    real_delete = domain.ephemeral.delete

    async def gone(key: str, now: float, expected: str | None = None) -> bool:
        return False if key == f"pair:{request_id}" else await real_delete(key, now, expected)

    monkeypatch.setattr(domain.ephemeral, "delete", gone)
    domain.clock.advance(120)
    assert await domain.service.tick(domain.now) == []


async def test_a_new_request_announces_the_old_one_ended_only_if_it_ended_it(
    domain: Domain, world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    laptop, _, request_id = await _requested(domain, world)
    real_delete = domain.ephemeral.delete

    async def taken(key: str, now: float, expected: str | None = None) -> bool:
        return False if key == f"pair:{request_id}" else await real_delete(key, now, expected)

    monkeypatch.setattr(domain.ephemeral, "delete", taken)
    await domain.sight(laptop, world.alice.phone)  # type: ignore[arg-type]
    outcome = await domain.send(laptop, wire.PairRequest(id=5, phone_id=world.alice.phone.id))  # type: ignore[arg-type]
    assert [d.event.type for d in outcome.deliveries] == ["pair.prompt", "pair.prompt"]


async def test_a_phones_pending_request_whose_record_is_gone_is_no_request(
    domain: Domain, world: World
) -> None:
    _laptop, phone, request_id = await _requested(domain, world)
    await domain.ephemeral.delete(f"pair:{request_id}", domain.now)  # expired on another node
    assert await domain.service._pending_pair_of_phone(world.alice.phone.id, domain.now) is None
    assert [e.type for e in await domain.service.welcome(phone, domain.now)] == [  # type: ignore[arg-type]
        "welcome",
        "device.state",
    ]


async def test_an_account_the_directory_no_longer_knows_is_judged_by_its_tenants_policy(
    domain: Domain, world: World
) -> None:
    laptop, phone, request_id = await _requested(domain, world)
    await domain.send(phone, wire.PairConfirm(id=2, request_id=request_id, accept=True))  # type: ignore[arg-type]
    await domain.admin.set_default_policy(world.contoso.id, world.disabled.id)
    domain.store.users_.pop(world.alice.user.id)  # by hand, another process
    domain.store._changed("users", [world.alice.user.id])
    error = await refused(
        domain.send(laptop, wire.PairConfirm(id=3, request_id=request_id, accept=True))
    )  # type: ignore[arg-type]
    assert error.code is ErrorCode.POLICY_DENIED
    error = await refused(domain.service._check_better_together(laptop, domain.now))  # type: ignore[arg-type]
    assert error.code is ErrorCode.POLICY_DENIED


@pytest.mark.parametrize("accept", [True, False])
async def test_a_confirmation_made_on_a_stale_read_is_refused(
    domain: Domain, world: World, monkeypatch: pytest.MonkeyPatch, accept: bool
) -> None:
    laptop, phone, request_id = await _requested(domain, world)
    await domain.send(phone, wire.PairConfirm(id=2, request_id=request_id, accept=True))  # type: ignore[arg-type]
    key = f"pair:{request_id}"
    read = await domain.ephemeral.get(key, domain.now)
    assert read is not None
    # Another node changes the record after this node read it (same state, new deadline).
    changed = read.replace(f'"expires_at":{domain.now + 120}', f'"expires_at":{domain.now + 121}')
    await domain.ephemeral.set(key, changed, 600, domain.now)
    real_get = domain.ephemeral.get

    async def stale(k: str, now: float) -> str | None:
        return read if k == key else await real_get(k, now)

    monkeypatch.setattr(domain.ephemeral, "get", stale)
    error = await refused(
        domain.send(laptop, wire.PairConfirm(id=3, request_id=request_id, accept=accept))
    )  # type: ignore[arg-type]
    assert (error.code, error.message) == (
        ErrorCode.WRONG_STATE,
        "the pair request changed meanwhile",
    )
    assert await domain.store.pairings_of_phone(world.alice.phone.id) == []
    assert await real_get(key, domain.now) == changed
