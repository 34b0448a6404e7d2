"""The relay's web side: the pages, their JSON API, and its life with the relay.

:class:`WebFront` is built by the composition root (:mod:`relay.node`). It owns an aiohttp
application (why aiohttp: one well-kept package that is an HTTP/1.1 server with forms,
JSON, streaming responses and a documented low-level protocol factory we can hand a socket
to — no separate ASGI server, no template engine; the pages are static files and a little
vanilla JavaScript that talk to the JSON API). It serves on the relay's own port through
:mod:`relay.web.frontdoor`.

Routes:

* pages: ``/`` (to the sign-in page), ``/signin``, ``/admin/``, ``/devicelogin``,
  ``/setup``, and ``/static/…`` (everything the pages use ships in the package);
* ``GET /api/session`` (who is signed in, the CSRF token, the ways to sign in);
  ``POST /api/signin/<method>``, ``/api/signout``, ``/api/setup``;
* ``POST /admin/api/<request type>``: one admin request of
  :mod:`relay.protocol.admin_wire` (the same models as the ``/admin`` websocket), carried
  out by :meth:`~relay.admin.service.AdminService.handle` — the same role checks and
  audit as the command line; ``GET /admin/api/events?tenant=…``: server-sent events
  saying when a tenant's devices changed;
* the device login page's API and the laptops' device authorisation
  (:mod:`relay.web.device_login`);
* sign-in with a tenant's OpenID provider, ``/oidc/start/<provider>`` and
  ``/oidc/callback`` (:mod:`relay.web.sso`), and the periodic check that the providers
  still accept the people linked to them.

Refusals are JSON ``{"error": {"code", "message"}}`` with a matching HTTP status.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Awaitable, Callable, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import structlog
from aiohttp import web
from pydantic import ValidationError

from relay.admin.service import AdminService
from relay.domain.ephemeral import EphemeralState
from relay.domain.errors import RelayError
from relay.domain.model import AdminRecord, Device, Pairing
from relay.domain.provisioning import Provisioning
from relay.domain.routing import Router, route
from relay.domain.service import Delivery
from relay.domain.sessions import SessionEnd
from relay.domain.store import RelayStore
from relay.protocol import admin_wire as aw
from relay.web.account_admin import hash_secret
from relay.web.accounts import Accounts
from relay.web.device_login import DeviceLogin
from relay.web.frontdoor import WEBSOCKET_PATHS, FrontDoor, front_door
from relay.web.live import Changes
from relay.web.passwords import WeakPassword, check_password_rules, hash_async
from relay.web.replies import json_error, read_json, refusal, refused
from relay.web.sessions import Current, Sessions
from relay.web.signin import PasswordSignIn, SignInRefused, Throttle
from relay.web.sso import ProviderClient, SsoCheck, SsoSignIn

log = structlog.get_logger("relay.web")

MAX_BODY_BYTES = 4 * aw.MAX_CSV_CHARS + 4096  # a whole device CSV, JSON-escaped
HEARTBEAT_S = 15.0
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)
PAGES = {
    "/signin": "signin.html",
    "/admin/": "admin.html",
    "/devicelogin": "devicelogin.html",
    "/setup": "setup.html",
}


def static_dir() -> Path:
    return Path(str(resources.files("relay.web") / "static"))


def source_of(request: web.BaseRequest) -> str:
    return request.remote or "?"


def _problems(exc: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(p) for p in e['loc'][1:]) or '(request)'}: {e['msg']}"
        for e in exc.errors()[:3]
    )


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class WebFront:
    """The pages and their API for one relay node, built by the composition root."""

    def __init__(
        self,
        store: RelayStore,
        accounts: Accounts,
        admin: AdminService,
        provisioning: Provisioning,
        router: Router,
        clock: Callable[[], float],
        *,
        sso_client: ProviderClient,
        sso_check: SsoCheck,
        sso_check_every_s: float,
        shared: EphemeralState | None = None,
    ) -> None:
        self.admin = admin
        self.provisioning = provisioning
        self.store = store
        self.router = router
        self.clock = clock
        self.accounts = accounts
        self.sessions = Sessions(self.store, self.accounts, self.clock)
        self.password = PasswordSignIn(self.store, self.accounts, Throttle(self.accounts))
        self.methods = [self.password]
        self.changes = Changes(self.store, router, self.clock, shared=shared)
        self.device_login = DeviceLogin(self)
        self.sso_client = sso_client
        self.sso_check = sso_check
        self.sso_check_every_s = sso_check_every_s
        self.sso = SsoSignIn(
            store, accounts, sso_client, self.sessions, clock,
            directory_changed=lambda now: admin.directory.refresh(now, force=True),
        )
        self._checking: asyncio.Task[None] | None = None
        self.app = self._build()
        self._runner: web.AppRunner | None = None
        self._streams: set[web.StreamResponse] = set()

    # --- life cycle -------------------------------------------------------------------------
    async def start(self) -> None:
        self._runner = web.AppRunner(self.app, access_log=None, handle_signals=False)
        await self._runner.setup()
        await self.sso_client.start()
        self.changes.start()
        self.device_login.start()
        if self.sso_check_every_s > 0:
            self._checking = asyncio.create_task(self._check_providers())

    @property
    def connection_class(self) -> type[FrontDoor]:
        assert self._runner is not None, "start() first"
        return front_door(self._runner.server)  # type: ignore[arg-type]

    async def stop(self) -> None:
        if self._checking is not None:
            self._checking.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._checking
            self._checking = None
        await self.sso_client.stop()
        await self.device_login.stop()
        await self.changes.stop()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def route(
        self, deliveries: Sequence[Delivery], ends: Sequence[SessionEnd] = ()
    ) -> None:
        await route(self.router, deliveries, ends)

    async def account_changed(self, device: Device, before: list[Pairing], now: float) -> None:
        """A person signed a phone in to themselves: what an administrator's sign-in does
        (laptops of other accounts told, hand-off ended, the phone's session renewed)."""
        await self.route(*await self.admin.phone_account_changed(device, before, now))

    async def _check_providers(self) -> None:
        """Every so often, one relay process (a conditional update picks it) asks each
        provider whether it still accepts its linked people (:class:`SsoCheck`)."""
        every = self.sso_check_every_s
        while True:
            await asyncio.sleep(min(60.0, every))
            try:
                for provider in await self.accounts.sso_providers():
                    now = self.clock()
                    if not provider.enabled or await self.store.tenant(provider.tenant_id) is None:
                        continue
                    if await self.accounts.claim_sso_check(provider.id, now, every):
                        result = await self.sso_check.check(provider, self.admin, now)
                        await self.route(result.deliveries, result.ends)
            except Exception:
                log.exception("sso_check_round_failed")

    # --- the application --------------------------------------------------------------------
    def _build(self) -> web.Application:
        app = web.Application(
            client_max_size=MAX_BODY_BYTES, middlewares=[self._headers, self._errors]
        )
        r = app.router
        r.add_get("/", self._root)
        for path, page in PAGES.items():
            r.add_get(path, self._page(page))
        r.add_get("/admin", self._to_admin)
        r.add_static("/static/", static_dir(), append_version=False)
        r.add_get("/api/session", self._session)
        r.add_post("/api/signin/password", self._signin_password)
        r.add_post("/api/signout", self._signout)
        r.add_post("/api/setup", self._setup)
        r.add_post("/admin/api/{type}", self._admin_request)
        r.add_get("/admin/api/events", self._events)
        r.add_get("/admin/api/last_seen", self._last_seen)
        self.device_login.add_routes(r)
        self.sso.add_routes(r)
        # A keep-alive connection that became the web server's may still ask for the relay's
        # plain paths: send it to a fresh connection, which the front door gives websockets.
        for path in sorted(WEBSOCKET_PATHS - {"/", "/admin"}):
            r.add_get(path, self._elsewhere)
        return app

    @web.middleware
    async def _headers(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        response = await handler(request)
        response.headers.setdefault("Content-Security-Policy", CSP)
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "no-referrer")
        response.headers.setdefault("X-Frame-Options", "DENY")
        if request.path.startswith(("/api/", "/admin/api/", "/oauth/", "/oidc/")):
            response.headers.setdefault("Cache-Control", "no-store")
        return response

    @web.middleware
    async def _errors(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            return await handler(request)
        except web.HTTPException:
            raise
        except RelayError as exc:
            return refused(exc)
        except Exception:
            log.exception("web_request_failed", path=request.path)
            return refusal("internal", "the relay failed; nothing changed", 500)

    async def _elsewhere(self, request: web.Request) -> web.StreamResponse:
        return web.Response(
            status=307, headers={"Location": str(request.rel_url), "Connection": "close"}
        )

    async def _root(self, request: web.Request) -> web.StreamResponse:
        raise web.HTTPFound("/signin")

    async def _to_admin(self, request: web.Request) -> web.StreamResponse:
        raise web.HTTPFound("/admin/")

    def _page(self, name: str) -> Handler:
        path = static_dir() / name

        async def page(request: web.Request) -> web.StreamResponse:
            return web.FileResponse(path, headers={"Cache-Control": "no-store"})

        return page

    # --- sign-in -------------------------------------------------------------------------------
    async def signed_in(self, request: web.Request, *, change: bool) -> Current:
        """The signed-in person (401 otherwise); for a change, also the CSRF check (403)."""
        current = await self.sessions.current(request)
        if current is None:
            raise json_error(web.HTTPUnauthorized, "unauthenticated", "sign in first")
        if change and not self.sessions.csrf_ok(request, current):
            log.info("csrf_refused", path=request.path, source=source_of(request))
            raise json_error(web.HTTPForbidden, "csrf", "missing or wrong CSRF token")
        return current

    def _pre_csrf(self, request: web.Request) -> None:
        if not self.sessions.pre_csrf_ok(request):
            log.info("csrf_refused", path=request.path, source=source_of(request))
            raise json_error(web.HTTPForbidden, "csrf", "missing or wrong CSRF token")

    @staticmethod
    def person_json(current: Current) -> dict[str, Any]:
        p = current.person
        return {"kind": p.kind, "id": p.id, "name": p.name, "role": p.role,
                "tenant_id": p.tenant_id}

    async def _session(self, request: web.Request) -> web.StreamResponse:
        current = await self.sessions.current(request)
        response = web.json_response({})
        infos = [m.describe() for m in self.methods] + await self.sso.methods()
        body: dict[str, Any] = {
            "methods": [
                {"id": info.id, "kind": info.kind, "label": info.label, "action": info.action,
                 "fields": list(info.fields)}
                for info in infos
            ]
        }
        if current is None:
            body |= {"person": None, "csrf": self.sessions.pre_token(request, response)}
        else:
            body |= {"person": self.person_json(current), "csrf": current.session.csrf,
                     "method": current.session.method}
        response.text = json.dumps(body)
        return response

    async def _signin_password(self, request: web.Request) -> web.StreamResponse:
        self._pre_csrf(request)
        data = await read_json(request)
        login, password = data.get("login"), data.get("password")
        if not isinstance(login, str) or not isinstance(password, str):
            return refusal("invalid_request", "give a login and a password", 400)
        try:
            person = await self.password.sign_in(
                login, password, source_of(request), self.clock()
            )
        except SignInRefused as exc:
            return refusal("refused", str(exc), 401)
        response = web.json_response({})
        session = await self.sessions.begin(request, response, person, self.password.id)
        log.info("signed_in", method=self.password.id, kind=person.kind, person=person.id)
        response.text = json.dumps(
            {"person": {"kind": person.kind, "id": person.id, "name": person.name,
                        "role": person.role, "tenant_id": person.tenant_id},
             "csrf": session.csrf}
        )
        return response

    async def _signout(self, request: web.Request) -> web.StreamResponse:
        current = await self.signed_in(request, change=True)
        data = await read_json(request)
        response = web.json_response({})
        ended = await self.sessions.end(
            response, current, everywhere=bool(data.get("everywhere"))
        )
        log.info("signed_out", kind=current.person.kind, person=current.person.id, ended=ended)
        offer = await self.sso.signout_offer(current.session.method, request)
        response.text = json.dumps({"ended": ended, "provider_signout": offer})
        return response

    async def _setup(self, request: web.Request) -> web.StreamResponse:
        """A set-up link's token and the chosen password: the person's password is set."""
        self._pre_csrf(request)
        data = await read_json(request)
        token, password = data.get("token"), data.get("password")
        if not isinstance(token, str) or not isinstance(password, str) or len(token) > 128:
            return refusal("invalid_request", "give the link's token and a password", 400)
        try:
            check_password_rules(password)
        except WeakPassword as exc:
            return refusal("invalid_request", str(exc), 400)
        now = self.clock()
        link = await self.accounts.setup_link(hash_secret(token))
        if link is None:
            return refusal("not_found", "this set-up link is not valid", 404)
        if link.used_at is not None:
            return refusal("wrong_state", "this set-up link was already used", 409)
        if link.expires_at <= now:
            return refusal("expired", "this set-up link has expired; ask for a new one", 410)
        if not await self.accounts.redeem_setup_link(link.token_hash, await hash_async(password),
                                                     now):
            return refusal("wrong_state", "this set-up link was already used", 409)
        await self.accounts.end_sessions(link.subject_kind, link.subject_id)
        await self.store.add_audit(
            now, f"{link.login} (set-up link)", None, "password.setup", link.subject_id, "ok", {}
        )
        return web.json_response({"login": link.login})

    # --- the admin API ----------------------------------------------------------------------------
    async def admin_of(self, request: web.Request, *, change: bool) -> AdminRecord:
        current = await self.signed_in(request, change=change)
        if current.person.kind != "admin":
            raise json_error(web.HTTPForbidden, "forbidden", "this account is not an administrator")
        admin = await self.accounts.admin(current.person.id)
        if admin is None:
            raise json_error(web.HTTPUnauthorized, "unauthenticated", "sign in first")
        return admin

    async def _admin_request(self, request: web.Request) -> web.StreamResponse:
        admin = await self.admin_of(request, change=True)
        kind = request.match_info["type"]
        data = await read_json(request)
        try:
            parsed = aw.ADMIN_REQUEST_ADAPTER.validate_python({**data, "type": kind, "id": 0})
        except ValidationError as exc:
            if kind not in aw.ADMIN_RESULT_TYPES or kind in ("provision", "reset"):
                return refusal("unknown_type", f"unknown admin request {kind[:64]!r}", 404)
            return refusal("invalid_request", f"invalid {kind}: {_problems(exc)}", 400)
        try:
            outcome = await self.admin.handle(admin, parsed, self.clock())
        except RelayError as exc:
            return refused(exc)
        await self.route(outcome.deliveries, outcome.ends)
        return web.json_response(outcome.result.model_dump(mode="json"))

    async def _watched_tenant(self, request: web.Request) -> str:
        """The tenant a read-only stream or view asks for, checked like an admin request."""
        admin = await self.admin_of(request, change=False)
        tenant_id = request.query.get("tenant") or admin.tenant_id
        if tenant_id is None:
            raise json_error(web.HTTPBadRequest, "invalid_request", "an owner must name the tenant")
        if (admin.role != "owner" and tenant_id != admin.tenant_id) or (
            admin.role == "owner" and await self.store.tenant(tenant_id) is None
        ):
            raise json_error(web.HTTPNotFound, "not_found", f"no tenant {tenant_id[:64]!r}")
        return tenant_id

    async def _last_seen(self, request: web.Request) -> web.StreamResponse:
        """When each of the tenant's devices was last seen online (while pages watched it)."""
        tenant_id = await self._watched_tenant(request)
        devices = await self.store.devices(tenant_id)
        seen = await self.changes.last_seen([d.id for d in devices])
        return web.json_response({"last_seen": seen})

    async def _events(self, request: web.Request) -> web.StreamResponse:
        """Server-sent events: ``changed`` whenever the tenant's devices or directory change."""
        tenant_id = await self._watched_tenant(request)
        response = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-store"}
        )
        await response.prepare(request)
        queue = self.changes.watch(tenant_id)
        try:
            # The picture now is the baseline; the page reloads once on "hello", so nothing
            # that happened before is missed either.
            await self.changes.check()
            await response.write(b"retry: 2000\nevent: hello\ndata: {}\n\n")
            while True:
                try:
                    async with asyncio.timeout(HEARTBEAT_S):
                        what = await queue.get()
                except TimeoutError:
                    if await self.sessions.current(request) is None:
                        break  # signed out elsewhere: the stream ends too
                    await response.write(b": still here\n\n")
                    continue
                if what == "bye":
                    break
                await response.write(b"event: changed\ndata: {}\n\n")
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        finally:
            self.changes.unwatch(tenant_id, queue)
        with contextlib.suppress(ConnectionResetError, RuntimeError):
            await response.write_eof()
        return response

