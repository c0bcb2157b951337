"""Access token claims and opaque refresh tokens."""

from __future__ import annotations

import hashlib
import time

import jwt
import pytest

from services.auth.tokens import TokenIssuer, new_refresh_token, refresh_token_hash
from shared.http import ApiError
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
        factories=["plant-b", "plant-a"],
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
        "factories": ["plant-a", "plant-b"],
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
    # What is stored is the SHA-256 digest of the token, never the token.
    assert refresh_token_hash(token) == hashlib.sha256(token.encode()).digest()
    assert token.encode() not in refresh_token_hash(token)
    assert len({refresh_token_hash(t) for t in tokens}) == len(tokens)


async def test_the_verifier_accepts_a_minted_token_and_refuses_a_foreign_issuer_or_no_jti() -> None:
    verifier = testing.authorizer()
    good = testing.mint_token("Management", now=time.time())
    principal = await verifier.verify(good)
    assert principal.role == "Management" and "write:config" in principal.permissions
    for bad in (
        testing.mint_token("Management", iss="other", now=time.time()),
        testing.mint_token("Management", jti=None, now=time.time()),
    ):
        with pytest.raises(ApiError) as refused:
            await verifier.verify(bad)
        assert refused.value.status == 401
