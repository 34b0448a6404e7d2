"""Checking an OpenID Connect ID token (pure: the token, the provider's keys and the time in,
the claims or a refusal out).

The JOSE work (signature, key selection by ``kid``, claim checks with a leeway) is
joserfc's; this module only says which rules apply, from OpenID Connect Core 1.0 §3.1.3.7:

* the signature verifies with a key of the provider's JWKS, with an asymmetric algorithm
  the provider announces (never ``none``, never an HMAC keyed with the client secret);
* ``iss`` is exactly the configured issuer; ``aud`` contains our client id, and a token for
  several audiences names us as ``azp``;
* ``exp`` is in the future and ``iat``/``nbf`` not in the future, each give or take
  :data:`CLOCK_SKEW_S`;
* ``nonce`` is the one this sign-in sent (a refreshed token carries no new nonce: the
  caller checks that it is still about the same person instead);
* ``sub`` is present.

An unknown ``kid`` raises :class:`UnknownKey`, so the caller can fetch the JWKS again once
(key rotation) and retry.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

from joserfc import jwt
from joserfc.errors import (
    BadSignatureError,
    ExpiredTokenError,
    InvalidClaimError,
    InvalidKeyIdError,
    JoseError,
    MissingClaimError,
    MissingKeyError,
)
from joserfc.jwk import KeySet

CLOCK_SKEW_S = 120
# Asymmetric signatures only: an HMAC "signature" keyed with the client secret would let
# anyone who holds the secret (every relay node, a leaked config) mint tokens.
SIGNING_ALGORITHMS = (
    "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA",
)


class TokenRefused(Exception):
    """The ID token must not be believed; the message says why, for the log and the page."""


class UnknownKey(TokenRefused):
    """Signed with a key the JWKS we hold does not have (perhaps a rotated one)."""


@dataclass(frozen=True, slots=True)
class Expected:
    issuer: str
    client_id: str
    nonce: str | None  # None after a refresh (no new nonce is sent)


def parse_key_set(document: Any) -> KeySet:
    """The provider's JWKS document as keys (keys of unknown types are skipped)."""
    if not isinstance(document, Mapping) or not isinstance(document.get("keys"), list):
        raise TokenRefused("the provider's JWKS is not a JSON object with a list of keys")
    try:
        return KeySet.import_key_set({"keys": list(document["keys"])})
    except (MissingKeyError, JoseError, ValueError, TypeError, KeyError) as exc:
        raise TokenRefused(f"the provider's JWKS holds no usable key ({exc})") from None


def allowed_algorithms(announced: Collection[str] | None) -> list[str]:
    """Ours, narrowed to what the provider says it signs ID tokens with (if it says)."""
    if not announced:
        return list(SIGNING_ALGORITHMS)
    return [a for a in SIGNING_ALGORITHMS if a in announced]


def check_id_token(
    token: str,
    keys: KeySet,
    expected: Expected,
    now: float,
    *,
    algorithms: Collection[str] = SIGNING_ALGORITHMS,
    leeway_s: int = CLOCK_SKEW_S,
) -> dict[str, Any]:
    """The token's claims if every rule above holds; :class:`TokenRefused` otherwise."""
    if not isinstance(token, str) or token.count(".") != 2 or len(token) > 16 * 1024:
        raise TokenRefused("the provider sent no ID token in compact form")
    try:
        decoded = jwt.decode(token, keys, algorithms=list(algorithms))
    except InvalidKeyIdError:
        raise UnknownKey(
            "the ID token is signed with a key the provider does not publish"
        ) from None
    except BadSignatureError:
        raise TokenRefused("the ID token's signature does not verify") from None
    except JoseError as exc:
        reason = exc.error or type(exc).__name__
        raise TokenRefused(f"the ID token cannot be read ({reason})") from None
    except (ValueError, TypeError, KeyError) as exc:
        raise TokenRefused(f"the ID token cannot be read ({type(exc).__name__})") from None
    claims = decoded.claims
    options: dict[str, jwt.ClaimsOption] = {
        "iss": {"essential": True, "value": expected.issuer},
        "aud": {"essential": True, "value": expected.client_id},
        "sub": {"essential": True},
        "exp": {"essential": True},
        "iat": {"essential": True},
    }
    if expected.nonce is not None:
        options["nonce"] = {"essential": True, "value": expected.nonce}
    registry = jwt.JWTClaimsRegistry(now=int(now), leeway=leeway_s, **options)
    try:
        registry.validate(claims)
    except ExpiredTokenError:
        raise TokenRefused("the ID token has expired (or the clocks disagree)") from None
    except MissingClaimError as exc:
        raise TokenRefused(f"the ID token lacks the claim(s) {exc.claim}") from None
    except InvalidClaimError as exc:
        raise TokenRefused(
            _INVALID.get(exc.claim, f"the ID token's {exc.claim} is not valid")
        ) from None
    except JoseError as exc:
        raise TokenRefused(f"the ID token is not valid ({exc.description or exc})") from None
    audiences = claims["aud"] if isinstance(claims["aud"], list) else [claims["aud"]]
    azp = claims.get("azp")
    if (len(audiences) > 1 and azp is None) or (azp is not None and azp != expected.client_id):
        raise TokenRefused("the ID token was issued to another client (azp)")
    return dict(claims)


_INVALID = {
    "iss": "the ID token comes from another issuer",
    "aud": "the ID token was issued to another client (audience)",
    "nonce": "the ID token's nonce is not this sign-in's (a replayed token?)",
    "iat": "the ID token was issued in the future (the clocks disagree)",
    "nbf": "the ID token is not valid yet (the clocks disagree)",
    "sub": "the ID token names nobody (sub)",
}
