"""Signing in with a tenant's OpenID provider: the rules, without I/O.

A tenant may name one OpenID Connect provider (:class:`ProviderRecord`): its issuer (whose
discovery document says where everything else is), the relay's client id and secret there,
which claims identify a person, who may sign in (email domains, groups), and which groups
make a person an owner or a device administrator. Everything here is pure — a discovery
document, the claims of a checked ID token, and what the directory holds go in; what to do
comes out — so each rule is tested without a provider. :mod:`relay.web.sso` does the I/O.

Who a person becomes (:func:`admit`, :func:`user_step`):

* an owner if one of their groups is an owner group, else a device administrator of the
  provider's tenant if one is a device-administrator group, else a user of that tenant —
  on the device login page always the user (only users sign phones and laptops in);
* a user is found by the provider's subject (the link made at their first sign-in), else
  by the verified email an administrator imported for them in *this* tenant, else created
  if the tenant allows it; otherwise refused, with nothing written.

Owners administer every tenant: an owner group hands that to whoever the provider puts in
it, so only an owner can set one (the whole configuration is owner-only).
"""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import urlsplit

Role = Literal["owner", "device_admin", "user"]
DEFAULT_SCOPES = ("openid", "email", "profile", "offline_access")
MAX_GROUPS = 500
CALLBACK_PATH = "/oidc/callback"
START_PATH = "/oidc/start/"
# Where a sign-in may lead back to: the pages, nothing else (no open redirect).
NEXT_PREFIXES = ("/admin/", "/devicelogin")


class SsoConfigError(ValueError):
    """A provider setting or document that cannot work; the message is for the administrator."""


class NotAdmitted(Exception):
    """The provider vouched for the person, but this tenant does not let them in (message
    fit for the person)."""


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_url(url: str, what: str) -> str:
    """An https URL (http only on this machine's loopback, for tests and the demo)."""
    text = url.strip()
    try:
        parts = urlsplit(text)
        host = parts.hostname or ""
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError:
        raise SsoConfigError(f"{what} {url!r} is not a URL") from None
    if parts.scheme not in ("https", "http") or not host:
        raise SsoConfigError(f"{what} {url!r} must be an https:// URL")
    if parts.scheme == "http" and not _is_loopback(host):
        raise SsoConfigError(f"{what} {url!r} must use https (http only on 127.0.0.1)")
    if parts.fragment or parts.username or parts.password:
        raise SsoConfigError(f"{what} {url!r} must have no fragment or credentials")
    return text


def check_issuer(url: str) -> str:
    issuer = check_url(url, "the issuer")
    if urlsplit(issuer).query:
        raise SsoConfigError(f"the issuer {url!r} must have no query")
    return issuer


def discovery_url(issuer: str) -> str:
    return issuer.rstrip("/") + "/.well-known/openid-configuration"


def normalize_email(text: object) -> str | None:
    """An email address as compared (trimmed, case-folded), or None if it is not one."""
    if not isinstance(text, str):
        return None
    email = text.strip().casefold()
    local, at, domain = email.rpartition("@")
    if not at or not local or "." not in domain or len(email) > 254:
        return None
    if any(c.isspace() for c in email):
        return None
    return email


def normalize_domain(text: str) -> str:
    domain = text.strip().lstrip("@").casefold()
    if not domain or "." not in domain or any(c.isspace() or c in "/@" for c in domain):
        raise SsoConfigError(f"{text!r} is not an email domain (like contoso.com)")
    return domain


@dataclass(frozen=True, slots=True)
class ClaimNames:
    """Which ID token claims identify a person (Entra ID: ``oid`` is stable across apps)."""

    subject: str = "sub"
    email: str = "email"
    name: str = "name"
    groups: str = "groups"


@dataclass(frozen=True, slots=True)
class ProviderRecord:
    """A tenant's identity provider as stored. The client secret lives in the relay's
    database (owner-only on disk) and is never sent back by any request."""

    id: str
    tenant_id: str
    label: str
    issuer: str
    client_id: str
    client_secret: str | None
    created_at: float
    updated_at: float
    scopes: tuple[str, ...] = DEFAULT_SCOPES
    claims: ClaimNames = field(default_factory=ClaimNames)
    allowed_domains: tuple[str, ...] = ()
    allowed_groups: tuple[str, ...] = ()
    owner_groups: tuple[str, ...] = ()
    device_admin_groups: tuple[str, ...] = ()
    create_users: bool = False
    require_verified_email: bool = True
    auth_params: tuple[tuple[str, str], ...] = ()
    enabled: bool = True
    checked_at: float | None = None

    def settings_json(self) -> str:
        """Everything but the columns, as one JSON text (portable, no migration per option)."""
        return json.dumps(
            {
                "scopes": list(self.scopes),
                "claims": {
                    "subject": self.claims.subject,
                    "email": self.claims.email,
                    "name": self.claims.name,
                    "groups": self.claims.groups,
                },
                "allowed_domains": list(self.allowed_domains),
                "allowed_groups": list(self.allowed_groups),
                "owner_groups": list(self.owner_groups),
                "device_admin_groups": list(self.device_admin_groups),
                "create_users": self.create_users,
                "require_verified_email": self.require_verified_email,
                "auth_params": dict(self.auth_params),
            },
            sort_keys=True,
        )

    @staticmethod
    def settings_from_json(text: str) -> dict[str, Any]:
        data = json.loads(text)
        claims = data.get("claims", {})
        return {
            "scopes": tuple(data.get("scopes", DEFAULT_SCOPES)),
            "claims": ClaimNames(**{k: str(v) for k, v in claims.items()}),
            "allowed_domains": tuple(data.get("allowed_domains", ())),
            "allowed_groups": tuple(data.get("allowed_groups", ())),
            "owner_groups": tuple(data.get("owner_groups", ())),
            "device_admin_groups": tuple(data.get("device_admin_groups", ())),
            "create_users": bool(data.get("create_users", False)),
            "require_verified_email": bool(data.get("require_verified_email", True)),
            "auth_params": tuple(sorted(data.get("auth_params", {}).items())),
        }


# --- the provider's discovery document ----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Discovery:
    issuer: str
    authorization_endpoint: str
    token_endpoint: str
    jwks_uri: str
    end_session_endpoint: str | None
    id_token_algorithms: tuple[str, ...]
    token_auth_methods: tuple[str, ...]
    authorization_response_iss: bool


def _strings(value: Any) -> tuple[str, ...]:
    return tuple(v for v in value if isinstance(v, str)) if isinstance(value, list) else ()


def parse_discovery(document: Any, issuer: str) -> Discovery:
    """The parts of an OpenID discovery document the relay uses, checked: it must be the
    configured issuer's (exactly, as OpenID Connect Discovery §4.3 requires), support the
    code flow, and offer S256 PKCE if it lists PKCE methods at all."""
    if not isinstance(document, Mapping):
        raise SsoConfigError("the discovery document is not a JSON object")
    if document.get("issuer") != issuer:
        raise SsoConfigError(
            f"the discovery document names the issuer {str(document.get('issuer'))[:200]!r}, "
            f"not {issuer!r}: set the issuer exactly as the provider writes it"
        )
    endpoints: dict[str, str] = {}
    for name in ("authorization_endpoint", "token_endpoint", "jwks_uri"):
        value = document.get(name)
        if not isinstance(value, str):
            raise SsoConfigError(f"the discovery document has no {name}")
        endpoints[name] = check_url(value, f"the provider's {name}")
    end_session = document.get("end_session_endpoint")
    response_types = _strings(document.get("response_types_supported"))
    if response_types and "code" not in response_types:
        raise SsoConfigError("the provider does not offer the authorization-code flow")
    methods = _strings(document.get("code_challenge_methods_supported"))
    if methods and "S256" not in methods:
        raise SsoConfigError("the provider does not support PKCE with S256")
    return Discovery(
        issuer=issuer,
        authorization_endpoint=endpoints["authorization_endpoint"],
        token_endpoint=endpoints["token_endpoint"],
        jwks_uri=endpoints["jwks_uri"],
        end_session_endpoint=(
            check_url(end_session, "the provider's end_session_endpoint")
            if isinstance(end_session, str)
            else None
        ),
        id_token_algorithms=_strings(document.get("id_token_signing_alg_values_supported")),
        token_auth_methods=_strings(document.get("token_endpoint_auth_methods_supported")),
        authorization_response_iss=document.get("authorization_response_iss_parameter_supported")
        is True,
    )


def token_auth_method(discovery: Discovery, has_secret: bool) -> str:
    """How the relay authenticates at the token endpoint: HTTP Basic unless the provider
    lists only form parameters (the default when it lists nothing, RFC 8414)."""
    if not has_secret:
        return "none"
    methods = discovery.token_auth_methods
    if methods and "client_secret_basic" not in methods and "client_secret_post" in methods:
        return "client_secret_post"
    return "client_secret_basic"


def s256(verifier: str) -> str:
    """The PKCE code challenge of a verifier (RFC 7636 §4.2)."""
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def safe_next(path: object) -> str | None:
    """Where to go after sign-in: one of the relay's own pages, or None."""
    if not isinstance(path, str) or len(path) > 512 or not path.startswith(NEXT_PREFIXES):
        return None
    if "//" in path or "\\" in path or any(ord(c) < 0x20 for c in path):
        return None
    return path


# --- the person the provider vouches for ---------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Identity:
    subject: str
    email: str | None
    email_verified: bool
    name: str
    groups: frozenset[str]


def identity_of(claims: Mapping[str, Any], names: ClaimNames) -> Identity:
    """The person in a checked ID token's claims (the subject claim is required)."""
    subject = claims.get(names.subject)
    if not isinstance(subject, str) or not subject or len(subject) > 255:
        raise NotAdmitted(
            f"the identity provider sent no usable {names.subject!r} claim; "
            "an administrator must check which claim identifies a person"
        )
    email = normalize_email(claims.get(names.email))
    raw_groups = claims.get(names.groups)
    groups = frozenset(
        g for g in (raw_groups if isinstance(raw_groups, list) else [])[:MAX_GROUPS]
        if isinstance(g, str)
    )
    name = claims.get(names.name)
    shown = name.strip() if isinstance(name, str) and name.strip() else (email or subject)
    return Identity(
        subject=subject,
        email=email,
        email_verified=claims.get("email_verified") is True,
        name=" ".join(shown.split())[:128],
        groups=groups,
    )


def usable_email(provider: ProviderRecord, identity: Identity) -> str | None:
    """The email to match an imported address with: only a verified one, unless the
    administrator said the provider's addresses are trustworthy as they are."""
    if identity.email is None:
        return None
    if provider.require_verified_email and not identity.email_verified:
        return None
    return identity.email


def admit(provider: ProviderRecord, identity: Identity, *, want_user: bool) -> Role:
    """The role the person signs in with, or :class:`NotAdmitted`."""
    if provider.allowed_domains:
        email = usable_email(provider, identity)
        domain = email.rpartition("@")[2] if email else None
        if domain not in provider.allowed_domains:
            raise NotAdmitted(
                "your account's email domain may not sign in here"
                if email
                else "your identity provider sent no verified email, which this sign-in needs"
            )
    groups = identity.groups
    admin_groups = set(provider.owner_groups) | set(provider.device_admin_groups)
    if provider.allowed_groups and not groups & (set(provider.allowed_groups) | admin_groups):
        raise NotAdmitted("your account is in none of the groups that may sign in here")
    if want_user:
        return "user"
    if groups & set(provider.owner_groups):
        return "owner"
    if groups & set(provider.device_admin_groups):
        return "device_admin"
    return "user"


UserStep = Literal["signed_in", "link_email", "create"]


def user_step(
    provider: ProviderRecord,
    *,
    linked: bool,
    email_user_id: str | None,
    email_user_linked_elsewhere: bool,
) -> UserStep:
    """How a person who may sign in as a user gets an account: by their link, by the
    imported email, or a new account; :class:`NotAdmitted` when none applies."""
    if linked:
        return "signed_in"
    if email_user_id is not None:
        if email_user_linked_elsewhere:
            raise NotAdmitted(
                "the account with your email is linked to another identity; "
                "ask an administrator"
            )
        return "link_email"
    if provider.create_users:
        return "create"
    raise NotAdmitted(
        "there is no account for you here yet; ask an administrator to import your email"
    )


def group_list(values: Sequence[str], what: str) -> tuple[str, ...]:
    """Group names or ids as given (trimmed, de-duplicated, order kept)."""
    out: list[str] = []
    for value in values:
        text = value.strip()
        if not text or len(text) > 256:
            raise SsoConfigError(f"{what}: {value!r} is not a group name or id")
        if text not in out:
            out.append(text)
    return tuple(out)
