"""The identity provider sign-in's pure rules and its records: ID token checks (tokens minted
here with joserfc), discovery documents, who is admitted as what, PKCE, and where a sign-in may
lead back to (the records are held to their contract in tests/contract/test_accounts.py)."""

from __future__ import annotations

from typing import Any

import pytest
from joserfc import jwt
from joserfc.errors import SecurityWarning
from joserfc.jwk import KeySet, OctKey, RSAKey

from relay.web.id_token import Expected, TokenRefused, UnknownKey, check_id_token, parse_key_set
from relay.web.sso_core import (
    Identity,
    NotAdmitted,
    ProviderRecord,
    SsoConfigError,
    admit,
    check_issuer,
    identity_of,
    parse_discovery,
    s256,
    safe_next,
    user_step,
)

NOW = 1_800_000_000
ISSUER = "https://id.contoso.example"
KEY = RSAKey.generate_key(2048, parameters={"kid": "k1"})
OTHER = RSAKey.generate_key(2048, parameters={"kid": "k1"})  # same kid, other key
PUBLISHED = parse_key_set({"keys": [KEY.as_dict(private=False)]})
EXPECTED = Expected(ISSUER, "relay-client", "the-nonce")


def claims(**changes: Any) -> dict[str, Any]:
    base = {"iss": ISSUER, "aud": "relay-client", "sub": "s-1", "iat": NOW, "exp": NOW + 3600,
            "nonce": "the-nonce", "email": "a@contoso.example"}
    base.update(changes)
    return {k: v for k, v in base.items() if v is not None}


def token(key: Any = KEY, alg: str = "RS256", **changes: Any) -> str:
    return jwt.encode({"alg": alg, "kid": "k1"}, claims(**changes), key, algorithms=[alg])


def refusal(text: str, now: float = NOW, keys: KeySet = PUBLISHED) -> str:
    with pytest.raises(TokenRefused) as refused:
        check_id_token(text, keys, EXPECTED, now)
    return str(refused.value)


def test_a_good_id_token_gives_its_claims() -> None:
    assert check_id_token(token(), PUBLISHED, EXPECTED, NOW)["sub"] == "s-1"


@pytest.mark.parametrize(
    ("changes", "said"),
    [
        ({"iss": "https://evil.example"}, "comes from another issuer"),
        ({"aud": "another-client"}, "issued to another client (audience)"),
        ({"aud": ["relay-client", "other"]}, "issued to another client (azp)"),
        ({"azp": "other"}, "issued to another client (azp)"),
        ({"nonce": "old-nonce"}, "nonce is not this sign-in's"),
        ({"nonce": None}, "lacks the claim(s) nonce"),
        ({"sub": None}, "lacks the claim(s) sub"),
        ({"exp": NOW - 121}, "has expired"),
        ({"iat": NOW + 121}, "issued in the future"),
    ],
)
def test_id_tokens_breaking_a_rule_are_refused(changes: dict[str, Any], said: str) -> None:
    assert said in refusal(token(**changes))


def test_clock_skew_within_two_minutes_is_tolerated() -> None:
    assert check_id_token(token(exp=NOW - 100, iat=NOW - 3700), PUBLISHED, EXPECTED, NOW)
    assert check_id_token(token(iat=NOW + 100), PUBLISHED, EXPECTED, NOW)
    several = token(aud=["relay-client", "other"], azp="relay-client")
    assert check_id_token(several, PUBLISHED, EXPECTED, NOW)["azp"] == "relay-client"


def test_signatures_and_algorithms_are_checked() -> None:
    assert "signature does not verify" in refusal(token(key=OTHER))
    secret = OctKey.import_key("the client secret is no signing key at all")
    assert "cannot be read" in refusal(token(key=secret, alg="HS256"))
    with pytest.warns(SecurityWarning):  # joserfc warns whoever makes one
        unsigned = jwt.encode({"alg": "none"}, claims(), None, algorithms=["none"])
    assert "cannot be read" in refusal(unsigned)
    assert "no ID token in compact form" in refusal("not.a-token")
    rotated = RSAKey.generate_key(2048, parameters={"kid": "k2"})
    with pytest.raises(UnknownKey):
        check_id_token(
            jwt.encode({"alg": "RS256", "kid": "k2"}, claims(), rotated), PUBLISHED, EXPECTED, NOW
        )


def test_a_jwks_without_usable_keys_is_refused() -> None:
    for document in ({}, {"keys": "no"}, {"keys": []}, {"keys": [{"kty": "nope"}]}, []):
        with pytest.raises(TokenRefused):
            parse_key_set(document)


# --- settings and documents ---------------------------------------------------------------------


def test_issuers_are_https_except_on_loopback() -> None:
    assert check_issuer("https://login.example.com/tenant/v2.0") == (
        "https://login.example.com/tenant/v2.0")
    assert check_issuer("http://127.0.0.1:8080") == "http://127.0.0.1:8080"
    for bad in ("http://login.example.com", "ftp://x.example", "https://", "https://x.example/?a=1",
                "https://user:pw@x.example", "not a url"):
        with pytest.raises(SsoConfigError):
            check_issuer(bad)


def discovery(**changes: Any) -> dict[str, Any]:
    document = {
        "issuer": ISSUER, "authorization_endpoint": f"{ISSUER}/auth",
        "token_endpoint": f"{ISSUER}/token", "jwks_uri": f"{ISSUER}/jwks",
        "response_types_supported": ["code"], "code_challenge_methods_supported": ["S256"],
    }
    document.update(changes)
    return {k: v for k, v in document.items() if v is not None}


def test_a_discovery_document_must_be_the_issuers_and_offer_the_code_flow_with_s256() -> None:
    assert parse_discovery(discovery(), ISSUER).token_endpoint == f"{ISSUER}/token"
    for changes, said in (
        ({"issuer": ISSUER + "/"}, "names the issuer"),
        ({"jwks_uri": None}, "has no jwks_uri"),
        ({"token_endpoint": "http://evil.example/token"}, "must use https"),
        ({"response_types_supported": ["id_token"]}, "authorization-code flow"),
        ({"code_challenge_methods_supported": ["plain"]}, "PKCE with S256"),
    ):
        with pytest.raises(SsoConfigError, match=said):
            parse_discovery(discovery(**changes), ISSUER)


def test_pkce_challenge_is_rfc_7636s_known_answer() -> None:
    assert s256("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk") == (
        "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM")


def test_a_sign_in_leads_back_only_to_the_relays_pages() -> None:
    assert safe_next("/admin/") == "/admin/"
    assert safe_next("/devicelogin?code=ABCD-EFGH") == "/devicelogin?code=ABCD-EFGH"
    for bad in ("https://evil.example/", "//evil.example/admin/", "/admin//evil", "/signin",
                "/admin/\\evil", "/admin/\n", None, 42, "/admin/" + "x" * 600):
        assert safe_next(bad) is None


# --- who gets in, as what ------------------------------------------------------------------------


def provider(**changes: Any) -> ProviderRecord:
    base = ProviderRecord("p1", "t1", "Contoso ID", ISSUER, "relay-client", "secret", 0.0, 0.0,
                          owner_groups=("owners",), device_admin_groups=("it",))
    return ProviderRecord(**{**{f: getattr(base, f) for f in base.__slots__}, **changes})


def person(groups: tuple[str, ...] = (), email: str | None = "a@contoso.example",
           verified: bool = True) -> Identity:
    return Identity("s-1", email, verified, "Alex", frozenset(groups))


def test_groups_make_owners_and_device_administrators_except_on_the_device_login_page() -> None:
    p = provider()
    assert admit(p, person(("it", "owners")), want_user=False) == "owner"
    assert admit(p, person(("it",)), want_user=False) == "device_admin"
    assert admit(p, person(("staff",)), want_user=False) == "user"
    assert admit(p, person(("owners",)), want_user=True) == "user"


def test_domains_and_groups_limit_who_may_sign_in() -> None:
    p = provider(allowed_domains=("contoso.example",), allowed_groups=("staff",))
    assert admit(p, person(("staff",)), want_user=False) == "user"
    assert admit(p, person(("it",)), want_user=False) == "device_admin"  # admin groups count
    with pytest.raises(NotAdmitted, match="none of the groups"):
        admit(p, person(("visitors",)), want_user=False)
    with pytest.raises(NotAdmitted, match="email domain"):
        admit(p, person(("staff",), email="a@fabrikam.example"), want_user=False)
    with pytest.raises(NotAdmitted, match="no verified email"):
        admit(p, person(("staff",), verified=False), want_user=False)
    trusting = provider(allowed_domains=("contoso.example",), require_verified_email=False)
    assert admit(trusting, person(verified=False), want_user=False) == "user"


def test_a_user_is_found_by_link_then_imported_email_then_created_if_allowed() -> None:
    p = provider()
    assert user_step(p, linked=True, email_user_id="u1", email_user_linked_elsewhere=True) == (
        "signed_in")
    assert user_step(p, linked=False, email_user_id="u1", email_user_linked_elsewhere=False) == (
        "link_email")
    with pytest.raises(NotAdmitted, match="linked to another identity"):
        user_step(p, linked=False, email_user_id="u1", email_user_linked_elsewhere=True)
    with pytest.raises(NotAdmitted, match="no account for you"):
        user_step(p, linked=False, email_user_id=None, email_user_linked_elsewhere=False)
    assert user_step(provider(create_users=True), linked=False, email_user_id=None,
                     email_user_linked_elsewhere=False) == "create"


def test_the_configured_claims_identify_the_person() -> None:
    names = provider().claims
    found = identity_of({"sub": "s", "email": " A@Contoso.Example ", "email_verified": True,
                         "groups": ["it", 7], "name": "  Alex   Kim "}, names)
    assert found == Identity("s", "a@contoso.example", True, "Alex Kim", frozenset({"it"}))
    assert identity_of({"sub": "s", "email": "not an email"}, names).name == "s"
    with pytest.raises(NotAdmitted, match="'sub'"):
        identity_of({"oid": "x"}, names)
