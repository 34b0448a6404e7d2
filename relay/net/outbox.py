"""A connection's bounded outbox, drained by its own writer: delivery never waits on a peer.

Whoever sends to a connection (its own replies, another user's lock command, an
administrator's change) only appends here. When nothing is queued and the socket is
writable, the message is written at once (no task switch: the common case); otherwise
it waits in a bounded queue that one writer task per connection drains with the
library's flow control. A peer that stops reading therefore stalls only its own
writer; when its queue overflows, the connection is closed (1013-style
:attr:`~relay.protocol.wire.CloseCode.TOO_SLOW`) and its durable state is re-sent when
it reconnects. The writer task exists only while something is queued, so an idle
connection costs no task.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from functools import partial
from typing import Any

from websockets.exceptions import ConnectionClosed

from relay.net.fastsend import is_open, send_now
from relay.net.websocket import OpenWebsocket


class Outbox:
    __slots__ = ("_conn", "_limit", "_on_overflow", "_queue", "_send_now", "_writer", "closed")

    def __init__(self, conn: Any, limit: int, on_overflow: Callable[[], None]) -> None:
        self._conn = conn
        self._send_now: Callable[[str], bool] = (
            conn.send_now if isinstance(conn, OpenWebsocket) else partial(send_now, conn)
        )
        self._limit = limit
        self._on_overflow = on_overflow
        # Made when something must wait (an empty deque is ~600 bytes; most connections
        # are idle and the rest rarely queue).
        self._queue: deque[str] | None = None
        self._writer: asyncio.Task[None] | None = None
        self.closed = False

    def __len__(self) -> int:
        return len(self._queue) if self._queue is not None else 0

    def push(self, message: str) -> bool:
        """Queue (or write) ``message``; False if dropped (closed, or the queue overflowed)."""
        if self.closed or not is_open(self._conn):
            return False
        if self._writer is None and self._send_now(message):
            return True
        queue = self._queue
        if queue is None:
            queue = self._queue = deque()
        if len(queue) >= self._limit:
            self.closed = True
            queue.clear()
            self._on_overflow()
            return False
        queue.append(message)
        if self._writer is None:
            self._writer = asyncio.get_running_loop().create_task(self._drain(queue))
        return True

    async def _drain(self, queue: deque[str]) -> None:
        try:
            while queue:
                message = queue.popleft()
                await self._conn.send(message)
        except ConnectionClosed:
            queue.clear()
            self.closed = True
        finally:
            self._writer = None
            if not queue:
                self._queue = None

    async def flush(self) -> None:
        """Wait until everything queued so far was handed to the socket (for tests, close)."""
        writer = self._writer
        if writer is not None:
            await asyncio.shield(writer)

    def stop(self) -> None:
        """Drop what is queued and stop writing (the connection is gone)."""
        self.closed = True
        if self._queue is not None:
            self._queue.clear()
        if self._writer is not None:
            self._writer.cancel()
