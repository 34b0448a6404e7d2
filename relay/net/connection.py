"""One websocket connection of the relay: its session (outbox, close) and its request loop.

Shared by every endpoint. :class:`WsSession` is the :class:`~relay.domain.sessions.Session` the
router and the session index see: messages are pushed into its bounded
:class:`~relay.net.outbox.Outbox` and it can be told to end at any moment, from anywhere.
:class:`RequestLoop` serves one message the way every endpoint does: apply the
connection's flood control, check that the principal still stands (if the endpoint
says how), run the :class:`~relay.net.pipeline.RequestPipeline`, and hand the reply, the
events and the session ends out in that order. Devices and laptops, served on an
:class:`~relay.net.websocket.OpenWebsocket`, get their messages through an
:class:`Inbox`; the administrator and provisioning endpoints, on websockets' own
connection, through :func:`serve_requests`.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any, Generic, TypeVar

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from relay.domain.directory import Directory
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
from relay.net.websocket import OpenWebsocket
from relay.protocol.wire import CloseCode

P = TypeVar("P")
SESSION_CHANGED_GRACE_S = 0.2
INBOX_PAUSE_AT = 16  # messages waiting before a connection is read no more (websockets: 16)
INBOX_RESUME_AT = 4
CLOSE_TIMEOUT_S = 2.0


class WsSession:
    """A live websocket connection as the router sees it."""

    __slots__ = (
        "_address",
        "_closing",
        "_router",
        "conn",
        "keys",
        "outbox",
        "principal",
    )

    def __init__(
        self,
        conn: ServerConnection | OpenWebsocket,
        keys: SessionKeys,
        principal: Any,
        limit: int,
        router: Router | None = None,
        address: str = "",
    ):
        self.conn = conn
        self.keys = keys
        self.principal = principal
        self.outbox = Outbox(conn, limit, self._overflowed)
        self._closing: asyncio.Task[None] | None = None
        # Forgotten at ``address`` in the router as soon as it is ending.
        self._router = router
        self._address = address

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
        if self._router is not None:
            # Gone for everyone at once: no more deliveries, not online.
            await self._router.detach(self._address, self)
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


class RequestLoop(Generic[P]):
    """How one connection's requests are served, one message at a time: its flood
    control, the check that its principal still stands (if the endpoint says how), the
    pipeline, and the reply, events and session ends handed out in that order."""

    __slots__ = (
        "bucket",
        "clock",
        "clog",
        "directory",
        "one_request",
        "pipeline",
        "principal",
        "requests",
        "router",
        "session",
        "stood_at",
        "verdict",
        "version",
    )

    def __init__(
        self,
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
        directory: Directory | None = None,
    ) -> None:
        self.session = session
        self.principal = principal
        self.pipeline = pipeline
        self.router = router
        self.bucket = bucket
        self.requests = requests
        self.clock = clock
        self.clog = clog
        self.verdict = verdict
        self.one_request = one_request
        self.version = version
        # With the directory the verdict depends on, a verdict that let the principal
        # stand holds until the directory moves (or is due to be read again): judged
        # once per directory version, not once per request.
        self.directory = directory
        self.stood_at = -2  # no directory version is -2

    async def serve(self, raw: str | bytes) -> bool:
        """Serve one message; False once the connection must take no more."""
        session = self.session
        now = self.clock()
        started = time.perf_counter()
        if session.ending:
            return False
        clog = self.clog
        if isinstance(raw, bytes):
            clog.warning("binary_frame_closed")
            session.end(CloseCode.POLICY_VIOLATION, "binary frames are not accepted")
            return False
        allowed = self.bucket.take(now)
        if allowed is Verdict.CLOSE:
            clog.warning("flood_closed")
            session.end(CloseCode.POLICY_VIOLATION, "too many requests")
            return False
        directory = self.directory
        if self.verdict is not None and (
            directory is None or directory.version != self.stood_at or directory.refresh_due(now)
        ):
            judged_at = directory.version if directory is not None else -2
            try:
                code = await self.verdict(self.principal, now)
            except StoreUnavailable as exc:  # not judged, so not carried out
                clog.warning("store_unavailable", error=str(exc))
                refused = unavailable(raw, exc)
                await carry_out(refused, session, self.router)
                self.requests.record(refused, started, clog)
                return True
            if code is not None:
                clog.info("session_no_longer_valid", code=code)
                session.end(code, "this connection's credential or device changed")
                return False
            self.stood_at = judged_at
        reply: Reply
        if allowed is Verdict.REFUSE:
            reply = rate_limited(raw)
        else:
            reply = await self.pipeline.process(self.principal, raw, now, clog, self.version)
        await carry_out(reply, session, self.router)
        self.requests.record(reply, started, clog)
        if self.one_request:
            session.end(CloseCode.IDLE, "one request per provisioning connection")
            return False
        return True


class Inbox:
    """The messages an :class:`~relay.net.websocket.OpenWebsocket` received, served in
    order by a :class:`RequestLoop`, one at a time. The task that serves them exists only
    while some wait (an idle connection costs none); a peer that sends faster than it is
    served is read no more until the backlog is down again, as websockets does."""

    __slots__ = ("_queue", "_read_paused", "_serve", "_stopped", "_task", "_transport")

    def __init__(
        self, serve: Callable[[str | bytes], Awaitable[bool]], transport: asyncio.Transport
    ) -> None:
        self._serve = serve
        self._transport = transport
        self._queue: deque[str | bytes] | None = None
        self._task: asyncio.Task[None] | None = None
        self._read_paused = False
        self._stopped = False

    def put(self, message: str | bytes) -> None:
        if self._stopped:
            return
        queue = self._queue
        if queue is None:
            queue = self._queue = deque()
        queue.append(message)
        if len(queue) >= INBOX_PAUSE_AT and not self._read_paused:
            self._read_paused = True
            self._transport.pause_reading()
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(queue))

    async def _run(self, queue: deque[str | bytes]) -> None:
        try:
            while queue:
                message = queue.popleft()
                if self._read_paused and len(queue) <= INBOX_RESUME_AT:
                    self._read_paused = False
                    if not self._transport.is_closing():
                        self._transport.resume_reading()
                if not await self._serve(message):
                    self._stopped = True
                    queue.clear()
        finally:
            self._task = None
            if not queue:
                self._queue = None

    async def finished(self) -> None:
        """Wait until what was received has been served (the connection is gone)."""
        task = self._task
        if task is not None:
            with contextlib.suppress(Exception):
                await asyncio.shield(task)


async def serve_requests(conn: ServerConnection, requests: RequestLoop[Any]) -> None:
    """Serve a websockets connection's requests with ``requests`` until it closes (or
    until one of them ends the connection)."""
    try:
        # recv() itself, not ``async for``: one coroutine frame less held per connection.
        while await requests.serve(await conn.recv()):
            pass
    except ConnectionClosed:
        pass
