"""Several relay nodes behind HAProxy on one Redis and one database, as real processes.

Each test puts the two ends of a conversation on different nodes (laptop on relay-1,
phone on relay-2, room on relay-3...) and checks that the relay behaves as one: pairing,
lock sync, audio hand-off, join, provisioning and login codes, replaced connections,
tenant isolation; then the failures — a node killed with ``kill -9``, Redis restarted
(and PostgreSQL, when the cluster runs on it) — and that nothing acknowledged is lost.
The tests share one cluster, so each one leaves it with three healthy nodes.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable

import pytest

from btogether.cluster import RelayNodeProcess
from relay.protocol import admin_wire as aw
from relay.protocol import wire
from relay.protocol.admin_link import AdminLink, provision
from relay.protocol.link import LinkClosed, RelayLink, RequestFailed
from tests.cluster.conftest import ClusterWorld, Person, eid_now
from tests.provisioning.conftest import FakeDevice

pytestmark = pytest.mark.timeout(180)


async def until(check: Callable[[], Awaitable[object]], within: float, what: str) -> object:
    deadline = time.monotonic() + within
    while True:
        try:
            value = await check()
        except (RequestFailed, LinkClosed, OSError):
            value = None
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {within} s waiting for {what}")
        await asyncio.sleep(0.1)


async def paired(world: ClusterWorld, person: Person, laptop: RelayLink, phone: RelayLink) -> None:
    """Sight, request, both confirm (the phone first, the laptop last)."""
    await laptop.report_sightings([(eid_now(person.phone), -60)])
    request = await laptop.pair_request(person.phone.id)
    prompt = await phone.next_event("pair.prompt")
    assert isinstance(prompt, wire.PairPrompt) and prompt.request_id == request.request_id
    await phone.pair_confirm(request.request_id, True)
    await laptop.pair_confirm(request.request_id, True)
    await laptop.next_event("pair.completed")
    await phone.next_event("pair.completed")


async def unpair(laptop: RelayLink, person: Person) -> None:
    with contextlib.suppress(RequestFailed):
        await laptop.pair_remove(person.phone.id)


async def lock_round_trip(laptop: RelayLink, phone: RelayLink, state: wire.LockState) -> int:
    result = await laptop.lock_set(state)
    command = await phone.next_event("lock.command")
    assert isinstance(command, wire.LockCommand) and command.state == state
    assert command.seq == result.phones[0].seq
    await phone.lock_ack(command.seq)
    applied = await laptop.next_event("lock.applied")
    assert isinstance(applied, wire.LockApplied) and applied.seq == command.seq
    return command.seq


async def holder(world: ClusterWorld, address: str) -> RelayNodeProcess | None:
    """The node holding an address, from the cluster's presence in Redis."""
    from redis import asyncio as aioredis

    assert world.cluster.redis is not None
    client = aioredis.Redis.from_url(world.cluster.redis.url, decode_responses=True)
    try:
        value = await client.get(f"btg:r:p:{address}")
    finally:
        await client.aclose()
    if not value:
        return None
    pid = int(str(value).split("-", 1)[0])
    return world.cluster.node_by_pid(pid)


def ensure_nodes(world: ClusterWorld) -> None:
    """Start any node a test killed, so the next test has three."""
    for node in world.cluster.relays:
        if not node.alive():
            node.start()


# --- the relay behaves as one across nodes ---------------------------------------------------


async def test_pairing_lock_and_audio_across_nodes(cluster_world: ClusterWorld) -> None:
    world = cluster_world
    laptop = await world.laptop(world.alice, node=1)
    phone = await world.device(world.alice.phone_credential, node=2)
    try:
        await paired(world, world.alice, laptop, phone)
        seqs = [await lock_round_trip(laptop, phone, s) for s in ("locked", "unlocked")]
        assert seqs[1] == seqs[0] + 1
        # Audio hand-off: laptop on relay-1 asks, phone on relay-2 takes, then releases.
        selected = await laptop.audio_select(world.alice.phone.id, "weekly")
        take = await phone.next_event("audio.command")
        assert isinstance(take, wire.AudioCommand) and take.action == "take"
        await phone.audio_ack(selected.handoff_id, True)
        active = await laptop.next_event("audio.state")
        assert isinstance(active, wire.AudioState) and active.state == "active"
        await laptop.audio_release(selected.handoff_id)
        release = await phone.next_event("audio.command")
        assert isinstance(release, wire.AudioCommand) and release.action == "release"
    finally:
        await unpair(laptop, world.alice)
        await laptop.close()
        await phone.close()


async def test_join_a_room_held_by_another_node(cluster_world: ClusterWorld) -> None:
    world = cluster_world
    room = await world.device(world.room_credential, node=3)
    laptop = await world.laptop(world.bob, node=1, laptop_id="bob-laptop")
    try:
        await laptop.report_sightings([(eid_now(world.room), -55)])
        joined = await laptop.join_request(world.room.id, "standup")
        assert joined.outcome == "accepted"
        command = await room.next_event("join.command")
        assert isinstance(command, wire.JoinCommand) and command.meeting_id == "standup"
    finally:
        await laptop.close()
        await room.close()


async def test_pair_request_to_an_offline_phone_is_refused_on_every_node(
    cluster_world: ClusterWorld,
) -> None:
    world = cluster_world
    laptop = await world.laptop(world.bob, node=3, laptop_id="bob-2")
    try:
        await laptop.report_sightings([(eid_now(world.bob.phone), -60)])
        with pytest.raises(RequestFailed) as refused:
            await laptop.pair_request(world.bob.phone.id)
        assert refused.value.code is wire.ErrorCode.DEVICE_OFFLINE
    finally:
        await laptop.close()


async def test_a_connection_replaced_on_another_node_is_closed(
    cluster_world: ClusterWorld,
) -> None:
    world = cluster_world
    first = await world.device(world.bob.phone_credential, node=1)
    second = await world.device(world.bob.phone_credential, node=2)
    try:
        code, _ = await asyncio.wait_for(first.closed, timeout=5)
        assert code == wire.CloseCode.REPLACED
        # The newer one holds the address: a laptop on the third node reaches it.
        laptop = await world.laptop(world.bob, node=3, laptop_id="bob-3")
        try:
            await laptop.report_sightings([(eid_now(world.bob.phone), -60)])
            request = await laptop.pair_request(world.bob.phone.id)
            prompt = await second.next_event("pair.prompt")
            assert isinstance(prompt, wire.PairPrompt)
            assert prompt.request_id == request.request_id
        finally:
            await laptop.close()
    finally:
        await first.close()
        await second.close()


async def test_tenants_stay_apart_across_nodes(cluster_world: ClusterWorld) -> None:
    world = cluster_world
    phone = await world.device(world.alice.phone_credential, node=2)
    outsider = await world.laptop(world.carol, node=1, laptop_id="carol-1")
    try:
        seen = await outsider.report_sightings([(eid_now(world.alice.phone), -50),
                                                (eid_now(world.room), -50)])
        assert seen.devices == []  # another tenant's phone and room look like nothing
        with pytest.raises(RequestFailed) as refused:
            await outsider.pair_request(world.alice.phone.id)
        assert refused.value.code is wire.ErrorCode.NOT_FOUND
        with pytest.raises(RequestFailed) as refused:
            await outsider.audio_select(world.alice.phone.id, "m")
        assert refused.value.code is wire.ErrorCode.NOT_FOUND
        # Carol's own phone, on yet another node, is hers to find.
        own = await world.device(world.carol.phone_credential, node=3)
        try:
            mine = await outsider.report_sightings([(eid_now(world.carol.phone), -50)])
            assert [d.device_id for d in mine.devices] == [world.carol.phone.id]
        finally:
            await own.close()
    finally:
        await outsider.close()
        await phone.close()


async def test_provisioning_and_login_code_with_device_and_admin_on_different_nodes(
    cluster_world: ClusterWorld,
) -> None:
    world = cluster_world
    owner = await AdminLink.connect(world.node_url(2), world.owner_token, reply_timeout=15.0)
    device = FakeDevice(seed=11)
    try:
        listed = await owner.typed(aw.DeviceInfo, aw.DeviceAdd, tenant_id=world.contoso.id,
                                   mac="02:00:5E:10:00:99", location="Floor 9",
                                   kind="room_system")
        code = await owner.typed(aw.VerificationCode, aw.CodeCreate, device_id=listed.id)
        bound = await provision(world.node_url(1), "02:00:5E:10:00:99", code.code)
        await device.connect(world.node_url(1), bound.credential)
        # The admin on relay-2 asks the device on relay-1 for its login code.
        login = await owner.typed(aw.LoginCode, aw.LoginCodeGet, device_id=listed.id)
        assert login.code == device.code
        user = await owner.typed(aw.UserInfo, aw.UserCreate, tenant_id=world.contoso.id,
                                 name="Floor 9 room")
        # ... and a third node signs it in with that code.
        other = await AdminLink.connect(world.node_url(3), world.owner_token, reply_timeout=15)
        try:
            signed = await other.typed(aw.DeviceInfo, aw.DeviceSignIn, device_id=listed.id,
                                       user_id=user.id, code=login.code)
        finally:
            await other.close()
        assert signed.state == "signed_in"
        state = await device.next_state(within=10)
        while state.state != "signed_in":
            state = await device.next_state(within=10)
        assert state.beaconing
        # A code is used once, whichever node is asked.
        with pytest.raises(RequestFailed):
            await owner.call(aw.DeviceSignIn, device_id=listed.id, user_id=user.id,
                             code=login.code)
    finally:
        await device.close()
        await owner.close()


async def test_wrong_guesses_are_counted_by_every_node_together(
    cluster_world: ClusterWorld,
) -> None:
    """Provisioning's guess counters live in Redis: guesses spread over the nodes add up
    (a guesser gets no fresh tries by switching nodes)."""
    world = cluster_world
    owner = await AdminLink.connect(world.node_url(1), world.owner_token, reply_timeout=15.0)
    try:
        listed = await owner.typed(aw.DeviceInfo, aw.DeviceAdd, tenant_id=world.contoso.id,
                                   mac="02:00:5E:10:00:98", kind="room_system")
        code = await owner.typed(aw.VerificationCode, aw.CodeCreate, device_id=listed.id)
        wrong = f"{(int(code.code) + 1) % 1_000_000:06d}"
        # Five wrong codes (the limit per source and device), spread over the three nodes:
        # no node saw more than two.
        for attempt in range(5):
            with pytest.raises(RequestFailed) as refused:
                await provision(world.node_url(attempt % 3 + 1), "02:00:5E:10:00:98", wrong)
            assert refused.value.code is wire.ErrorCode.NOT_FOUND
        # This source is now refused for the device on every node, even with the right code.
        for node in (3, 1):
            with pytest.raises(RequestFailed) as refused:
                await provision(world.node_url(node), "02:00:5E:10:00:98", code.code)
            assert refused.value.code is wire.ErrorCode.NOT_FOUND
        devices = await owner.typed(aw.Devices, aw.DeviceList, tenant_id=world.contoso.id)
        alerted = [d for d in devices.devices if d.id == listed.id]
        assert alerted and alerted[0].lockout_reason is not None
    finally:
        await owner.close()


async def test_a_waiting_desk_phone_is_asked_for_its_login_code_once_not_by_every_node(
    cluster_world: ClusterWorld,
) -> None:
    """The device login page's code for a waiting desk phone: only the node holding the
    phone's connection asks it (three nodes asking would make it show three codes)."""
    world = cluster_world
    owner = await AdminLink.connect(world.node_url(1), world.owner_token, reply_timeout=15.0)
    device = FakeDevice(seed=5)
    try:
        listed = await owner.typed(aw.DeviceInfo, aw.DeviceAdd, tenant_id=world.contoso.id,
                                   mac="02:00:5E:10:00:97", kind="desk_phone")
        code = await owner.typed(aw.VerificationCode, aw.CodeCreate, device_id=listed.id)
        bound = await provision(world.node_url(2), "02:00:5E:10:00:97", code.code)
        await device.connect(world.node_url(2), bound.credential)
        await until(lambda: asyncio.sleep(0, bool(device.tasks)), 10, "a login code request")
        await asyncio.sleep(3.0)  # every node's asking loop has run a few times
        assert len(device.tasks) == 1
    finally:
        await device.close()
        await owner.close()


# --- failures -------------------------------------------------------------------------------


async def test_node_killed_phone_reconnects_elsewhere_and_gets_the_lock_it_missed(
    cluster_world: ClusterWorld,
) -> None:
    world = cluster_world
    laptop = await world.laptop(world.alice, node=1, laptop_id="alice-kill")
    phone = await world.device(world.alice.phone_credential, node=None)  # through HAProxy
    try:
        held = await until(lambda: holder(world, f"device/{world.alice.phone.id}"), 5,
                           "the phone's presence")
        assert isinstance(held, RelayNodeProcess)
        if held is world.cluster.relays[0]:  # keep the laptop's node alive
            await phone.close()
            phone = await world.device(world.alice.phone_credential, node=2)
            held = world.cluster.relays[1]
        await paired(world, world.alice, laptop, phone)
        await lock_round_trip(laptop, phone, "locked")
        held.kill()
        await asyncio.wait_for(phone.closed, timeout=10)
        # While the phone is away, the laptop unlocks: acknowledged, durable.
        result = await laptop.lock_set("unlocked")
        missed_seq = result.phones[0].seq
        # It reconnects through HAProxy, which sends it to a node that is alive.
        phone = await RelayLink.connect(world.cluster.url + "/",
                                        world.alice.phone_credential.token, reply_timeout=8.0)
        command = await phone.next_event("lock.command", within=10)
        assert isinstance(command, wire.LockCommand)
        assert (command.seq, command.state) == (missed_seq, "unlocked")
        await phone.lock_ack(command.seq)
        await laptop.next_event("lock.applied")
        now_held = await holder(world, f"device/{world.alice.phone.id}")
        assert now_held is not None and now_held is not held and now_held.alive()
        # The next change reaches it on its new node.
        await lock_round_trip(laptop, phone, "locked")
    finally:
        await unpair(laptop, world.alice)
        await laptop.close()
        await phone.close()
        ensure_nodes(world)


async def test_dead_nodes_connections_are_forgotten(cluster_world: ClusterWorld) -> None:
    world = cluster_world
    phone = await world.device(world.bob.phone_credential, node=3)
    laptop = await world.laptop(world.bob, node=1, laptop_id="bob-dead")
    try:
        await laptop.report_sightings([(eid_now(world.bob.phone), -60)])
        world.cluster.relays[2].kill()

        async def offline() -> bool:
            try:
                await laptop.pair_request(world.bob.phone.id)
            except RequestFailed as exc:
                return exc.code is wire.ErrorCode.DEVICE_OFFLINE
            return False

        await until(offline, 8, "the killed node's phone to be offline")
    finally:
        await laptop.close()
        await phone.close()
        ensure_nodes(world)


async def test_redis_restart_loses_no_acknowledged_lock(cluster_world: ClusterWorld) -> None:
    world = cluster_world
    cluster = world.cluster
    laptop = await world.laptop(world.alice, node=1, laptop_id="alice-redis")
    phone = await world.device(world.alice.phone_credential, node=2)
    try:
        await paired(world, world.alice, laptop, phone)
        await lock_round_trip(laptop, phone, "locked")
        assert cluster.redis is not None
        cluster.redis.stop()
        # Redis is away: a lock change is still durable and acknowledged to the laptop…
        result = await laptop.lock_set("unlocked")
        acked_seq = result.phones[0].seq
        cluster.redis.start()
        # …and once Redis is back the phone's node re-sends it by itself.
        command = await phone.next_event("lock.command", within=15)
        assert isinstance(command, wire.LockCommand)
        assert (command.seq, command.state) == (acked_seq, "unlocked")
        await phone.lock_ack(command.seq)
        applied = await laptop.next_event("lock.applied", within=10)
        assert isinstance(applied, wire.LockApplied) and applied.seq == acked_seq

        async def round_trip() -> bool:
            await lock_round_trip(laptop, phone, "locked")
            return True

        await until(round_trip, 15, "a lock round trip after the Redis restart")
    finally:
        await unpair(laptop, world.alice)
        await laptop.close()
        await phone.close()


async def test_postgres_restart_is_unavailable_then_serves_again(
    cluster_world: ClusterWorld,
) -> None:
    world = cluster_world
    if not world.cluster.on_postgres:
        pytest.skip("the cluster runs on SQLite until the PostgreSQL store is installed")
    laptop = await world.laptop(world.alice, node=1, laptop_id="alice-pg")
    phone = await world.device(world.alice.phone_credential, node=2)
    try:
        await paired(world, world.alice, laptop, phone)
        world.cluster.postgres.stop()
        with pytest.raises(RequestFailed) as refused:
            await laptop.lock_set("locked")
        assert refused.value.code is wire.ErrorCode.UNAVAILABLE
        world.cluster.postgres.start()

        async def round_trip() -> bool:
            await lock_round_trip(laptop, phone, "locked")
            return True

        await until(round_trip, 20, "a lock round trip after the PostgreSQL restart")
    finally:
        await unpair(laptop, world.alice)
        await laptop.close()
        await phone.close()
