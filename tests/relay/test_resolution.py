"""EID resolution: a laptop learns only about devices it may know about."""

from __future__ import annotations

import asyncio
import sqlite3
from dataclasses import replace

import pytest

from relay.domain.directory import Directory
from relay.protocol.eid import eid_at
from relay.storage.sqlite_store import SqliteStore
from tests.relay.conftest import RelayHarness, StartRelay, World, build_world
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


# --- the index follows the directory and the clock -----------------------------------------


async def test_a_device_added_while_running_resolves_after_one_directory_check(
    start_relay: StartRelay,
) -> None:
    relay = await start_relay(directory_check_s=1.0)
    world = await build_world(relay.admin)
    relay.clock.advance(1.0)
    laptop = await relay.laptop(world.alice)
    await laptop.ping()  # a directory check before the change
    room = await relay.admin.create_device(
        world.contoso.id, "Room 5.02", "room_system", "meeting_room"
    )
    relay.clock.advance(1.0)  # the next request runs a directory check
    assert [d.device_id for d in await sight(relay, laptop, room)] == [room.id]
    await laptop.close()


async def test_a_removed_device_stops_resolving_after_one_directory_check(
    start_relay: StartRelay,
) -> None:
    relay = await start_relay(directory_check_s=1.0)
    world = await build_world(relay.admin)
    relay.clock.advance(1.0)
    laptop = await relay.laptop(world.alice)
    assert await sight(relay, laptop, world.room)
    # Removed through another connection to the database, as another relay node would.
    other = SqliteStore(relay.db)
    await other.open()
    await other.remove_device(world.room.id, relay.clock())
    await other.close()
    relay.clock.advance(1.0)
    assert await sight(relay, laptop, world.room) == []
    await laptop.close()


async def test_a_rekeyed_device_resolves_by_its_new_key_only_after_one_directory_check(
    start_relay: StartRelay,
) -> None:
    relay = await start_relay(directory_check_s=1.0)
    world = await build_world(relay.admin)
    relay.clock.advance(1.0)
    laptop = await relay.laptop(world.alice)
    assert await sight(relay, laptop, world.room)
    new_key = bytes(range(100, 116))
    with sqlite3.connect(relay.db) as db:  # another process writes the new key
        db.execute("UPDATE devices SET identity_key = ? WHERE id = ?", (new_key, world.room.id))
    relay.clock.advance(1.0)
    assert await sight(relay, laptop, world.room) == []  # the old key's EID
    rekeyed = replace(world.room, identity_key=new_key)
    assert [d.device_id for d in await sight(relay, laptop, rekeyed)] == [world.room.id]
    await laptop.close()


async def test_another_relay_node_on_the_same_database_follows_the_directory(
    start_relay: StartRelay,
) -> None:
    node_a = await start_relay()
    world = await build_world(node_a.admin)
    node_b = await start_relay()
    laptop = await node_b.laptop(world.alice)
    assert await sight(node_b, laptop, world.room)
    room = await node_a.admin.create_device(
        world.contoso.id, "Room 6", "room_system", "meeting_room"
    )
    assert [d.device_id for d in await sight(node_b, laptop, room)] == [room.id]
    await laptop.close()


@pytest.mark.parametrize("neighbours", [1, 0])
async def test_a_sighting_on_either_side_of_a_window_boundary_resolves_within_the_skew(
    start_relay: StartRelay, neighbours: int
) -> None:
    relay = await start_relay(eid_neighbours=neighbours)
    world = await build_world(relay.admin)
    room = world.room
    period = 1 << room.rotation_exponent
    boundary = relay.clock() - relay.clock() % period + period
    laptop = await relay.laptop(world.alice)
    expected = [room.id] if neighbours else []

    def eid(at: float) -> bytes:
        return eid_at(room.identity_key, at, room.rotation_exponent)

    relay.clock.now = boundary - 0.3
    # A beacon whose clock is a second ahead already sends the next window's EID ...
    ahead = await laptop.report_sightings([(eid(boundary + 0.7), -60)])
    assert [d.device_id for d in ahead.devices] == expected
    relay.clock.now = boundary + 0.3
    # ... and one a second behind still sends the previous window's.
    behind = await laptop.report_sightings([(eid(boundary - 0.7), -60)])
    assert [d.device_id for d in behind.devices] == expected
    # Its own window's EID resolves on both sides, whatever the allowance.
    assert [
        d.device_id for d in (await laptop.report_sightings([(eid(boundary + 0.3), -60)])).devices
    ] == [room.id]
    await laptop.close()


async def test_only_devices_in_the_resolvable_states_resolve_after_one_check(
    relay: RelayHarness, world: World
) -> None:
    """The rule the service applies (only signed-in devices resolve) is kept by the index
    itself: a device reset or signed out drops out at the next check, and one signed in
    comes back, without a rebuild."""
    clock = relay.clock
    waiting = await relay.admin.create_device(
        world.contoso.id, "Unsigned room", "room_system", "meeting_room",
        state="waiting_for_sign_in",
    )
    directory = Directory(relay.store, 0.0, clock=clock, resolvable_states={"signed_in"})
    await directory.start(clock())
    await asyncio.wait_for(directory.eids.loaded.wait(), 10)
    assert world.alice.phone is not None
    phone = world.alice.phone
    eid = relay.eid(phone)
    assert await directory.resolve(eid, clock()) == phone
    assert await directory.resolve(relay.eid(waiting), clock()) is None  # never signed in
    admin_store = SqliteStore(relay.db)
    await admin_store.open()
    await admin_store.reset_device(phone.id, clock())  # factory reset
    assert await directory.resolve(eid, clock()) is None
    await relay.admin.sign_in_device(phone.id, world.alice.user.id)
    assert (await directory.resolve(eid, clock())) is not None
    await relay.admin.sign_out_device(phone.id)
    assert await directory.resolve(eid, clock()) is None
    await admin_store.close()
    await directory.close()
