"""The admin requests about tenants' identity providers and the people linked to them.

:class:`SsoAdmin` serves ``sso.set`` / ``sso.list`` / ``sso.remove`` / ``sso.check``,
``sso_link.list`` / ``sso_link.remove`` and ``user_email.set`` / ``user_email.import`` /
``user_email.list`` for :class:`~relay.admin.service.AdminService`, which checks the role
(changes are owners' only) and writes the audit log; the command line and the admin center
reach them alike. It is built *with* the admin service (an extension of it) because
``sso.check`` revokes laptop credentials through the service's own ``credential.revoke``.

A configuration is checked before it is stored: the issuer's discovery document must be
reachable and name that issuer, unless the owner says not to check. Changing the issuer or
the subject claim drops every link to the old provider (a subject means nothing at another
issuer), and one issuer's client id serves one tenant only.
"""

from __future__ import annotations

import csv
import io
import secrets
from collections.abc import Callable

from relay.admin.outcome import AdminOutcome, Handler
from relay.admin.service import AdminService
from relay.domain.errors import RelayError
from relay.domain.handlers import handlers_of, handles
from relay.domain.model import AdminRecord, User
from relay.domain.store import RelayStore, StoreConflict
from relay.protocol import admin_wire as aw
from relay.protocol.wire import ErrorCode
from relay.web.accounts import Accounts
from relay.web.sso import ProviderClient, ProviderError, SsoCheck
from relay.web.sso_core import (
    CALLBACK_PATH,
    ClaimNames,
    ProviderRecord,
    SsoConfigError,
    check_issuer,
    group_list,
    normalize_domain,
    normalize_email,
)

RESERVED_PARAMS = frozenset({
    "response_type", "client_id", "redirect_uri", "scope", "state", "nonce",
    "code_challenge", "code_challenge_method",
})


def _invalid(message: str) -> RelayError:
    return RelayError(ErrorCode.INVALID_REQUEST, message)


def provider_info(p: ProviderRecord) -> aw.SsoInfo:
    return aw.SsoInfo(
        id=p.id,
        tenant_id=p.tenant_id,
        label=p.label,
        issuer=p.issuer,
        client_id=p.client_id,
        has_client_secret=p.client_secret is not None,
        scopes=list(p.scopes),
        subject_claim=p.claims.subject,
        email_claim=p.claims.email,
        name_claim=p.claims.name,
        groups_claim=p.claims.groups,
        allowed_domains=list(p.allowed_domains),
        allowed_groups=list(p.allowed_groups),
        owner_groups=list(p.owner_groups),
        device_admin_groups=list(p.device_admin_groups),
        create_users=p.create_users,
        require_verified_email=p.require_verified_email,
        auth_params=dict(p.auth_params),
        enabled=p.enabled,
        redirect_path=CALLBACK_PATH,
        created_at=p.created_at,
        updated_at=p.updated_at,
        checked_at=p.checked_at,
    )


class SsoAdmin:
    def __init__(
        self,
        service: AdminService,
        store: RelayStore,
        accounts: Accounts,
        client: ProviderClient,
        check: SsoCheck,
        *,
        new_id: Callable[[str], str] = lambda prefix: prefix + secrets.token_hex(8),
    ) -> None:
        self.service = service
        self.store = store
        self.accounts = accounts
        self.client = client
        self.checker = check
        self._new_id = new_id

    def handlers(self) -> dict[str, Handler]:
        """The admin requests this serves, by type (its methods marked ``@handles``)."""
        return handlers_of(self)

    async def _tenant(self, admin: AdminRecord, tenant_id: str | None) -> str:
        return await self.service._tenant(admin, tenant_id)

    async def _provider(self, admin: AdminRecord, tenant_id: str | None) -> ProviderRecord:
        tenant = await self._tenant(admin, tenant_id)
        found = await self.accounts.sso_providers(tenant)
        if not found:
            raise RelayError(ErrorCode.NOT_FOUND, "this tenant has no identity provider")
        return found[0]

    # --- the provider ---------------------------------------------------------------------------
    @handles(aw.SsoSet)
    async def _set(self, admin: AdminRecord, request: aw.SsoSet, now: float) -> AdminOutcome:
        tenant_id = await self._tenant(admin, request.tenant_id)
        try:
            issuer = check_issuer(request.issuer)
            domains = tuple(dict.fromkeys(normalize_domain(d) for d in request.allowed_domains))
            allowed = group_list(request.allowed_groups, "allowed groups")
            owners = group_list(request.owner_groups, "owner groups")
            device_admins = group_list(request.device_admin_groups, "device administrator groups")
        except SsoConfigError as exc:
            raise _invalid(str(exc)) from None
        scopes = tuple(dict.fromkeys(s.strip() for s in request.scopes if s.strip()))
        if "openid" not in scopes:
            raise _invalid("the scopes must include openid")
        if any(" " in s for s in scopes):
            raise _invalid("a scope has no spaces; give each scope on its own")
        clash = RESERVED_PARAMS & set(request.auth_params)
        if clash:
            raise _invalid(f"the relay sets {', '.join(sorted(clash))} itself")
        client_id = request.client_id.strip()
        for other in await self.accounts.sso_providers():
            if other.tenant_id != tenant_id and (other.issuer, other.client_id) == (
                issuer, client_id
            ):
                tenant = await self.store.tenant(other.tenant_id)
                raise RelayError(
                    ErrorCode.WRONG_STATE,
                    f"this client of {issuer} already signs people in to the tenant "
                    f"{tenant.name if tenant else other.tenant_id!r}; register a separate "
                    "application (client) at the provider for each tenant",
                )
        if request.check:
            try:
                await self.client.discovery(issuer, fresh=True)
            except ProviderError as exc:
                raise _invalid(
                    f"the provider cannot be used: {exc.message}; nothing was saved (set it "
                    "without the check to save anyway)"
                ) from None
        existing = next(iter(await self.accounts.sso_providers(tenant_id)), None)
        claims = ClaimNames(request.subject_claim, request.email_claim, request.name_claim,
                            request.groups_claim)
        same_identities = existing is not None and (existing.issuer, existing.claims.subject) == (
            issuer, claims.subject
        )
        secret: str | None
        if request.clear_client_secret:
            secret = None
        elif request.client_secret is not None:
            secret = request.client_secret.get_secret_value()
        else:
            secret = existing.client_secret if existing and same_identities else None
        if existing is not None and not same_identities:
            # Subjects are only unique at their issuer (and per subject claim): old links
            # would let someone at the new provider sign in as someone else.
            await self.accounts.remove_sso_provider(existing.id)
        record = ProviderRecord(
            id=existing.id if existing and same_identities else self._new_id("sso_"),
            tenant_id=tenant_id,
            label=request.label.strip() or "your organisation's account",
            issuer=issuer,
            client_id=client_id,
            client_secret=secret,
            created_at=existing.created_at if existing and same_identities else now,
            updated_at=now,
            scopes=scopes,
            claims=claims,
            allowed_domains=domains,
            allowed_groups=allowed,
            owner_groups=owners,
            device_admin_groups=device_admins,
            create_users=request.create_users,
            require_verified_email=request.require_verified_email,
            auth_params=tuple(sorted(request.auth_params.items())),
            enabled=request.enabled,
            checked_at=existing.checked_at if existing and same_identities else None,
        )
        await self.accounts.put_sso_provider(record)
        return AdminOutcome(provider_info(record))

    @handles(aw.SsoList)
    async def _list(self, admin: AdminRecord, request: aw.SsoList, now: float) -> AdminOutcome:
        if admin.role == "owner" and request.tenant_id is None:
            providers = await self.accounts.sso_providers()
        else:
            providers = await self.accounts.sso_providers(
                await self._tenant(admin, request.tenant_id)
            )
        return AdminOutcome(aw.SsoProviders(providers=[provider_info(p) for p in providers]))

    @handles(aw.SsoRemove)
    async def _remove(self, admin: AdminRecord, request: aw.SsoRemove, now: float) -> AdminOutcome:
        provider = await self._provider(admin, request.tenant_id)
        await self.accounts.remove_sso_provider(provider.id)
        return AdminOutcome(aw.Removed(removed=provider.id))

    @handles(aw.SsoCheck)
    async def _check(self, admin: AdminRecord, request: aw.SsoCheck, now: float) -> AdminOutcome:
        provider = await self._provider(admin, request.tenant_id)
        result = await self.checker.check(provider, self.service, now)
        return AdminOutcome(result.report, result.deliveries, result.ends)

    # --- links -----------------------------------------------------------------------------------
    @handles(aw.SsoLinkList)
    async def _links(self, admin: AdminRecord, request: aw.SsoLinkList, now: float) -> AdminOutcome:
        tenant_id = await self._tenant(admin, request.tenant_id)
        names = {u.id: u.name for u in await self.store.users(tenant_id)}
        out = []
        for link in await self.accounts.sso_links(tenant_id=tenant_id):
            if link.subject_kind == "admin":
                record = await self.accounts.admin(link.subject_id)
                name = record.name if record else None
            else:
                name = names.get(link.subject_id)
            if name is None:
                continue  # the person was removed; the link is dropped at their next sign-in
            out.append(aw.SsoLinkInfo(
                subject_kind=link.subject_kind, subject_id=link.subject_id, name=name,
                provider_id=link.provider_id, subject=link.subject, email=link.email,
                created_at=link.created_at, signed_in_at=link.signed_in_at,
                checked_at=link.checked_at, disabled_at=link.disabled_at,
            ))
        return AdminOutcome(aw.SsoLinks(links=out))

    @handles(aw.SsoLinkRemove)
    async def _unlink(
        self, admin: AdminRecord, request: aw.SsoLinkRemove, now: float
    ) -> AdminOutcome:
        link = await self.accounts.sso_link_of(request.subject_kind, request.subject_id)
        if link is None or (admin.role != "owner" and link.tenant_id != admin.tenant_id):
            raise RelayError(ErrorCode.NOT_FOUND,
                             f"{request.subject_id!r} is not linked to an identity provider")
        await self.accounts.remove_sso_link(request.subject_kind, request.subject_id)
        return AdminOutcome(aw.Removed(removed=request.subject_id))

    # --- imported emails -------------------------------------------------------------------------
    async def _user(self, admin: AdminRecord, user_id: str) -> User:
        user = await self.store.user(user_id)
        if user is None or (admin.role != "owner" and user.tenant_id != admin.tenant_id):
            raise RelayError(ErrorCode.NOT_FOUND, f"no user {user_id!r}")
        return user

    @handles(aw.UserEmailSet)
    async def _email_set(
        self, admin: AdminRecord, request: aw.UserEmailSet, now: float
    ) -> AdminOutcome:
        user = await self._user(admin, request.user_id)
        email = None
        if request.email is not None:
            email = normalize_email(request.email)
            if email is None:
                raise _invalid(f"{request.email!r} is not an email address")
        try:
            await self.accounts.set_user_emails(user.tenant_id, {user.id: email})
        except StoreConflict as exc:
            raise RelayError(ErrorCode.WRONG_STATE, str(exc)) from None
        return AdminOutcome(aw.UserEmail(user_id=user.id, user_name=user.name, email=email))

    @handles(aw.UserEmailImport)
    async def _email_import(
        self, admin: AdminRecord, request: aw.UserEmailImport, now: float
    ) -> AdminOutcome:
        tenant_id = await self._tenant(admin, request.tenant_id)
        users = await self.store.users(tenant_id)
        by_id = {u.id: u for u in users}
        by_name: dict[str, list[User]] = {}
        for u in users:
            by_name.setdefault(" ".join(u.name.split()).casefold(), []).append(u)
        problems: list[aw.RowProblem] = []
        wanted: dict[str, str | None] = {}
        seen: dict[str, int] = {}
        for number, row in enumerate(csv.reader(io.StringIO(request.csv)), start=1):
            cells = [c.strip() for c in row]
            if not any(cells):
                continue
            if number == 1 and len(cells) >= 2 and normalize_email(cells[1]) is None \
                    and cells[1].casefold() in ("email", "e-mail", "mail"):
                continue  # a header line
            if len(cells) != 2:
                problems.append(aw.RowProblem(line=number, message="expected: account,email"))
                continue
            account, address = cells
            matches = [by_id[account]] if account in by_id else by_name.get(
                " ".join(account.split()).casefold(), [])
            email = normalize_email(address)
            if len(matches) != 1:
                problems.append(aw.RowProblem(
                    line=number,
                    message=f"no account {account!r} in this tenant" if not matches
                    else f"several accounts are called {account!r}; use the id",
                ))
            elif email is None:
                problems.append(aw.RowProblem(line=number, message=f"{address!r} is not an email"))
            elif email in seen:
                problems.append(aw.RowProblem(line=number,
                                              message=f"{email} is on line {seen[email]} too"))
            else:
                seen[email] = number
                wanted[matches[0].id] = email
        if problems:
            return AdminOutcome(aw.UserEmails(emails=[], errors=problems[:100]))
        try:
            await self.accounts.set_user_emails(tenant_id, wanted)
        except StoreConflict as exc:
            raise RelayError(ErrorCode.WRONG_STATE, f"{exc}; nothing was imported") from None
        return AdminOutcome(aw.UserEmails(emails=[
            aw.UserEmail(user_id=user_id, user_name=by_id[user_id].name, email=email)
            for user_id, email in wanted.items()
        ]))

    @handles(aw.UserEmailList)
    async def _email_list(
        self, admin: AdminRecord, request: aw.UserEmailList, now: float
    ) -> AdminOutcome:
        tenant_id = await self._tenant(admin, request.tenant_id)
        names = {u.id: u.name for u in await self.store.users(tenant_id)}
        emails = await self.accounts.user_emails(tenant_id)
        return AdminOutcome(aw.UserEmails(emails=[
            aw.UserEmail(user_id=user_id, user_name=names.get(user_id, user_id), email=email)
            for user_id, email in sorted(emails.items(), key=lambda kv: names.get(kv[0], kv[0]))
        ]))
