"""The administration and provisioning protocols: messages on the relay's ``/admin`` and
``/provision`` websocket endpoints, as pydantic models.

Same framing as the device and laptop protocol (:mod:`relay.protocol.wire`): one JSON
object per text message, requests carry an ``id`` and get exactly one ``result`` or
``error`` reply (the same :class:`~relay.protocol.wire.Result` and
:class:`~relay.protocol.wire.Error` objects and error codes).

* ``/admin`` (subprotocol :data:`ADMIN_SUBPROTOCOL`) is opened with an administrator
  credential (``Authorization: Bearer …``). Each request is checked against the
  administrator's role and recorded in the audit log.
* ``/provision`` (subprotocol :data:`PROVISION_SUBPROTOCOL`) needs no credential: a
  device that is not yet provisioned has none. It carries only ``provision`` (MAC and
  verification code, throttled per device and per source address) and ``reset`` (a
  device giving its credential back at a factory reset).

Pure data, no I/O; shared by the relay, the admin command line and the beacon.
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal, Union

from pydantic import Field, SecretStr, TypeAdapter, field_serializer

from relay.protocol.wire import (
    DeviceKind,
    DeviceMode,
    Identifier,
    Message,
    PairingInfo,
    RequestId,
    ResultType,
    declared,
    kind_of,
)

ADMIN_PATH = "/admin"
PROVISION_PATH = "/provision"
ADMIN_SUBPROTOCOL = "btogether.admin.v1"
PROVISION_SUBPROTOCOL = "btogether.provision.v1"
MAX_CSV_CHARS = 2 * 1024 * 1024

AdminRole = Literal["owner", "device_admin"]
# What only an owner may ask; a device administrator may ask everything else, in its tenant.
OWNER_ONLY_REQUESTS = frozenset(
    {
        "tenant.create",
        "tenant.rename",
        "tenant.delete",
        "admin.create",
        "user.create",
        "user.rename",
        "user.delete",
        "credential.issue",
        "credential.revoke",
        "password.set",
        "setup_link.create",
        "admin.list",
        "sso.set",
        "sso.remove",
        "sso.check",
        "sso_link.remove",
        "user_email.set",
        "user_email.import",
    }
)
DeviceStateName = Literal["waiting_for_activation", "waiting_for_sign_in", "signed_in"]
Name = Annotated[str, Field(min_length=1, max_length=128)]
Location = Annotated[str, Field(max_length=200)]
MacText = Annotated[str, Field(min_length=1, max_length=32)]
CodeText = Annotated[str, Field(min_length=1, max_length=32)]
Cursor = Annotated[
    str,
    Field(max_length=256, description="the ``next`` of the previous page; omit for the first"),
]
PageSize = Annotated[int, Field(ge=1, le=5000, description="at most this many per page")]


class AdminRequest(Message):
    """Base of every admin and provisioning request.

    Declaring one is writing its class: its ``result``, its ``type`` and fields, and (for
    the unauthenticated ``/provision`` endpoint) ``endpoint = "provision"``. The unions,
    the result table and the documentation are derived from the declarations.
    """

    endpoint: ClassVar[Literal["admin", "provision"]] = "admin"
    result: ClassVar[ResultType]
    type: str
    id: RequestId


# --- admin endpoint: descriptors ---------------------------------------------------------


class AdminInfo(Message):
    admin_id: str
    name: str
    role: AdminRole
    tenant_id: str | None = Field(description="the tenant a device administrator manages")


class TenantInfo(Message):
    id: str
    name: str
    default_policy_id: str | None


class UserInfo(Message):
    id: str
    tenant_id: str
    name: str
    policy_id: str | None


class DeviceInfo(Message):
    id: str
    tenant_id: str
    name: str
    mac: str | None
    location: str
    kind: DeviceKind
    mode: DeviceMode
    state: DeviceStateName
    user_id: str | None
    policy_id: str | None
    online: bool = False
    console_of: str | None = Field(default=None, description="the room a console controls")
    locked_out_until: float | None = Field(
        default=None,
        description="someone has been guessing codes for this device; the alert lasts until then",
    )
    lockout_reason: str | None = Field(default=None, description="what the guessing alert was")


class PolicyInfo(Message):
    id: str
    tenant_id: str
    name: str
    allow_better_together: Literal["Enabled", "Disabled"]
    proximity_join: Literal["auto", "prompt", "off"]
    beaconing: bool
    auto_confirm: bool
    is_default: bool = False


class ConsoleInfo(Message):
    console_id: str
    console_name: str
    room_id: str
    room_name: str
    created_at: float


class AuditEntry(Message):
    seq: int
    at: float
    actor: str
    tenant_id: str | None
    action: str
    target: str
    outcome: str
    detail: dict[str, object]


class AdminCredentialInfo(Message):
    id: str = Field(description="ac_…; revoke it with credential.revoke")
    created_at: float
    revoked_at: float | None


class AdminListing(Message):
    admin: AdminInfo
    created_at: float
    credentials: list[AdminCredentialInfo]


class RowProblem(Message):
    line: int
    message: str


# --- admin endpoint: results -------------------------------------------------------------


class Tenants(Message):
    tenants: list[TenantInfo]


class AdminCreated(Message):
    admin: AdminInfo
    credential_id: str
    token: str = Field(description="shown once; only its hash is stored")


class Users(Message):
    users: list[UserInfo]
    next: str | None = Field(default=None, description="pass as ``after`` for the next page")


class Admins(Message):
    admins: list[AdminListing]


class CredentialIssued(Message):
    credential_id: str
    user_id: str
    token: str = Field(description="shown once; only its hash is stored")


class Devices(Message):
    devices: list[DeviceInfo]
    next: str | None = Field(default=None, description="pass as ``after`` for the next page")


class ImportResult(Message):
    added: list[DeviceInfo]
    errors: list[RowProblem]


class VerificationCode(Message):
    device_id: str
    code: str = Field(description="6 digits; shown once")
    expires_at: float


class LoginCode(Message):
    device_id: str
    code: str
    expires_at: float


class Policies(Message):
    policies: list[PolicyInfo]


class Consoles(Message):
    consoles: list[ConsoleInfo]


class Pairings(Message):
    pairings: list[PairingInfo]
    next: str | None = Field(default=None, description="pass as ``after`` for the next page")


class AuditEntries(Message):
    entries: list[AuditEntry]


class Removed(Message):
    removed: str


class LoginInfo(Message):
    subject_kind: PersonKind
    subject_id: str
    login: str


class SetupLink(Message):
    subject_kind: PersonKind
    subject_id: str
    login: str
    path: str = Field(description="open it on the relay's address: /setup#<token>; shown once")
    expires_at: float


class CredentialInfo(Message):
    credential_id: str
    user_id: str
    user_name: str
    laptop_name: str | None = Field(description="set when the laptop signed in with a code")
    created_at: float
    revoked_at: float | None


class Credentials(Message):
    credentials: list[CredentialInfo]


class Assigned(Message):
    subject_kind: Literal["user", "device", "tenant"]
    subject_id: str
    policy_id: str | None


# --- provisioning endpoint ------------------------------------------------------------


class ProvisionResult(Message):
    """What the device stores (owner-only): its credential and identity key."""

    device_id: str
    tenant_id: str
    organisation: str
    credential: str = Field(description="bearer credential for the device protocol; secret")
    identity_key: str = Field(description="128-bit EID identity key, hex; secret")
    rotation_exponent: int


class Provision(AdminRequest):
    """A device presents its MAC address and the verification code typed on it."""

    endpoint: ClassVar[Literal["admin", "provision"]] = "provision"
    result: ClassVar[ResultType] = ProvisionResult
    type: Literal["provision"] = "provision"
    mac: MacText
    code: CodeText


class Reset(AdminRequest):
    """A device being factory-reset gives its credential back (it is revoked)."""

    endpoint: ClassVar[Literal["admin", "provision"]] = "provision"
    result: ClassVar[ResultType] = Removed
    type: Literal["reset"] = "reset"
    credential: Annotated[str, Field(min_length=1, max_length=256)]





# --- admin endpoint: requests -------------------------------------------------------------

TenantScope = Annotated[
    Identifier | None,
    Field(description="the tenant; a device administrator may omit it (their own)"),
]


class WhoAmI(AdminRequest):
    result: ClassVar[ResultType] = AdminInfo
    type: Literal["whoami"] = "whoami"


class TenantCreate(AdminRequest):
    result: ClassVar[ResultType] = TenantInfo
    type: Literal["tenant.create"] = "tenant.create"
    name: Name


class TenantList(AdminRequest):
    result: ClassVar[ResultType] = Tenants
    type: Literal["tenant.list"] = "tenant.list"


class AdminCreate(AdminRequest):
    """Create an administrator and issue its credential (owners only)."""

    result: ClassVar[ResultType] = AdminCreated
    type: Literal["admin.create"] = "admin.create"
    name: Name
    role: AdminRole
    tenant_id: TenantScope = None


class UserCreate(AdminRequest):
    result: ClassVar[ResultType] = UserInfo
    type: Literal["user.create"] = "user.create"
    tenant_id: TenantScope = None
    name: Name
    policy_id: Identifier | None = None


class UserList(AdminRequest):
    result: ClassVar[ResultType] = Users
    type: Literal["user.list"] = "user.list"
    tenant_id: TenantScope = None
    after: Cursor | None = None
    limit: PageSize = 500


class CredentialIssue(AdminRequest):
    """A laptop sign-in credential for a user (printed once)."""

    result: ClassVar[ResultType] = CredentialIssued
    type: Literal["credential.issue"] = "credential.issue"
    user_id: Identifier


class CredentialRevoke(AdminRequest):
    """Revoke a user's (``c_…``) or an administrator's (``ac_…``) credential; connections
    opened with it are closed at once (4001)."""

    result: ClassVar[ResultType] = Removed
    type: Literal["credential.revoke"] = "credential.revoke"
    credential_id: Identifier


class AdminList(AdminRequest):
    """Administrators with their credentials (owners only)."""

    result: ClassVar[ResultType] = Admins
    type: Literal["admin.list"] = "admin.list"


class DeviceAdd(AdminRequest):
    result: ClassVar[ResultType] = DeviceInfo
    type: Literal["device.add"] = "device.add"
    tenant_id: TenantScope = None
    mac: MacText
    location: Location = ""
    name: Name | None = None
    kind: DeviceKind = "desk_phone"


class DeviceImport(AdminRequest):
    """A device list CSV (columns ``MAC address``, ``Name``, ``Kind``, ``Location``, the
    first required); all-or-nothing unless ``skip_bad_rows``."""

    result: ClassVar[ResultType] = ImportResult
    type: Literal["device.import"] = "device.import"
    tenant_id: TenantScope = None
    csv: Annotated[str, Field(max_length=MAX_CSV_CHARS)]
    kind: DeviceKind | None = Field(
        default=None,
        description="the kind of the rows whose Kind cell is empty (or without a Kind "
        "column); a row with no kind at all is a bad row",
    )
    skip_bad_rows: bool = False


class DeviceList(AdminRequest):
    result: ClassVar[ResultType] = Devices
    type: Literal["device.list"] = "device.list"
    tenant_id: TenantScope = None
    state: DeviceStateName | None = None
    after: Cursor | None = None
    limit: PageSize = 500


class DeviceRemove(AdminRequest):
    result: ClassVar[ResultType] = Removed
    type: Literal["device.remove"] = "device.remove"
    device_id: Identifier


class CodeCreate(AdminRequest):
    """A 6-digit verification code for a device waiting for activation (voids the old one)."""

    result: ClassVar[ResultType] = VerificationCode
    type: Literal["code.create"] = "code.create"
    device_id: Identifier


class LoginCodeGet(AdminRequest):
    """Ask a connected device waiting for sign-in for the login code it shows."""

    result: ClassVar[ResultType] = LoginCode
    type: Literal["login_code.get"] = "login_code.get"
    device_id: Identifier


class DeviceSignIn(AdminRequest):
    """Sign an account in to a device with the device's login code."""

    result: ClassVar[ResultType] = DeviceInfo
    type: Literal["device.sign_in"] = "device.sign_in"
    device_id: Identifier
    user_id: Identifier
    code: CodeText
    mode: DeviceMode | None = Field(
        default=None,
        description="personal (a user's phone), meeting_room (a room's resource account) or "
        "common_area (the device's own account); default by kind",
    )


class DeviceSignOut(AdminRequest):
    result: ClassVar[ResultType] = DeviceInfo
    type: Literal["device.sign_out"] = "device.sign_out"
    device_id: Identifier


class PolicyCreate(AdminRequest):
    result: ClassVar[ResultType] = PolicyInfo
    type: Literal["policy.create"] = "policy.create"
    tenant_id: TenantScope = None
    name: Name
    allow_better_together: Literal["Enabled", "Disabled"] = "Enabled"
    proximity_join: Literal["auto", "prompt", "off"] = "auto"
    beaconing: bool = True
    auto_confirm: bool = False
    default: bool = False


class PolicyUpdate(AdminRequest):
    """Change a policy; connected devices it applies to are told at once."""

    result: ClassVar[ResultType] = PolicyInfo
    type: Literal["policy.update"] = "policy.update"
    policy_id: Identifier
    allow_better_together: Literal["Enabled", "Disabled"] | None = None
    proximity_join: Literal["auto", "prompt", "off"] | None = None
    beaconing: bool | None = None
    auto_confirm: bool | None = None


class PolicyAssign(AdminRequest):
    """Give a user, a device, or the tenant (its default) a policy; null clears it."""

    result: ClassVar[ResultType] = Assigned
    type: Literal["policy.assign"] = "policy.assign"
    subject_kind: Literal["user", "device", "tenant"]
    subject_id: Identifier
    policy_id: Identifier | None


class PolicyList(AdminRequest):
    result: ClassVar[ResultType] = Policies
    type: Literal["policy.list"] = "policy.list"
    tenant_id: TenantScope = None


class ConsolePair(AdminRequest):
    """Pair a touch console (a provisioned device) with a room system."""

    result: ClassVar[ResultType] = ConsoleInfo
    type: Literal["console.pair"] = "console.pair"
    console_id: Identifier
    room_id: Identifier


class ConsoleUnpair(AdminRequest):
    result: ClassVar[ResultType] = Removed
    type: Literal["console.unpair"] = "console.unpair"
    console_id: Identifier


class ConsoleList(AdminRequest):
    result: ClassVar[ResultType] = Consoles
    type: Literal["console.list"] = "console.list"
    tenant_id: TenantScope = None


class PairingList(AdminRequest):
    result: ClassVar[ResultType] = Pairings
    type: Literal["pairing.list"] = "pairing.list"
    tenant_id: TenantScope = None
    after: Cursor | None = None
    limit: PageSize = 500


class TenantRename(AdminRequest):
    result: ClassVar[ResultType] = TenantInfo
    type: Literal["tenant.rename"] = "tenant.rename"
    tenant_id: Identifier
    name: Name


class TenantDelete(AdminRequest):
    """Delete a tenant with no accounts and no devices left; its policies and device
    administrators go with it."""

    result: ClassVar[ResultType] = Removed
    type: Literal["tenant.delete"] = "tenant.delete"
    tenant_id: Identifier


class UserRename(AdminRequest):
    """Rename an account; names are unique within a tenant (ignoring case)."""

    result: ClassVar[ResultType] = UserInfo
    type: Literal["user.rename"] = "user.rename"
    user_id: Identifier
    name: Name


class UserDelete(AdminRequest):
    """Delete an account that no device is signed in as: its laptop credentials are revoked
    and its pairings removed."""

    result: ClassVar[ResultType] = Removed
    type: Literal["user.delete"] = "user.delete"
    user_id: Identifier


class DeviceRename(AdminRequest):
    """Rename a device (and, if given, change its location); it is told at once."""

    result: ClassVar[ResultType] = DeviceInfo
    type: Literal["device.rename"] = "device.rename"
    device_id: Identifier
    name: Name
    location: Location | None = None


class PolicyRename(AdminRequest):
    result: ClassVar[ResultType] = PolicyInfo
    type: Literal["policy.rename"] = "policy.rename"
    policy_id: Identifier
    name: Name


class PolicyDelete(AdminRequest):
    """Delete a policy: accounts, devices and the tenant default that had it fall back to
    the tenant's default (or the built-in one); connected devices are told."""

    result: ClassVar[ResultType] = Removed
    type: Literal["policy.delete"] = "policy.delete"
    policy_id: Identifier


class AuditList(AdminRequest):
    """The newest entries, oldest first; ``before`` (a seq) pages further back."""

    result: ClassVar[ResultType] = AuditEntries
    type: Literal["audit.list"] = "audit.list"
    tenant_id: TenantScope = None
    limit: Annotated[int, Field(ge=1, le=1000)] = 100
    before: Annotated[int | None, Field(ge=1)] = None


# --- admin endpoint: sign-in for people (the browser's admin center and device login) -------

PersonKind = Literal["admin", "user"]
Login = Annotated[str, Field(min_length=1, max_length=128)]


class PasswordSet(AdminRequest):
    """Give an administrator or a user a login and password for the browser pages (owners).
    Their browser sessions end."""

    result: ClassVar[ResultType] = LoginInfo
    type: Literal["password.set"] = "password.set"
    subject_kind: PersonKind
    subject_id: Identifier
    login: Login | None = Field(
        default=None, description="default: their current login, else their name"
    )
    password: Annotated[SecretStr, Field(min_length=10, max_length=1024)]

    @field_serializer("password", when_used="json")
    def _send_password(self, value: SecretStr) -> str:
        # On the wire the password travels in clear (inside TLS); everywhere else (the
        # audit log's detail, reprs) it stays masked.
        return value.get_secret_value()


class SetupLinkCreate(AdminRequest):
    """A one-time link with which an administrator or a user chooses their own password
    (owners); valid 72 hours."""

    result: ClassVar[ResultType] = SetupLink
    type: Literal["setup_link.create"] = "setup_link.create"
    subject_kind: PersonKind
    subject_id: Identifier
    login: Login | None = Field(
        default=None, description="default: their current login, else their name"
    )


class CredentialList(AdminRequest):
    """The laptop credentials of a tenant's users (issued, or approved on the device login
    page), revoked ones included."""

    result: ClassVar[ResultType] = Credentials
    type: Literal["credential.list"] = "credential.list"
    tenant_id: TenantScope = None
    user_id: Identifier | None = None



# --- admin endpoint: identity provider sign-in, results ------------------------------------


class SsoInfo(Message):
    id: str
    tenant_id: str
    label: str
    issuer: str
    client_id: str
    has_client_secret: bool = Field(description="the secret itself is never sent back")
    scopes: list[str]
    subject_claim: str
    email_claim: str
    name_claim: str
    groups_claim: str
    allowed_domains: list[str]
    allowed_groups: list[str]
    owner_groups: list[str]
    device_admin_groups: list[str]
    create_users: bool
    require_verified_email: bool
    auth_params: dict[str, str]
    enabled: bool
    redirect_path: str = Field(description="register <relay address> + this at the provider")
    created_at: float
    updated_at: float
    checked_at: float | None


class SsoProviders(Message):
    providers: list[SsoInfo]


class SsoCheckReport(Message):
    tenant_id: str
    checked: int = Field(description="people the provider was asked about")
    still_allowed: int
    disabled: list[str] = Field(description="names of the people it no longer accepts")
    credentials_revoked: int
    not_checkable: int = Field(description="linked people with no refresh token to ask with")
    error: str | None = Field(description="why the provider could not be asked (nothing changed)")


class SsoLinkInfo(Message):
    subject_kind: PersonKind
    subject_id: str
    name: str
    provider_id: str
    subject: str = Field(description="the person's identifier at the provider")
    email: str | None
    created_at: float
    signed_in_at: float | None
    checked_at: float | None
    disabled_at: float | None = Field(description="when the provider stopped accepting them")


class SsoLinks(Message):
    links: list[SsoLinkInfo]


class UserEmail(Message):
    user_id: str
    user_name: str
    email: str | None


class UserEmails(Message):
    emails: list[UserEmail]
    errors: list[RowProblem] = Field(default=[], description="an import's bad lines (then "
                                     "nothing was changed)")


# --- admin endpoint: sign-in with the tenant's identity provider (OpenID Connect) ------------

ClaimName = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:/-]+$")]
GroupName = Annotated[str, Field(min_length=1, max_length=256)]
Email = Annotated[str, Field(min_length=3, max_length=254)]


class SsoSet(AdminRequest):
    """Configure (or replace) the tenant's OpenID Connect provider (owners). The issuer's
    discovery document is fetched and checked first unless ``check`` is false; nothing is
    stored if it fails. The provider must allow the redirect URI ``<relay>/oidc/callback``."""

    result: ClassVar[ResultType] = SsoInfo
    type: Literal["sso.set"] = "sso.set"
    tenant_id: TenantScope = None
    label: Name = Field(default="your organisation's account", description="the button says "
                        "“Sign in with <label>”")
    issuer: Annotated[str, Field(min_length=8, max_length=512)]
    client_id: Annotated[str, Field(min_length=1, max_length=256)]
    client_secret: Annotated[SecretStr | None, Field(max_length=1024)] = Field(
        default=None, description="omit to keep the stored one (none: a public client)"
    )
    clear_client_secret: bool = Field(default=False, description="store no secret at all")
    scopes: list[Annotated[str, Field(min_length=1, max_length=64)]] = Field(
        default=["openid", "email", "profile", "offline_access"], max_length=20
    )
    subject_claim: ClaimName = "sub"
    email_claim: ClaimName = "email"
    name_claim: ClaimName = "name"
    groups_claim: ClaimName = "groups"
    allowed_domains: list[Annotated[str, Field(min_length=1, max_length=253)]] = Field(
        default=[], max_length=100, description="email domains that may sign in (empty: any)"
    )
    allowed_groups: list[GroupName] = Field(
        default=[], max_length=100, description="groups that may sign in (empty: any)"
    )
    owner_groups: list[GroupName] = Field(
        default=[], max_length=100, description="members become owners (of every tenant)"
    )
    device_admin_groups: list[GroupName] = Field(
        default=[], max_length=100, description="members become the tenant's device administrators"
    )
    create_users: bool = Field(
        default=False, description="create an account at a person's first sign-in"
    )
    require_verified_email: bool = Field(
        default=True, description="match imported emails and domains only when email_verified"
    )
    auth_params: dict[
        Annotated[str, Field(min_length=1, max_length=64)],
        Annotated[str, Field(max_length=256)],
    ] = Field(default={}, max_length=10, description="extra authorization request parameters")
    enabled: bool = True
    check: bool = Field(default=True, description="fetch the discovery document first")

    @field_serializer("client_secret", when_used="json")
    def _send_secret(self, value: SecretStr | None) -> str | None:
        # In clear on the wire (inside TLS) only; masked in the audit log and reprs.
        return value.get_secret_value() if value is not None else None


class SsoList(AdminRequest):
    """The identity providers of the tenant (an owner naming no tenant: of every tenant)."""

    result: ClassVar[ResultType] = SsoProviders
    type: Literal["sso.list"] = "sso.list"
    tenant_id: TenantScope = None


class SsoRemove(AdminRequest):
    """Remove the tenant's provider and every link to it (owners); local sign-in stays."""

    result: ClassVar[ResultType] = Removed
    type: Literal["sso.remove"] = "sso.remove"
    tenant_id: TenantScope = None


class SsoCheck(AdminRequest):
    """Ask the provider now whether each linked person may still sign in (owners): one it
    no longer accepts loses their browser sessions and laptop credentials at once."""

    result: ClassVar[ResultType] = SsoCheckReport
    type: Literal["sso.check"] = "sso.check"
    tenant_id: TenantScope = None


class SsoLinkList(AdminRequest):
    """Who signs in through the tenant's provider, and as whom there."""

    result: ClassVar[ResultType] = SsoLinks
    type: Literal["sso_link.list"] = "sso_link.list"
    tenant_id: TenantScope = None


class SsoLinkRemove(AdminRequest):
    """Forget a person's link to their provider identity (owners); their next provider
    sign-in matches them again (by email) or makes a new account."""

    result: ClassVar[ResultType] = Removed
    type: Literal["sso_link.remove"] = "sso_link.remove"
    subject_kind: PersonKind
    subject_id: Identifier


class UserEmailSet(AdminRequest):
    """Import one user's email (owners): their first provider sign-in with that verified
    email links them to this account."""

    result: ClassVar[ResultType] = UserEmail
    type: Literal["user_email.set"] = "user_email.set"
    user_id: Identifier
    email: Email | None = Field(default=None, description="none: forget the email")


class UserEmailImport(AdminRequest):
    """Import users' emails from CSV lines ``account,email`` (owners); the account is a
    name or id of the tenant. All lines or none: a bad line changes nothing."""

    result: ClassVar[ResultType] = UserEmails
    type: Literal["user_email.import"] = "user_email.import"
    tenant_id: TenantScope = None
    csv: Annotated[str, Field(max_length=MAX_CSV_CHARS)]


class UserEmailList(AdminRequest):
    """The emails imported for the tenant's users."""

    result: ClassVar[ResultType] = UserEmails
    type: Literal["user_email.list"] = "user_email.list"
    tenant_id: TenantScope = None


ALL_REQUESTS: tuple[type[AdminRequest], ...] = declared(AdminRequest)
ADMIN_REQUESTS = tuple(r for r in ALL_REQUESTS if r.endpoint == "admin")
PROVISION_REQUESTS = tuple(r for r in ALL_REQUESTS if r.endpoint == "provision")
# The discriminated unions pydantic validates with, derived from the declarations above.
AnyAdminRequest: Any = Annotated[Union.__getitem__(ADMIN_REQUESTS), Field(discriminator="type")]
ADMIN_REQUEST_ADAPTER: TypeAdapter[AdminRequest] = TypeAdapter(AnyAdminRequest)
AnyProvisionRequest: Any = Annotated[
    Union.__getitem__(PROVISION_REQUESTS), Field(discriminator="type")
]
PROVISION_REQUEST_ADAPTER: TypeAdapter[AdminRequest] = TypeAdapter(AnyProvisionRequest)
ADMIN_RESULT_TYPES: dict[str, type[Message]] = {kind_of(r): r.result for r in ALL_REQUESTS}

__all__ = ["Identifier", "ResultType", "kind_of"]
