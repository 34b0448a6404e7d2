"""Send one small text message on a websockets connection without the per-call async context.

``Connection.send()`` wraps every message in an async context manager (state checks,
the fragmentation guard, flow control). For the relay's small one-frame messages the
profile showed that wrapper costing about a sixth of the relay's CPU per routed lock
(the write system call itself is the larger part and is unavoidable). When the
connection is open, no fragmented message is being sent and the transport is not
paused by flow control, :func:`send_text` does what ``send()`` does in that case:
hand the frame to the sans-I/O protocol and write its bytes. In every other case,
and if this websockets version lacks the attributes used, it calls ``send()``, so
back-pressure and closing behave exactly as the library defines them.

On the server side with no extension (the relay turns compression off) a text frame is
two or four header bytes and the payload, unmasked: :func:`send_now` then writes those
bytes to the transport itself (one write system call per message, as before) instead of
building a :class:`~websockets.frames.Frame`, serializing it through a ``BytesIO`` and
draining the protocol's write queue — the same bytes, in the same order, since it only
does so when nothing else is queued.
"""

from __future__ import annotations

import struct
from typing import Any

from websockets.asyncio.connection import Connection
from websockets.protocol import Side, State

_SUPPORTED = all(hasattr(Connection, name) for name in ("send_data", "send")) and hasattr(
    State, "OPEN"
)


def _ready(conn: Any) -> bool:
    return (
        conn.protocol.state is State.OPEN
        and getattr(conn, "send_in_progress", True) is None
        and getattr(conn, "paused", True) is False
    )


def is_open(conn: Any) -> bool:
    """Whether the connection can still carry messages (not closing or closed)."""
    protocol = getattr(conn, "protocol", None)
    return protocol is None or protocol.state is State.OPEN


def text_frame(payload: bytes) -> bytes:
    """One unmasked, final text frame (RFC 6455 section 5.2) carrying ``payload``."""
    length = len(payload)
    if length < 126:
        return bytes((0x81, length)) + payload
    if length < 65536:
        return struct.pack("!BBH", 0x81, 126, length) + payload
    return struct.pack("!BBQ", 0x81, 127, length) + payload


def send_now(conn: Any, message: str) -> bool:
    """Write ``message`` as one text frame at once if the connection can take it without
    waiting (open, not paused, nothing being fragmented); False if it cannot."""
    if _SUPPORTED and isinstance(conn, Connection) and _ready(conn):
        if writes_frames_itself(conn):
            conn.transport.write(text_frame(message.encode()))
            return True
        conn.protocol.send_text(message.encode())
        conn.send_data()
        return True
    return False


def writes_frames_itself(conn: Any) -> bool:
    """Whether :func:`send_now` may write a frame's bytes itself on ``conn``: the server
    side, no extension, no fragmented message under way, nothing queued in the protocol,
    no frame logging (any attribute this websockets version lacks: no)."""
    protocol = getattr(conn, "protocol", None)
    return (
        getattr(protocol, "side", None) is Side.SERVER
        and not getattr(protocol, "extensions", True)
        and getattr(protocol, "expect_continuation_frame", True) is False
        and not getattr(protocol, "writes", True)
        and getattr(conn, "debug", True) is False
        and hasattr(conn, "transport")
    )


async def send_text(conn: Any, message: str) -> None:
    """Send ``message`` as one text frame on ``conn`` (any object with ``send`` works)."""
    if _SUPPORTED and isinstance(conn, Connection) and _ready(conn):
        conn.protocol.send_text(message.encode())
        conn.send_data()
        return
    await conn.send(message)
