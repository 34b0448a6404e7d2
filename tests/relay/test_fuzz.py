"""Hostile input on every endpoint, over real websockets: 100,000 fuzzed frames, and the
documented answer to each kind of bad input on ``/admin`` and ``/provision`` too.

The frames are generated from a fixed seed (valid messages mutated: wrong types, missing
and extra fields, huge and negative numbers, deep nesting, odd unicode, truncated JSON,
random text). Each must get exactly one reply or a documented close, and the relay's
log must record no failure of its own (``request_failed`` means an exception escaped a
handler).
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections.abc import Iterator
from typing import Any

import pytest
import structlog
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.typing import Subprotocol

from relay.admin.service import bootstrap_owner
from relay.net.admin_endpoint import ADMIN_MAX_MESSAGE_BYTES
from relay.protocol import admin_wire as aw
from relay.protocol import wire
from relay.protocol.admin_link import endpoint_url
from tests.relay.conftest import StartRelay, build_world

FRAMES = 100_000
BATCH = 500

VALID: list[dict[str, Any]] = [
    {"type": "ping", "id": 1},
    {"type": "sightings.report", "id": 2, "sightings": [{"eid": "00" * 8, "rssi": -60}]},
    {"type": "pair.request", "id": 3, "phone_id": "d_1"},
    {"type": "pair.confirm", "id": 4, "request_id": "pr_1", "accept": True},
    {"type": "lock.set", "id": 5, "state": "locked"},
    {"type": "lock.ack", "id": 6, "seq": 1},
    {"type": "audio.select", "id": 7, "phone_id": "d_1", "meeting_id": "m"},
    {"type": "join.request", "id": 8, "room_id": "d_1", "meeting_id": "m"},
    {"type": "join.respond", "id": 9, "join_id": "jn_1", "accept": False},
    {"type": "login_code.report", "id": 10, "request_id": "lc_1", "code": "ABCD-EFGH"},
    {"type": "device.list", "id": 11, "limit": 10},
    {"type": "policy.create", "id": 12, "name": "x"},
    {"type": "provision", "id": 13, "mac": "02:00:00:00:00:01", "code": "123456"},
]
NASTY: list[Any] = [
    None, True, -1, 2**64, 1e308, -0.0, "", "\x00", "\ud7ff" * 50, "é" * 300, [], {},
    [[[[[]]]]], {"a": {"b": {"c": {}}}}, "💥" * 64, "d_" + "x" * 200, 2**53, "NaN",
]


def frames(rng: random.Random) -> Iterator[str]:
    while True:
        roll = rng.random()
        base = dict(rng.choice(VALID))
        if roll < 0.35:
            key = rng.choice([*base, "type", "id", "extra"])
            base[key] = rng.choice(NASTY)
            yield json.dumps(base)
        elif roll < 0.5:
            base.pop(rng.choice(list(base)))
            yield json.dumps(base)
        elif roll < 0.6:
            text = json.dumps(base)
            yield text[: rng.randrange(len(text))]
        elif roll < 0.7:
            yield json.dumps(rng.choice(NASTY))
        elif roll < 0.8:
            yield "[" * rng.randrange(1, 3000) + "]" * rng.randrange(0, 3000)
        elif roll < 0.9:
            yield "".join(chr(rng.randrange(1, 0x2FFF)) for _ in range(rng.randrange(1, 80)))
        else:
            base["type"] = rng.choice([t for v in VALID for t in [v["type"]]] + ["", "x" * 99])
            yield json.dumps(base)


async def _exchange(conn: ClientConnection, batch: list[str]) -> int:
    """Send a batch, then read one reply per frame; returns how many were answered."""
    for frame in batch:
        await conn.send(frame)
    answered = 0
    for _ in batch:
        reply = json.loads(await asyncio.wait_for(conn.recv(), 10))
        assert reply["type"] in ("result", "error"), reply
        answered += 1
    return answered


@pytest.mark.timeout(300)  # its own bound is 240 s; a busy machine needs more than 120
async def test_a_hundred_thousand_hostile_frames_get_answers_and_no_relay_failure(
    start_relay: StartRelay,
) -> None:
    relay = await start_relay(rate_per_second=1e9, rate_burst=1e9)
    world = await build_world(relay.admin)
    _, owner = await bootstrap_owner(relay.store, "fuzz owner", relay.clock())
    rng = random.Random(20261201)
    source = frames(rng)
    laptop = await connect(
        relay.url,
        additional_headers={
            "Authorization": f"Bearer {world.alice.credential.token}",
            wire.CLIENT_ID_HEADER: "fuzz-laptop",
        },
        subprotocols=[Subprotocol(wire.SUBPROTOCOL)],
    )
    device = await connect(
        relay.url,
        additional_headers={"Authorization": f"Bearer {world.room_credential.token}"},
        subprotocols=[Subprotocol(wire.SUBPROTOCOL)],
    )
    admin = await connect(
        endpoint_url(relay.url, aw.ADMIN_PATH),
        additional_headers={"Authorization": f"Bearer {owner}"},
        subprotocols=[Subprotocol(aw.ADMIN_SUBPROTOCOL)],
    )
    for conn in (laptop, device):
        await conn.recv()  # the welcome
    await device.recv()  # and the device's state
    answered = 0
    began = time.monotonic()
    with structlog.testing.capture_logs() as logs:
        while answered < FRAMES - 1000:
            for conn in (laptop, device, admin):
                answered += await _exchange(conn, [next(source) for _ in range(BATCH)])
        # The unauthenticated endpoint: one request per connection.
        for _ in range(1000):
            async with connect(
                endpoint_url(relay.url, aw.PROVISION_PATH),
                subprotocols=[Subprotocol(aw.PROVISION_SUBPROTOCOL)],
                local_addr=(f"127.0.0.{rng.randrange(2, 250)}", 0),
            ) as conn:
                answered += await _exchange(conn, [next(source)])
    assert answered >= FRAMES
    assert time.monotonic() - began < 240
    failures = [e for e in logs if e["log_level"] in ("error", "critical") or "exc_info" in e]
    assert failures == [], failures[:3]
    for conn in (laptop, device, admin):
        assert (await asyncio.wait_for(_ping(conn), 5))["type"] == "result"
        await conn.close()


async def _ping(conn: ClientConnection) -> dict[str, Any]:
    await conn.send(json.dumps({"type": "whoami", "id": 99}))
    await conn.send(json.dumps({"type": "ping", "id": 98}))
    reply = json.loads(await conn.recv())
    while reply.get("id") not in (98, 99) or reply["type"] != "result":
        reply = json.loads(await conn.recv())
    return dict(reply)


@pytest.mark.parametrize("path", [aw.ADMIN_PATH, aw.PROVISION_PATH])
async def test_the_admin_and_provisioning_endpoints_answer_bad_input_as_documented(
    start_relay: StartRelay, path: str
) -> None:
    relay = await start_relay()
    _, owner = await bootstrap_owner(relay.store, "owner", relay.clock())
    url = endpoint_url(relay.url, path)
    headers = {"Authorization": f"Bearer {owner}"} if path == aw.ADMIN_PATH else {}
    subprotocol = aw.ADMIN_SUBPROTOCOL if path == aw.ADMIN_PATH else aw.PROVISION_SUBPROTOCOL

    async def opened() -> ClientConnection:
        return await connect(
            url, additional_headers=headers, subprotocols=[Subprotocol(subprotocol)]
        )

    # The wrong subprotocol, or none: refused in the handshake (400).
    for offered in ([Subprotocol(wire.SUBPROTOCOL)], None):
        with pytest.raises(InvalidStatus) as refused:
            await connect(url, additional_headers=headers, subprotocols=offered)
        assert refused.value.response.status_code == 400
    # Malformed JSON, a non-object, an unknown type, a bad field: documented error codes.
    for frame, code in (
        ("{not json", "bad_json"),
        ("[1, 2]", "bad_json"),
        ('{"type": "nope", "id": 1}', "unknown_type"),
        ('{"type": "provision", "id": 1, "mac": 5, "code": "1"}', "invalid_request"),
    ):
        if path == aw.ADMIN_PATH and '"provision"' in frame:
            frame = '{"type": "device.list", "id": 1, "limit": -5}'
        conn = await opened()
        await conn.send(frame)
        reply = json.loads(await conn.recv())
        assert reply["type"] == "error" and reply["code"] == code, (frame, reply)
        await conn.close()
    # Binary frames close with 1008.
    conn = await opened()
    await conn.send(b"\x00\x01")
    with pytest.raises(ConnectionClosed):
        await asyncio.wait_for(conn.recv(), 5)
    assert conn.close_code in (wire.CloseCode.POLICY_VIOLATION, wire.CloseCode.IDLE)
    # Oversized messages close with 1009.
    conn = await opened()
    limit = ADMIN_MAX_MESSAGE_BYTES if path == aw.ADMIN_PATH else relay.settings.max_message_bytes
    with pytest.raises(ConnectionClosed):
        await conn.send("x" * (limit + 1))
        await asyncio.wait_for(conn.recv(), 5)
    assert conn.close_code == wire.CloseCode.MESSAGE_TOO_BIG
    if path == aw.ADMIN_PATH:
        # A flood is refused (rate_limited), then closed (1008).
        conn = await opened()
        codes: list[str] = []
        with pytest.raises(ConnectionClosed):
            for n in range(5000):
                await conn.send(json.dumps({"type": "whoami", "id": n}))
            while True:
                codes.append(json.loads(await asyncio.wait_for(conn.recv(), 5))["type"])
        assert conn.close_code == wire.CloseCode.POLICY_VIOLATION
        assert "error" in codes
    else:
        # One request per connection; an idle one is closed (4004) too.
        conn = await opened()
        await conn.send(json.dumps({"type": "provision", "id": 1, "mac": "x", "code": "1"}))
        assert json.loads(await conn.recv())["code"] == "invalid_request"
        with pytest.raises(ConnectionClosed):
            await asyncio.wait_for(conn.recv(), 5)
        assert conn.close_code == wire.CloseCode.IDLE
