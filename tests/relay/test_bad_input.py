"""Bad input: each kind gets a clear error or a documented close code, and loses nothing."""

from __future__ import annotations

import asyncio
import json

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosedError

from relay.domain.model import Tenant
from relay.domain.store import StoreConflict
from relay.protocol import wire
from tests.relay.conftest import RelayHarness, StartRelay, World
from tests.relay.helpers import pair


async def test_malformed_json_gets_bad_json_and_the_connection_lives_on(
    relay: RelayHarness, world: World
) -> None:
    laptop = await relay.laptop(world.alice)
    for text in ('{"type": "ping", "id": 1', "[1, 2, 3]", '"just a string"', "\u00ff\u0000"):
        reply = await laptop.exchange(text, None)
        assert isinstance(reply, wire.Error) and reply.code == wire.ErrorCode.BAD_JSON
        assert reply.id is None
    assert (await laptop.ping()).server_time == relay.clock()
    await laptop.close()


async def test_unknown_type_is_answered_with_its_id(relay: RelayHarness, world: World) -> None:
    laptop = await relay.laptop(world.alice)
    reply = await laptop.exchange(json.dumps({"type": "teleport", "id": 7}), 7)
    assert isinstance(reply, wire.Error) and reply.code == wire.ErrorCode.UNKNOWN_TYPE
    reply = await laptop.exchange(json.dumps({"id": 8}), 8)
    assert isinstance(reply, wire.Error) and reply.code == wire.ErrorCode.UNKNOWN_TYPE
    await laptop.close()


@pytest.mark.parametrize(
    "message",
    [
        {"type": "lock.set", "id": 3, "state": "sideways"},
        {"type": "lock.set", "id": 3},
        {"type": "lock.set", "id": 3, "state": "locked", "extra": True},
        {"type": "sightings.report", "id": 3, "sightings": [{"eid": "zz", "rssi": -50}]},
        {
            "type": "sightings.report",
            "id": 3,
            "sightings": [{"eid": "00" * 8, "rssi": -50}] * (wire.MAX_SIGHTINGS_PER_REPORT + 1),
        },
        {"type": "pair.request", "id": 3, "phone_id": "x" * 65},
    ],
)
async def test_invalid_fields_get_invalid_request(
    relay: RelayHarness, world: World, message: dict[str, object]
) -> None:
    laptop = await relay.laptop(world.alice)
    reply = await laptop.exchange(json.dumps(message), 3)
    assert isinstance(reply, wire.Error) and reply.code == wire.ErrorCode.INVALID_REQUEST
    assert reply.id == 3 and message["type"] in reply.message
    await laptop.close()


async def test_missing_or_bad_id_is_invalid(relay: RelayHarness, world: World) -> None:
    laptop = await relay.laptop(world.alice)
    for bad in ({"type": "ping"}, {"type": "ping", "id": -1}, {"type": "ping", "id": "one"}):
        reply = await laptop.exchange(json.dumps(bad), None)
        assert isinstance(reply, wire.Error) and reply.code == wire.ErrorCode.INVALID_REQUEST
        assert reply.id is None
    await laptop.close()


async def test_oversized_message_closes_with_1009(relay: RelayHarness, world: World) -> None:
    laptop = await relay.laptop(world.alice)
    await laptop.conn.send(" " * (relay.settings.max_message_bytes + 1))
    code, _ = await asyncio.wait_for(laptop.closed, 5)
    assert code == wire.CloseCode.MESSAGE_TOO_BIG
    # The relay itself is fine.
    again = await relay.laptop(world.alice)
    assert (await again.ping()).server_time > 0
    await again.close()


async def test_binary_frames_close_with_1008(relay: RelayHarness, world: World) -> None:
    laptop = await relay.laptop(world.alice)
    await laptop.conn.send(b"\x00\x01")
    code, _ = await asyncio.wait_for(laptop.closed, 5)
    assert code == wire.CloseCode.POLICY_VIOLATION


async def test_flood_is_refused_then_closed_with_1008(
    start_relay: StartRelay, tmp_path: object
) -> None:
    relay = await start_relay(rate_per_second=1.0, rate_burst=5.0, rate_strikes=3)
    world = await _world(relay)
    headers = {
        "Authorization": f"Bearer {world.alice.credential.token}",
        wire.CLIENT_ID_HEADER: "flooder",
    }
    async with connect(
        relay.url, additional_headers=headers, subprotocols=[wire.SUBPROTOCOL]
    ) as ws:  # type: ignore[list-item]
        await ws.recv()  # welcome
        for n in range(20):
            await ws.send(json.dumps({"type": "ping", "id": n}))
        replies = []
        with pytest.raises(ConnectionClosedError):
            async for raw in ws:
                replies.append(json.loads(raw))
        assert ws.close_code == wire.CloseCode.POLICY_VIOLATION
    # The clock does not move, so the bucket never refills: burst, then strikes, then close.
    assert [r["type"] for r in replies] == ["result"] * 5 + ["error"] * 3
    assert all(r["code"] == "rate_limited" for r in replies[5:])
    assert [r["id"] for r in replies] == list(range(8))


async def _world(relay: RelayHarness) -> World:
    from tests.relay.conftest import build_world

    return await build_world(relay.admin)


async def test_requests_in_the_wrong_state_are_refused(relay: RelayHarness, world: World) -> None:
    assert world.alice.phone is not None and world.alice.phone_credential is not None
    phone = await relay.device(world.alice.phone_credential)
    laptop = await relay.laptop(world.alice)
    await pair(relay, laptop, phone, world.alice.phone)
    reply = await laptop.exchange(
        wire.PairRequest(id=50, phone_id=world.alice.phone.id).model_dump_json(), 50
    )
    assert isinstance(reply, wire.Error) and reply.code == wire.ErrorCode.WRONG_STATE
    await laptop.close()
    await phone.close()


async def test_a_failing_write_in_a_group_commit_fails_alone(relay: RelayHarness) -> None:
    store = relay.store
    good = Tenant("t_good", "Good")
    duplicate = Tenant("t_dup", "Dup")
    await store.add_tenant(duplicate)
    results = await asyncio.gather(
        store.add_tenant(good), store.add_tenant(duplicate), return_exceptions=True
    )
    assert results[0] is None and isinstance(results[1], StoreConflict)
    assert {t.id for t in await store.tenants()} == {"t_good", "t_dup"}
