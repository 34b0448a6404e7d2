"""The websocket shell of administration and provisioning: the ``/admin`` and ``/provision``
endpoints on the relay's port.

Attached to a :class:`~relay.server.RelayServer` whose store is a
:class:`~relay.admin_store.SqliteAdminStore` (:func:`attach`). It also plugs the
provisioning pieces into the device protocol: ``login_code.report`` and
``console.join`` handlers, and the ``device.state`` event every device gets after its
welcome. Like the main shell it authenticates during the opening handshake,
validates every message, turns refusals into error replies here and nowhere else,
and logs one event per request.
"""

from __future__ import annotations

import http
import json
import weakref
from typing import TYPE_CHECKING, Any

import structlog
from pydantic import ValidationError
from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from relay.admin_service import AdminService
from relay.admin_store import AdminRecord, SqliteAdminStore
from relay.consoles import Consoles
from relay.credentials import bearer_token
from relay.errors import RelayError
from relay.protocol import admin_wire as aw
from relay.protocol import wire
from relay.protocol.wire import CloseCode, ErrorCode
from relay.provisioning import Provisioning
from relay.ratelimit import TokenBucket, Verdict
from relay.service import Delivery

if TYPE_CHECKING:
    from relay.server import RelayServer

log = structlog.get_logger("relay.admin")

ENDPOINTS = {aw.ADMIN_PATH: aw.ADMIN_SUBPROTOCOL, aw.PROVISION_PATH: aw.PROVISION_SUBPROTOCOL}
SUBPROTOCOLS = tuple(ENDPOINTS.values())
ADMIN_MAX_MESSAGE_BYTES = 4 * aw.MAX_CSV_CHARS  # JSON escaping can grow the text


def _offered(request: Request) -> set[str]:
    return {
        p.strip()
        for header in request.headers.get_all("Sec-WebSocket-Protocol")
        for p in header.split(",")
    }


def _peer_host(conn: ServerConnection) -> str:
    address = conn.remote_address
    return str(address[0]) if address else "?"


class AdminEndpoints:
    def __init__(self, server: RelayServer, store: SqliteAdminStore) -> None:
        self.server = server
        self.provisioning = Provisioning(store, server.service.directory, server.router)
        self.consoles = Consoles(store, server.router)
        self.admin = AdminService(store, self.provisioning, server.router, self._route)
        self._admins: weakref.WeakKeyDictionary[ServerConnection, AdminRecord] = (
            weakref.WeakKeyDictionary()
        )
        service = server.service
        service.add_handler("login_code.report", self.provisioning.login_code_report)
        service.add_handler("console.join", self.consoles.console_join)
        service.device_state = self.provisioning.device_state

    def serves(self, path: str) -> bool:
        return path in ENDPOINTS

    # --- handshake ----------------------------------------------------------------------
    async def process_request(self, conn: ServerConnection, request: Request) -> Response | None:
        path = request.path.split("?", 1)[0]
        if ENDPOINTS[path] not in _offered(request):
            return self._refuse(
                conn, http.HTTPStatus.BAD_REQUEST, f"offer the subprotocol {ENDPOINTS[path]}"
            )
        if path == aw.PROVISION_PATH:
            return None  # no credential: the device has none yet; requests are throttled
        token = bearer_token(request.headers.get("Authorization"))
        admin = await self.admin.authenticate(token) if token else None
        if admin is None:
            return self._refuse(
                conn, http.HTTPStatus.UNAUTHORIZED, "unknown or revoked administrator credential"
            )
        self._admins[conn] = admin
        return None

    def _refuse(self, conn: ServerConnection, status: http.HTTPStatus, why: str) -> Response:
        log.info("admin_handshake_refused", status=int(status), reason=why, peer=_peer_host(conn))
        return conn.respond(status, why + "\n")

    # --- connections --------------------------------------------------------------------
    async def handle(self, conn: ServerConnection) -> None:
        path = conn.request.path.split("?", 1)[0] if conn.request else ""
        admin = self._admins.pop(conn, None)
        if path == aw.PROVISION_PATH:
            await self._serve(conn, None, log.bind(role="provision", peer=_peer_host(conn)))
        elif admin is not None:
            # An authenticated administrator may send a whole device CSV in one message.
            conn.protocol.max_message_size = max(
                conn.protocol.max_message_size or 0, ADMIN_MAX_MESSAGE_BYTES
            )
            clog = log.bind(role="admin", admin=admin.id, peer=_peer_host(conn))
            await self._serve(conn, admin, clog)
        else:  # cannot happen: the handshake refuses these
            await conn.close(CloseCode.INTERNAL_ERROR, "no administrator")

    async def _serve(self, conn: ServerConnection, admin: AdminRecord | None, clog: Any) -> None:
        settings = self.server.settings
        bucket = TokenBucket(settings.rate_per_second, settings.rate_burst, settings.rate_strikes)
        clog.info("connected")
        try:
            async for raw in conn:
                now = self.server.clock()
                if isinstance(raw, bytes) or bucket.take(now) is Verdict.CLOSE:
                    await conn.close(CloseCode.POLICY_VIOLATION, "binary frame or flood")
                    break
                reply, kind, outcome = await self._process(conn, admin, raw, now, clog)
                await conn.send(reply)
                clog.info("admin_request", type=kind, outcome=outcome)
        except ConnectionClosed:
            pass
        clog.info("disconnected", code=conn.close_code)

    async def _route(self, delivery: Delivery) -> None:
        await self.server.router.deliver(delivery.address, delivery.event.model_dump_json())

    async def _process(
        self, conn: ServerConnection, admin: AdminRecord | None, raw: str, now: float, clog: Any
    ) -> tuple[str, str, str]:
        """Validate and carry out one request: (reply, type, outcome)."""
        request_id = _peek_id(raw)
        try:
            request: aw.AdminRequest
            if admin is None:
                request = aw.PROVISION_REQUEST_ADAPTER.validate_json(raw)
            else:
                request = aw.ADMIN_REQUEST_ADAPTER.validate_json(raw)
        except ValidationError as exc:
            code, message = _diagnose(raw, exc)
            return wire.encode_error(request_id, code, message), "-", code.value
        try:
            result = await self._carry_out(conn, admin, request, now)
        except RelayError as refusal:
            return (
                wire.encode_error(request.id, refusal.code, refusal.message),
                request.type,
                refusal.code.value,
            )
        except Exception:
            clog.exception("admin_request_failed", type=request.type)
            return (
                wire.encode_error(request.id, ErrorCode.INTERNAL, "the relay failed"),
                request.type,
                ErrorCode.INTERNAL.value,
            )
        return wire.encode_result(request.id, result), request.type, "ok"

    async def _carry_out(
        self,
        conn: ServerConnection,
        admin: AdminRecord | None,
        request: aw.AdminRequest,
        now: float,
    ) -> wire.Message:
        source = _peer_host(conn)
        if isinstance(request, aw.Provision):
            done = await self.provisioning.provision(request.mac, request.code, source, now)
            return aw.ProvisionResult(
                device_id=done.device.id,
                tenant_id=done.tenant.id,
                organisation=done.tenant.name,
                credential=done.token,
                identity_key=done.identity_key.hex(),
                rotation_exponent=done.device.rotation_exponent,
            )
        if isinstance(request, aw.Reset):
            device = await self.provisioning.reset(request.credential, source, now)
            for delivery in await self.provisioning.state_deliveries([device.id], now):
                await self._route(delivery)
            return aw.Removed(removed=device.id)
        assert admin is not None
        outcome = await self.admin.handle(admin, request, now)
        for delivery in outcome.deliveries:
            await self._route(delivery)
        return outcome.result


def _peek_id(raw: str | bytes) -> int | None:
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError):
        return None
    value = data.get("id") if isinstance(data, dict) else None
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= wire.MAX_REQUEST_ID:
        return value
    return None


def _diagnose(raw: str, exc: ValidationError) -> tuple[ErrorCode, str]:
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError):
        return ErrorCode.BAD_JSON, "message is not valid JSON"
    if not isinstance(data, dict):
        return ErrorCode.BAD_JSON, "message must be a JSON object"
    if any(e["type"] == "union_tag_invalid" or e["loc"] == () for e in exc.errors()):
        return ErrorCode.UNKNOWN_TYPE, f"unknown message type {str(data.get('type'))[:64]!r}"
    problems = "; ".join(
        f"{'.'.join(str(p) for p in e['loc'][1:]) or '(message)'}: {e['msg']}"
        for e in exc.errors()[:3]
    )
    return ErrorCode.INVALID_REQUEST, f"invalid {data.get('type')}: {problems}"


def attach(server: RelayServer) -> AdminEndpoints | None:
    """Serve administration and provisioning if the relay's store keeps their state."""
    if isinstance(server.store, SqliteAdminStore):
        return AdminEndpoints(server, server.store)
    return None
