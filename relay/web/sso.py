"""Sign-in with a tenant's OpenID provider: the HTTP side (the rules are :mod:`relay.web.sso_core`).

* :class:`ProviderClient` talks to providers: the discovery document, the JWKS (cached,
  fetched again when a token names a key it lacks — the provider rotated its keys), and
  the token endpoint. Its failures are :class:`ProviderError`: *unreachable* (nothing
  answered, or a 5xx), *misconfigured* (a wrong issuer, client id or secret), *refused*
  (the provider said no, e.g. ``invalid_grant``).
* :class:`SsoSignIn` is a "way to sign in" of the redirect kind: ``GET /oidc/start/<id>``
  sends the browser to the provider with the authorization-code flow and PKCE (S256), a
  fresh ``state`` and ``nonce`` kept server-side (hashed state, used once, bound to the
  browser by a cookie); ``GET /oidc/callback`` takes that state once, exchanges the code,
  checks the ID token (:mod:`relay.web.id_token`), decides who the person is in the
  provider's tenant (never another), writes the account and link in one transaction, and
  starts the same browser session as a password sign-in. Every refusal is a page with one
  clear sentence and one log event; nothing is written before the token is checked.
* :class:`SsoCheck` asks each provider, with each linked person's refresh token, whether
  it still accepts them: a person the provider refuses (disabled, deleted, out of the
  allowed groups) loses their browser sessions and, through the admin service's
  ``credential.revoke``, their laptops' credentials — connections close at once.
"""

from __future__ import annotations

import base64
import html
import json
import os
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal
from urllib.parse import quote, urlencode, urlsplit

import aiohttp
import structlog
from aiohttp import web
from joserfc.jwk import KeySet

from relay.admin.service import AdminService
from relay.domain.errors import RelayError
from relay.domain.model import AdminRecord, User
from relay.domain.service import Delivery
from relay.domain.sessions import SessionEnd
from relay.domain.store import RelayStore, StoreConflict
from relay.protocol import admin_wire as aw
from relay.web.account_admin import hash_secret
from relay.web.accounts import Accounts, SsoLinkRecord, SsoRequestRecord
from relay.web.id_token import (
    Expected,
    TokenRefused,
    UnknownKey,
    allowed_algorithms,
    check_id_token,
    parse_key_set,
)
from relay.web.sessions import Sessions, is_secure
from relay.web.signin import MethodInfo, Person
from relay.web.sso_core import (
    CALLBACK_PATH,
    START_PATH,
    Discovery,
    Identity,
    NotAdmitted,
    ProviderRecord,
    Role,
    SsoConfigError,
    admit,
    discovery_url,
    identity_of,
    parse_discovery,
    s256,
    safe_next,
    token_auth_method,
    usable_email,
    user_step,
)

log = structlog.get_logger("relay.web.sso")

BROWSER_COOKIE = "btg_sso"
REQUEST_TTL_S = 600.0
DISCOVERY_TTL_S = 3600.0
JWKS_TTL_S = 3600.0
JWKS_REFETCH_S = 2.0  # an unknown key fetches the JWKS again, at most this often
MAX_DOCUMENT_BYTES = 256 * 1024
MAX_REFRESH_TOKEN_CHARS = 8192
CHECK_EVERY_S = 900.0
# Whoever the check acts as, in the audit log (it revokes with the owners' request).
CHECK_ACTOR = AdminRecord("relay", "identity provider check", "owner", None, 0.0)

ErrorKind = Literal["unreachable", "misconfigured", "refused"]


class ProviderError(Exception):
    """The provider could not be used; ``message`` is fit for a page and the log."""

    def __init__(self, kind: ErrorKind, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message


@dataclass
class _Cached:
    at: float
    value: Any


class ProviderClient:
    """Discovery, keys and tokens from providers over HTTPS (HTTP on loopback)."""

    def __init__(self, *, timeout_s: float = 10.0, monotonic: Callable[[], float] = time.monotonic):
        self._timeout = aiohttp.ClientTimeout(total=timeout_s, connect=min(5.0, timeout_s))
        self._monotonic = monotonic
        self._http: aiohttp.ClientSession | None = None
        self._discovery: dict[str, _Cached] = {}
        self._jwks: dict[str, _Cached] = {}
        self._jwks_again: dict[str, float] = {}

    async def start(self) -> None:
        if self._http is None:
            self._http = aiohttp.ClientSession(
                timeout=self._timeout, headers={"User-Agent": "btogether-relay"}
            )

    async def stop(self) -> None:
        if self._http is not None:
            await self._http.close()
            self._http = None

    def _session(self) -> aiohttp.ClientSession:
        if self._http is None:
            raise ProviderError("unreachable", "the relay is not serving yet")
        return self._http

    async def _json(self, response: aiohttp.ClientResponse, what: str) -> Any:
        body = await response.content.read(MAX_DOCUMENT_BYTES + 1)
        if len(body) > MAX_DOCUMENT_BYTES:
            raise ProviderError(
                "misconfigured", f"{what} is larger than {MAX_DOCUMENT_BYTES} bytes"
            )
        try:
            return json.loads(body)
        except ValueError:
            if response.status >= 500:
                raise ProviderError(
                    "unreachable", f"{what} failed (HTTP {response.status})"
                ) from None
            raise ProviderError(
                "misconfigured", f"{what} is not JSON (HTTP {response.status})"
            ) from None

    @staticmethod
    def _unreachable(url: str, exc: BaseException) -> ProviderError:
        host = urlsplit(url).netloc
        if isinstance(exc, TimeoutError):
            return ProviderError("unreachable", f"{host} did not answer in time")
        if isinstance(exc, aiohttp.ClientConnectorError):
            error = exc.os_error
            # asyncio's strerror repeats the address; the errno's own text says what happened.
            reason = os.strerror(error.errno) if error.errno else (
                error.strerror or type(error).__name__
            )
            return ProviderError("unreachable", f"cannot connect to {host} ({reason.lower()})")
        return ProviderError("unreachable", f"{host} could not be reached ({type(exc).__name__})")

    async def _get(self, url: str, what: str) -> Any:
        try:
            async with self._session().get(url, headers={"Accept": "application/json"}) as r:
                if r.status >= 500:
                    raise ProviderError("unreachable", f"{what} failed (HTTP {r.status})")
                if r.status != 200:
                    raise ProviderError("misconfigured", f"{what} answered HTTP {r.status}")
                return await self._json(r, what)
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise self._unreachable(url, exc) from None

    async def discovery(self, issuer: str, *, fresh: bool = False) -> Discovery:
        """The issuer's discovery document (cached an hour unless ``fresh``)."""
        cached = self._discovery.get(issuer)
        if cached and not fresh and self._monotonic() - cached.at < DISCOVERY_TTL_S:
            value: Discovery = cached.value
            return value
        document = await self._get(discovery_url(issuer), "the provider's discovery document")
        try:
            found = parse_discovery(document, issuer)
        except SsoConfigError as exc:
            raise ProviderError("misconfigured", str(exc)) from None
        self._discovery[issuer] = _Cached(self._monotonic(), found)
        return found

    async def keys(self, discovery: Discovery, *, again: bool = False) -> KeySet:
        """The provider's signing keys; ``again`` fetches them anew (a key was unknown),
        at most once per :data:`JWKS_REFETCH_S` seconds per provider."""
        cached = self._jwks.get(discovery.jwks_uri)
        now = self._monotonic()
        if cached is not None:
            fresh = now - cached.at < JWKS_TTL_S
            last_again = self._jwks_again.get(discovery.jwks_uri)
            if (not again and fresh) or (
                again and last_again is not None and now - last_again < JWKS_REFETCH_S
            ):
                value: KeySet = cached.value
                return value
            if again:
                self._jwks_again[discovery.jwks_uri] = now
        document = await self._get(discovery.jwks_uri, "the provider's JWKS")
        try:
            keys = parse_key_set(document)
        except TokenRefused as exc:
            raise ProviderError("misconfigured", str(exc)) from None
        self._jwks[discovery.jwks_uri] = _Cached(self._monotonic(), keys)
        if cached is not None:
            log.info("sso_keys_fetched_again", jwks_uri=discovery.jwks_uri, keys=len(keys.keys))
        return keys

    async def token(
        self, provider: ProviderRecord, discovery: Discovery, form: Mapping[str, str]
    ) -> dict[str, Any]:
        """A token endpoint request, authenticated as the relay's client."""
        data = dict(form)
        headers = {"Accept": "application/json"}
        method = token_auth_method(discovery, provider.client_secret is not None)
        if method == "client_secret_basic":
            assert provider.client_secret is not None
            # RFC 6749 §2.3.1: both parts form-encoded before Basic.
            pair = f"{quote(provider.client_id, safe='')}:{quote(provider.client_secret, safe='')}"
            headers["Authorization"] = "Basic " + base64.b64encode(pair.encode()).decode()
        else:
            data["client_id"] = provider.client_id
            if method == "client_secret_post":
                assert provider.client_secret is not None
                data["client_secret"] = provider.client_secret
        url = discovery.token_endpoint
        try:
            async with self._session().post(url, data=data, headers=headers) as r:
                answer = await self._json(r, "the provider's token endpoint")
                status = r.status
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise self._unreachable(url, exc) from None
        if not isinstance(answer, dict):
            raise ProviderError("misconfigured", "the token endpoint's answer is not a JSON object")
        if status == 200:
            return answer
        if status >= 500:
            raise ProviderError("unreachable", f"the token endpoint failed (HTTP {status})")
        error = str(answer.get("error", f"HTTP {status}"))[:64]
        detail = str(answer.get("error_description", ""))[:200]
        said = f"{error}: {detail}" if detail else error
        if error in ("invalid_client", "unauthorized_client"):
            raise ProviderError(
                "misconfigured",
                f"the provider refused the relay's client id or secret ({said}); an "
                "administrator must check the provider settings",
            )
        if error == "invalid_grant":
            raise ProviderError("refused", f"the provider refused ({said})")
        raise ProviderError("misconfigured", f"the provider refused the token request ({said})")

    async def id_token_claims(
        self, provider: ProviderRecord, discovery: Discovery, token: object, nonce: str | None,
        now: float,
    ) -> dict[str, Any]:
        """The checked claims of an ID token (:class:`TokenRefused` if it must not be
        believed); a key the JWKS lacks makes it fetch the JWKS again, once."""
        if not isinstance(token, str):
            raise TokenRefused("the provider sent no ID token")
        expected = Expected(provider.issuer, provider.client_id, nonce)
        algorithms = allowed_algorithms(discovery.id_token_algorithms)
        try:
            return check_id_token(token, await self.keys(discovery), expected, now,
                                  algorithms=algorithms)
        except UnknownKey:
            keys = await self.keys(discovery, again=True)
            return check_id_token(token, keys, expected, now, algorithms=algorithms)


# --- the pages' side: sign-in and sign-out ------------------------------------------------------


class SignInFailed(Exception):
    """A refused provider sign-in: a title and a sentence for the page, a reason for the log."""

    def __init__(self, reason: str, message: str, *, status: int = 400,
                 title: str = "Sign-in refused") -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.status = status
        self.title = title


def base_url(request: web.BaseRequest) -> str:
    return f"{'https' if is_secure(request) else 'http'}://{request.host}"


def page(status: int, title: str, message: str, *, back: str = "/signin") -> web.Response:
    """A small page with one message (the relay's stylesheet, no script)."""
    body = (
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">"
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
        f"<title>{html.escape(title)} · btogether</title>"
        "<link rel=\"stylesheet\" href=\"/static/style.css\"></head><body><div class=\"card\">"
        f"<h1>{html.escape(title)}</h1>"
        f"<div class=\"notice error\" role=\"alert\" id=\"sso-error\">{html.escape(message)}</div>"
        f"<p><a class=\"button\" href=\"{html.escape(back)}\">Back to sign-in</a></p>"
        "</div></body></html>"
    )
    return web.Response(status=status, text=body, content_type="text/html",
                        headers={"Cache-Control": "no-store"})


def person_label(person: Person) -> str:
    return f"{person.name} ({person.kind} {person.id})"


def _id(prefix: str) -> str:
    return prefix + secrets.token_hex(8)


def _same_name(a: str, b: str) -> bool:
    return " ".join(a.split()).casefold() == " ".join(b.split()).casefold()


class SsoSignIn:
    """The ``/oidc/…`` routes and the sign-in methods the sign-in page shows."""

    def __init__(
        self,
        store: RelayStore,
        accounts: Accounts,
        client: ProviderClient,
        sessions: Sessions,
        clock: Callable[[], float],
        *,
        directory_changed: Callable[[float], Any],
        token_source: Callable[[int], str] = secrets.token_urlsafe,
        new_id: Callable[[str], str] = _id,
    ) -> None:
        self.store = store
        self.accounts = accounts
        self.client = client
        self.sessions = sessions
        self.clock = clock
        self._directory_changed = directory_changed
        self._token = token_source
        self._new_id = new_id

    def add_routes(self, router: web.UrlDispatcher) -> None:
        router.add_get(START_PATH + "{provider_id}", self._start)
        router.add_get(CALLBACK_PATH, self._callback)

    async def methods(self) -> list[MethodInfo]:
        """A button per enabled provider of a tenant that still exists."""
        out = []
        for provider in await self.accounts.sso_providers():
            if provider.enabled and await self.store.tenant(provider.tenant_id) is not None:
                out.append(
                    MethodInfo(
                        f"sso:{provider.id}",
                        "redirect",
                        f"Sign in with {provider.label}",
                        START_PATH + provider.id,
                    )
                )
        return out

    async def _usable(self, provider_id: str) -> ProviderRecord | None:
        provider = await self.accounts.sso_provider(provider_id)
        if provider is None or not provider.enabled:
            return None
        if await self.store.tenant(provider.tenant_id) is None:
            return None
        return provider

    # --- to the provider -------------------------------------------------------------------------
    async def _start(self, request: web.Request) -> web.StreamResponse:
        provider = await self._usable(request.match_info["provider_id"][:64])
        if provider is None:
            return page(404, "Sign-in not available",
                        "This sign-in is not configured (any more); use another way to sign in.")
        try:
            # Fetched afresh: a provider that is down is said so here, not by the browser.
            discovery = await self.client.discovery(provider.issuer, fresh=True)
        except ProviderError as exc:
            log.warning("sso_provider_unusable", provider=provider.id, tenant=provider.tenant_id,
                        kind=exc.kind, reason=exc.message, step="start")
            return page(502, f"{provider.label} cannot be used",
                        f"{provider.label} cannot be used right now: {exc.message}. Try again "
                        "later, or sign in with your password.")
        now = self.clock()
        state, nonce, verifier = self._token(32), self._token(32), self._token(48)
        browser = request.cookies.get(BROWSER_COOKIE)
        if not browser or len(browser) > 128:
            browser = self._token(32)
        redirect_uri = base_url(request) + CALLBACK_PATH
        await self.accounts.add_sso_request(
            SsoRequestRecord(
                hash_secret(state), provider.id, nonce, verifier, redirect_uri,
                safe_next(request.query.get("next")) or "", hash_secret(browser), now,
                now + REQUEST_TTL_S,
            )
        )
        params = {
            **dict(provider.auth_params),
            "response_type": "code",
            "client_id": provider.client_id,
            "redirect_uri": redirect_uri,
            "scope": " ".join(provider.scopes),
            "state": state,
            "nonce": nonce,
            "code_challenge": s256(verifier),
            "code_challenge_method": "S256",
        }
        endpoint = discovery.authorization_endpoint
        location = endpoint + ("&" if "?" in endpoint else "?") + urlencode(params)
        response = web.Response(status=302, headers={"Location": location})
        # Lax, not Strict: it must come back with the provider's redirect to the callback.
        response.set_cookie(BROWSER_COOKIE, browser, path="/oidc/", httponly=True,
                            samesite="Lax", secure=is_secure(request), max_age=int(REQUEST_TTL_S))
        log.info("sso_started", provider=provider.id, tenant=provider.tenant_id)
        return response

    # --- back from the provider ------------------------------------------------------------------
    async def _callback(self, request: web.Request) -> web.StreamResponse:
        now = self.clock()
        state = request.query.get("state", "")
        if not state or len(state) > 128:
            log.warning("sso_refused", reason="no state", source=request.remote)
            return page(400, "Sign-in refused", "The answer from the identity provider is "
                        "incomplete; start the sign-in again.")
        browser = request.cookies.get(BROWSER_COOKIE, "")[:128]
        # Taken once, and only by the browser that started it (so a state copied to another
        # browser neither signs it in nor spoils the sign-in for its owner).
        record = await self.accounts.take_sso_request(
            hash_secret(state), hash_secret(browser), now
        )
        if record is None:
            log.warning("sso_refused", reason="unknown, used or expired state, or another browser",
                        source=request.remote)
            return page(400, "Sign-in refused",
                        "This sign-in answer was already used, has expired, or belongs to a "
                        "sign-in started in another browser; start the sign-in again.")
        provider = await self._usable(record.provider_id)
        if provider is None:
            return page(404, "Sign-in not available",
                        "This sign-in is not configured (any more); use another way to sign in.")
        try:
            person = await self._complete(provider, record, request.query, now)
        except SignInFailed as exc:
            log.warning("sso_refused", provider=provider.id, tenant=provider.tenant_id,
                        reason=exc.reason)
            return page(exc.status, exc.title, exc.message)
        target = record.next_path or ("/admin/" if person.kind == "admin" else "/devicelogin")
        response = web.Response(status=303, headers={"Location": target})
        await self.sessions.begin(request, response, person, f"sso:{provider.id}")
        response.del_cookie(BROWSER_COOKIE, path="/oidc/")
        log.info("signed_in", method="sso", provider=provider.id, kind=person.kind,
                 person=person.id, role=person.role)
        return response

    async def _complete(
        self, provider: ProviderRecord, record: SsoRequestRecord, query: Mapping[str, str],
        now: float,
    ) -> Person:
        label = provider.label
        if "error" in query:
            error = query.get("error", "")[:64]
            detail = query.get("error_description", "")[:200]
            raise SignInFailed(
                f"provider error {error}",
                f"{label} did not sign you in ({error}{': ' + detail if detail else ''}).",
            )
        try:
            discovery = await self.client.discovery(provider.issuer)
        except ProviderError as exc:
            raise self._unusable(provider, exc) from None
        issuer = query.get("iss")
        if (issuer is not None and issuer != provider.issuer) or (
            issuer is None and discovery.authorization_response_iss
        ):
            # RFC 9207: an answer from another issuer (a mix-up) is not ours to use.
            raise SignInFailed("iss mismatch in the authorization response",
                               f"The answer did not come from {label}; start again.")
        code = query.get("code", "")
        if not code or len(code) > 2048:
            raise SignInFailed("no code", f"{label} sent no sign-in code; start again.")
        try:
            tokens = await self.client.token(
                provider,
                discovery,
                {
                    "grant_type": "authorization_code",
                    "code": code,
                    "redirect_uri": record.redirect_uri,
                    "code_verifier": record.code_verifier,
                },
            )
            claims = await self.client.id_token_claims(
                provider, discovery, tokens.get("id_token"), record.nonce, now
            )
        except ProviderError as exc:
            raise self._unusable(provider, exc) from None
        except TokenRefused as exc:
            raise SignInFailed(
                f"bad ID token: {exc}",
                f"{label} sent an answer the relay cannot trust: {exc}. Nobody was signed in.",
            ) from None
        try:
            identity = identity_of(claims, provider.claims)
            role = admit(provider, identity, want_user=record.next_path.startswith("/devicelogin"))
            refresh = tokens.get("refresh_token")
            if not isinstance(refresh, str) or len(refresh) > MAX_REFRESH_TOKEN_CHARS:
                refresh = None
            if role == "user":
                return await self._user(provider, identity, refresh, now)
            return await self._admin(provider, identity, role, refresh, now)
        except NotAdmitted as exc:
            raise SignInFailed(f"not admitted: {exc}", f"{label} signed you in, but {exc}.",
                               status=403) from None
        except StoreConflict:
            raise SignInFailed("conflicting write", "Another sign-in changed your account at the "
                               "same moment; start the sign-in again.", status=409) from None

    @staticmethod
    def _unusable(provider: ProviderRecord, exc: ProviderError) -> SignInFailed:
        status = 502 if exc.kind == "unreachable" else 400
        return SignInFailed(
            f"{exc.kind}: {exc.message}",
            f"{provider.label} cannot sign you in: {exc.message}. Nobody was signed in"
            + ("; try again later." if exc.kind == "unreachable" else "."),
            status=status,
            title=(
                "Sign-in refused" if exc.kind == "refused" else f"{provider.label} cannot be used"
            ),
        )

    def _link(self, provider: ProviderRecord, identity: Identity, kind: Literal["admin", "user"],
              subject_id: str, refresh: str | None, now: float) -> SsoLinkRecord:
        return SsoLinkRecord(provider.id, identity.subject, kind, subject_id, provider.tenant_id,
                             identity.email, now, now, refresh)

    async def _audit(self, provider: ProviderRecord, now: float, actor: str, action: str,
                     target: str, detail: dict[str, Any]) -> None:
        await self.store.add_audit(now, f"{actor} (through {provider.label})", provider.tenant_id,
                                   action, target, "ok", {"provider": provider.id, **detail})

    async def _admin(
        self, provider: ProviderRecord, identity: Identity, role: Role, refresh: str | None,
        now: float,
    ) -> Person:
        assert role != "user"
        tenant_id = None if role == "owner" else provider.tenant_id
        link = await self.accounts.sso_link(provider.id, identity.subject, "admin")
        admin = await self.accounts.admin(link.subject_id) if link else None
        if admin is None:
            if link is not None:  # the administrator was removed: the link is stale
                await self.accounts.remove_sso_link("admin", link.subject_id)
            admin = AdminRecord(self._new_id("a_"), identity.name, role, tenant_id, now)
            await self.accounts.add_sso_admin(
                admin, self._link(provider, identity, "admin", admin.id, refresh, now)
            )
            await self._audit(provider, now, identity.name, "sso.admin_created", admin.id,
                              {"role": role, "subject": identity.subject})
        else:
            if (admin.role, admin.tenant_id) != (role, tenant_id):
                await self.accounts.set_admin_role(admin.id, role, tenant_id)
                await self._audit(provider, now, admin.name, "sso.role_changed", admin.id,
                                  {"from": admin.role, "to": role})
                admin = replace(admin, role=role, tenant_id=tenant_id)
            assert link is not None
            await self.accounts.put_sso_link(replace(
                link, email=identity.email, signed_in_at=now,
                refresh_token=refresh or link.refresh_token, disabled_at=None,
            ))
        return Person("admin", admin.id, admin.name, admin.role, admin.tenant_id)

    async def _user(
        self, provider: ProviderRecord, identity: Identity, refresh: str | None, now: float
    ) -> Person:
        tenant_id = provider.tenant_id
        link = await self.accounts.sso_link(provider.id, identity.subject, "user")
        user = await self.store.user(link.subject_id) if link else None
        if user is not None and user.tenant_id != tenant_id:
            user = None  # never another tenant's account, whatever a link says
        if link is not None and user is None:
            await self.accounts.remove_sso_link("user", link.subject_id)
            link = None
        email = usable_email(provider, identity)
        by_email = None
        if link is None and email is not None:
            found = await self.accounts.user_by_email(tenant_id, email)
            candidate = await self.store.user(found) if found else None
            by_email = candidate if candidate and candidate.tenant_id == tenant_id else None
        step = user_step(
            provider,
            linked=user is not None,
            email_user_id=by_email.id if by_email else None,
            email_user_linked_elsewhere=bool(
                by_email and await self.accounts.sso_link_of("user", by_email.id)
            ),
        )
        if step == "signed_in":
            assert link is not None and user is not None
            await self.accounts.put_sso_link(replace(
                link, email=identity.email, signed_in_at=now,
                refresh_token=refresh or link.refresh_token, disabled_at=None,
            ))
        elif step == "link_email":
            assert by_email is not None
            user = by_email
            await self.accounts.put_sso_link(
                self._link(provider, identity, "user", user.id, refresh, now)
            )
            await self._audit(provider, now, identity.name, "sso.linked", user.id,
                              {"subject": identity.subject, "by": "email"})
        else:
            user = User(self._new_id("u_"), tenant_id, await self._free_name(tenant_id, identity))
            await self.accounts.add_sso_user(
                user, self._link(provider, identity, "user", user.id, refresh, now)
            )
            await self._audit(provider, now, identity.name, "sso.user_created", user.id,
                              {"subject": identity.subject})
            await self._directory_changed(now)
        return Person("user", user.id, user.name, "user", user.tenant_id)

    async def _free_name(self, tenant_id: str, identity: Identity) -> str:
        """The person's name, or with their email (or subject) when an account has it."""
        taken = [u.name for u in await self.store.users(tenant_id)]
        for name in (identity.name, f"{identity.name} ({identity.email or identity.subject})"):
            name = name[:128]
            if not any(_same_name(name, other) for other in taken):
                return name
        raise NotAdmitted(
            f"an account named {identity.name!r} exists already; ask an administrator to "
            "import your email for it"
        )

    # --- sign-out --------------------------------------------------------------------------------
    async def signout_offer(self, method: str, request: web.BaseRequest) -> dict[str, str] | None:
        """Where to sign out of the provider too (its end-session endpoint), if it has one."""
        if not method.startswith("sso:"):
            return None
        provider = await self.accounts.sso_provider(method[4:])
        if provider is None:
            return None
        try:
            discovery = await self.client.discovery(provider.issuer)
        except ProviderError:
            return None
        if discovery.end_session_endpoint is None:
            return None
        endpoint = discovery.end_session_endpoint
        params = urlencode({"client_id": provider.client_id,
                            "post_logout_redirect_uri": base_url(request) + "/signin"})
        return {"label": provider.label,
                "url": endpoint + ("&" if "?" in endpoint else "?") + params}


# --- the next check: does the provider still accept each linked person? -------------------------


@dataclass
class CheckResult:
    tenant_id: str
    checked: int = 0
    still_allowed: int = 0
    disabled: list[str] = field(default_factory=list)
    credentials_revoked: int = 0
    not_checkable: int = 0
    error: str | None = None
    deliveries: list[Delivery] = field(default_factory=list)
    ends: list[SessionEnd] = field(default_factory=list)

    @property
    def report(self) -> aw.SsoCheckReport:
        return aw.SsoCheckReport(
            tenant_id=self.tenant_id, checked=self.checked, still_allowed=self.still_allowed,
            disabled=list(self.disabled), credentials_revoked=self.credentials_revoked,
            not_checkable=self.not_checkable, error=self.error,
        )


class SsoCheck:
    """Asks a provider about its linked people with their refresh tokens (see module doc)."""

    def __init__(self, store: RelayStore, accounts: Accounts, client: ProviderClient) -> None:
        self.store = store
        self.accounts = accounts
        self.client = client

    async def check(self, provider: ProviderRecord, admin: AdminService, now: float) -> CheckResult:
        report = result = CheckResult(provider.tenant_id)
        links = [link for link in await self.accounts.sso_links(provider_id=provider.id)
                 if link.disabled_at is None]
        if not links:
            return result
        try:
            discovery = await self.client.discovery(provider.issuer, fresh=True)
        except ProviderError as exc:
            report.error = exc.message
            log.warning("sso_check_failed", provider=provider.id, tenant=provider.tenant_id,
                        reason=exc.message)
            return result
        for link in links:
            if not link.refresh_token:
                report.not_checkable += 1
                continue
            try:
                verdict, new_refresh = await self._ask(provider, discovery, link, now)
            except ProviderError as exc:
                # Down or misconfigured mid-way: stop; nobody loses anything over our trouble.
                report.error = exc.message
                log.warning("sso_check_failed", provider=provider.id, tenant=provider.tenant_id,
                            reason=exc.message)
                break
            report.checked += 1
            if verdict is None:
                report.still_allowed += 1
                await self.accounts.sso_checked(link, now, refresh_token=new_refresh,
                                                disabled=False)
                continue
            await self._disable(provider, link, verdict, admin, now, result)
        log.info("sso_checked", provider=provider.id, tenant=provider.tenant_id,
                 checked=report.checked, disabled=len(report.disabled),
                 revoked=report.credentials_revoked)
        return result

    async def _ask(
        self, provider: ProviderRecord, discovery: Discovery, link: SsoLinkRecord, now: float
    ) -> tuple[str | None, str | None]:
        """(why the person is no longer accepted, or None; a rotated refresh token)."""
        assert link.refresh_token is not None
        try:
            tokens = await self.client.token(
                provider, discovery,
                {"grant_type": "refresh_token", "refresh_token": link.refresh_token},
            )
        except ProviderError as exc:
            if exc.kind == "refused":
                return f"the provider no longer accepts them ({exc.message})", None
            raise
        refresh = tokens.get("refresh_token")
        refresh = refresh if isinstance(refresh, str) and len(refresh) <= MAX_REFRESH_TOKEN_CHARS \
            else None
        if "id_token" not in tokens:
            return None, refresh
        try:
            claims = await self.client.id_token_claims(provider, discovery, tokens["id_token"],
                                                       None, now)
            identity = identity_of(claims, provider.claims)
        except (TokenRefused, NotAdmitted) as exc:
            raise ProviderError(
                "misconfigured", f"a refreshed ID token was refused: {exc}"
            ) from None
        if identity.subject != link.subject:
            raise ProviderError("misconfigured", "a refreshed ID token is about someone else")
        try:
            role = admit(provider, identity, want_user=link.subject_kind == "user")
        except NotAdmitted as exc:
            return f"they may no longer sign in ({exc})", refresh
        if link.subject_kind == "admin" and role == "user":
            return "they are no longer in an administrators' group", refresh
        return None, refresh

    async def _disable(
        self, provider: ProviderRecord, link: SsoLinkRecord, why: str, admin: AdminService,
        now: float, result: CheckResult,
    ) -> None:
        await self.accounts.sso_checked(link, now, refresh_token=None, disabled=True)
        await self.accounts.end_sessions(link.subject_kind, link.subject_id)
        if link.subject_kind == "user":
            user = await self.store.user(link.subject_id)
            name = user.name if user else link.subject_id
            credentials = [
                c.credential.id
                for c in await self.accounts.laptop_credentials(link.tenant_id, link.subject_id)
                if c.credential.revoked_at is None
            ]
        else:
            record = await self.accounts.admin(link.subject_id)
            name = record.name if record else link.subject_id
            credentials = [c.id for c in await self.store.admin_credentials(link.subject_id)
                           if c.revoked_at is None]
        for credential_id in credentials:
            try:
                outcome = await admin.handle(
                    CHECK_ACTOR, aw.CredentialRevoke(id=0, credential_id=credential_id), now
                )
            except RelayError as exc:  # revoked meanwhile by someone else
                log.info("sso_revoke_skipped", credential=credential_id, reason=exc.message)
                continue
            result.deliveries += outcome.deliveries
            result.ends += outcome.ends
            result.credentials_revoked += 1
        result.disabled.append(name)
        await self.store.add_audit(
            now, CHECK_ACTOR.name, provider.tenant_id, "sso.disabled", link.subject_id, "ok",
            {"provider": provider.id, "subject": link.subject, "why": why,
             "credentials_revoked": len(credentials)},
        )
        log.warning("sso_person_disabled", provider=provider.id, tenant=provider.tenant_id,
                    kind=link.subject_kind, person=link.subject_id, why=why,
                    credentials_revoked=len(credentials))
