"""The administration API over the store (``relay.admin.store_admin.Admin``, what ``btogether admin --db``
and the set-up scripts use): it keeps tenants apart as the admin endpoint does."""

from __future__ import annotations

from dataclasses import replace

import pytest

from relay.admin.store_admin import AdminError
from tests.domain.conftest import Domain, World


async def _refused(call: object, message: str) -> None:
    with pytest.raises(AdminError) as caught:
        await call  # type: ignore[misc]
    assert str(caught.value) == message


async def test_unknown_tenants_users_and_devices_are_refused(domain: Domain, world: World) -> None:
    admin = domain.admin
    await _refused(admin.create_user("t_nowhere", "x"), "no tenant 't_nowhere'")
    await _refused(admin.create_policy("t_nowhere", "x"), "no tenant 't_nowhere'")
    await _refused(admin.set_user_policy("u_nobody", None), "no user 'u_nobody'")
    await _refused(admin.set_device_policy("d_nothing", None), "no device 'd_nothing'")
    await _refused(admin.sign_out_device("d_nothing"), "no device 'd_nothing'")
    await _refused(admin.issue_credential("user", "u_nobody"), "no user 'u_nobody'")
    await _refused(admin.issue_credential("device", "d_nothing"), "no device 'd_nothing'")
    await _refused(
        admin.create_device("t_nowhere", "x", "desk_phone", "personal"), "no tenant 't_nowhere'"
    )


async def test_a_policy_applies_only_within_its_tenant(domain: Domain, world: World) -> None:
    admin = domain.admin
    theirs = await admin.create_policy(world.fabrikam.id, "Theirs")
    message = f"no policy {theirs.id!r} in tenant {world.contoso.id!r}"
    await _refused(admin.create_user(world.contoso.id, "x", theirs.id), message)
    await _refused(admin.set_user_policy(world.alice.user.id, theirs.id), message)
    await _refused(admin.set_device_policy(world.room.id, theirs.id), message)
    await _refused(admin.set_default_policy(world.contoso.id, theirs.id), message)
    await _refused(
        admin.create_device(world.contoso.id, "x", "desk_phone", "personal", policy_id=theirs.id),
        message,
    )
    missing = f"no policy 'p_none' in tenant {world.contoso.id!r}"
    await _refused(admin.set_user_policy(world.alice.user.id, "p_none"), missing)
    assert (await domain.store.user(world.alice.user.id)).policy_id is None  # type: ignore[union-attr]
    await admin.set_user_policy(world.alice.user.id, world.prompt.id)
    assert (await domain.store.user(world.alice.user.id)).policy_id == world.prompt.id  # type: ignore[union-attr]


async def test_a_device_is_signed_in_only_to_an_account_of_its_tenant(
    domain: Domain, world: World
) -> None:
    await _refused(
        domain.admin.sign_in_device(world.room.id, world.carol.user.id),
        f"no user {world.carol.user.id!r} in the device's tenant",
    )
    await _refused(
        domain.admin.sign_in_device(world.room.id, "u_nobody"),
        "no user 'u_nobody' in the device's tenant",
    )
    await _refused(
        domain.admin.sign_in_device("d_nothing", world.alice.user.id), "no device 'd_nothing'"
    )
    room = await domain.store.device(world.room.id)
    assert room is not None and room.user_id is None


async def test_a_new_device_has_a_sixteen_byte_key_and_a_valid_rotation(
    domain: Domain, world: World
) -> None:
    admin = domain.admin
    await _refused(
        admin.create_device(world.contoso.id, "x", "desk_phone", "personal", identity_key=b"short"),
        "identity key must be 16 bytes",
    )
    with pytest.raises(AdminError, match="rotation"):
        await admin.create_device(
            world.contoso.id, "x", "desk_phone", "personal", rotation_exponent=99
        )
    key = bytes(range(16, 32))
    made = await admin.create_device(
        world.contoso.id, "x", "desk_phone", "personal", identity_key=key, capabilities=["lock"]
    )
    assert made.identity_key == key and made.capabilities == ("lock",)
    random_key = await admin.create_device(world.contoso.id, "y", "room_system", "meeting_room")
    assert len(random_key.identity_key) == 16 and random_key.identity_key != key
    assert random_key.capabilities == ("join",)


async def test_a_direct_pairing_needs_the_users_own_phone_in_the_same_tenant(
    domain: Domain, world: World
) -> None:
    admin = domain.admin
    message = "no such user and phone in one tenant"
    await _refused(admin.pair("u_nobody", "l", world.alice.phone.id), message)
    await _refused(admin.pair(world.alice.user.id, "l", "d_nothing"), message)
    await _refused(admin.pair(world.alice.user.id, "l", world.carol.phone.id), message)
    await _refused(
        admin.pair(world.alice.user.id, "l", world.bob.phone.id),
        "the phone is not signed in to this user",
    )
    # Even a phone of another tenant signed in (by hand) as the user is refused.
    carol_phone = world.carol.phone.id
    domain.store.devices_[carol_phone] = replace(
        domain.store.devices_[carol_phone], user_id=world.alice.user.id
    )
    await _refused(admin.pair(world.alice.user.id, "l", carol_phone), message)
    assert await domain.store.pairings_of_laptop(world.alice.user.id, "l") == []
    made = await admin.pair(world.alice.user.id, "l", world.alice.phone.id)
    assert (made.laptop_name, made.tenant_id) == ("l", world.contoso.id)


async def test_a_phone_fleet_is_users_with_signed_in_phones_and_optionally_pairings(
    domain: Domain, world: World
) -> None:
    fleet = await domain.admin.create_phone_fleet(world.fabrikam.id, 2, pair=False)
    assert [p.state for _, p, _, _ in fleet] == ["signed_in", "signed_in"]
    assert await domain.store.pairings_of_phone(fleet[0][1].id) == []
    paired = await domain.admin.create_phone_fleet(world.fabrikam.id, 1)
    assert [p.laptop_id for p in await domain.store.pairings_of_phone(paired[0][1].id)] == [
        "laptop-0"
    ]
    await _refused(domain.admin.create_phone_fleet("t_nowhere", 1), "no tenant 't_nowhere'")
