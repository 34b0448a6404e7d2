"""The websocket shell of administration and provisioning: the ``/admin`` and ``/provision``
endpoints on the relay's port.

``/admin`` authenticates an administrator during the opening handshake and serves its
requests through :class:`~relay.admin.service.AdminService`; each session is indexed
under its administrator and credential, so revoking the credential closes it at once.
``/provision`` serves devices that have no credential yet: it is unauthenticated, so
each connection is short-lived (``provision_idle_s``) and carries one request, and its
replies tell nothing apart that a guesser could use. Both run the one request pipeline
of :mod:`relay.net.pipeline` (errors become wire errors there and nowhere else).
"""

from __future__ import annotations

import asyncio
import http
from typing import Any

import structlog
from websockets.asyncio.server import ServerConnection
from websockets.http11 import Request, Response

from relay.domain.credentials import bearer_token, hash_token
from relay.domain.model import AdminRecord
from relay.domain.service import Delivery, device_address, laptop_address
from relay.domain.sessions import SessionEnd, SessionKeys
from relay.net.connection import RequestLoop, WsSession, serve_requests
from relay.net.pipeline import RequestLog, RequestPipeline
from relay.net.ratelimit import TokenBucket
from relay.node import RelayNode
from relay.protocol import admin_wire as aw
from relay.protocol import wire
from relay.protocol.wire import CloseCode

log = structlog.get_logger("relay.admin")

ENDPOINTS = {aw.ADMIN_PATH: aw.ADMIN_SUBPROTOCOL, aw.PROVISION_PATH: aw.PROVISION_SUBPROTOCOL}
SUBPROTOCOLS = tuple(ENDPOINTS.values())
ADMIN_MAX_MESSAGE_BYTES = 4 * aw.MAX_CSV_CHARS  # JSON escaping can grow the text
_ADMIN_TYPES = frozenset(aw.kind_of(r) for r in aw.ADMIN_REQUESTS)
_PROVISION_TYPES = frozenset(aw.kind_of(r) for r in aw.PROVISION_REQUESTS)


def offered(request: Request) -> set[str]:
    return {
        p.strip()
        for header in request.headers.get_all("Sec-WebSocket-Protocol")
        for p in header.split(",")
    }


class AdminEndpoint:
    """``/admin``: administrators' requests, role-checked and audited."""

    def __init__(self, node: RelayNode) -> None:
        self.node = node
        self._pipeline: RequestPipeline[tuple[AdminRecord, str]] = RequestPipeline(
            aw.ADMIN_REQUEST_ADAPTER, _ADMIN_TYPES.__contains__, self._handle, log
        )
        self._requests = RequestLog(node.metrics, "admin_request")

    async def authenticate(self, request: Request) -> tuple[AdminRecord, str] | None:
        """The administrator and credential id of the handshake's bearer token, if valid."""
        token = bearer_token(request.headers.get("Authorization"))
        if token is None:
            return None
        store = self.node.store
        credential = await store.admin_credential_by_hash(hash_token(token))
        if credential is None or credential.revoked_at is not None:
            return None
        admin = await store.admin(credential.admin_id)
        return (admin, credential.id) if admin is not None else None

    async def _handle(
        self, who: tuple[AdminRecord, str], request: aw.AdminRequest, now: float
    ) -> Any:
        return await self.node.admin.handle(who[0], request, now)

    async def verdict(self, who: tuple[AdminRecord, str], now: float) -> int | None:
        """Whether an administrator's connection still stands (its credential not revoked)."""
        current = await self.node.store.admin_by_credential(who[1])
        return None if current is not None else CloseCode.REVOKED

    async def serve(self, conn: ServerConnection, who: tuple[AdminRecord, str]) -> None:
        admin, credential_id = who
        settings = self.node.settings
        # An authenticated administrator may send a whole device CSV in one message.
        conn.protocol.max_message_size = max(
            conn.protocol.max_message_size or 0, ADMIN_MAX_MESSAGE_BYTES
        )
        keys = SessionKeys(credential_id, admin.tenant_id, admin_id=admin.id)
        address = f"admin/{admin.id}/{conn.id}"
        router = self.node.router

        session = WsSession(conn, keys, who, settings.outbox_messages, router, address)
        clog = log.bind(role="admin", admin=admin.id, peer=peer_host(conn))
        await router.attach(address, session)
        clog.info("connected")
        try:
            await serve_requests(
                conn,
                RequestLoop(
                    session,
                    who,
                    self._pipeline,
                    router,
                    TokenBucket(
                        settings.rate_per_second, settings.rate_burst, settings.rate_strikes
                    ),
                    self._requests,
                    self.node.clock,
                    clog,
                    verdict=self.verdict,
                ),
            )
        finally:
            await router.detach(address, session)
            await session.finished()
            session.outbox.stop()
            clog.info("disconnected", code=conn.close_code)


class ProvisionEndpoint:
    """``/provision``: one unauthenticated request per connection (provision or reset)."""

    def __init__(self, node: RelayNode) -> None:
        self.node = node
        self._pipeline: RequestPipeline[str] = RequestPipeline(
            aw.PROVISION_REQUEST_ADAPTER, _PROVISION_TYPES.__contains__, self._handle, log
        )
        self._requests = RequestLog(node.metrics, "provision_request")

    async def _handle(self, source: str, request: aw.Provision | aw.Reset, now: float) -> Any:
        provisioning = self.node.provisioning
        if isinstance(request, aw.Provision):
            done = await provisioning.provision(request.mac, request.code, source, now)
            return _Done(
                aw.ProvisionResult(
                    device_id=done.device.id,
                    tenant_id=done.tenant.id,
                    organisation=done.tenant.name,
                    credential=done.token,
                    identity_key=done.identity_key.hex(),
                    rotation_exponent=done.device.rotation_exponent,
                )
            )
        credential = await self.node.store.credential_by_hash(hash_token(request.credential))
        device_id = credential.subject_id if credential is not None else None
        before = await self.node.store.pairings_of_phone(device_id) if device_id else []
        handoff = (
            await self.node.service.end_phone_handoff(device_id, "the phone was reset", now)
            if device_id
            else []
        )
        device = await provisioning.reset(request.credential, source, now)
        deliveries = [
            Delivery(
                laptop_address(p.user_id, p.laptop_id),
                wire.PairRemoved(laptop_id=p.laptop_id, phone_id=device.id),
            )
            for p in before
        ] + [d for d in handoff if d.address != device_address(device.id)]
        return _Done(
            aw.Removed(removed=device.id),
            deliveries,
            [SessionEnd(("device", device.id), CloseCode.REVOKED, "the device was reset")],
        )

    async def serve(self, conn: ServerConnection, source: str) -> None:
        settings = self.node.settings
        session = WsSession(
            conn, SessionKeys(f"provision/{conn.id}"), source, settings.outbox_messages
        )
        clog = log.bind(role="provision", peer=source)
        clog.info("connected")
        try:
            async with asyncio.timeout(settings.provision_idle_s):
                await serve_requests(
                    conn,
                    RequestLoop(
                        session,
                        source,
                        self._pipeline,
                        self.node.router,
                        TokenBucket(1.0, 1.0, 0),
                        self._requests,
                        self.node.clock,
                        clog,
                        one_request=True,
                    ),
                )
        except TimeoutError:
            clog.info("provision_idle_closed")
            session.end(CloseCode.IDLE, "idle")
        finally:
            await session.finished()
            session.outbox.stop()
            clog.info("disconnected", code=conn.close_code)


class _Done:
    """A provisioning outcome in the pipeline's shape."""

    def __init__(
        self,
        result: Any,
        deliveries: list[Delivery] | None = None,
        ends: list[SessionEnd] | None = None,
    ) -> None:
        self.result = result
        self.deliveries = deliveries or []
        self.ends = ends or []


def peer_host(conn: ServerConnection) -> str:
    address = conn.remote_address
    return str(address[0]) if address else "?"


def refuse(conn: ServerConnection, status: http.HTTPStatus, why: str) -> Response:
    log.info("admin_handshake_refused", status=int(status), reason=why, peer=peer_host(conn))
    return conn.respond(status, why + "\n")


__all__ = ["ENDPOINTS", "SUBPROTOCOLS", "AdminEndpoint", "ProvisionEndpoint", "offered", "refuse"]
