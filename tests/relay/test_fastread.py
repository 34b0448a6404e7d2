"""The relay's own framing of what a client sends (relay/net/fastread.py and
``OpenWebsocket.data_received``), checked against websockets' parser: any sequence of
frames — valid or not, cut into any chunks — gives the same messages, the same bytes
back (pongs, closes) and the same end as websockets' protocol fed the same frames."""

from __future__ import annotations

import asyncio
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from websockets.frames import Close, Frame, Opcode
from websockets.http11 import Request
from websockets.protocol import State
from websockets.server import ServerProtocol

from relay.net.fastread import INCOMPLETE, TOO_LONG, frame_length, text_payload
from relay.net.websocket import OpenWebsocket

MAX_SIZE = 70_000
HANDSHAKE = (
    b"GET / HTTP/1.1\r\nHost: relay\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
)


def _open_protocol() -> ServerProtocol:
    """A server protocol after a real opening handshake: open, between frames."""
    protocol = ServerProtocol(max_size=MAX_SIZE)
    protocol.receive_data(HANDSHAKE)
    [request] = protocol.events_received()
    assert isinstance(request, Request)
    protocol.send_response(protocol.accept(request))
    protocol.data_to_send()
    assert protocol.state is State.OPEN
    return protocol


def raw_frame(opcode: int, payload: bytes, fin: bool, rsv: int, mask: bytes | None) -> bytes:
    """A frame's bytes as a peer may send them, reserved bits and all (RFC 6455 5.2)."""
    first = (0x80 if fin else 0) | (rsv << 4) | opcode
    length = len(payload)
    masked = 0x80 if mask is not None else 0
    if length < 126:
        header = bytes((first, masked | length))
    elif length < 65536:
        header = bytes((first, masked | 126)) + length.to_bytes(2, "big")
    else:
        header = bytes((first, masked | 127)) + length.to_bytes(8, "big")
    if mask is None:
        return header + payload
    return header + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


class _Transport(asyncio.Transport):
    """The socket side of an OpenWebsocket, recording what it is told."""

    def __init__(self) -> None:
        super().__init__()
        self.written = bytearray()
        self.closed = False
        self.eof = False
        self.reading = True

    def write(self, data: Any) -> None:
        self.written += data

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        self.eof = True

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        self.reading = True

    def is_reading(self) -> bool:
        return self.reading

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("127.0.0.1", 1) if name == "peername" else default


def _oracle(frames: list[bytes]) -> tuple[list[str | bytes], bytes, State, int | None]:
    """websockets' protocol fed the frames one by one; messages assembled from its events,
    kept while it is open (what a closing connection still receives is not served)."""
    protocol = _open_protocol()
    messages: list[str | bytes] = []
    written = bytearray()
    parts: list[bytes] | None = None
    kind = Opcode.TEXT
    for frame in frames:
        protocol.receive_data(frame)
        for event in protocol.events_received():
            assert isinstance(event, Frame)
            if event.opcode in (Opcode.TEXT, Opcode.BINARY):
                parts, kind = [bytes(event.data)], event.opcode
            elif event.opcode is Opcode.CONT and parts is not None:
                parts.append(bytes(event.data))
            else:
                continue
            if event.fin and parts is not None:
                data, parts = b"".join(parts), None
                if protocol.state is not State.OPEN:
                    continue
                if kind is Opcode.BINARY:
                    messages.append(data)
                    continue
                written += b"".join(protocol.data_to_send())
                try:
                    messages.append(data.decode())
                except UnicodeDecodeError as exc:  # as websockets' connection fails it
                    protocol.fail(1007, f"{exc.reason} at position {exc.start}")
        written += b"".join(protocol.data_to_send())
    return messages, bytes(written), protocol.state, protocol.close_code


async def _relay(chunks: list[bytes]) -> tuple[list[str | bytes], bytes, State, int | None]:
    protocol = _open_protocol()
    transport = _Transport()
    ws = OpenWebsocket(protocol, transport, subprotocol=None, ping_interval=None)
    assert ws._framing  # the relay frames from the start
    messages: list[str | bytes] = []
    ws.start(messages.append)
    for chunk in chunks:
        ws.data_received(chunk)
    return messages, bytes(transport.written), protocol.state, protocol.close_code


_OPCODES = st.sampled_from([0x0, 0x1, 0x1, 0x1, 0x2, 0x8, 0x9, 0xA, 0x3])
_SIZES = st.one_of(st.integers(0, 200), st.sampled_from([125, 126, 127, 65535, 65536, 70001]))


@st.composite
def _frames(draw: st.DrawFn) -> list[bytes]:
    frames = []
    for _ in range(draw(st.integers(1, 8))):
        opcode = draw(_OPCODES)
        if opcode == 0x1 and draw(st.booleans()):
            payload = draw(st.text(max_size=60)).encode()  # valid UTF-8, mostly
        elif opcode == 0x8 and draw(st.booleans()):
            payload = Close(draw(st.sampled_from([1000, 1001, 4000])), "bye").serialize()
        else:
            size = draw(_SIZES)
            payload = draw(st.binary(min_size=min(size, 8), max_size=8)) * (size // 8 + 1)
            payload = payload[:size]
        fin = draw(st.sampled_from([True, True, True, False]))
        rsv = draw(st.sampled_from([0, 0, 0, 0, 0, 1, 4]))
        mask = draw(st.one_of(st.just(b"\x01\x02\x03\x04"), st.binary(min_size=4, max_size=4)))
        if draw(st.integers(0, 19)) == 0:
            mask = None  # a client must mask: the library refuses it
        frames.append(raw_frame(opcode, payload, fin, rsv, mask))
    return frames


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(frames=_frames(), cuts=st.lists(st.integers(0, 200_000), max_size=6))
def test_any_frames_in_any_chunks_give_what_websockets_parser_gives(
    frames: list[bytes], cuts: list[int]
) -> None:
    stream = b"".join(frames)
    points = sorted({c % (len(stream) + 1) for c in cuts})
    chunks = [stream[a:b] for a, b in zip([0, *points], [*points, len(stream)], strict=True)]
    chunks = [c for c in chunks if c]
    assert asyncio.run(_relay(chunks)) == _oracle(frames)


def test_a_text_frame_inside_a_fragmented_message_is_refused_as_websockets_refuses_it() -> None:
    mask = b"\x05\x06\x07\x08"
    frames = [
        raw_frame(0x1, b"first ", False, 0, mask),  # a fragmented message begins
        raw_frame(0x1, b"not a continuation", True, 0, mask),  # protocol error (1002)
        raw_frame(0x1, b"after", True, 0, mask),
    ]
    got = asyncio.run(_relay([b"".join(frames)]))
    assert got == _oracle(frames)
    assert got[0] == [] and got[2] is State.CLOSING  # nothing served; closing
    assert got[1].startswith(bytes((0x88,)))  # the relay's close frame (1002) went out


def test_invalid_utf8_in_a_text_frame_fails_the_connection_with_1007() -> None:
    async def run() -> tuple[list[str | bytes], State]:
        protocol = _open_protocol()
        transport = _Transport()
        ws = OpenWebsocket(protocol, transport, subprotocol=None, ping_interval=None)
        messages: list[str | bytes] = []
        ws.start(messages.append)
        good = raw_frame(0x1, b'{"a":1}', True, 0, b"abcd")
        bad = raw_frame(0x1, b"\xff\xfe", True, 0, b"abcd")
        ws.data_received(good + bad + good)
        assert protocol.close_sent is not None and protocol.close_sent.code == 1007
        return messages, protocol.state

    messages, state = asyncio.run(run())
    assert messages == ['{"a":1}'] and state is State.CLOSING


def test_frame_length_reads_every_header_size_and_waits_for_the_rest() -> None:
    for size in (0, 1, 125, 126, 65535, 65536):
        frame = raw_frame(0x1, b"x" * size, True, 0, b"\x00\x00\x00\x00")
        assert frame_length(frame, 0, MAX_SIZE) == len(frame)
        for cut in (0, 1, 2, 3, 5, len(frame) - 1):
            assert frame_length(frame[:cut], 0, MAX_SIZE) == INCOMPLETE
        assert text_payload(frame) == b"x" * size
    assert frame_length(raw_frame(0x1, b"x" * 100, True, 0, None), 0, 99) == TOO_LONG
    huge = bytes((0x81, 0xFF)) + (2**63 - 1).to_bytes(8, "big")
    assert frame_length(huge, 0, MAX_SIZE) == TOO_LONG


@given(data=st.binary(max_size=40), max_size=st.one_of(st.none(), st.integers(0, 100)))
def test_the_frame_reader_never_raises_on_any_bytes(data: bytes, max_size: int | None) -> None:
    for offset in range(len(data) + 1):
        length = frame_length(data, offset, max_size)
        assert length in (INCOMPLETE, TOO_LONG) or offset + length <= len(data)
    text_payload(data)


def test_only_final_masked_text_frames_without_reserved_bits_are_read_by_hand() -> None:
    mask = b"\x10\x20\x30\x40"
    assert text_payload(raw_frame(0x1, b"hi", True, 0, mask)) == b"hi"
    assert text_payload(raw_frame(0x1, b"hi", False, 0, mask)) is None  # a fragment
    assert text_payload(raw_frame(0x1, b"hi", True, 4, mask)) is None  # RSV1
    assert text_payload(raw_frame(0x1, b"hi", True, 0, None)) is None  # unmasked
    assert text_payload(raw_frame(0x2, b"hi", True, 0, mask)) is None  # binary
    assert text_payload(raw_frame(0x9, b"hi", True, 0, mask)) is None  # ping
    frame = Frame(Opcode.TEXT, "é ünïcode".encode()).serialize(mask=True)
    assert text_payload(frame) == "é ünïcode".encode()  # websockets' own masked frame
