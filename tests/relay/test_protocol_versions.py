"""Protocol versions side by side: the relay answers in the newest version a client offers,
and version 2 leaves a successful ``lock.ack`` unanswered (a failed one still gets its
error), while a version 1 client gets every reply it always got."""

from __future__ import annotations

import json
from typing import Any

from structlog.testing import capture_logs
from websockets.asyncio.client import ClientConnection, connect
from websockets.typing import Subprotocol

from relay.protocol import wire
from tests.relay.conftest import RelayHarness, World
from tests.relay.helpers import paired_alice


async def _raw_phone(relay: RelayHarness, world: World, *offered: str) -> ClientConnection:
    assert world.alice.phone_credential is not None
    return await connect(
        relay.url,
        additional_headers={"Authorization": f"Bearer {world.alice.phone_credential.token}"},
        subprotocols=[Subprotocol(p) for p in offered],
    )


async def _next(conn: ClientConnection, *types: str) -> dict[str, Any]:
    while True:
        message: dict[str, Any] = json.loads(await conn.recv())
        if not types or message["type"] in types:
            return message


async def test_the_relay_answers_in_the_newest_version_the_client_offers(
    relay: RelayHarness, world: World
) -> None:
    for offered, chosen, version in (
        ((wire.SUBPROTOCOL_V1, wire.SUBPROTOCOL), wire.SUBPROTOCOL, 2),
        ((wire.SUBPROTOCOL,), wire.SUBPROTOCOL, 2),
        ((wire.SUBPROTOCOL_V1,), wire.SUBPROTOCOL_V1, 1),
    ):
        conn = await _raw_phone(relay, world, *offered)
        welcome = await _next(conn)
        assert (conn.subprotocol, welcome["type"], welcome["protocol"]) == (
            chosen, "welcome", version,
        )
        await conn.close()


async def test_a_successful_lock_ack_is_answered_in_version_1_and_not_in_version_2(
    relay: RelayHarness, world: World
) -> None:
    laptop, phone = await paired_alice(relay, world)
    await phone.close()  # the phone comes back on raw connections of each version
    for offered, answered in ((wire.SUBPROTOCOL_V1, True), (wire.SUBPROTOCOL, False)):
        conn = await _raw_phone(relay, world, offered)
        await laptop.lock_set("locked" if answered else "unlocked")
        command = await _next(conn, "lock.command")
        await conn.send(json.dumps({"type": "lock.ack", "id": 7, "seq": command["seq"]}))
        await conn.send(json.dumps({"type": "ping", "id": 8}))
        replies = [await _next(conn, "result", "error") for _ in range(1 + answered)]
        assert [r["id"] for r in replies] == ([7, 8] if answered else [8])
        assert (await laptop.next_event("lock.applied")).seq == command["seq"]  # type: ignore[attr-defined]
        await conn.close()
    await laptop.close()


async def test_a_failed_lock_ack_is_answered_in_version_2(
    relay: RelayHarness, world: World
) -> None:
    laptop, phone = await paired_alice(relay, world)
    await phone.close()
    conn = await _raw_phone(relay, world, wire.SUBPROTOCOL)
    await conn.send(json.dumps({"type": "lock.ack", "id": 5, "seq": 99}))
    error = await _next(conn, "result", "error")
    assert (error["type"], error["id"], error["code"]) == ("error", 5, "wrong_state")
    await conn.close()
    await laptop.close()


async def test_the_link_speaks_version_2_and_logs_a_refused_ack(
    relay: RelayHarness, world: World
) -> None:
    laptop, phone = await paired_alice(relay, world)
    assert (phone.version, phone.welcome.protocol) == (2, 2)
    with capture_logs() as logs:
        await phone.lock_ack(41)  # returns once sent: nothing answers a success
        await phone.ping()  # replies come in order: the refusal has arrived by now
    refused = [e for e in logs if e["event"] == "link_unanswered_request_failed"]
    assert [e["code"] for e in refused] == ["wrong_state"]
    assert "no lock command with seq 41" in refused[0]["message"]
    await laptop.lock_set("locked")
    command = await phone.next_event("lock.command")
    await phone.lock_ack(command.seq)  # type: ignore[attr-defined]
    assert (await laptop.next_event("lock.applied")).seq == command.seq  # type: ignore[attr-defined]
    await laptop.close()
    await phone.close()
