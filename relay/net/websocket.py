"""A device's or laptop's websocket after its opening handshake, served on websockets'
Sans-I/O protocol directly: no task, queue or future per idle connection.

websockets' asyncio connection keeps, for each connection, a handler task and its
coroutine frames, a keepalive task, a message assembler with its queues, futures and
an attribute dictionary: tracemalloc over 2,000 idle relay connections put those at
about half of the 15 KB each one cost. The relay holds one connection per device and
laptop for hours, almost always idle; so once websockets' server has done the opening
handshake (the front door, the guard, ``process_request``, the subprotocol) and the
relay has authenticated the principal, :meth:`OpenWebsocket.take_over` makes the
socket's asyncio protocol this small object instead and lets websockets' connection go
(as :mod:`relay.web.frontdoor` does for the web pages).

The library's :class:`~websockets.protocol.Protocol` — the same object, already open
— still checks sizes and fragmentation, answers pings and runs the closing handshake
for every frame but the common one: this module cuts what arrives into whole frames
and reads a final, masked text frame itself (:mod:`relay.net.fastread`, checked against
the library's parser), feeding every other frame whole to the protocol. It hands each
whole message to ``on_message``, sends the keepalive pings (a timer, not a task),
closes a connection whose peer stopped answering, and follows the transport's write
flow control. Connections whose protocol uses an extension are not taken over (the
relay offers none).
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable
from typing import Any

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosedError
from websockets.frames import CloseCode, Opcode
from websockets.protocol import Protocol, State
from websockets.server import ServerProtocol
from websockets.streams import StreamReader

from relay.net.fastread import INCOMPLETE, TOO_LONG, frame_length, text_payload
from relay.net.fastsend import text_frame

CLOSE_TIMEOUT_S = 10.0  # websockets' default: a peer gets this long to finish a close
KEEPALIVE_PAYLOAD = b"btogether"
_PROTOCOL_LOGGER = logging.getLogger("websockets.server")


class _Released(asyncio.Transport):
    """What websockets' connection holds once the socket is served here: closing,
    aborting or writing to it does nothing to the socket."""

    def is_closing(self) -> bool:
        return True

    def close(self) -> None:
        pass

    def abort(self) -> None:
        pass

    def write(self, data: Any) -> None:
        pass

    def can_write_eof(self) -> bool:
        return False


def _spent_protocol() -> ServerProtocol:
    """A closed protocol for websockets' released connection, so its own closing code
    finds nothing to do and cannot touch the one the relay now serves."""
    protocol = ServerProtocol()
    protocol.receive_eof()  # an end of stream before any request: nothing is sent
    protocol.data_to_send()
    assert protocol.state is State.CLOSED
    return protocol


class OpenWebsocket(asyncio.Protocol):
    """The socket of one open websocket, and the library protocol that frames it."""

    __slots__ = (
        "_awaiting_pong",
        "_closer",
        "_early",
        "_fragment_opcode",
        "_fragments",
        "_framing",
        "_keepalive",
        "_lost",
        "_lost_early",
        "_ping_interval",
        "_started",
        "_tail",
        "_writable",
        "id",
        "on_lost",
        "on_message",
        "paused",
        "protocol",
        "remote_address",
        "subprotocol",
        "transport",
    )

    def __init__(
        self,
        protocol: Protocol,
        transport: asyncio.Transport,
        *,
        subprotocol: str | None,
        ping_interval: float | None,
        paused: bool = False,
    ) -> None:
        self.protocol = protocol
        self.transport = transport
        self.id: uuid.UUID = protocol.id
        self.subprotocol = subprotocol
        peer = transport.get_extra_info("peername")
        self.remote_address: Any = peer
        self.paused = paused
        self.on_lost: Callable[[OpenWebsocket], None] = _ignore
        self._fragments: list[bytes] | None = None
        # Whether this object cuts what it receives into frames (relay/net/fastread.py):
        # only while the library's parser is known to stand at a frame boundary.
        self._framing = (
            at_frame_boundary(protocol) and getattr(protocol, "max_message_size", None) is not None
        )
        self._tail: bytes | bytearray = b""  # the beginning of a frame not all here yet
        self._fragment_opcode = Opcode.TEXT
        self._early: list[str | bytes] = []  # messages that came before start()
        self.on_message: Callable[[str | bytes], None] = self._early.append
        self._started = False
        self._lost_early = False
        self._ping_interval = ping_interval
        self._awaiting_pong = False
        self._keepalive: asyncio.TimerHandle | None = None
        self._closer: asyncio.TimerHandle | None = None
        self._writable: asyncio.Future[None] | None = None
        self._lost: asyncio.Future[None] | None = None

    # --- taking a connection over from websockets ---------------------------------------
    @classmethod
    def can_take_over(cls, conn: ServerConnection) -> bool:
        """Whether ``conn`` is open, plain (no extension) and not sending a message."""
        protocol = getattr(conn, "protocol", None)
        return (
            protocol is not None
            and protocol.state is State.OPEN
            and not getattr(protocol, "extensions", True)
            and getattr(conn, "send_in_progress", True) is None
            and hasattr(getattr(conn, "transport", None), "set_protocol")  # asyncio's, uvloop's
        )

    @classmethod
    def take_over(cls, conn: ServerConnection, ping_interval: float | None) -> OpenWebsocket:
        """Serve ``conn``'s socket here from now on; websockets' connection ends as if the
        peer had gone (its handler may return). Messages it had already received but not
        yet handed out are given to ``on_message`` by :meth:`start`."""
        transport = conn.transport
        protocol = conn.protocol
        ws = cls(
            protocol,
            transport,
            subprotocol=conn.subprotocol,
            ping_interval=ping_interval,
            paused=bool(getattr(conn, "paused", False)),
        )
        # Frames websockets had already parsed but nobody had asked for yet (the peer wrote
        # right after the handshake): they are this object's now, in order.
        pending = getattr(getattr(conn.recv_messages, "frames", None), "queue", None)
        if pending:
            ws._framing = False  # data came early: leave the framing to the library
            for frame in list(pending):
                ws._frame(frame)
            pending.clear()
        transport.set_protocol(ws)
        # The protocol's parser keeps the handshake's request alive; its headers (~3 KB)
        # are read by nobody from here on.
        if conn.request is not None:
            conn.request.headers.clear()
        # Its logger (an adapter naming websockets' connection, now gone) for the library's
        # own, shared by every connection.
        protocol.logger = _PROTOCOL_LOGGER
        conn.protocol = _spent_protocol()
        conn.transport = _Released()
        conn.connection_lost(None)
        return ws

    def start(self, on_message: Callable[[str | bytes], None]) -> None:
        """Hand every message to ``on_message`` from now on (those that came before
        first, in order); if the socket is already gone, call ``on_lost`` now."""
        self._started = True
        early, self._early = self._early, []
        if self._lost_early:
            self._lost_early = False
            on_lost, self.on_lost = self.on_lost, _ignore
            on_lost(self)
            return
        self.on_message = on_message
        for message in early:
            on_message(message)
        if not self.transport.is_reading():
            self.transport.resume_reading()
        self._schedule_keepalive()

    # --- asyncio.Protocol ---------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        pass  # made by websockets' server; this object arrives later (take_over)

    def data_received(self, data: bytes) -> None:
        if not self._framing:
            self._feed(data)
            return
        buffer: bytes | bytearray = data
        if self._tail:
            self._tail += data
            buffer = self._tail
        protocol = self.protocol
        max_size = protocol.max_message_size
        offset = 0
        end = len(buffer)
        while offset < end:
            length = frame_length(buffer, offset, max_size)
            if length == INCOMPLETE:
                break
            if length == TOO_LONG:  # the library refuses it (1009); it has the rest
                self._framing = False
                self._tail = b""
                self._feed(bytes(buffer[offset:]))
                return
            frame = buffer[offset : offset + length]
            offset += length
            payload = text_payload(frame)
            if (
                payload is not None
                and protocol.current_size is None  # not inside a fragmented message
                and protocol.state is State.OPEN
            ):
                self._text(payload)
            else:
                self._feed(bytes(frame))
                if protocol.state is not State.OPEN:  # closing: the library has the rest
                    self._framing = False
                    self._tail = b""
                    if offset < end:
                        self._feed(bytes(buffer[offset:]))
                    return
        if offset < end:
            self._tail = bytearray(buffer[offset:])  # a frame's beginning: wait for the rest
        elif self._tail:
            self._tail = b""

    def _feed(self, data: bytes) -> None:
        """Hand bytes to the library's protocol (whole frames, while the relay frames)."""
        protocol = self.protocol
        protocol.receive_data(data)
        events = protocol.events_received()
        self._send_data()
        if protocol.close_expected():
            self._expect_close()
        for frame in events:
            self._frame(frame)

    def eof_received(self) -> bool | None:
        self.protocol.receive_eof()
        self._send_data()
        return None  # the transport closes

    def connection_lost(self, exc: Exception | None) -> None:
        self.protocol.receive_eof()  # idempotent; the protocol is CLOSED afterwards
        for timer in (self._keepalive, self._closer):
            if timer is not None:
                timer.cancel()
        self._keepalive = self._closer = None
        self.paused = False
        waiter, self._writable = self._writable, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
        if self._lost is not None and not self._lost.done():
            self._lost.set_result(None)
        self.on_message = _ignore
        if not self._started:  # told when start() is called, as the server expects
            self._lost_early = True
            return
        on_lost, self.on_lost = self.on_lost, _ignore
        on_lost(self)

    def pause_writing(self) -> None:
        self.paused = True

    def resume_writing(self) -> None:
        self.paused = False
        waiter, self._writable = self._writable, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # --- frames in ----------------------------------------------------------------------
    def _frame(self, frame: Any) -> None:
        opcode = frame.opcode
        if opcode is Opcode.TEXT or opcode is Opcode.BINARY:
            if frame.fin:
                self._message(opcode, bytes(frame.data))
            else:
                self._fragments = [bytes(frame.data)]
                self._fragment_opcode = opcode
        elif opcode is Opcode.CONT:
            if self._fragments is not None:
                self._fragments.append(bytes(frame.data))
                if frame.fin:
                    data = b"".join(self._fragments)
                    self._fragments = None
                    self._message(self._fragment_opcode, data)
        elif opcode is Opcode.PONG:
            self._awaiting_pong = False

    def _message(self, opcode: Opcode, data: bytes) -> None:
        if self.protocol.state is not State.OPEN:
            return  # closing: what a closing peer still sent is not served
        if opcode is Opcode.BINARY:
            self.on_message(data)
            return
        self._text(data)

    def _text(self, data: bytes) -> None:
        try:
            text = data.decode()
        except UnicodeDecodeError as exc:
            self.fail(CloseCode.INVALID_DATA, f"{exc.reason} at position {exc.start}")
            return
        self.on_message(text)

    # --- frames out ---------------------------------------------------------------------
    @property
    def close_code(self) -> int | None:
        return self.protocol.close_code

    def send_now(self, message: str) -> bool:
        """Write ``message`` as one text frame if the socket takes it without waiting."""
        if self.paused or self.protocol.state is not State.OPEN:
            return False
        self.transport.write(text_frame(message.encode()))
        return True

    async def send(self, message: str) -> None:
        """Write ``message`` once the socket can take it; ConnectionClosed if it is gone."""
        while self.paused and self.protocol.state is State.OPEN:
            if self._writable is None:
                self._writable = asyncio.get_running_loop().create_future()
            await asyncio.shield(self._writable)
        if self.protocol.state is not State.OPEN:
            raise ConnectionClosedError(None, None)
        self.transport.write(text_frame(message.encode()))

    async def close(self, code: int = CloseCode.NORMAL_CLOSURE, reason: str = "") -> None:
        """The closing handshake: send a close frame, wait until the socket is gone."""
        if self.protocol.state is State.OPEN:
            self.protocol.send_close(code, reason)
            self._send_data()
            self._expect_close()
        await self.wait_closed()

    async def wait_closed(self) -> None:
        if self.protocol.state is State.CLOSED and self._lost is None:
            return
        if self._lost is None:
            self._lost = asyncio.get_running_loop().create_future()
        await asyncio.shield(self._lost)

    def fail(self, code: int, reason: str) -> None:
        """Close at once for a fault (the peer is told why, not waited for long)."""
        if self.protocol.state is State.OPEN or self.protocol.state is State.CLOSING:
            self.protocol.fail(code, reason)
            self._send_data()
            self._expect_close()

    def _send_data(self) -> None:
        transport = self.transport
        for data in self.protocol.data_to_send():
            if data:
                transport.write(data)
            elif transport.can_write_eof():
                try:
                    transport.write_eof()
                except Exception:  # the peer went first; connection_lost follows
                    transport.abort()
            else:
                transport.close()

    def _expect_close(self) -> None:
        if self._closer is None and not self.transport.is_closing():
            loop = asyncio.get_running_loop()
            self._closer = loop.call_later(CLOSE_TIMEOUT_S, self.transport.abort)

    # --- keepalive ----------------------------------------------------------------------
    def _schedule_keepalive(self) -> None:
        if self._ping_interval is not None:
            loop = asyncio.get_running_loop()
            self._keepalive = loop.call_later(self._ping_interval, self._ping)

    def _ping(self) -> None:
        self._keepalive = None
        if self.protocol.state is not State.OPEN:
            return
        if self._awaiting_pong:  # a whole interval without an answer: the peer is gone
            self.fail(CloseCode.INTERNAL_ERROR, "keepalive ping timeout")
            self.transport.close()  # not waited for: the close frame goes if it can
            return
        self._awaiting_pong = True
        self.protocol.send_ping(KEEPALIVE_PAYLOAD)
        self._send_data()
        self._schedule_keepalive()


def at_frame_boundary(protocol: Protocol) -> bool:
    """Whether the library's parser waits for the first byte of a frame, with nothing
    buffered (its parser generator suspended in the reader's end-of-stream check between
    frames); False if unsure (another websockets version: the library frames everything)."""
    try:
        inner: Any = protocol.parser
        while inner.gi_yieldfrom is not None:
            inner = inner.gi_yieldfrom
        return (
            inner.gi_code is _AT_EOF_CODE
            and not protocol.reader.buffer
            and protocol.current_size is None
        )
    except AttributeError:
        return False


_AT_EOF_CODE = getattr(getattr(StreamReader, "at_eof", None), "__code__", None)


def _ignore(*_: Any) -> None:
    pass
