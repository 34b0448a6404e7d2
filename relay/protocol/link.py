"""The client side of the relay protocol: one authenticated websocket link to the relay.

Used by the beacon daemon, the laptop client, admin tools, tests and the benchmark::

    link = await RelayLink.connect(url, token, laptop_id="my-laptop")
    result = await link.lock_set("locked")          # waits for the reply with the same id
    event = await link.next_event("lock.applied")   # pushed events, in arrival order

The credential travels in the opening handshake (``Authorization: Bearer …``); a
laptop also sends its stable client id. A reply that is an ``error`` raises
:class:`RequestFailed` carrying the wire ``code``. Pushed events go to
``on_event`` if given, else to a queue read with :meth:`next_event`.

Reconnecting with backoff is deliberately not done here: a link is one connection.
A supervisor can call :meth:`RelayLink.connect` again when :attr:`closed` resolves
(the relay re-sends anything a device missed, e.g. the pending lock state, on
connect).
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import ssl
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import structlog
from pydantic import ValidationError
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed
from websockets.typing import Subprotocol

from relay.protocol import wire

log = structlog.get_logger("relay.link")

M = TypeVar("M", bound=wire.Message)
EventHandler = Callable[[wire.Event], Awaitable[None] | None]


def tls_option(tls: ssl.SSLContext | None) -> dict[str, Any]:
    """websockets' ``ssl`` argument, only when given: ``ssl=None`` would refuse wss:// URLs."""
    return {} if tls is None else {"ssl": tls}


class LinkError(Exception):
    """Base of the link's errors."""


class RequestFailed(LinkError):
    """The relay answered a request with an error."""

    def __init__(self, code: wire.ErrorCode, message: str) -> None:
        super().__init__(f"{code.value}: {message}")
        self.code = code
        self.message = message


# Ids of unanswered requests kept to recognise a refusal of one; successes leave no
# trace, so the set is simply emptied when it reaches this size.
_MAX_UNANSWERED = 1024


class LinkClosed(LinkError):
    """The connection closed before the reply arrived."""

    def __init__(self, code: int | None, reason: str) -> None:
        super().__init__(f"connection closed ({code}) {reason}".strip())
        self.code = code
        self.reason = reason


class RelayLink:
    """One connection to the relay. Build with :meth:`connect`; a reply not received within
    ``reply_timeout`` seconds raises TimeoutError."""

    def __init__(
        self,
        conn: ClientConnection,
        welcome: wire.Welcome,
        on_event: EventHandler | None = None,
        reply_timeout: float = 10.0,
    ) -> None:
        self.conn = conn
        self.reply_timeout = reply_timeout
        self.welcome = welcome
        self._on_event = on_event
        self._events: asyncio.Queue[wire.Event] = asyncio.Queue()
        self._pending: dict[int, asyncio.Future[wire.Result | wire.Error]] = {}
        self._orphans: asyncio.Queue[wire.Error] = asyncio.Queue()
        self._unanswered: set[int] = set()  # ids of sent requests whose success is silent
        self._next_id = 0
        # The version the relay chose (the welcome repeats it; a relay too old to say
        # which subprotocol it chose speaks version 1).
        self.version = wire.SUBPROTOCOLS.get(conn.subprotocol or "", 1)
        self.closed: asyncio.Future[tuple[int | None, str]] = (
            asyncio.get_running_loop().create_future()
        )
        self._reader = asyncio.create_task(self._read_forever())

    @classmethod
    async def connect(
        cls,
        url: str,
        credential: str,
        *,
        laptop_id: str | None = None,
        laptop_name: str | None = None,
        on_event: EventHandler | None = None,
        open_timeout: float = 10.0,
        max_size: int = 2**20,
        reply_timeout: float = 10.0,
        tls: ssl.SSLContext | None = None,
    ) -> RelayLink:
        """Open and authenticate a link; raises websockets' InvalidStatus (401…) if refused.

        ``tls`` replaces the default TLS context of a ``wss://`` URL (an internal CA:
        :func:`relay.protocol.reach.client_tls`).
        """
        headers = {"Authorization": f"Bearer {credential}"}
        if laptop_id is not None:
            headers[wire.CLIENT_ID_HEADER] = laptop_id
        if laptop_name is not None:
            headers[wire.CLIENT_NAME_HEADER] = laptop_name
        conn = await connect(
            url,
            additional_headers=headers,
            subprotocols=[Subprotocol(p) for p in wire.SUBPROTOCOLS],  # newest first
            compression=None,
            open_timeout=open_timeout,
            max_size=max_size,
            **tls_option(tls),
        )
        try:
            first = await asyncio.wait_for(conn.recv(), open_timeout)
            welcome = wire.SERVER_MESSAGE_ADAPTER.validate_json(first)
        except BaseException:
            await conn.close()
            raise
        if not isinstance(welcome, wire.Welcome):
            await conn.close()
            raise LinkError(f"expected a welcome, got {welcome.type!r}")
        return cls(conn, welcome, on_event, reply_timeout)

    # --- receiving ---------------------------------------------------------------------
    async def _read_forever(self) -> None:
        try:
            async for raw in self.conn:
                try:
                    message = wire.SERVER_MESSAGE_ADAPTER.validate_json(raw)
                except ValidationError as exc:
                    log.warning("link_bad_message", error=str(exc)[:200])
                    continue
                if isinstance(message, (wire.Result, wire.Error)):
                    future = self._pending.pop(message.id, None) if message.id is not None else None
                    if future is not None and not future.done():
                        future.set_result(message)
                    elif message.id is not None and message.id in self._unanswered:
                        self._unanswered.discard(message.id)
                        log.warning(
                            "link_unanswered_request_failed",
                            id=message.id,
                            code=getattr(message, "code", None),
                            message=getattr(message, "message", None),
                        )
                    elif isinstance(message, wire.Error):
                        await self._orphans.put(message)
                    continue
                await self._dispatch(message)
        except ConnectionClosed:
            pass
        finally:
            code, reason = self.conn.close_code, self.conn.close_reason or ""
            for future in self._pending.values():
                if not future.done():
                    future.set_exception(LinkClosed(code, reason))
            self._pending.clear()
            if not self.closed.done():
                self.closed.set_result((code, reason))

    async def _dispatch(self, event: wire.Event) -> None:
        if self._on_event is None:
            self._events.put_nowait(event)
            return
        try:
            outcome = self._on_event(event)
            if inspect.isawaitable(outcome):
                await outcome
        except Exception:
            log.exception("link_event_handler_failed", type=event.type)

    async def next_event(self, *types: str, within: float = 10.0) -> wire.Event:
        """The next pushed event (of one of ``types``, if given; others are dropped),
        waiting at most ``within`` seconds (then TimeoutError)."""
        async with asyncio.timeout(within):
            while True:
                event = await self._events.get()
                if not types or event.type in types:
                    return event

    def pending_events(self) -> list[wire.Event]:
        """Events received and not yet taken, without waiting."""
        out: list[wire.Event] = []
        while not self._events.empty():
            out.append(self._events.get_nowait())
        return out

    # --- requests -----------------------------------------------------------------------
    def next_id(self) -> int:
        self._next_id += 1
        return self._next_id

    async def request(self, request: wire.Request) -> wire.Message:
        """Send a request and return its typed result; raises RequestFailed or LinkClosed."""
        reply = await self.exchange(request.model_dump_json(), request.id)
        if isinstance(reply, wire.Error):
            raise RequestFailed(reply.code, reply.message)
        return type(request).result.model_validate(reply.result)

    async def call(self, kind: type[wire.Request], **fields: Any) -> Any:
        """Build a request of ``kind`` with the next id and send it (see :meth:`request`)."""
        return await self.request(kind(id=self.next_id(), **fields))

    async def exchange(self, text: str, request_id: int | None) -> wire.Result | wire.Error:
        """Send raw text and return the reply with ``request_id`` (None: the next id-less
        error). For tests of bad input; normal callers use :meth:`request`."""
        if self.closed.done():
            raise LinkClosed(*self.closed.result())
        future: asyncio.Future[wire.Result | wire.Error] | None = None
        if request_id is not None:
            future = asyncio.get_running_loop().create_future()
            self._pending[request_id] = future
        try:
            await self.conn.send(text)
            async with asyncio.timeout(self.reply_timeout):
                if future is None:
                    return await self._orphans.get()
                return await future
        except ConnectionClosed:
            raise LinkClosed(self.conn.close_code, self.conn.close_reason or "") from None
        finally:
            if request_id is not None:
                self._pending.pop(request_id, None)

    async def close(self) -> None:
        await self.conn.close()
        with contextlib.suppress(asyncio.CancelledError):
            await self._reader

    async def __aenter__(self) -> RelayLink:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # --- typed helpers ------------------------------------------------------------------
    async def _typed(self, result_type: type[M], kind: type[wire.Request], **fields: Any) -> M:
        result = await self.call(kind, **fields)
        assert isinstance(result, result_type)
        return result

    async def ping(self) -> wire.Pong:
        return await self._typed(wire.Pong, wire.Ping)

    async def report_sightings(self, sightings: list[tuple[bytes, int]]) -> wire.SightingsResult:
        """Report (EID, RSSI) pairs; returns the devices this laptop may know about."""
        items = [wire.Sighting(eid=eid.hex(), rssi=rssi) for eid, rssi in sightings]
        return await self._typed(wire.SightingsResult, wire.SightingsReport, sightings=items)

    async def pair_request(self, phone_id: str) -> wire.PairRequestResult:
        return await self._typed(wire.PairRequestResult, wire.PairRequest, phone_id=phone_id)

    async def pair_confirm(self, request_id: str, accept: bool = True) -> wire.PairConfirmResult:
        return await self._typed(
            wire.PairConfirmResult, wire.PairConfirm, request_id=request_id, accept=accept
        )

    async def pair_remove(self, peer_id: str) -> None:
        await self._typed(wire.Done, wire.PairRemove, peer_id=peer_id)

    async def pairings(self) -> list[wire.PairingInfo]:
        return (await self._typed(wire.PairingsResult, wire.PairingsList)).pairings

    async def lock_set(self, state: wire.LockState) -> wire.LockSetResult:
        return await self._typed(wire.LockSetResult, wire.LockSet, state=state)

    async def lock_ack(self, seq: int) -> None:
        """Acknowledge a lock command. From protocol version 2 on its success is not
        answered: this returns once it is sent, and a refusal is only logged."""
        request = wire.LockAck(id=self.next_id(), seq=seq)
        if request.answered(self.version):
            await self.request(request)
            return
        await self.send_unanswered(request)

    async def send_unanswered(self, request: wire.Request) -> None:
        """Send a request whose success this protocol version does not answer; a refusal,
        if one comes, is logged (``link_unanswered_request_failed``)."""
        if self.closed.done():
            raise LinkClosed(*self.closed.result())
        if len(self._unanswered) >= _MAX_UNANSWERED:
            self._unanswered.clear()  # ids whose success was silent: nothing will come
        self._unanswered.add(request.id)
        try:
            await self.conn.send(request.model_dump_json())
        except ConnectionClosed:
            raise LinkClosed(self.conn.close_code, self.conn.close_reason or "") from None

    async def audio_select(self, phone_id: str, meeting_id: str) -> wire.AudioSelectResult:
        return await self._typed(
            wire.AudioSelectResult, wire.AudioSelect, phone_id=phone_id, meeting_id=meeting_id
        )

    async def audio_release(self, handoff_id: str) -> None:
        await self._typed(wire.Done, wire.AudioRelease, handoff_id=handoff_id)

    async def audio_ack(self, handoff_id: str, ok: bool = True, detail: str = "") -> None:
        await self._typed(wire.Done, wire.AudioAck, handoff_id=handoff_id, ok=ok, detail=detail)

    async def join_request(self, room_id: str, meeting_id: str) -> wire.JoinRequestResult:
        return await self._typed(
            wire.JoinRequestResult, wire.JoinRequest, room_id=room_id, meeting_id=meeting_id
        )

    async def join_respond(self, join_id: str, accept: bool = True) -> None:
        await self._typed(wire.Done, wire.JoinRespond, join_id=join_id, accept=accept)
