"""EID resolution: a laptop learns only about devices it may know about."""

from __future__ import annotations

from relay.protocol.eid import eid_at
from tests.relay.conftest import RelayHarness, World
from tests.relay.helpers import sight


async def test_own_phone_and_tenant_room_resolve(relay: RelayHarness, world: World) -> None:
    assert world.alice.phone is not None
    laptop = await relay.laptop(world.alice)
    result = await laptop.report_sightings(
        [(relay.eid(world.alice.phone), -55), (relay.eid(world.room), -70)]
    )
    by_id = {d.device_id: d for d in result.devices}
    assert set(by_id) == {world.alice.phone.id, world.room.id}
    phone = by_id[world.alice.phone.id]
    assert phone.own and phone.kind == "desk_phone" and phone.rssi == -55
    assert phone.eid == relay.eid(world.alice.phone).hex()
    assert phone.capabilities == ["lock", "audio"]
    room = by_id[world.room.id]
    assert not room.own and room.name == "Room 4.01" and room.location == "floor 4"
    await laptop.close()


async def test_colleagues_personal_phone_resolves_to_nothing(
    relay: RelayHarness, world: World
) -> None:
    assert world.bob.phone is not None
    laptop = await relay.laptop(world.alice)
    assert await sight(relay, laptop, world.bob.phone) == []
    await laptop.close()


async def test_other_tenants_devices_resolve_to_nothing(relay: RelayHarness, world: World) -> None:
    assert world.alice.phone is not None
    laptop = await relay.laptop(world.carol)
    assert await sight(relay, laptop, world.alice.phone) == []
    assert await sight(relay, laptop, world.room) == []
    await laptop.close()


async def test_unknown_and_stale_eids_resolve_to_nothing(relay: RelayHarness, world: World) -> None:
    assert world.alice.phone is not None
    phone = world.alice.phone
    laptop = await relay.laptop(world.alice)
    period = 1 << phone.rotation_exponent
    stale = eid_at(phone.identity_key, relay.clock() - 3 * period, phone.rotation_exponent)
    previous = eid_at(phone.identity_key, relay.clock() - period, phone.rotation_exponent)
    result = await laptop.report_sightings([(b"\x00" * 8, -50), (stale, -50), (previous, -50)])
    # The neighbouring window is accepted (clock skew); three windows back is not.
    assert [d.eid for d in result.devices] == [previous.hex()]
    await laptop.close()


async def test_index_follows_rotation(relay: RelayHarness, world: World) -> None:
    assert world.alice.phone is not None
    laptop = await relay.laptop(world.alice)
    relay.clock.advance(5 * (1 << world.alice.phone.rotation_exponent))
    assert [d.device_id for d in await sight(relay, laptop, world.alice.phone)] == [
        world.alice.phone.id
    ]
    await laptop.close()
