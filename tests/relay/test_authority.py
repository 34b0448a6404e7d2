"""The relay's authority holds at every moment of a connection, over real websockets.

A phone signed in to another user stops obeying the first user's laptop; a reset device
no longer resolves; a change made by another process on the database (the
``btogether admin --db`` commands) is noticed and the sessions it concerns are closed;
a connection that stops reading cannot slow anyone else down; idle unauthenticated
connections cannot lock honest clients out.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import time
from typing import Any

import pytest
from websockets.asyncio.client import connect
from websockets.typing import Subprotocol

from relay.domain.verification import ThrottlePolicy
from relay.protocol import admin_wire as aw
from relay.protocol import wire
from relay.protocol.admin_link import endpoint_url
from relay.protocol.link import RelayLink, RequestFailed
from tests.relay.conftest import RelayHarness, StartRelay, World, build_world
from tests.relay.helpers import paired_alice, refusal, sight, sighted_alice


async def test_a_phone_signed_in_to_another_user_no_longer_obeys_the_first_users_laptop(
    relay: RelayHarness, world: World
) -> None:
    assert world.alice.phone is not None
    laptop, phone = await paired_alice(relay, world)
    # The administrator gives the phone to bob (from another process, on the same file).
    await relay.admin.sign_in_device(world.alice.phone.id, world.bob.user.id)
    # The phone's connection belonged to alice's account: it is closed (4002).
    code, _ = await asyncio.wait_for(phone.closed, 2.0)
    assert code == wire.CloseCode.SESSION_CHANGED
    assert await refusal(laptop.lock_set("locked")) is wire.ErrorCode.NOT_PAIRED
    assert (
        await refusal(laptop.audio_select(world.alice.phone.id, "m-1"))
        is wire.ErrorCode.NOT_PAIRED
    )
    # bob's phone now: reconnected, it received no lock command of alice's.
    assert world.alice.phone_credential is not None
    again = await relay.device(world.alice.phone_credential)
    await asyncio.sleep(0.2)
    assert [e.type for e in again.pending_events()] == []
    assert await laptop.pairings() == []


async def test_a_revoked_credential_closes_its_connection_even_when_revoked_elsewhere(
    relay: RelayHarness, world: World
) -> None:
    laptop, phone = await paired_alice(relay, world)
    assert world.alice.phone_credential is not None
    started = time.monotonic()
    await relay.admin.revoke_credential(world.alice.credential.credential_id)
    await relay.admin.revoke_credential(world.alice.phone_credential.credential_id)
    for link in (laptop, phone):
        code, _ = await asyncio.wait_for(link.closed, 2.0)
        assert code == wire.CloseCode.REVOKED
    # Noticed by the relay's once-a-second directory check, not by a request.
    assert time.monotonic() - started < 2.0


async def test_a_reset_device_does_not_resolve_and_gets_no_join(
    relay: RelayHarness, world: World
) -> None:
    room_link = await relay.device(world.room_credential)
    laptop = await relay.laptop(world.bob)
    assert [d.device_id for d in await sight(relay, laptop, world.room)] == [world.room.id]
    await relay.store.reset_device(world.room.id, relay.clock())
    code, _ = await asyncio.wait_for(room_link.closed, 2.0)
    assert code == wire.CloseCode.REVOKED
    assert await sight(relay, laptop, world.room) == []
    assert await refusal(laptop.join_request(world.room.id, "m-1")) is wire.ErrorCode.WRONG_STATE


async def test_a_pending_lock_of_the_previous_account_is_not_sent_after_a_reset(
    relay: RelayHarness, world: World
) -> None:
    assert world.alice.phone is not None and world.alice.phone_credential is not None
    laptop, phone = await paired_alice(relay, world)
    await phone.close()
    await laptop.lock_set("locked")  # pending: the phone is away
    await relay.store.reset_device(world.alice.phone.id, relay.clock())
    await relay.admin.sign_in_device(world.alice.phone.id, world.alice.user.id)
    fresh = await relay.admin.issue_credential("device", world.alice.phone.id)
    again = await relay.device(fresh)
    await asyncio.sleep(0.2)
    assert [e.type for e in again.pending_events()] == []
    record = await relay.store.lock_record(world.alice.phone.id)
    assert record is not None and not record.pending


async def test_the_welcome_tells_a_laptop_which_hand_offs_the_relay_still_holds(
    start_relay: StartRelay,
) -> None:
    relay = await start_relay()
    world = await build_world(relay.admin)
    assert world.alice.phone is not None
    laptop, _phone = await paired_alice(relay, world)
    selected = await laptop.audio_select(world.alice.phone.id, "m-1")
    # The same laptop connecting again replaces its first connection; the hand-off stays.
    again = await relay.laptop(world.alice)
    assert again.welcome.handoffs == [selected.handoff_id]
    await relay.server.stop()
    # A restarted relay holds no hand-off (short-lived state): the laptop learns it at once.
    restarted = await start_relay()
    after = await restarted.laptop(world.alice)
    assert after.welcome.handoffs == []


async def test_a_connection_that_stops_reading_slows_no_one_and_is_closed(
    start_relay: StartRelay,
) -> None:
    relay = await start_relay(outbox_messages=16, rate_per_second=10_000.0, rate_burst=10_000.0)
    world = await build_world(relay.admin)
    assert world.alice.phone is not None and world.alice.phone_credential is not None
    laptop, phone = await paired_alice(relay, world)
    await phone.close()
    # The phone again, from a socket with a tiny receive buffer that then stops reading.
    stuck = socket.socket()
    stuck.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1024)
    stuck.connect(("127.0.0.1", relay.server.port))
    stuck.setblocking(False)
    conn = await connect(
        relay.url,
        sock=stuck,
        additional_headers={"Authorization": f"Bearer {world.alice.phone_credential.token}"},
        subprotocols=[Subprotocol(wire.SUBPROTOCOL)],
        compression=None,
        max_queue=1,
    )
    bob = await relay.laptop(world.bob)
    conn.transport.pause_reading()  # from now on the phone reads nothing
    slowest = 0.0
    closed_code: int | None = None
    deadline = time.monotonic() + 20.0
    address = f"device/{world.alice.phone.id}"
    bulky = wire.PairRemoved(laptop_id="x" * 60_000, phone_id="y").model_dump_json()
    while time.monotonic() < deadline and closed_code is None:
        for _ in range(10):
            await laptop.lock_set("locked")  # each sends the stuck phone a lock command
            # and large events, so the kernel's buffers fill in seconds, not minutes
            await relay.server.router.deliver(address, bulky)
        began = time.perf_counter()
        await bob.ping()
        slowest = max(slowest, time.perf_counter() - began)
        session = relay.server.router.sessions.at(address)
        if session is None:
            closed_code = wire.CloseCode.TOO_SLOW
    assert closed_code == wire.CloseCode.TOO_SLOW, "the stuck phone was never closed"
    assert slowest < 0.1, f"another user's round trip took {slowest * 1000:.0f} ms"
    conn.transport.abort()


async def test_idle_unauthenticated_connections_do_not_lock_out_an_honest_client(
    relay: RelayHarness, world: World
) -> None:
    idle: list[socket.socket] = []
    try:
        for n in range(5000):
            sock = socket.socket()
            sock.setblocking(False)
            sock.bind((f"127.0.0.{1 + n % 50}", 0))
            with contextlib.suppress(BlockingIOError):
                sock.connect(("127.0.0.1", relay.server.port))
            idle.append(sock)
            if n % 500 == 499:
                await asyncio.sleep(0.05)  # let the relay accept them
        await asyncio.sleep(0.5)
        guard = relay.server.guard
        assert len(guard) <= guard.total
        began = time.monotonic()
        honest = await RelayLink.connect(
            relay.url, world.bob.credential.token, laptop_id="bob-1", open_timeout=5.0
        )
        assert (await honest.ping()).server_time > 0
        # Not locked out: through at once (generous under a loaded test machine).
        assert time.monotonic() - began < 5.0
        await honest.close()
        assert guard.refused + guard.evicted > 0
    finally:
        for sock in idle:
            sock.close()


async def test_one_credential_holds_a_bounded_number_of_laptop_connections(
    start_relay: StartRelay,
) -> None:
    relay = await start_relay(max_connections_per_credential=3)
    world = await build_world(relay.admin)
    links = [await relay.laptop(world.alice, f"laptop-{n}") for n in range(3)]
    with pytest.raises(Exception, match="429"):
        await relay.laptop(world.alice, "laptop-4")
    # The same laptop connecting again replaces its old connection: not refused.
    again = await relay.laptop(world.alice, "laptop-0")
    assert (await again.ping()).server_time > 0
    for link in links[1:]:
        await link.close()


async def test_requests_that_prompt_others_are_capped_per_credential(
    relay: RelayHarness, world: World
) -> None:
    room = await relay.device(world.prompt_room_credential)
    laptop = await relay.laptop(world.bob)
    await sight(relay, laptop, world.prompt_room)
    outcomes = []
    for n in range(relay.settings.pushes_per_minute + 1):
        try:
            await laptop.join_request(world.prompt_room.id, f"m-{n}")
            outcomes.append("ok")
        except RequestFailed as exc:
            outcomes.append(exc.code.value)
    assert outcomes == ["ok"] * relay.settings.pushes_per_minute + ["rate_limited"]
    relay.clock.advance(61)
    await sight(relay, laptop, world.prompt_room)
    assert (await laptop.join_request(world.prompt_room.id, "m-later")).outcome == "pending"
    await room.close()


async def test_sightings_of_a_signed_out_device_resolve_nothing(
    relay: RelayHarness, world: World
) -> None:
    laptop, _ = await sighted_alice(relay, world)
    assert world.alice.phone is not None
    await relay.admin.sign_out_device(world.alice.phone.id)
    assert await sight(relay, laptop, world.alice.phone) == []


async def _provision_as(relay: RelayHarness, forwarded_for: str, mac: str, code: str) -> dict[str, Any]:
    async with connect(
        endpoint_url(relay.url, aw.PROVISION_PATH),
        subprotocols=[Subprotocol(aw.PROVISION_SUBPROTOCOL)],
        additional_headers={"X-Forwarded-For": f"{forwarded_for}, 127.0.0.1"},
    ) as conn:
        await conn.send(aw.Provision(id=1, mac=mac, code=code).model_dump_json())
        return dict(json.loads(await conn.recv()))


async def test_behind_a_trusted_proxy_each_forwarded_client_is_its_own_source(
    start_relay: StartRelay,
) -> None:
    relay = await start_relay(trusted_proxies=["127.0.0.1"])
    world = await build_world(relay.admin)
    mac = "02:00:00:00:00:42"
    listed = await relay.admin.create_device(
        world.contoso.id, "Desk 42", "desk_phone", "personal", mac=mac,
        state="waiting_for_activation",
    )
    code, _ = await relay.server.node.provisioning.issue_verification_code(listed, relay.clock())
    wrong = f"{(int(code) + 1) % 1_000_000:06d}"
    for _ in range(ThrottlePolicy().max_failures):
        reply = await _provision_as(relay, "203.0.113.7", mac, wrong)
        assert reply["code"] == "not_found"
    # The guesser behind the proxy is refused even with the right code...
    refused = await _provision_as(relay, "203.0.113.7", mac, code)
    assert refused["type"] == "error" and refused["code"] == "not_found"
    alert = await relay.server.node.provisioning.alert(listed.id, relay.clock())
    assert alert is not None and "203.0.113.7" in alert.reason
    # ...while the real device, behind the same proxy, is not.
    bound = await _provision_as(relay, "198.51.100.9", mac, code)
    assert bound["type"] == "result" and bound["result"]["device_id"] == listed.id
