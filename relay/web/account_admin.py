"""The admin requests about people's sign-in: passwords, set-up links, laptop credentials.

:class:`AccountAdmin` adds ``password.set``, ``setup_link.create`` and ``credential.list``
to an :class:`~relay.admin.service.AdminService` (:meth:`AccountAdmin.handlers`), so the
command line (over ``/admin``) and the admin center (over HTTP) reach them through the
same role check and audit as every other admin action. Owners set passwords and make
set-up links; anyone may list the laptop credentials of the tenant they administer.
Another tenant's ids are "not found", as everywhere.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable

from relay.admin.outcome import AdminOutcome, Handler
from relay.domain.errors import RelayError
from relay.domain.handlers import handlers_of, handles
from relay.domain.model import AdminRecord
from relay.domain.store import RelayStore
from relay.protocol import admin_wire as aw
from relay.protocol.wire import ErrorCode
from relay.web.accounts import Accounts, SetupLinkRecord, SubjectKind, normalize_login
from relay.web.passwords import WeakPassword, check_password_rules, hash_async

SETUP_LINK_TTL_S = 72 * 3600.0
SETUP_PATH = "/setup"


def hash_secret(token: str) -> bytes:
    """How session tokens, set-up link tokens and device codes are stored."""
    return hashlib.sha256(token.encode("utf-8", "surrogateescape")).digest()


class AccountAdmin:
    def __init__(
        self,
        store: RelayStore,
        accounts: Accounts,
        *,
        token_source: Callable[[int], str] = secrets.token_urlsafe,
        setup_link_ttl_s: float = SETUP_LINK_TTL_S,
    ) -> None:
        self.store = store
        self.accounts = accounts
        self._token = token_source
        self._setup_ttl = setup_link_ttl_s

    def handlers(self) -> dict[str, Handler]:
        """The admin requests this serves, by type (its methods marked ``@handles``)."""
        return handlers_of(self)

    async def _person_name(self, admin: AdminRecord, kind: SubjectKind, subject_id: str) -> str:
        if kind == "admin":
            record = await self.accounts.admin(subject_id)
            if record is None:
                raise RelayError(ErrorCode.NOT_FOUND, f"no administrator {subject_id!r}")
            return record.name
        user = await self.store.user(subject_id)
        if user is None or (admin.role != "owner" and user.tenant_id != admin.tenant_id):
            raise RelayError(ErrorCode.NOT_FOUND, f"no user {subject_id!r}")
        return user.name

    @handles(aw.PasswordSet)
    async def _password_set(
        self, admin: AdminRecord, request: aw.PasswordSet, now: float
    ) -> AdminOutcome:
        name = await self._person_name(admin, request.subject_kind, request.subject_id)
        password = request.password.get_secret_value()
        try:
            check_password_rules(password)
        except WeakPassword as exc:
            raise RelayError(ErrorCode.INVALID_REQUEST, str(exc)) from None
        current = await self.accounts.login_of(request.subject_kind, request.subject_id)
        login = normalize_login(request.login or (current.login if current else name))
        await self.accounts.set_login(
            request.subject_kind, request.subject_id, login, await hash_async(password), now
        )
        # A new password ends the person's browser sessions (a reset after a leak).
        await self.accounts.end_sessions(request.subject_kind, request.subject_id)
        return AdminOutcome(
            aw.LoginInfo(
                subject_kind=request.subject_kind, subject_id=request.subject_id, login=login
            )
        )

    @handles(aw.SetupLinkCreate)
    async def _setup_link_create(
        self, admin: AdminRecord, request: aw.SetupLinkCreate, now: float
    ) -> AdminOutcome:
        name = await self._person_name(admin, request.subject_kind, request.subject_id)
        current = await self.accounts.login_of(request.subject_kind, request.subject_id)
        login = normalize_login(request.login or (current.login if current else name))
        if current is None or current.login != login:
            # Reserve the login now (so the link cannot fail later), keeping any password.
            await self.accounts.set_login(
                request.subject_kind,
                request.subject_id,
                login,
                current.password_hash if current else None,
                now,
            )
        token = self._token(32)
        expires_at = now + self._setup_ttl
        await self.accounts.add_setup_link(
            SetupLinkRecord(
                hash_secret(token),
                request.subject_kind,
                request.subject_id,
                login,
                now,
                expires_at,
            )
        )
        return AdminOutcome(
            aw.SetupLink(
                subject_kind=request.subject_kind,
                subject_id=request.subject_id,
                login=login,
                path=f"{SETUP_PATH}#{token}",
                expires_at=expires_at,
            )
        )

    @handles(aw.CredentialList)
    async def _credential_list(
        self, admin: AdminRecord, request: aw.CredentialList, now: float
    ) -> AdminOutcome:
        user = await self.store.user(request.user_id) if request.user_id else None
        if request.user_id is not None and (
            user is None or (admin.role != "owner" and user.tenant_id != admin.tenant_id)
        ):
            raise RelayError(ErrorCode.NOT_FOUND, f"no user {request.user_id!r}")
        if admin.role == "owner":
            tenant_id = request.tenant_id or (user.tenant_id if user else None)
            if tenant_id is None:
                raise RelayError(ErrorCode.INVALID_REQUEST, "an owner must name the tenant")
            if await self.store.tenant(tenant_id) is None:
                raise RelayError(ErrorCode.NOT_FOUND, f"no tenant {tenant_id!r}")
        else:
            assert admin.tenant_id is not None
            if request.tenant_id is not None and request.tenant_id != admin.tenant_id:
                raise RelayError(ErrorCode.NOT_FOUND, f"no tenant {request.tenant_id!r}")
            tenant_id = admin.tenant_id
        if user is not None and user.tenant_id != tenant_id:
            raise RelayError(ErrorCode.NOT_FOUND, f"no user {request.user_id!r}")
        names = {u.id: u.name for u in await self.store.users(tenant_id)}
        listed = await self.accounts.laptop_credentials(tenant_id, request.user_id)
        return AdminOutcome(
            aw.Credentials(
                credentials=[
                    aw.CredentialInfo(
                        credential_id=c.credential.id,
                        user_id=c.credential.subject_id,
                        user_name=names.get(c.credential.subject_id, c.credential.subject_id),
                        laptop_name=c.client_name,
                        created_at=c.credential.created_at,
                        revoked_at=c.credential.revoked_at,
                    )
                    for c in listed
                ]
            )
        )
