"""Who a credential stands for, whether it still stands, and what a connection is told first."""

from __future__ import annotations

from dataclasses import replace

import pytest

from relay.domain.service import DevicePrincipal, LaptopPrincipal
from relay.protocol import wire
from relay.protocol.wire import CloseCode, ErrorCode
from tests.domain.conftest import Domain, World, refused


async def test_an_unknown_token_stands_for_nobody(domain: Domain, world: World) -> None:
    assert await domain.service.authenticate("t_" + "0" * 40, "laptop-1", None, domain.now) is None


async def test_a_revoked_credential_stands_for_nobody(domain: Domain, world: World) -> None:
    await domain.admin.revoke_credential(world.alice.credential.credential_id)
    await domain.admin.revoke_credential(world.alice.phone_credential.credential_id)
    assert (
        await domain.service.authenticate(world.alice.credential.token, "l", None, domain.now)
        is None
    )
    assert (
        await domain.service.authenticate(
            world.alice.phone_credential.token, None, None, domain.now
        )
        is None
    )


async def test_a_user_credential_without_a_laptop_id_is_refused(
    domain: Domain, world: World
) -> None:
    assert (
        await domain.service.authenticate(world.alice.credential.token, None, "x", domain.now)
        is None
    )


async def test_a_deleted_accounts_credential_stands_for_nobody(
    domain: Domain, world: World
) -> None:
    # Deleted by hand (another process), its credential left unrevoked: the subject decides.
    domain.store.users_.pop(world.bob.user.id)
    domain.store._changed("users", [world.bob.user.id])
    assert (
        await domain.service.authenticate(world.bob.credential.token, "l", None, domain.now) is None
    )


async def test_a_device_waiting_for_activation_cannot_connect(domain: Domain, world: World) -> None:
    await domain.store.reset_device(world.room.id, domain.now)
    # A credential issued after the reset still does not let the device in until provisioned.
    fresh = await domain.admin.issue_credential("device", world.room.id)
    assert await domain.service.authenticate(fresh.token, None, None, domain.now) is None


async def test_a_removed_devices_credential_stands_for_nobody(domain: Domain, world: World) -> None:
    token = world.credentials[world.room.id].token
    await domain.store.remove_device(world.room.id, domain.now)
    assert await domain.service.authenticate(token, None, None, domain.now) is None


async def test_a_laptop_principal_carries_its_user_tenant_and_name(
    domain: Domain, world: World
) -> None:
    principal = await domain.service.authenticate(
        world.alice.credential.token, "lap", None, domain.now
    )
    assert principal == LaptopPrincipal(
        world.contoso.id,
        world.alice.user.id,
        "alice",
        "lap",
        "lap",  # no name given: the client id
        world.alice.credential.credential_id,
    )
    device = await domain.service.authenticate(
        world.alice.phone_credential.token, None, None, domain.now
    )
    assert device == DevicePrincipal(
        world.contoso.id,
        world.alice.phone.id,
        world.alice.phone_credential.credential_id,
        world.alice.user.id,
    )


async def test_a_standing_session_has_no_verdict(domain: Domain, world: World) -> None:
    assert (
        await domain.service.session_verdict(await domain.laptop(world.alice), domain.now) is None
    )
    assert await domain.service.session_verdict(await domain.phone(world.alice), domain.now) is None


async def test_revoking_a_credential_ends_its_sessions(domain: Domain, world: World) -> None:
    laptop, phone = await domain.laptop(world.alice), await domain.phone(world.alice)
    await domain.admin.revoke_credential(world.alice.credential.credential_id)
    await domain.admin.revoke_credential(world.alice.phone_credential.credential_id)
    assert await domain.service.session_verdict(laptop, domain.now) is CloseCode.REVOKED
    assert await domain.service.session_verdict(phone, domain.now) is CloseCode.REVOKED


async def test_a_removed_or_reset_device_session_is_revoked(domain: Domain, world: World) -> None:
    room = await domain.device(world.credentials[world.room.id])
    prompt_room = await domain.device(world.credentials[world.prompt_room.id])
    await domain.store.remove_device(world.room.id, domain.now)
    await domain.store.reset_device(world.prompt_room.id, domain.now)
    assert await domain.service.session_verdict(room, domain.now) is CloseCode.REVOKED
    assert await domain.service.session_verdict(prompt_room, domain.now) is CloseCode.REVOKED


async def test_a_device_whose_record_is_gone_or_unactivated_is_revoked_even_with_a_live_credential(
    domain: Domain, world: World
) -> None:
    phone = await domain.phone(world.bob)
    # Written by hand (another process): the device back to waiting for activation, its
    # credential untouched.
    await domain.store.sign_in_device(
        world.bob.phone.id, world.bob.user.id, "waiting_for_activation"
    )
    assert await domain.service.session_verdict(phone, domain.now) is CloseCode.REVOKED
    gone = DevicePrincipal(world.contoso.id, "d_gone", world.bob.phone_credential.credential_id)
    assert await domain.service.session_verdict(gone, domain.now) is CloseCode.REVOKED


async def test_a_phone_given_to_another_account_must_reconnect(
    domain: Domain, world: World
) -> None:
    phone = await domain.phone(world.alice)
    await domain.admin.sign_in_device(world.alice.phone.id, world.bob.user.id)
    assert await domain.service.session_verdict(phone, domain.now) is CloseCode.SESSION_CHANGED


async def test_a_laptop_of_a_deleted_account_is_revoked(domain: Domain, world: World) -> None:
    laptop = await domain.laptop(world.bob)
    await domain.admin.sign_out_device(world.bob.phone.id)
    # Deleted by hand without revoking (the relay's own deletion revokes too).
    domain.store.users_.pop(world.bob.user.id)
    domain.store._changed("users", [world.bob.user.id])
    assert await domain.service.session_verdict(laptop, domain.now) is CloseCode.REVOKED


@pytest.mark.parametrize(
    "request_",
    [
        wire.SightingsReport(id=1, sightings=[]),
        wire.PairRequest(id=1, phone_id="d_1"),
        wire.LockSet(id=1, state="locked"),
        wire.AudioSelect(id=1, phone_id="d_1", meeting_id="m"),
        wire.AudioRelease(id=1, handoff_id="ho_1"),
        wire.JoinRequest(id=1, room_id="d_1", meeting_id="m"),
    ],
    ids=lambda r: r.type,
)
async def test_a_device_may_not_send_a_laptops_request(
    domain: Domain, world: World, request_: wire.Request
) -> None:
    phone = await domain.phone(world.alice)
    error = await refused(domain.send(phone, request_))
    assert (error.code, error.message) == (
        ErrorCode.FORBIDDEN,
        f"a device connection may not send {request_.type}",
    )


@pytest.mark.parametrize(
    "request_",
    [
        wire.LockAck(id=1, seq=1),
        wire.AudioAck(id=1, handoff_id="ho_1", ok=True),
        wire.JoinRespond(id=1, join_id="jn_1", accept=True),
        wire.ConsoleJoin(id=1, meeting_id="m"),
        wire.LoginCodeReport(id=1, request_id="lc_1", code="ABCD-EFGH"),
    ],
    ids=lambda r: r.type,
)
async def test_a_laptop_may_not_send_a_devices_request(
    domain: Domain, world: World, request_: wire.Request
) -> None:
    laptop = await domain.laptop(world.alice)
    error = await refused(domain.send(laptop, request_))
    assert (error.code, error.message) == (
        ErrorCode.FORBIDDEN,
        f"a laptop connection may not send {request_.type}",
    )


@pytest.mark.parametrize(
    "handler",
    [
        "sightings.report",
        "pair.request",
        "lock.set",
        "audio.select",
        "audio.release",
        "join.request",
    ],
)
async def test_laptop_handlers_refuse_a_device_even_when_called_directly(
    domain: Domain, world: World, handler: str
) -> None:
    """Defence in depth: a handler registered without the role check still refuses."""
    phone = await domain.phone(world.alice)
    error = await refused(domain.service._handlers[handler](phone, None, domain.now))
    assert (error.code, error.message) == (ErrorCode.FORBIDDEN, "only a laptop may send this")


@pytest.mark.parametrize("handler", ["lock.ack", "audio.ack", "join.respond"])
async def test_device_handlers_refuse_a_laptop_even_when_called_directly(
    domain: Domain, world: World, handler: str
) -> None:
    laptop = await domain.laptop(world.alice)
    error = await refused(domain.service._handlers[handler](laptop, None, domain.now))
    assert (error.code, error.message) == (ErrorCode.FORBIDDEN, "only a device may send this")


async def test_a_request_no_handler_serves_is_unknown(domain: Domain, world: World) -> None:
    # A relay refuses to start without a handler for every request type; one dropped
    # afterwards (by hand) is answered unknown_type, not a failure.
    del domain.service._handlers["console.join"]
    phone = await domain.phone(world.alice)
    error = await refused(domain.send(phone, wire.ConsoleJoin(id=1, meeting_id="m")))
    assert (error.code, error.message) == (
        ErrorCode.UNKNOWN_TYPE,
        "this relay does not handle console.join",
    )


async def test_ping_answers_with_the_relays_clock(domain: Domain, world: World) -> None:
    outcome = await domain.send(await domain.laptop(world.alice), wire.Ping(id=1))
    assert outcome.result == wire.Pong(server_time=domain.now) and outcome.deliveries == []


async def test_a_phone_is_welcomed_with_its_state_and_its_accounts_pending_lock(
    domain: Domain, world: World
) -> None:
    laptop, phone = await domain.paired(world.alice)
    await domain.send(laptop, wire.LockSet(id=1, state="locked"))
    events = await domain.service.welcome(phone, domain.now)
    assert [e.type for e in events] == ["welcome", "device.state", "lock.command"]
    welcome, state, command = events
    assert isinstance(welcome, wire.Welcome) and welcome.principal == wire.PrincipalInfo(
        role="device",
        tenant_id=world.contoso.id,
        user_id=world.alice.user.id,
        device_id=world.alice.phone.id,
    )
    assert isinstance(state, wire.DeviceStateEvent) and state.user_name == "alice"
    assert command == wire.LockCommand(seq=1, state="locked", laptop_id="laptop-1")
    # Once applied, nothing is re-sent.
    await domain.send(phone, wire.LockAck(id=2, seq=1))
    assert [e.type for e in await domain.service.welcome(phone, domain.now)] == [
        "welcome",
        "device.state",
    ]


async def test_a_phone_is_not_sent_a_lock_of_the_account_it_no_longer_serves(
    domain: Domain, world: World
) -> None:
    laptop, phone = await domain.paired(world.alice)
    await domain.send(laptop, wire.LockSet(id=1, state="locked"))
    # The record names alice; the phone (by hand, another process) now names bob.
    phone_id = world.alice.phone.id
    domain.store.devices_[phone_id] = replace(
        domain.store.devices_[phone_id], user_id=world.bob.user.id
    )
    domain.store._changed("devices", [phone_id])
    bob_phone = DevicePrincipal(
        world.contoso.id, world.alice.phone.id, phone.credential_id, world.bob.user.id
    )
    types = [e.type for e in await domain.service.welcome(bob_phone, domain.now)]
    assert types == ["welcome", "device.state"]


async def test_a_phone_reconnecting_is_prompted_again_for_a_pending_pair_request(
    domain: Domain, world: World
) -> None:
    laptop = await domain.laptop(world.alice)
    phone = await domain.phone(world.alice)
    await domain.sight(laptop, world.alice.phone)
    await domain.send(laptop, wire.PairRequest(id=1, phone_id=world.alice.phone.id))
    assert [e.type for e in await domain.service.welcome(phone, domain.now)][-1] == "pair.prompt"
    domain.clock.advance(120)  # the deadline: no longer prompted
    assert [e.type for e in await domain.service.welcome(phone, domain.now)] == [
        "welcome",
        "device.state",
    ]


async def test_a_laptop_is_welcomed_with_the_hand_offs_it_holds(
    domain: Domain, world: World
) -> None:
    laptop, _ = await domain.paired(world.alice)
    (welcome,) = await domain.service.welcome(laptop, domain.now)
    assert isinstance(welcome, wire.Welcome) and welcome.handoffs == []
    selected = await domain.send(
        laptop, wire.AudioSelect(id=1, phone_id=world.alice.phone.id, meeting_id="m")
    )
    assert isinstance(selected.result, wire.AudioSelectResult)
    (welcome,) = await domain.service.welcome(laptop, domain.now)
    assert isinstance(welcome, wire.Welcome)
    assert welcome.handoffs == [selected.result.handoff_id]
    assert welcome.principal.laptop_id == "laptop-1" and welcome.server_time == domain.now


async def test_a_live_credential_whose_device_record_is_gone_stands_for_nobody(
    domain: Domain, world: World
) -> None:
    domain.store.devices_.pop(world.room.id)  # by hand: the credential row outlived it
    domain.store._changed("devices", [world.room.id])
    token = world.credentials[world.room.id].token
    assert await domain.service.authenticate(token, None, None, domain.now) is None


async def test_a_session_whose_credential_row_is_gone_is_revoked(
    domain: Domain, world: World
) -> None:
    laptop = await domain.laptop(world.alice)
    domain.store.credentials_.pop(world.alice.credential.credential_id)
    domain.store._changed("credentials", [world.alice.credential.credential_id])
    assert await domain.service.session_verdict(laptop, domain.now) is CloseCode.REVOKED


async def test_a_device_whose_record_is_gone_is_welcomed_without_an_account(
    domain: Domain, world: World
) -> None:
    phone = await domain.phone(world.alice)
    await domain.store.remove_device(world.alice.phone.id, domain.now)
    events = await domain.service.welcome(phone, domain.now)
    assert [e.type for e in events] == ["welcome"]
    welcome = events[0]
    assert isinstance(welcome, wire.Welcome) and welcome.principal.user_id is None
