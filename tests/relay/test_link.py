"""The client link: replies matched by id, events to a callback, closes reported."""

from __future__ import annotations

import asyncio

import pytest

from relay.protocol import wire
from relay.protocol.link import LinkClosed, RelayLink
from tests.relay.conftest import RelayHarness, World
from tests.relay.helpers import pair


async def test_events_go_to_the_callback_when_one_is_given(
    relay: RelayHarness, world: World
) -> None:
    assert world.alice.phone is not None and world.alice.phone_credential is not None
    received: list[wire.Event] = []
    got_command = asyncio.Event()

    async def on_event(event: wire.Event) -> None:
        received.append(event)
        if isinstance(event, wire.LockCommand):
            got_command.set()

    phone = await relay.device(world.alice.phone_credential)
    laptop = await relay.laptop(world.alice)
    await pair(relay, laptop, phone, world.alice.phone)
    await phone.close()
    phone = await RelayLink.connect(
        relay.url, world.alice.phone_credential.token, on_event=on_event
    )
    await laptop.lock_set("locked")
    await asyncio.wait_for(got_command.wait(), 5)
    assert [e.type for e in received][-1] == "lock.command"
    assert phone.pending_events() == []  # nothing queued when a callback is set
    await laptop.close()
    await phone.close()


async def test_concurrent_requests_get_their_own_replies(relay: RelayHarness, world: World) -> None:
    laptop = await relay.laptop(world.alice)
    results = await asyncio.gather(*(laptop.pairings() for _ in range(20)), laptop.ping())
    assert results[:20] == [[]] * 20 and isinstance(results[20], wire.Pong)
    await laptop.close()


async def test_pending_request_fails_with_link_closed_when_the_relay_stops(
    relay: RelayHarness, world: World
) -> None:
    laptop = await relay.laptop(world.alice)
    await relay.server.stop()
    with pytest.raises(LinkClosed) as closed:
        await laptop.ping()
    assert closed.value.code == wire.CloseCode.GOING_AWAY
    assert (await laptop.closed)[0] == wire.CloseCode.GOING_AWAY


async def test_fast_send_delivers_and_falls_back_to_send_when_closed(
    relay: RelayHarness, world: World
) -> None:
    from websockets.exceptions import ConnectionClosed

    from relay.net.fastsend import send_text

    laptop = await relay.laptop(world.alice)
    future = asyncio.get_running_loop().create_future()
    laptop._pending[77] = future
    await send_text(laptop.conn, '{"type":"ping","id":77}')  # the client side is a Connection too
    reply = await asyncio.wait_for(future, 5)
    assert isinstance(reply, wire.Result) and reply.id == 77
    await laptop.close()
    with pytest.raises(ConnectionClosed):
        await send_text(laptop.conn, '{"type":"ping","id":78}')


def test_a_directly_written_frame_is_the_bytes_websockets_would_write() -> None:
    from websockets.frames import Frame, Opcode

    from relay.net.fastsend import text_frame

    for length in (0, 1, 125, 126, 127, 65535, 65536, 70000):  # each header size, each edge
        payload = ("é" * length).encode()[:length]
        assert text_frame(payload) == Frame(Opcode.TEXT, payload).serialize(mask=False)



async def test_the_relay_writes_its_frames_itself_and_a_client_does_not(
    relay: RelayHarness, world: World
) -> None:
    from relay.net.connection import WsSession
    from relay.net.fastsend import writes_frames_itself
    from relay.net.websocket import OpenWebsocket

    laptop = await relay.laptop(world.alice)
    sessions = [s for s in relay.server._sessions if isinstance(s, WsSession)]
    assert sessions and all(isinstance(s.conn, OpenWebsocket) for s in sessions)
    assert not writes_frames_itself(laptop.conn)  # masked frames: the library's path
    assert isinstance(await laptop.ping(), wire.Pong)
