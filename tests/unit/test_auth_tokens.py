"""Access token claims and opaque refresh tokens."""

from __future__ import annotations

import time

import jwt

from services.auth.tokens import TokenIssuer, new_refresh_token, refresh_token_hash
from tests import auth_testing as testing


def test_access_token_carries_exactly_the_contract_claims() -> None:
    keys = testing.signing_keys()
    issuer = TokenIssuer(keys, "millrace-auth", "millrace")
    minted = issuer.mint(
        sub="u-1",
        username="ann",
        role="Operator",
        permissions={"write:sensor_data", "read:machines"},
        ttl_s=900,
        now=1_700_000_000,
    )
    header = jwt.get_unverified_header(minted.token)
    assert header == {"alg": "RS256", "kid": keys.current.kid, "typ": "JWT"}
    claims = jwt.decode(
        minted.token,
        keys.private_key.public_key(),
        algorithms=["RS256"],
        audience="millrace",
        options={"verify_exp": False, "verify_iat": False, "verify_nbf": False},
    )
    assert claims == {
        "sub": "u-1",
        "username": "ann",
        "role": "Operator",
        "permissions": ["read:machines", "write:sensor_data"],
        "iss": "millrace-auth",
        "aud": "millrace",
        "iat": 1_700_000_000,
        "nbf": 1_700_000_000,
        "exp": 1_700_000_900,
        "jti": minted.jti,
        "typ": "access",
    }
    assert (minted.issued_at, minted.expires_at) == (1_700_000_000, 1_700_000_900)


def test_every_token_has_its_own_jti() -> None:
    issuer = TokenIssuer(testing.signing_keys(), "i", "a")
    jtis = {
        issuer.mint(sub="s", username="u", role="Operator", permissions=[], ttl_s=60).jti
        for _ in range(50)
    }
    assert len(jtis) == 50


def test_refresh_tokens_are_random_and_stored_as_digests() -> None:
    tokens = {new_refresh_token() for _ in range(100)}
    assert len(tokens) == 100
    token = tokens.pop()
    assert len(token) >= 43  # 256 bits, url-safe base64
    assert refresh_token_hash(token) == refresh_token_hash(token)
    assert len(refresh_token_hash(token)) == 32
    assert token.encode() not in refresh_token_hash(token)


def test_testing_helper_overrides_and_removes_claims() -> None:
    token = testing.mint_token("Management", iss="other", jti=None, now=time.time())
    claims = jwt.decode(token, options={"verify_signature": False})
    assert claims["iss"] == "other"
    assert "jti" not in claims
    assert "write:config" in claims["permissions"]
