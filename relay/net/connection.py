"""One websocket connection of the relay: its session (outbox, close) and its request loop.

Shared by every endpoint. :class:`WsSession` is the :class:`~relay.domain.sessions.Session` the
router and the session index see: messages are pushed into its bounded
:class:`~relay.net.outbox.Outbox` and it can be told to end at any moment, from anywhere.
:func:`serve_requests` is the loop every endpoint runs: read a message, apply the
connection's flood control, check that the principal still stands (if the endpoint
says how), run the :class:`~relay.net.pipeline.RequestPipeline`, and hand the reply, the
events and the session ends out in that order.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from relay.domain.routing import Router
from relay.domain.sessions import SessionKeys
from relay.domain.store import StoreUnavailable
from relay.net.outbox import Outbox
from relay.net.pipeline import (
    Reply,
    RequestLog,
    RequestPipeline,
    carry_out,
    rate_limited,
    unavailable,
)
from relay.net.ratelimit import TokenBucket, Verdict
from relay.protocol.wire import CloseCode

P = TypeVar("P")
SESSION_CHANGED_GRACE_S = 0.2
CLOSE_TIMEOUT_S = 2.0


class WsSession:
    """A live websocket connection as the router sees it."""

    __slots__ = ("__weakref__", "_closing", "_detach", "conn", "keys", "outbox", "principal")

    def __init__(
        self,
        conn: ServerConnection,
        keys: SessionKeys,
        principal: Any,
        limit: int,
        detach: Callable[[WsSession], Awaitable[object]] | None = None,
    ):
        self.conn = conn
        self.keys = keys
        self.principal = principal
        self.outbox = Outbox(conn, limit, self._overflowed)
        self._closing: asyncio.Task[None] | None = None
        self._detach = detach  # forget it in the router as soon as it is ending

    def push(self, message: str) -> bool:
        return self.outbox.push(message)

    def end(self, code: int, reason: str) -> None:
        if self._closing is not None:
            return
        # A revoked or misbehaving session gets nothing more; a device whose account
        # changed still gets the events of the change that ended it (its new state).
        grace = SESSION_CHANGED_GRACE_S if code == CloseCode.SESSION_CHANGED else 0.0
        if not grace:
            self.outbox.closed = True
        self._closing = asyncio.get_running_loop().create_task(self._close(code, reason, grace))

    async def _close(self, code: int, reason: str, grace: float) -> None:
        if grace:
            await asyncio.sleep(grace)
            self.outbox.closed = True
        if self._detach is not None:
            # Gone for everyone at once: no more deliveries, not online.
            await self._detach(self)
        with contextlib.suppress(TimeoutError, ConnectionClosed):
            await asyncio.wait_for(self.outbox.flush(), timeout=1.0)
        try:
            # A peer that does not read will not answer the closing handshake either.
            await asyncio.wait_for(self.conn.close(code, reason), timeout=CLOSE_TIMEOUT_S)
        except TimeoutError:
            self.conn.transport.abort()

    def _overflowed(self) -> None:
        self.end(CloseCode.TOO_SLOW, "too slow: the connection did not read its messages")

    @property
    def ending(self) -> bool:
        return self._closing is not None

    async def finished(self) -> None:
        """Wait for a close this session was told to make (the handler must not return
        first: websockets would close with 1000 instead)."""
        if self._closing is not None:
            with contextlib.suppress(Exception):
                await asyncio.shield(self._closing)


async def serve_requests(
    conn: ServerConnection,
    session: WsSession,
    principal: P,
    pipeline: RequestPipeline[P],
    router: Router,
    bucket: TokenBucket,
    requests: RequestLog,
    clock: Callable[[], float],
    clog: Any,
    *,
    verdict: Callable[[P, float], Awaitable[int | None]] | None = None,
    one_request: bool = False,
    version: int | None = None,
) -> None:
    """Serve a connection's requests until it closes (or after one, with ``one_request``);
    ``version``: the protocol version negotiated, for requests it leaves unanswered."""
    try:
        while True:
            # recv() itself, not ``async for``: one coroutine frame less held per idle
            # connection (a close ends the loop by ConnectionClosed, as it ends the other).
            raw = await conn.recv()
            now = clock()
            started = time.perf_counter()
            if session.ending:
                break
            if isinstance(raw, bytes):
                clog.warning("binary_frame_closed")
                session.end(CloseCode.POLICY_VIOLATION, "binary frames are not accepted")
                break
            allowed = bucket.take(now)
            if allowed is Verdict.CLOSE:
                clog.warning("flood_closed")
                session.end(CloseCode.POLICY_VIOLATION, "too many requests")
                break
            if verdict is not None:
                try:
                    code = await verdict(principal, now)
                except StoreUnavailable as exc:  # not judged, so not carried out
                    clog.warning("store_unavailable", error=str(exc))
                    refused = unavailable(raw, exc)
                    await carry_out(refused, session, router)
                    requests.record(refused, started, clog)
                    continue
                if code is not None:
                    clog.info("session_no_longer_valid", code=code)
                    session.end(code, "this connection's credential or device changed")
                    break
            reply: Reply
            if allowed is Verdict.REFUSE:
                reply = rate_limited(raw)
            else:
                reply = await pipeline.process(principal, raw, now, clog, version)
            await carry_out(reply, session, router)
            requests.record(reply, started, clog)
            if one_request:
                session.end(CloseCode.IDLE, "one request per provisioning connection")
                break
    except ConnectionClosed:
        pass
