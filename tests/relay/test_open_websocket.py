"""Devices' and laptops' sockets after the handshake (relay/net/websocket.py): framing,
keepalive, closing and read back-pressure, against websockets' own client."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from relay.net.connection import INBOX_PAUSE_AT, INBOX_RESUME_AT, Inbox
from relay.net.websocket import OpenWebsocket
from relay.protocol import wire
from tests.relay.conftest import RelayHarness, StartRelay, World, build_world


async def _raw_laptop(relay: RelayHarness, world: World, **kw: Any) -> ClientConnection:
    headers = {
        "Authorization": f"Bearer {world.alice.credential.token}",
        wire.CLIENT_ID_HEADER: "raw-laptop",
    }
    conn = await connect(
        relay.url, additional_headers=headers, subprotocols=list(wire.SUBPROTOCOLS), **kw
    )
    welcome = json.loads(await asyncio.wait_for(conn.recv(), 5))
    assert welcome["type"] == "welcome"
    return conn


async def _reply_to(conn: ClientConnection, request_id: int) -> dict[str, Any]:
    while True:
        message = json.loads(await asyncio.wait_for(conn.recv(), 5))
        if message.get("id") == request_id:
            return message


async def _eventually(check: Callable[[], Awaitable[bool]], within: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + within
    while not await check():
        assert asyncio.get_running_loop().time() < deadline, "did not happen in time"
        await asyncio.sleep(0.05)


async def test_a_laptops_socket_is_served_by_the_relay_not_by_websockets_connection(
    relay: RelayHarness, world: World
) -> None:
    conn = await _raw_laptop(relay, world)
    served = [s.conn for s in relay.server._sessions]
    assert len(served) == 1 and isinstance(served[0], OpenWebsocket)
    assert served[0]._framing  # it reads its text frames itself (relay/net/fastread.py)
    # websockets' server no longer counts it: its connection was let go after the handshake.
    assert relay.server._server is not None
    assert not relay.server._server.connections
    await conn.close()


async def test_requests_sent_back_to_back_are_answered_in_order(
    relay: RelayHarness, world: World
) -> None:
    conn = await _raw_laptop(relay, world)
    for n in range(1, 41):  # more than the inbox holds before it stops reading
        await conn.send(json.dumps({"type": "ping", "id": n}))
    ids = []
    while len(ids) < 40:
        message = json.loads(await asyncio.wait_for(conn.recv(), 5))
        if message["type"] == "result":
            ids.append(message["id"])
    assert ids == list(range(1, 41))
    await conn.close()


async def test_a_fragmented_message_is_served_whole(relay: RelayHarness, world: World) -> None:
    conn = await _raw_laptop(relay, world)
    text = json.dumps({"type": "ping", "id": 5})
    await conn.send(iter([text[:3], text[3:9], text[9:]]))  # three frames, one message
    reply = await _reply_to(conn, 5)
    assert reply["type"] == "result"
    await conn.close()


async def test_invalid_utf8_text_closes_with_1007(relay: RelayHarness, world: World) -> None:
    conn = await _raw_laptop(relay, world)
    conn.protocol.send_text(b"\xff\xfe not utf-8")
    conn.send_data()
    with pytest.raises(ConnectionClosed):
        while True:
            await asyncio.wait_for(conn.recv(), 5)
    assert conn.close_code == 1007


async def test_a_peer_that_stops_answering_pings_is_closed_and_goes_offline(
    start_relay: StartRelay,
) -> None:
    relay = await start_relay(ping_interval_s=0.2)
    world = await build_world(relay.admin)
    # The client's own keepalive off, and then it reads nothing: no pong ever comes back.
    conn = await _raw_laptop(relay, world, ping_interval=None)
    address = f"laptop/{world.alice.user.id}/raw-laptop"
    assert await relay.server.router.is_online(address)
    conn.transport.pause_reading()

    async def offline() -> bool:
        return not await relay.server.router.is_online(address)

    await _eventually(offline, within=5.0)
    conn.transport.resume_reading()
    with pytest.raises(ConnectionClosed):
        while True:
            await asyncio.wait_for(conn.recv(), 5)
    assert conn.close_code == 1011 and "keepalive" in (conn.close_reason or "")


async def test_a_peer_that_answers_pings_stays_connected(start_relay: StartRelay) -> None:
    relay = await start_relay(ping_interval_s=0.1)
    world = await build_world(relay.admin)
    conn = await _raw_laptop(relay, world, ping_interval=None)
    await asyncio.sleep(0.6)  # six pings, each answered by websockets' client
    await conn.send(json.dumps({"type": "ping", "id": 9}))
    assert (await _reply_to(conn, 9))["type"] == "result"
    await conn.close()


async def test_a_peer_closing_gets_the_closing_handshake_and_is_forgotten(
    relay: RelayHarness, world: World
) -> None:
    conn = await _raw_laptop(relay, world)
    address = f"laptop/{world.alice.user.id}/raw-laptop"
    await conn.close(1000, "bye")
    assert conn.close_code == 1000  # the relay echoed the close frame

    async def offline() -> bool:
        return not await relay.server.router.is_online(address)

    await _eventually(offline)
    assert not relay.server._endings or await _settled(relay)


async def _settled(relay: RelayHarness) -> bool:
    await asyncio.gather(*relay.server._endings)
    return True


class _Transport:
    """The part of an asyncio transport an inbox uses, recording what it was told."""

    def __init__(self) -> None:
        self.reading = True
        self.pauses = 0

    def pause_reading(self) -> None:
        self.reading = False
        self.pauses += 1

    def resume_reading(self) -> None:
        self.reading = True

    def is_closing(self) -> bool:
        return False


async def test_an_inbox_stops_reading_while_its_backlog_is_long_and_serves_in_order() -> None:
    transport = _Transport()
    served: list[str | bytes] = []
    release = asyncio.Event()

    async def serve(message: str | bytes) -> bool:
        await release.wait()
        served.append(message)
        return True

    inbox = Inbox(serve, transport)  # type: ignore[arg-type]
    for n in range(INBOX_PAUSE_AT + 4):
        inbox.put(str(n))
    await asyncio.sleep(0)
    assert not transport.reading and transport.pauses == 1
    release.set()
    await inbox.finished()
    assert served == [str(n) for n in range(INBOX_PAUSE_AT + 4)]
    assert transport.reading
    assert INBOX_RESUME_AT < INBOX_PAUSE_AT


async def test_an_inbox_serves_nothing_more_once_a_message_ends_the_connection() -> None:
    served: list[str | bytes] = []

    async def serve(message: str | bytes) -> bool:
        served.append(message)
        return message != "last"

    inbox = Inbox(serve, _Transport())  # type: ignore[arg-type]
    for message in ("a", "last", "b"):
        inbox.put(message)
    await inbox.finished()
    inbox.put("c")
    await inbox.finished()
    assert served == ["a", "last"]


async def test_a_standing_verdict_is_reused_until_the_directory_moves(
    start_relay: StartRelay,
) -> None:
    relay = await start_relay(directory_check_s=3600.0)  # refreshed only when told here
    world = await build_world(relay.admin)
    service = relay.server.service
    judged: list[str] = []
    real_verdict = service.session_verdict

    async def counting_verdict(principal: Any, now: float) -> Any:
        judged.append(principal.address)
        return await real_verdict(principal, now)

    service.session_verdict = counting_verdict  # type: ignore[method-assign]
    directory = relay.server.node.directory
    await directory.refresh(relay.clock(), force=True)
    conn = await _raw_laptop(relay, world)
    for n in range(1, 6):
        await conn.send(json.dumps({"type": "ping", "id": n}))
        assert (await _reply_to(conn, n))["type"] == "result"
    assert len(judged) == 1  # judged on the first request only
    await relay.admin.create_user(world.fabrikam.id, "someone else")  # the directory moves
    await directory.refresh(relay.clock(), force=True)
    await conn.send(json.dumps({"type": "ping", "id": 6}))
    assert (await _reply_to(conn, 6))["type"] == "result"
    assert len(judged) == 2  # judged again, and still stands
    await relay.admin.revoke_credential(world.alice.credential.credential_id)
    await directory.refresh(relay.clock(), force=True)
    with pytest.raises(ConnectionClosed):
        while True:
            await asyncio.wait_for(conn.recv(), 5)
    assert conn.close_code == wire.CloseCode.REVOKED


async def test_messages_that_came_before_the_hand_over_are_served_first_in_order() -> None:
    from websockets.asyncio.server import ServerConnection, serve

    received: list[str | bytes] = []
    taken: list[OpenWebsocket] = []
    done = asyncio.Event()

    async def handler(conn: ServerConnection) -> None:
        await asyncio.sleep(0.3)  # the client has written meanwhile: websockets parsed it
        ws = OpenWebsocket.take_over(conn, None)
        taken.append(ws)

        def collect(message: str | bytes) -> None:
            received.append(message)
            if len(received) == 3:
                done.set()

        ws.start(collect)

    async with serve(handler, "127.0.0.1", 0, compression=None) as server:
        port = server.sockets[0].getsockname()[1]
        async with connect(f"ws://127.0.0.1:{port}/", compression=None) as client:
            await client.send("first")
            await client.send("second")
            await asyncio.sleep(0.6)  # taken over by now
            await client.send("third")
            await asyncio.wait_for(done.wait(), 5)
            assert received == ["first", "second", "third"]
            assert not taken[0]._framing  # data came early: the library frames it all
            await client.close()
        assert client.close_code == 1000


class _SocketSide(asyncio.Transport):
    """A transport that records writes (for an OpenWebsocket driven by hand)."""

    def __init__(self) -> None:
        super().__init__()
        self.written = bytearray()

    def write(self, data: Any) -> None:
        self.written += data

    def is_reading(self) -> bool:
        return True

    def is_closing(self) -> bool:
        return False

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return default


def _open_websocket() -> OpenWebsocket:
    from tests.relay.test_fastread import _open_protocol

    return OpenWebsocket(_open_protocol(), _SocketSide(), subprotocol=None, ping_interval=None)


async def test_a_socket_lost_before_it_was_started_is_reported_at_start_and_serves_nothing() -> (
    None
):
    from tests.relay.test_fastread import raw_frame

    ws = _open_websocket()
    lost: list[OpenWebsocket] = []
    ws.on_lost = lost.append
    ws.data_received(raw_frame(0x1, b"early", True, 0, b"abcd"))
    ws.connection_lost(None)
    assert lost == []  # the server has not finished setting it up: told at start
    served: list[str | bytes] = []
    ws.start(served.append)
    assert lost == [ws] and served == []


async def test_writes_wait_while_the_socket_is_paused_and_fail_once_it_is_gone() -> None:
    ws = _open_websocket()
    transport = ws.transport
    assert isinstance(transport, _SocketSide)
    ws.pause_writing()
    assert not ws.send_now("now")  # paused: the outbox queues it instead
    sending = asyncio.create_task(ws.send("later"))
    await asyncio.sleep(0.01)
    assert not sending.done() and not transport.written
    ws.resume_writing()
    await asyncio.wait_for(sending, 1)
    assert transport.written.endswith(b"later")
    ws.connection_lost(None)
    with pytest.raises(ConnectionClosed):
        await ws.send("after")
