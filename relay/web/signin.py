"""Ways to sign in, and who a signed-in person is.

A *way to sign in* (:class:`SignInMethod`) turns something a person presents into a
:class:`Person` — or refuses with one message that does not tell a wrong password from
an unknown login. The pages never name a method: they ask the relay which ways there
are (:meth:`SignInMethod.describe`: a form of fields posted to an address, or a button
that leads to an address) and render those. Local passwords (:class:`PasswordSignIn`)
are the embedded default; an OpenID Connect provider becomes another method of the
"redirect" kind that adds its own routes and ends in the same session start.

The throttle (:func:`after_failure`, :func:`locked_until`) is a pure core over
:class:`~relay.web.accounts.FailureRecord`: so many failures within a window lock a key
(a login, or a source address with a higher limit) for a while; the records are durable.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Protocol

import structlog

from relay.domain.store import RelayStore
from relay.web.accounts import Accounts, FailureRecord, SubjectKind, normalize_login
from relay.web.passwords import MAX_PASSWORD_CHARS, verify_async

log = structlog.get_logger("relay.web.signin")

REFUSED = "wrong login or password"


@dataclass(frozen=True, slots=True)
class Person:
    """Someone signed in: an administrator (owner or device administrator) or a user."""

    kind: SubjectKind
    id: str
    name: str
    role: Literal["owner", "device_admin", "user"]
    tenant_id: str | None


@dataclass(frozen=True, slots=True)
class MethodInfo:
    """How the sign-in page offers a method: ``form`` posts ``fields`` to ``action``
    as JSON; ``redirect`` is a button that opens ``action``."""

    id: str
    kind: Literal["form", "redirect"]
    label: str
    action: str
    fields: tuple[str, ...] = ()


class SignInRefused(Exception):
    """The message is safe to show: it says nothing about which part was wrong."""


class SignInMethod(Protocol):
    id: str

    def describe(self) -> MethodInfo: ...


# --- throttle ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ThrottleRules:
    window_s: float = 15 * 60.0
    login_failures: int = 5
    source_failures: int = 20
    lockout_s: float = 15 * 60.0


def locked_until(record: FailureRecord | None, now: float) -> float | None:
    if record is None or record.locked_until is None or record.locked_until <= now:
        return None
    return record.locked_until


def after_failure(
    record: FailureRecord | None, key: str, limit: int, now: float, rules: ThrottleRules
) -> FailureRecord:
    """The record after one more failure: a new window once the old one has passed, and a
    lock-out when the window holds ``limit`` failures."""
    if record is None or now - record.first_at > rules.window_s:
        record = FailureRecord(key, 0, now)
    failures = record.failures + 1
    until = now + rules.lockout_s if failures >= limit else None
    return FailureRecord(key, failures, record.first_at, until)


@dataclass
class Throttle:
    accounts: Accounts
    rules: ThrottleRules = field(default_factory=ThrottleRules)

    def _keys(self, login: str, source: str) -> tuple[tuple[str, int], ...]:
        return (
            (f"login:{normalize_login(login)}", self.rules.login_failures),
            (f"source:{source}", self.rules.source_failures),
        )

    async def check(self, login: str, source: str, now: float) -> None:
        for key, _ in self._keys(login, source):
            if locked_until(await self.accounts.failures(key), now) is not None:
                raise SignInRefused("too many failed sign-ins; try again in 15 minutes")

    async def failed(self, login: str, source: str, now: float) -> None:
        for key, limit in self._keys(login, source):
            record = after_failure(await self.accounts.failures(key), key, limit, now, self.rules)
            await self.accounts.put_failures(record)
            if record.locked_until is not None:
                log.warning("signin_locked_out", key=key.split(":")[0], failures=record.failures)

    async def succeeded(self, login: str) -> None:
        await self.accounts.clear_failures(self._keys(login, "")[0][0])


# --- who a subject is -------------------------------------------------------------------------


async def person_of(
    store: RelayStore, accounts: Accounts, kind: SubjectKind, subject_id: str
) -> Person | None:
    """The person behind a login or session, as the directory says *now* (None if gone)."""
    if kind == "admin":
        admin = await accounts.admin(subject_id)
        if admin is None:
            return None
        return Person("admin", admin.id, admin.name, admin.role, admin.tenant_id)
    user = await store.user(subject_id)
    if user is None:
        return None
    return Person("user", user.id, user.name, "user", user.tenant_id)


# --- local passwords ----------------------------------------------------------------------------


class PasswordSignIn:
    """Sign in with a login and a password set by an owner or through a set-up link."""

    id = "password"

    def __init__(self, store: RelayStore, accounts: Accounts, throttle: Throttle) -> None:
        self.store = store
        self.accounts = accounts
        self.throttle = throttle

    def describe(self) -> MethodInfo:
        return MethodInfo(
            self.id,
            "form",
            "Sign in with your login and password",
            "/api/signin/password",
            ("login", "password"),
        )

    async def sign_in(self, login: str, password: str, source: str, now: float) -> Person:
        if not login.strip() or len(login) > 256 or len(password) > MAX_PASSWORD_CHARS:
            raise SignInRefused(REFUSED)
        await self.throttle.check(login, source, now)
        record = await self.accounts.login(login)
        # Verified even for an unknown login, so the time taken does not tell them apart.
        ok = await verify_async(password, record.password_hash if record else None)
        person = (
            await person_of(self.store, self.accounts, record.subject_kind, record.subject_id)
            if ok and record is not None
            else None
        )
        if person is not None:
            # Someone their organisation's provider disabled is out by every way in.
            link = await self.accounts.sso_link_of(person.kind, person.id)
            if link is not None and link.disabled_at is not None:
                person = None
        if person is None:
            await self.throttle.failed(login, source, now)
            log.info("signin_refused", method=self.id, source=source)
            raise SignInRefused(REFUSED)
        await self.throttle.succeeded(login)
        return person
