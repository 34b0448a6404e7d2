"""The device login page: people sign their own desk phone in, and approve their laptops.

Two things show a person a code to type at ``/devicelogin``:

* **a desk phone waiting for sign-in.** The relay asks each connected desk phone that
  waits for sign-in for a login code (``login_code.request``, the same exchange as an
  administrator's ``login_code.get``) as soon as it shows none, and the phone shows it.
  A signed-in user types it; the relay finds the phone among *their tenant's* desk
  phones (provisioning keeps every reported code in the shared short-lived state, by a
  hash scoped by tenant, so any relay node finds it) and signs it in to them (personal
  mode) through :meth:`~relay.domain.provisioning.Provisioning.sign_in`, which checks the code
  again and uses it once. Room systems and conference phones are signed in by an
  administrator.
* **a laptop** running ``btogether client login --relay URL`` (RFC 8628 device
  authorisation): ``POST /oauth/device_authorization`` gives it a device code and a
  short user code; the person approves on the page; the laptop's next
  ``POST /oauth/token`` poll receives a credential of its own for the approving user
  (issued once: a conditional update marks the grant delivered).

Wrong codes are counted per person (durably, with the sign-in throttle's records) and
lock the page for that person after :data:`MAX_WRONG_CODES` within the throttle's
window; the messages say whether a code is wrong, expired or already used.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import structlog
from aiohttp import web

from relay.domain.credentials import hash_token, new_token
from relay.domain.errors import RelayError
from relay.domain.model import Credential, Device
from relay.domain.service import device_address
from relay.domain.store import StoreUnavailable
from relay.domain.verification import hash_code
from relay.protocol.login_code import LOGIN_CODE_ALPHABET, normalize_login_code
from relay.protocol.wire import ErrorCode
from relay.web.account_admin import hash_secret
from relay.web.accounts import GrantRecord
from relay.web.replies import read_json
from relay.web.signin import ThrottleRules, after_failure, locked_until

if TYPE_CHECKING:
    from aiohttp.web_urldispatcher import UrlDispatcher

    from relay.web.app import WebFront
    from relay.web.sessions import Current

log = structlog.get_logger("relay.web.device_login")

GRANT_TYPE = "urn:ietf:params:oauth:grant-type:device_code"
GRANT_TTL_S = 600.0
POLL_INTERVAL_S = 5.0
MAX_WRONG_CODES = 10
ASK_EVERY_S = 1.0
PERSONAL_KINDS = frozenset({"desk_phone"})


@dataclass(frozen=True, slots=True)
class Found:
    kind: Literal["phone", "laptop"]
    name: str
    device: Device | None = None
    grant: GrantRecord | None = None


def new_user_code() -> str:
    raw = "".join(secrets.choice(LOGIN_CODE_ALPHABET) for _ in range(8))
    return f"{raw[:4]}-{raw[4:]}"


def _user_code_hash(raw: str) -> str:
    return hash_code("laptop", raw)


class DeviceLogin:
    def __init__(self, front: WebFront) -> None:
        self.front = front
        self._asking: set[str] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._task: asyncio.Task[None] | None = None
        self._waiting: list[Device] = []
        self._version: int | None = None
        self.rules = ThrottleRules()

    # --- asking waiting desk phones for their login codes -------------------------------------
    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        for task in [self._task, *self._tasks]:
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._task = None

    async def _run(self) -> None:
        while True:
            try:
                await self.ask_waiting_phones()
            except StoreUnavailable as exc:  # an outage: said once a round, no traceback
                log.warning("login_code_round_unavailable", error=str(exc))
            except Exception:
                log.exception("login_code_round_failed")
            await asyncio.sleep(ASK_EVERY_S)

    async def ask_waiting_phones(self) -> None:
        """Ask each desk phone waiting for sign-in whose connection this node holds for a
        login code when it shows none (or one about to expire). The codes live in the
        relay's shared short-lived state, so the page finds them whichever relay node the
        phone reported to."""
        store = self.front.store
        version = await store.directory_version()
        if version != self._version:
            self._version = version
            self._waiting = [
                d
                for d in await store.devices(state="waiting_for_sign_in")
                if d.kind in PERSONAL_KINDS
            ]
        now = self.front.clock()
        provisioning = self.front.provisioning
        for device in self._waiting:
            shown = await provisioning.shown_login_code(device.id, now)
            if shown is not None and shown.used_at is None and shown.expires_at > now + 60.0:
                continue
            if device.id in self._asking:
                continue
            # Only the node holding the phone's connection asks it (one ask, not one per
            # node); the code it reports lands in the shared state for every node.
            if not self.front.router.local_count(("device", device.id)):
                continue
            self._asking.add(device.id)
            task = asyncio.create_task(self._ask(device))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _ask(self, device: Device) -> None:
        try:
            await self._ask_once(device)
        finally:
            self._asking.discard(device.id)

    async def _ask_once(self, device: Device) -> None:
        provisioning = self.front.provisioning
        try:
            request_id, event = await provisioning.ask_login_code(device, self.front.clock())
            await self.front.router.deliver(device_address(device.id), event.model_dump_json())
            await provisioning.wait_login_code(request_id, self.front.clock)
        except RelayError as exc:
            log.info("login_code_not_shown", device=device.id, reason=exc.message)

    # --- the page's API ------------------------------------------------------------------------
    def add_routes(self, router: UrlDispatcher) -> None:
        router.add_post("/api/devicelogin/lookup", self._lookup)
        router.add_post("/api/devicelogin/confirm", self._confirm)
        router.add_post("/oauth/device_authorization", self._authorize)
        router.add_post("/oauth/token", self._token)

    async def _user(self, request: web.Request) -> Current:
        current = await self.front.signed_in(request, change=True)
        if current.person.kind != "user":
            raise RelayError(
                ErrorCode.FORBIDDEN,
                "sign in with your own user account to sign in a phone or a laptop",
            )
        return current

    async def _check_throttle(self, user_id: str, now: float) -> None:
        record = await self.front.accounts.failures(f"code:{user_id}")
        if locked_until(record, now) is not None:
            raise RelayError(
                ErrorCode.RATE_LIMITED, "too many wrong codes; try again in 15 minutes"
            )

    async def _wrong(self, user_id: str, now: float, message: str) -> RelayError:
        key = f"code:{user_id}"
        accounts = self.front.accounts
        await accounts.put_failures(
            after_failure(await accounts.failures(key), key, MAX_WRONG_CODES, now, self.rules)
        )
        return RelayError(ErrorCode.NOT_FOUND, message)

    async def find(self, current: Current, text: str, now: float) -> Found:
        """What the code stands for, for this person; refusals say wrong, expired or used."""
        person = current.person
        assert person.tenant_id is not None
        await self._check_throttle(person.id, now)
        raw = normalize_login_code(text)
        if raw is None:
            raise await self._wrong(
                person.id, now, "that is not a code: 8 letters and digits, like ABCD-EFGH"
            )
        grant = await self.front.accounts.grant_by_user_code(_user_code_hash(raw))
        if grant is not None:
            if grant.status != "pending":
                raise RelayError(ErrorCode.WRONG_STATE, "this code was already used")
            if grant.expires_at <= now:
                raise RelayError(
                    ErrorCode.EXPIRED,
                    "this code has expired; start the sign-in on the laptop again",
                )
            return Found("laptop", grant.client_name, grant=grant)
        provisioning = self.front.provisioning
        device_id = await provisioning.device_showing(person.tenant_id, raw, now)
        device = await self.front.store.device(device_id) if device_id else None
        shown = await provisioning.shown_login_code(device.id, now) if device else None
        if (
            device is None
            or shown is None
            or device.tenant_id != person.tenant_id
            or device.kind not in PERSONAL_KINDS
        ):
            raise await self._wrong(
                person.id, now, "wrong code: check the code your phone or laptop shows"
            )
        if shown.used_at is not None:
            raise RelayError(ErrorCode.WRONG_STATE, "this code was already used")
        if shown.expires_at <= now:
            raise RelayError(
                ErrorCode.EXPIRED, "this code has expired; the phone shows a new one shortly"
            )
        if device.state != "waiting_for_sign_in":
            raise RelayError(ErrorCode.WRONG_STATE, "this phone is already signed in")
        return Found("phone", device.name, device=device)

    async def _lookup(self, request: web.Request) -> web.StreamResponse:
        current = await self._user(request)
        data = await _body(request)
        found = await self.find(current, str(data.get("code", ""))[:64], self.front.clock())
        out: dict[str, Any] = {"kind": found.kind, "name": found.name}
        if found.device is not None:
            out["location"] = found.device.location
        return web.json_response(out)

    async def _confirm(self, request: web.Request) -> web.StreamResponse:
        current = await self._user(request)
        person = current.person
        assert person.tenant_id is not None
        data = await _body(request)
        code = str(data.get("code", ""))[:64]
        approve = data.get("approve") is True
        now = self.front.clock()
        found = await self.find(current, code, now)
        actor = f"{person.name} (user {person.id})"
        store = self.front.store
        if found.kind == "laptop":
            assert found.grant is not None
            status: Literal["approved", "denied"] = "approved" if approve else "denied"
            if not await self.front.accounts.decide_grant(
                found.grant.user_code_hash, status, person.id, person.tenant_id, now
            ):
                raise RelayError(ErrorCode.WRONG_STATE, "this code was already used")
            await store.add_audit(
                now, actor, person.tenant_id, "laptop.sign_in", person.id, status,
                {"laptop": found.name},
            )
            return web.json_response({"kind": "laptop", "name": found.name, "outcome": status})
        assert found.device is not None
        if not approve:
            return web.json_response({"kind": "phone", "name": found.name, "outcome": "denied"})
        raw = normalize_login_code(code)
        assert raw is not None
        provisioning = self.front.provisioning
        before = await store.pairings_of_phone(found.device.id)
        signed = await provisioning.sign_in(
            found.device, person.id, raw, "personal", now, by=f"user {person.id}"
        )
        await self.front.account_changed(signed, before, now)
        await store.add_audit(
            now, actor, person.tenant_id, "device.sign_in.self", signed.id, "ok",
            {"name": signed.name},
        )
        log.info("device_signed_in_by_user", device=signed.id, user=person.id)
        return web.json_response({"kind": "phone", "name": signed.name, "outcome": "approved"})

    # --- RFC 8628 for laptops ------------------------------------------------------------------
    async def _authorize(self, request: web.Request) -> web.StreamResponse:
        data = await _form(request)
        name = str(data.get("client_name") or "a laptop")
        if not (0 < len(name) <= 128 and all("\x20" <= c <= "\x7e" for c in name)):
            return _oauth_error("invalid_request", "client_name: 1-128 printable characters")
        now = self.front.clock()
        device_code = secrets.token_urlsafe(32)
        user_code = new_user_code()
        raw = normalize_login_code(user_code)
        assert raw is not None
        await self.front.accounts.add_grant(
            GrantRecord(hash_secret(device_code), _user_code_hash(raw), name, now,
                        now + GRANT_TTL_S)
        )
        base = _base_url(request)
        log.info("device_authorization_started", client=name)
        return web.json_response(
            {
                "device_code": device_code,
                "user_code": user_code,
                "verification_uri": f"{base}/devicelogin",
                "verification_uri_complete": f"{base}/devicelogin?code={user_code}",
                "expires_in": int(GRANT_TTL_S),
                "interval": int(POLL_INTERVAL_S),
            }
        )

    async def _token(self, request: web.Request) -> web.StreamResponse:
        data = await _form(request)
        if data.get("grant_type") != GRANT_TYPE:
            return _oauth_error("unsupported_grant_type", f"grant_type must be {GRANT_TYPE}")
        device_code = str(data.get("device_code") or "")[:128]
        accounts = self.front.accounts
        grant = await accounts.grant_by_device_code(hash_secret(device_code))
        now = self.front.clock()
        if grant is None or grant.status == "delivered":
            return _oauth_error("invalid_grant", "unknown or already used device code")
        if grant.expires_at <= now and grant.status != "approved":
            return _oauth_error("expired_token", "the code expired; start again")
        if grant.status == "denied":
            return _oauth_error("access_denied", "the sign-in was denied on the page")
        if grant.status == "pending":
            too_soon = grant.polled_at is not None and now - grant.polled_at < POLL_INTERVAL_S - 1
            await accounts.mark_polled(grant.device_code_hash, now)
            if too_soon:
                return _oauth_error("slow_down", f"poll every {int(POLL_INTERVAL_S)} s")
            return _oauth_error("authorization_pending", "waiting for approval on the page")
        token = new_token()
        credential = Credential(
            "c_" + secrets.token_hex(8),
            hash_token(token),
            "user",
            grant.user_id or "",
            grant.tenant_id or "",
            now,
        )
        if not await accounts.deliver_grant(grant.device_code_hash, credential):
            return _oauth_error("invalid_grant", "unknown or already used device code")
        user = await self.front.store.user(grant.user_id or "")
        log.info("device_authorization_delivered", credential=credential.id, user=grant.user_id)
        return web.json_response(
            {
                "access_token": token,
                "token_type": "Bearer",
                "credential_id": credential.id,
                "user_id": grant.user_id,
                "user_name": user.name if user else None,
                "tenant_id": grant.tenant_id,
            }
        )


def _oauth_error(code: str, description: str) -> web.Response:
    return web.json_response({"error": code, "error_description": description}, status=400)


def _base_url(request: web.Request) -> str:
    forwarded = request.headers.get("X-Forwarded-Proto", "").split(",")[0].strip().lower()
    scheme = forwarded if forwarded in ("http", "https") else request.scheme
    return f"{scheme}://{request.host}"


async def _form(request: web.Request) -> dict[str, Any]:
    if request.content_type == "application/json":
        return await _body(request)
    return dict(await request.post())


async def _body(request: web.Request) -> dict[str, Any]:
    return await read_json(request)
