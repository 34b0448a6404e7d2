"""The relay's websocket shell: accept, handshake, authenticate, and hand each connection to
its endpoint; health and metrics on the same port.

A thin layer over a :class:`~relay.node.RelayNode` (built by the composition root). It
guards the door — unauthenticated connections (still in their handshake, or on
``/provision``) are capped in all and per source address and must finish their
handshake in ``handshake_timeout_s``; one user credential may hold at most
``max_connections_per_credential`` connections — authenticates each device/laptop
connection during the opening handshake (no valid credential, no websocket), and runs
the request loop of :mod:`relay.net.connection` for it. When the directory changes (an
administrator here or anywhere revoked, removed, reset or re-assigned something), the
sessions it concerns are judged again and closed if they no longer stand.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import http
import ipaddress
import time
import weakref
from collections.abc import Callable, Sequence
from typing import Any

import structlog
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.http11 import Request, Response
from websockets.protocol import State
from websockets.typing import Subprotocol

from relay.config import RelaySettings
from relay.domain.credentials import bearer_token
from relay.domain.metrics import RelayMetrics
from relay.domain.model import DirectoryChange
from relay.domain.routing import Router
from relay.domain.service import DevicePrincipal, LaptopPrincipal, Principal
from relay.domain.sessions import SelectorKind, SessionKeys
from relay.domain.store import RelayStore, StoreUnavailable
from relay.net import admin_endpoint
from relay.net.connection import Inbox, RequestLoop, WsSession
from relay.net.pipeline import RequestLog, RequestPipeline
from relay.net.ratelimit import TokenBucket
from relay.net.websocket import OpenWebsocket
from relay.node import RelayNode, build_node, display_db
from relay.protocol import admin_wire as aw
from relay.protocol import wire
from relay.protocol.wire import CloseCode

log = structlog.get_logger("relay")

_REQUEST_TYPES = frozenset(wire.REQUEST_TYPES)


def _valid_client_id(value: str) -> bool:
    return 0 < len(value) <= 64 and all(c.isalnum() or c in "._:-" for c in value)


class ConnectionGuard:
    """Counts connections that have not authenticated, in all and per source address.

    A source address over its share is refused at once (before a byte is read). When
    all the places are taken, the *oldest* unauthenticated connection makes room for
    the new one: a client that completes its handshake in milliseconds always gets
    through, and an attacker holding idle connections only displaces their own.
    """

    def __init__(self, total: int, per_address: int, trusted: Sequence[str]) -> None:
        self.total = total
        self.per_address = per_address
        self._trusted = [ipaddress.ip_network(t, strict=False) for t in trusted]
        self._open: dict[ServerConnection, str] = {}  # oldest first
        self._by_address: dict[str, int] = {}
        self.refused = 0
        self.evicted = 0

    def trusted(self, address: str) -> bool:
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip in network for network in self._trusted)

    def admit(self, conn: ServerConnection, address: str) -> bool:
        count = self._by_address.get(address, 0)
        if count >= self.per_address and not self.trusted(address):
            self.refused += 1
            return False
        while len(self._open) >= self.total:
            oldest = next(iter(self._open))
            self._forget(oldest)
            self.evicted += 1
            if isinstance(oldest.transport, asyncio.Transport):
                oldest.transport.abort()
        self._open[conn] = address
        self._by_address[address] = self._by_address.get(address, 0) + 1
        return True

    def _forget(self, conn: ServerConnection) -> None:
        address = self._open.pop(conn, None)
        if address is not None:
            left = self._by_address[address] - 1
            if left:
                self._by_address[address] = left
            else:
                del self._by_address[address]

    def authenticated(self, conn: ServerConnection) -> None:
        """The connection proved who it is: it no longer counts."""
        self._forget(conn)

    release = authenticated

    def __len__(self) -> int:
        return len(self._open)


def _guarded_connection(
    guard: ConnectionGuard, door: type[ServerConnection]
) -> type[ServerConnection]:
    """The connection class: counted by the guard, then through the web front door."""

    class GuardedConnection(door):  # type: ignore[valid-type,misc]
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            super().connection_made(transport)
            peer = transport.get_extra_info("peername")
            address = str(peer[0]) if peer else "?"
            if not guard.admit(self, address) and isinstance(transport, asyncio.Transport):
                transport.abort()  # refused before a byte is read: costs nothing to keep

        def connection_lost(self, exc: Exception | None) -> None:
            guard.release(self)
            super().connection_lost(exc)

    return GuardedConnection


class RelayServer:
    """One relay process: ``async with RelayServer(settings, store) as relay: ...``.

    Given a finished ``node`` it serves that; otherwise it builds one from ``settings``
    (and the parts given) with :func:`relay.node.build_node`.
    """

    def __init__(
        self,
        settings: RelaySettings,
        store: RelayStore | None = None,
        *,
        router: Router | None = None,
        metrics: RelayMetrics | None = None,
        clock: Callable[[], float] = time.time,
        node: RelayNode | None = None,
    ) -> None:
        self.node = node or build_node(
            settings, store=store, router=router, metrics=metrics, clock=clock
        )
        self.settings = self.node.settings
        self.store = self.node.store
        self.router = self.node.router
        self.metrics = self.node.metrics
        self.clock = self.node.clock
        self.service = self.node.service
        self.admin = admin_endpoint.AdminEndpoint(self.node)
        self.provision = admin_endpoint.ProvisionEndpoint(self.node)
        self.guard = ConnectionGuard(
            self.settings.max_unauthenticated,
            self.settings.max_unauthenticated_per_address,
            self.settings.trusted_proxies,
        )
        self._server: Server | None = None
        self._ticker: asyncio.Task[None] | None = None
        self._handshakes: weakref.WeakKeyDictionary[ServerConnection, Any] = (
            weakref.WeakKeyDictionary()
        )
        self._sessions: set[WsSession] = set()  # devices' and laptops', until their end
        self._endings: set[asyncio.Task[None]] = set()
        self._ready = False
        self._pipeline: RequestPipeline[Principal] = RequestPipeline(
            wire.REQUEST_ADAPTER, _REQUEST_TYPES.__contains__, self.service.handle, log
        )
        self._requests = RequestLog(self.metrics, "request")
        self.node.directory.on_change(self._directory_changed)
        self.router.on_resync(self._resend_pending_locks)

    # --- life cycle ---------------------------------------------------------------------
    async def start(self) -> None:
        await self.node.open()
        self._server = await serve(
            self._handle_connection,
            self.settings.host,
            self.settings.port,
            process_request=self._process_request,
            # The server's order is its preference: the newest protocol a client offers.
            subprotocols=[
                Subprotocol(p) for p in (*wire.SUBPROTOCOLS, *admin_endpoint.SUBPROTOCOLS)
            ],
            compression=None,  # permessage-deflate costs ~48 KB per idle connection
            max_size=self.settings.max_message_bytes,
            ping_interval=self.settings.ping_interval_s,
            ping_timeout=self.settings.ping_interval_s,
            open_timeout=self.settings.handshake_timeout_s,
            server_header=None,
            create_connection=_guarded_connection(self.guard, self.node.web.connection_class),
        )
        self._ticker = asyncio.create_task(self._tick_forever())
        self._ready = True
        db = display_db(self.settings.db)
        log.info("relay_started", host=self.settings.host, port=self.port, db=db)

    async def settle_heap_when_loaded(self) -> None:
        """Once the directory's EID index has loaded, take every object alive then out of
        the garbage collector's full collections (``gc.freeze``). What a long-running relay
        holds from its start — modules, classes, caches, the loaded directory — never
        becomes garbage, yet a full collection walked all of it: 62 ms at a million
        devices, and one fell in a window change. Afterwards a full collection walks only
        what was made since. For the process that owns the relay (``relay serve``), not
        for one embedded in another program, whose objects it would freeze too."""
        await self.node.directory.eids.loaded.wait()
        gc.freeze()
        log.info("heap_settled", frozen_objects=gc.get_freeze_count())

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
        # The devices' and laptops' sockets are the relay's own (not websockets'): closed
        # here the same way, 1001, and what each one's end entails done before the store goes.
        for session in list(self._sessions):
            if isinstance(session.conn, OpenWebsocket):
                session.end(CloseCode.GOING_AWAY, "")
        while self._endings:
            await asyncio.gather(*list(self._endings), return_exceptions=True)
        if self._ticker is not None:
            self._ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._ticker
            self._ticker = None
        await self.node.close()
        log.info("relay_stopped")

    async def __aenter__(self) -> RelayServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def _tick_forever(self) -> None:
        pruned_at = 0.0
        while True:
            await asyncio.sleep(1.0)
            try:
                now = self.clock()
                for delivery in await self.service.tick(now):
                    await self.router.deliver(delivery.address, delivery.event.to_wire())
                await self.node.directory.refresh(now)
                if now - pruned_at >= 60.0:
                    pruned_at = now
                    await self.store.prune(now)
            except StoreUnavailable as exc:  # an outage: requests say so; no traceback each second
                log.warning("tick_store_unavailable", error=str(exc))
            except Exception:
                log.exception("tick_failed")

    async def _directory_changed(
        self, changes: Sequence[DirectoryChange] | None, now: float
    ) -> None:
        """Judge again the sessions a directory change concerns; close those that fell."""
        if changes is None:
            sessions = list(self._sessions)
        else:
            kinds: dict[str, SelectorKind] = {
                "credentials": "credential",
                "devices": "device",
                "users": "user",
            }
            found: dict[int, WsSession] = {}
            for change in changes:
                kind = kinds.get(change.kind)
                if kind is not None:
                    for session in self.router.local_sessions((kind, change.id)):
                        if isinstance(session, WsSession):
                            found[id(session)] = session
            sessions = list(found.values())
        for session in sessions:
            principal = session.principal
            if session.ending or not isinstance(principal, LaptopPrincipal | DevicePrincipal):
                continue
            code = await self.service.session_verdict(principal, now)
            if code is not None:
                log.info("session_closed_by_change", code=code, address=principal.address)
                session.end(code, "this connection's credential or device changed")

    async def _resend_pending_locks(self) -> None:
        """Deliveries to this node may have been lost (its Redis was away): send each of
        its devices the lock command it has not acknowledged (the phone applies a seq
        once, so a repeat changes nothing)."""
        now = self.clock()
        resent = 0
        for session in list(self._sessions):
            principal = session.principal
            if session.ending or not isinstance(principal, DevicePrincipal):
                continue
            command = await self.service.pending_lock(principal.device_id, now)
            if command is not None and session.push(command.to_wire()):
                resent += 1
        if resent:
            log.info("pending_locks_resent", count=resent)

    # --- handshake ----------------------------------------------------------------------
    def _respond(self, conn: ServerConnection, status: http.HTTPStatus, text: str) -> Response:
        return conn.respond(status, text)

    def source_address(self, conn: ServerConnection, request: Request) -> str:
        """The client's address: the peer's, or the forwarded one if the peer is a trusted
        proxy (the last address in X-Forwarded-For that is not a trusted proxy)."""
        peer = conn.remote_address
        address = str(peer[0]) if peer else "?"
        if not self.guard.trusted(address):
            return address
        forwarded = [
            hop.strip()
            for header in request.headers.get_all("X-Forwarded-For")
            for hop in header.split(",")
            if hop.strip()
        ]
        for hop in reversed(forwarded):
            if not self.guard.trusted(hop):
                return hop[:64]
        return address

    async def _process_request(self, conn: ServerConnection, request: Request) -> Response | None:
        try:
            return await self._answer_handshake(conn, request)
        except StoreUnavailable:
            # The database is down (or restarting): say so, rather than fail the handshake
            # with a 500 and a traceback; clients retry with their usual backoff.
            return self._refuse(conn, http.HTTPStatus.SERVICE_UNAVAILABLE, "database unavailable")

    async def _answer_handshake(self, conn: ServerConnection, request: Request) -> Response | None:
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
        if path in admin_endpoint.ENDPOINTS:
            return await self._endpoint_handshake(conn, request, path)
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
        if isinstance(principal, LaptopPrincipal):
            holding = self.router.local_count(("credential", principal.credential_id))
            replacing = await self.router.is_online(principal.address)
            if holding >= self.settings.max_connections_per_credential and not replacing:
                return self._refuse(
                    conn,
                    http.HTTPStatus.TOO_MANY_REQUESTS,
                    f"this credential already has {holding} connections",
                )
        self._handshakes[conn] = principal
        self.guard.authenticated(conn)
        return None

    async def _endpoint_handshake(
        self, conn: ServerConnection, request: Request, path: str
    ) -> Response | None:
        if not self._ready:
            return self._refuse(conn, http.HTTPStatus.SERVICE_UNAVAILABLE, "relay not ready")
        wanted = admin_endpoint.ENDPOINTS[path]
        if wanted not in admin_endpoint.offered(request):
            return admin_endpoint.refuse(
                conn, http.HTTPStatus.BAD_REQUEST, f"offer the subprotocol {wanted}"
            )
        if path == aw.PROVISION_PATH:
            # No credential: the device has none yet. Stays counted as unauthenticated.
            self._handshakes[conn] = ("provision", self.source_address(conn, request))
            return None
        who = await self.admin.authenticate(request)
        if who is None:
            return admin_endpoint.refuse(
                conn, http.HTTPStatus.UNAUTHORIZED, "unknown or revoked administrator credential"
            )
        self._handshakes[conn] = ("admin", who)
        self.guard.authenticated(conn)
        return None

    def _refuse(self, conn: ServerConnection, status: http.HTTPStatus, why: str) -> Response:
        self.metrics.refused_handshakes.labels(str(int(status))).inc()
        log.info("handshake_refused", status=int(status), reason=why, peer=_peer(conn))
        return self._respond(conn, status, why + "\n")

    # --- connections --------------------------------------------------------------------
    async def _handle_connection(self, conn: ServerConnection) -> None:
        handshake = self._handshakes.pop(conn, None)
        if isinstance(handshake, tuple):
            kind, value = handshake
            if kind == "provision":
                await self.provision.serve(conn, value)
            else:
                await self.admin.serve(conn, value)
            return
        if handshake is None:  # cannot happen: the handshake refuses these
            await conn.close(CloseCode.INTERNAL_ERROR, "no principal")
            return
        await self._serve_principal(conn, handshake)

    async def _serve_principal(self, conn: ServerConnection, principal: Principal) -> None:
        if not OpenWebsocket.can_take_over(conn):
            # Closed by the peer before its first message (nothing to serve), or a
            # connection this relay never makes (an extension was negotiated).
            if conn.protocol.state is State.OPEN:
                await conn.close(CloseCode.INTERNAL_ERROR, "unsupported connection")
            return
        version = wire.SUBPROTOCOLS.get(conn.subprotocol or "", wire.PROTOCOL_VERSION)
        # From here the socket is the relay's, served without websockets' per-connection
        # tasks and queues (relay/net/websocket.py); this handler returns once it is set up.
        ws = OpenWebsocket.take_over(conn, self.settings.ping_interval_s)
        if isinstance(principal, LaptopPrincipal):
            clog = log.bind(
                role="laptop",
                tenant=principal.tenant_id,
                user=principal.user_id,
                laptop=principal.laptop_id,
                conn=str(ws.id)[:8],
            )
            keys = SessionKeys(
                principal.credential_id, principal.tenant_id, user_id=principal.user_id
            )
        else:
            clog = log.bind(
                role="device",
                tenant=principal.tenant_id,
                device=principal.device_id,
                conn=str(ws.id)[:8],
            )
            keys = SessionKeys(
                principal.credential_id, principal.tenant_id, device_id=principal.device_id
            )
        settings = self.settings
        router = self.router
        session = WsSession(
            ws, keys, principal, settings.outbox_messages, router, principal.address
        )
        requests = RequestLoop(
            session,
            principal,
            self._pipeline,
            router,
            TokenBucket(settings.rate_per_second, settings.rate_burst, settings.rate_strikes),
            self._requests,
            self.clock,
            clog,
            verdict=self.service.session_verdict,
            version=version,
            directory=self.node.directory,
        )
        inbox = Inbox(requests.serve, ws.transport)
        served = _Served(self, ws, session, inbox, clog)
        ws.on_lost = served.lost
        self._sessions.add(session)
        self.metrics.connections.labels(principal.role).inc()
        try:
            await router.attach(principal.address, session)
            clog.info("connected", peer=_peer(ws))
            await self._welcome(session, principal, version)
        except BaseException:
            # (Redis or the database gone at this very moment.) Closed as websockets would
            # close a connection whose handler failed; its end is followed as any other.
            ws.fail(CloseCode.INTERNAL_ERROR, "")
            raise
        finally:
            ws.start(inbox.put)

    def _spawn_ending(self, served: _Served) -> None:
        task = asyncio.get_running_loop().create_task(self._served_ended(served))
        self._endings.add(task)
        task.add_done_callback(self._endings.discard)

    async def _served_ended(self, served: _Served) -> None:
        """What follows a device's or laptop's connection once its socket is gone."""
        session = served.session
        principal = session.principal
        detached = False
        try:
            await served.inbox.finished()  # what it sent before it went is still served
            detached = await self.router.detach(principal.address, session) or session.ending
            await session.finished()  # a close it was told to make went out first
        except Exception:  # (Redis gone at this moment): the local end still happens
            served.clog.exception("disconnect_failed")
        finally:
            session.outbox.stop()
            self._sessions.discard(session)
            self.metrics.connections.labels(principal.role).dec()
            served.clog.info("disconnected", code=served.ws.close_code)
        # A connection replaced by a newer one leaves its hand-offs to the newcomer.
        try:
            if detached and not await self.router.is_online(principal.address):
                for delivery in await self.service.disconnected(principal, self.clock()):
                    await self.router.deliver(delivery.address, delivery.event.to_wire())
        except Exception:
            served.clog.exception("disconnect_failed")

    async def _welcome(self, session: WsSession, principal: Principal, version: int) -> None:
        # (A function of its own: a loop variable left in the connection's frame would
        # keep the last event alive as long as the connection.)
        for event in await self.service.welcome(principal, self.clock()):
            if isinstance(event, wire.Welcome) and event.protocol != version:
                event = event.model_copy(update={"protocol": version})
            session.push(event.model_dump_json())


class _Served:
    """A device's or laptop's connection as the server follows it to its end."""

    __slots__ = ("clog", "inbox", "server", "session", "ws")

    def __init__(
        self, server: RelayServer, ws: OpenWebsocket, session: WsSession, inbox: Inbox, clog: Any
    ) -> None:
        self.server = server
        self.ws = ws
        self.session = session
        self.inbox = inbox
        self.clog = clog

    def lost(self, ws: OpenWebsocket) -> None:
        self.server._spawn_ending(self)


def _peer(conn: ServerConnection | OpenWebsocket) -> str:
    address = conn.remote_address
    return f"{address[0]}:{address[1]}" if address else "?"
