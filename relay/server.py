"""The relay's websocket shell: handshake, authentication, framing, routing, health and metrics.

A thin layer over :class:`~relay.service.RelayService`. It authenticates each
connection during the opening handshake (``process_request``: no valid credential,
no websocket), answers ``/healthz``, ``/readyz`` and ``/metrics`` on the same port,
parses and validates each message, asks the service what to do, translates
refusals into error replies (here and nowhere else), sends the reply, routes the
events, and logs one event per request. Messages of one connection are handled in
order, one at a time.
"""

from __future__ import annotations

import asyncio
import contextlib
import http
import json
import time
import weakref
from collections.abc import Callable
from typing import Any

import structlog
from pydantic import ValidationError
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response
from websockets.typing import Subprotocol

from relay import admin_endpoint
from relay import web as relay_web
from relay.config import RelaySettings
from relay.credentials import bearer_token
from relay.errors import RelayError
from relay.fastsend import send_text
from relay.metrics import RelayMetrics
from relay.protocol import wire
from relay.protocol.wire import CloseCode, ErrorCode
from relay.ratelimit import TokenBucket, Verdict
from relay.routing import LocalRouter, Router
from relay.service import Delivery, LaptopPrincipal, Principal, RelayService, Rules
from relay.store import Store

log = structlog.get_logger("relay")


def _valid_client_id(value: str) -> bool:
    return 0 < len(value) <= 64 and all(c.isalnum() or c in "._:-" for c in value)


class RelayServer:
    """One relay process: ``async with RelayServer(settings, store) as relay: ...``."""

    def __init__(
        self,
        settings: RelaySettings,
        store: Store,
        *,
        router: Router | None = None,
        metrics: RelayMetrics | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.store = store
        self.router: Router = router or LocalRouter()
        self.metrics = metrics or RelayMetrics()
        self.clock = clock
        self.service = RelayService(
            store,
            self.router,
            Rules(
                sighting_freshness=settings.sighting_freshness_s,
                pair_request_ttl=settings.pair_request_ttl_s,
                join_prompt_ttl=settings.join_prompt_ttl_s,
            ),
        )
        self.service.directory = type(self.service.directory)(
            store, settings.directory_check_s, settings.eid_neighbours, clock=clock
        )
        self._server: Server | None = None
        self._ticker: asyncio.Task[None] | None = None
        self._principals: weakref.WeakKeyDictionary[ServerConnection, Principal] = (
            weakref.WeakKeyDictionary()
        )
        self._ready = False
        self._counters: dict[tuple[str, str], Any] = {}
        self._closing: set[asyncio.Task[None]] = set()  # replaced connections closing
        self.admin_endpoints = admin_endpoint.attach(self)  # /admin and /provision
        self.web = relay_web.attach(self)  # the pages and their API, on the same port

    # --- life cycle ---------------------------------------------------------------------
    async def start(self) -> None:
        await self.store.open()
        await self.service.directory.start(self.clock())  # the EID index loads in the background
        if self.web is not None:
            await self.web.start()
        self._server = await serve(
            self._handle_connection,
            self.settings.host,
            self.settings.port,
            process_request=self._process_request,
            subprotocols=[Subprotocol(p) for p in (wire.SUBPROTOCOL, *admin_endpoint.SUBPROTOCOLS)],
            compression=None,  # permessage-deflate costs ~48 KB per idle connection
            max_size=self.settings.max_message_bytes,
            ping_interval=self.settings.ping_interval_s,
            ping_timeout=self.settings.ping_interval_s,
            server_header=None,
            create_connection=self.web.connection_class if self.web else ServerConnection,
        )
        self._ticker = asyncio.create_task(self._tick_forever())
        self._ready = True
        log.info("relay_started", host=self.settings.host, port=self.port, db=str(self.settings.db))

    @property
    def port(self) -> int:
        assert self._server is not None, "not started"
        return int(self._server.sockets[0].getsockname()[1])

    async def stop(self) -> None:
        """Close every connection with 1001 (going away), finish pending writes, close the store."""
        self._ready = False
        if self._server is not None:
            self._server.close(close_connections=True)
            await self._server.wait_closed()
            self._server = None
        if self._ticker is not None:
            self._ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._ticker
            self._ticker = None
        await self.service.directory.close()
        if self.web is not None:
            await self.web.stop()
        await self.store.close()
        log.info("relay_stopped")

    async def __aenter__(self) -> RelayServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def _tick_forever(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            try:
                await self._route(self.service.tick(self.clock()))
            except Exception:
                log.exception("tick_failed")

    # --- handshake ----------------------------------------------------------------------
    def _respond(self, conn: ServerConnection, status: http.HTTPStatus, text: str) -> Response:
        return conn.respond(status, text)

    async def _process_request(self, conn: ServerConnection, request: Request) -> Response | None:
        path = request.path.split("?", 1)[0]
        if path == "/healthz":
            return self._respond(conn, http.HTTPStatus.OK, "ok\n")
        if path == "/readyz":
            ready = self._ready and await self.store.ready()
            if ready:
                return self._respond(conn, http.HTTPStatus.OK, "ready\n")
            return self._respond(conn, http.HTTPStatus.SERVICE_UNAVAILABLE, "not ready\n")
        if path == "/metrics":
            response = self._respond(conn, http.HTTPStatus.OK, self.metrics.render().decode())
            response.headers = Headers(
                [(k, v) for k, v in response.headers.raw_items() if k.lower() != "content-type"]
            )
            response.headers["Content-Type"] = "text/plain; version=0.0.4; charset=utf-8"
            return response
        if self._ready and self.admin_endpoints and self.admin_endpoints.serves(path):
            return await self.admin_endpoints.process_request(conn, request)
        if path != "/":
            return self._respond(conn, http.HTTPStatus.NOT_FOUND, "not found\n")
        if not self._ready:
            return self._refuse(conn, http.HTTPStatus.SERVICE_UNAVAILABLE, "relay not ready")
        token = bearer_token(request.headers.get("Authorization"))
        if token is None:
            return self._refuse(conn, http.HTTPStatus.UNAUTHORIZED, "missing bearer credential")
        laptop_id = request.headers.get(wire.CLIENT_ID_HEADER)
        if laptop_id is not None and not _valid_client_id(laptop_id):
            return self._refuse(
                conn,
                http.HTTPStatus.BAD_REQUEST,
                f"{wire.CLIENT_ID_HEADER} must be 1-64 letters, digits or ._:-",
            )
        laptop_name = request.headers.get(wire.CLIENT_NAME_HEADER)
        if laptop_name is not None:
            laptop_name = laptop_name[:128]
        principal = await self.service.authenticate(token, laptop_id, laptop_name, self.clock())
        if principal is None:
            return self._refuse(
                conn,
                http.HTTPStatus.UNAUTHORIZED,
                f"unknown or revoked credential (laptops must also send {wire.CLIENT_ID_HEADER})",
            )
        self._principals[conn] = principal
        return None

    def _refuse(self, conn: ServerConnection, status: http.HTTPStatus, why: str) -> Response:
        self.metrics.refused_handshakes.labels(str(int(status))).inc()
        log.info("handshake_refused", status=int(status), reason=why, peer=_peer(conn))
        return self._respond(conn, status, why + "\n")

    # --- connections --------------------------------------------------------------------
    async def _route(self, deliveries: list[Delivery]) -> None:
        for delivery in deliveries:
            await self.router.deliver(delivery.address, delivery.event.model_dump_json())

    async def _handle_connection(self, conn: ServerConnection) -> None:
        endpoints = self.admin_endpoints
        if endpoints and conn.request and endpoints.serves(conn.request.path.split("?")[0]):
            await endpoints.handle(conn)
            return
        principal = self._principals.pop(conn, None)
        if principal is None:  # cannot happen: the handshake refuses these
            await conn.close(CloseCode.INTERNAL_ERROR, "no principal")
            return
        if isinstance(principal, LaptopPrincipal):
            clog = log.bind(
                role="laptop",
                tenant=principal.tenant_id,
                user=principal.user_id,
                laptop=principal.laptop_id,
            )
        else:
            clog = log.bind(role="device", tenant=principal.tenant_id, device=principal.device_id)
        clog = clog.bind(conn=str(conn.id)[:8])
        replaced = self.router.attach(principal.address, conn)
        if replaced is not None and isinstance(replaced, ServerConnection):
            clog.info("connection_replaced")
            task = asyncio.create_task(
                replaced.close(CloseCode.REPLACED, "replaced by a newer connection")
            )
            self._closing.add(task)
            task.add_done_callback(self._closing.discard)
        gauge = self.metrics.connections.labels(principal.role)
        gauge.inc()
        clog.info("connected", peer=_peer(conn))
        bucket = TokenBucket(
            self.settings.rate_per_second, self.settings.rate_burst, self.settings.rate_strikes
        )
        try:
            for event in await self.service.welcome(principal, self.clock()):
                await conn.send(event.model_dump_json())
            async for raw in conn:
                now = self.clock()
                started = time.perf_counter()
                verdict = bucket.take(now)
                if verdict is Verdict.CLOSE:
                    clog.warning("flood_closed")
                    await conn.close(CloseCode.POLICY_VIOLATION, "too many requests")
                    break
                if isinstance(raw, bytes):
                    clog.warning("binary_frame_closed")
                    await conn.close(CloseCode.POLICY_VIOLATION, "binary frames are not accepted")
                    break
                deliveries: list[Delivery]
                if verdict is Verdict.REFUSE:
                    request_id = _peek_id(raw)
                    reply, deliveries, kind, outcome = (
                        wire.encode_error(
                            request_id, ErrorCode.RATE_LIMITED, "too many requests; slow down"
                        ),
                        [],
                        "-",
                        ErrorCode.RATE_LIMITED.value,
                    )
                else:
                    reply, deliveries, kind, outcome, request_id = await self._process(
                        principal, raw, now, clog
                    )
                await send_text(conn, reply)
                if deliveries:
                    await self._route(deliveries)
                elapsed = time.perf_counter() - started
                self._count(kind, outcome)
                self.metrics.latency.observe(elapsed)
                clog.info("request", type=kind, id=request_id, outcome=outcome, ms=elapsed * 1000)
        except ConnectionClosed:
            pass
        finally:
            self.router.detach(principal.address, conn)
            gauge.dec()
            clog.info("disconnected", code=conn.close_code)
        # A connection replaced by a newer one leaves its hand-offs to the newcomer.
        if not self.router.is_online(principal.address):
            await self._route(self.service.disconnected(principal, self.clock()))

    def _count(self, kind: str, outcome: str) -> None:
        key = (kind, outcome)
        counter = self._counters.get(key)
        if counter is None:
            counter = self._counters[key] = self.metrics.requests.labels(kind, outcome)
        counter.inc()

    async def _process(
        self, principal: Principal, raw: str, now: float, clog: Any
    ) -> tuple[str, list[Delivery], str, str, int | None]:
        """Validate and carry out one request; every refusal becomes an error reply here."""
        try:
            request: wire.Request = wire.REQUEST_ADAPTER.validate_json(raw)
        except ValidationError as exc:
            request_id, code, message, kind = _diagnose(raw, exc)
            return wire.encode_error(request_id, code, message), [], kind, code.value, request_id
        kind = request.type
        try:
            outcome = await self.service.handle(principal, request, now)
        except RelayError as refusal:
            return (
                wire.encode_error(request.id, refusal.code, refusal.message),
                [],
                kind,
                refusal.code.value,
                request.id,
            )
        except Exception:
            clog.exception("request_failed", type=kind, id=request.id)
            return (
                wire.encode_error(
                    request.id, ErrorCode.INTERNAL, "the relay failed; nothing changed"
                ),
                [],
                kind,
                ErrorCode.INTERNAL.value,
                request.id,
            )
        return (
            wire.encode_result(request.id, outcome.result),
            outcome.deliveries,
            kind,
            "ok",
            request.id,
        )


def _peer(conn: ServerConnection) -> str:
    address = conn.remote_address
    return f"{address[0]}:{address[1]}" if address else "?"


def _peek_id(raw: str | bytes) -> int | None:
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError):
        return None
    if isinstance(data, dict):
        value = data.get("id")
        if (
            isinstance(value, int)
            and not isinstance(value, bool)
            and 0 <= value <= wire.MAX_REQUEST_ID
        ):
            return value
    return None


def _diagnose(raw: str, exc: ValidationError) -> tuple[int | None, ErrorCode, str, str]:
    """Why a message failed validation, as (id, code, message, type label)."""
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError):
        return None, ErrorCode.BAD_JSON, "message is not valid JSON", "-"
    if not isinstance(data, dict):
        return None, ErrorCode.BAD_JSON, "message must be a JSON object", "-"
    request_id = _peek_id(raw)
    kind = data.get("type")
    if not isinstance(kind, str) or kind not in wire.REQUEST_TYPES:
        shown = kind if isinstance(kind, str) else None
        label = "?"
        return (
            request_id,
            ErrorCode.UNKNOWN_TYPE,
            f"unknown message type {str(shown)[:64]!r}",
            label,
        )
    problems = "; ".join(
        f"{'.'.join(str(p) for p in err['loc'][1:]) or '(message)'}: {err['msg']}"
        for err in exc.errors()[:3]
    )
    return request_id, ErrorCode.INVALID_REQUEST, f"invalid {kind}: {problems}", kind
