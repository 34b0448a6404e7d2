"""Browser sessions: the cookie, its record, and the CSRF checks.

A session is a 256-bit random token in an ``HttpOnly``, ``SameSite=Strict`` cookie
(``Secure`` when the page came over TLS, directly or through the TLS front end's
``X-Forwarded-Proto``); only its hash is stored, with the person it belongs to, the way
they signed in, and a CSRF secret. Every state-changing request carries that secret in
the ``X-CSRF-Token`` header (the pages read it from ``GET /api/session``); a request
that changes something without it is refused. Before sign-in a *pre-session* cookie
plays the same part for the sign-in and set-up forms (double submit). Each request
re-reads the person from the directory, so a removed administrator's session ends.
"""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Callable
from dataclasses import dataclass

from aiohttp import web

from relay.domain.store import RelayStore
from relay.web.account_admin import hash_secret
from relay.web.accounts import Accounts, SessionRecord
from relay.web.signin import Person, person_of

COOKIE = "btg_session"
PRE_COOKIE = "btg_pre"
CSRF_HEADER = "X-CSRF-Token"
IDLE_S = 8 * 3600.0  # a session unused this long ends
TOUCH_EVERY_S = 60.0


@dataclass(frozen=True, slots=True)
class Current:
    session: SessionRecord
    person: Person


def is_secure(request: web.BaseRequest) -> bool:
    forwarded = request.headers.get("X-Forwarded-Proto", "").split(",")[0].strip().lower()
    return request.secure or forwarded == "https"


def _same(a: str | None, b: str | None) -> bool:
    return bool(a) and bool(b) and hmac.compare_digest(str(a), str(b))


class Sessions:
    def __init__(
        self,
        store: RelayStore,
        accounts: Accounts,
        clock: Callable[[], float],
        *,
        token_source: Callable[[int], str] = secrets.token_urlsafe,
    ) -> None:
        self.store = store
        self.accounts = accounts
        self.clock = clock
        self._token = token_source

    def _set_cookie(self, request: web.BaseRequest, response: web.StreamResponse,
                    name: str, value: str) -> None:
        response.set_cookie(
            name,
            value,
            path="/",
            httponly=True,
            samesite="Strict",
            secure=is_secure(request),
        )

    # --- before sign-in ------------------------------------------------------------------------
    def pre_token(self, request: web.BaseRequest, response: web.StreamResponse) -> str:
        """The pre-session CSRF token (made, and its cookie set, if the browser has none)."""
        token = request.cookies.get(PRE_COOKIE)
        if not token or len(token) > 128:
            token = self._token(32)
            self._set_cookie(request, response, PRE_COOKIE, token)
        return token

    def pre_csrf_ok(self, request: web.BaseRequest) -> bool:
        return _same(request.cookies.get(PRE_COOKIE), request.headers.get(CSRF_HEADER))

    # --- sessions --------------------------------------------------------------------------------
    async def begin(
        self, request: web.BaseRequest, response: web.StreamResponse, person: Person, method: str
    ) -> SessionRecord:
        token = self._token(32)
        now = self.clock()
        record = SessionRecord(
            hash_secret(token),
            person.kind,
            person.id,
            self._token(32),
            method,
            now,
            now,
            now + IDLE_S,
        )
        await self.accounts.add_session(record)
        self._set_cookie(request, response, COOKIE, token)
        return record

    async def current(self, request: web.BaseRequest) -> Current | None:
        token = request.cookies.get(COOKIE)
        if not token or len(token) > 128:
            return None
        token_hash = hash_secret(token)
        record = await self.accounts.session(token_hash)
        now = self.clock()
        if record is None:
            return None
        if record.expires_at <= now:
            await self.accounts.end_session(token_hash)
            return None
        person = await person_of(self.store, self.accounts, record.subject_kind, record.subject_id)
        if person is None:
            await self.accounts.end_session(token_hash)
            return None
        if now - record.seen_at >= TOUCH_EVERY_S:
            await self.accounts.touch_session(token_hash, now, now + IDLE_S)
        return Current(record, person)

    @staticmethod
    def csrf_ok(request: web.BaseRequest, current: Current) -> bool:
        return _same(current.session.csrf, request.headers.get(CSRF_HEADER))

    async def end(
        self, response: web.StreamResponse, current: Current, *, everywhere: bool
    ) -> int:
        if everywhere:
            ended = await self.accounts.end_sessions(current.person.kind, current.person.id)
        else:
            await self.accounts.end_session(current.session.token_hash)
            ended = 1
        response.del_cookie(COOKIE, path="/")
        return ended
