"""Forged and stale tokens against the verifier every service uses (``JwtAuthorizer.verify``),
with the JWKS served by the real auth app (fetched over ASGI, refetched on an unknown kid)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import jwt
import pytest
import redis.asyncio as aioredis
from pydantic import SecretStr
from starlette.testclient import TestClient

from services.auth.app import create_app
from services.auth.security.keys import (
    KeySet,
    generate_private_key,
    private_key_pem,
    public_key_pem,
)
from services.auth.settings import Settings
from shared.auth.verify import JwksCache, JwtAuthorizer, Principal
from shared.http import ApiError
from tests import auth_testing as testing

if TYPE_CHECKING:
    from tests.auth_fixtures import LogIn, MakeUser

pytestmark = pytest.mark.integration


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64_json(value: dict[str, Any]) -> str:
    return b64(json.dumps(value).encode())


def parts(token: str) -> tuple[dict[str, Any], dict[str, Any], str]:
    header, payload, signature = token.split(".")
    pad = lambda s: s + "=" * (-len(s) % 4)  # noqa: E731
    return (
        json.loads(base64.urlsafe_b64decode(pad(header))),
        json.loads(base64.urlsafe_b64decode(pad(payload))),
        signature,
    )


async def verifier_for(settings: Settings) -> tuple[JwtAuthorizer, JwksCache, aioredis.Redis]:
    """A verifier as another service builds it, its JWKS fetched from this auth app."""
    app = create_app(settings)
    http = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://auth")
    jwt_settings = settings.jwt.model_copy(update={"jwks_url": "http://auth/.well-known/jwks.json"})
    cache = JwksCache(jwt_settings, http=http)
    redis = aioredis.from_url(settings.redis.url.get_secret_value())
    return JwtAuthorizer(jwt_settings, cache, redis), cache, redis


@pytest.fixture
async def verifier(auth_settings: Settings) -> AsyncIterator[JwtAuthorizer]:
    authorizer, cache, redis = await verifier_for(auth_settings)
    yield authorizer
    await cache.close()
    await redis.aclose()  # type: ignore[attr-defined]


async def refused(verifier: JwtAuthorizer, token: str) -> str:
    with pytest.raises(ApiError) as caught:
        await verifier.verify(token)
    assert caught.value.status == 401
    return caught.value.message


async def test_a_genuine_token_verifies(verifier: JwtAuthorizer) -> None:
    principal = await verifier.verify(testing.mint_token("Supervisor", username="sam"))
    assert isinstance(principal, Principal)
    assert (principal.username, principal.role) == ("sam", "Supervisor")
    assert "write:machines" in principal.permissions


async def test_alg_none_is_refused(verifier: JwtAuthorizer) -> None:
    header, payload, _ = parts(testing.mint_token("Operator"))
    for alg in ("none", "None", "NONE"):
        forged = (
            f"{b64_json({**header, 'alg': alg})}.{b64_json({**payload, 'role': 'Management'})}."
        )
        assert "unsupported algorithm" in await refused(verifier, forged)


async def test_hs256_signed_with_the_public_key_is_refused(verifier: JwtAuthorizer) -> None:
    """The classic key-confusion attack: HMAC keyed with the (public) RSA key bytes."""
    header, payload, _ = parts(testing.mint_token("Operator"))
    public_pem = public_key_pem(testing.signing_keys().private_key.public_key())
    forged_claims = {**payload, "role": "Management", "permissions": ["write:config"]}
    signing_input = f"{b64_json({**header, 'alg': 'HS256'})}.{b64_json(forged_claims)}"
    for key in (public_pem, public_pem.strip()):
        mac = hmac.new(key, signing_input.encode(), hashlib.sha256).digest()
        assert "unsupported algorithm" in await refused(verifier, f"{signing_input}.{b64(mac)}")


async def test_expired_token_is_refused(verifier: JwtAuthorizer) -> None:
    stale = testing.mint_token("Operator", now=time.time() - 3600)
    assert await refused(verifier, stale) == "Invalid token: expired"


async def test_not_yet_valid_token_is_refused(verifier: JwtAuthorizer) -> None:
    early = testing.mint_token("Operator", nbf=int(time.time()) + 600)
    assert await refused(verifier, early) == "Invalid token: not yet valid"


async def test_wrong_issuer_and_audience_are_refused(verifier: JwtAuthorizer) -> None:
    assert "InvalidIssuer" in await refused(verifier, testing.mint_token(iss="someone-else"))
    assert "InvalidAudience" in await refused(verifier, testing.mint_token(aud="another-app"))


async def test_tampered_payload_is_refused(verifier: JwtAuthorizer) -> None:
    header, payload, signature = parts(testing.mint_token("Operator"))
    escalated = {**payload, "role": "Management", "permissions": ["write:config", "read:users"]}
    forged = f"{b64_json(header)}.{b64_json(escalated)}.{signature}"
    assert "InvalidSignature" in await refused(verifier, forged)


async def test_unknown_kid_is_refused(verifier: JwtAuthorizer) -> None:
    stranger = testing.new_keys()  # a well-formed key the auth service never published
    message = await refused(verifier, testing.mint_token(keys=stranger))
    assert message == "Invalid token: unknown signing key"


async def test_algorithm_must_match_the_published_key(verifier: JwtAuthorizer) -> None:
    """An EdDSA signature presented under the RSA key's kid."""
    header, payload, _ = parts(testing.mint_token("Operator"))
    ed = generate_private_key("EdDSA")
    forged = jwt.encode(payload, ed, algorithm="EdDSA", headers={"kid": header["kid"]})
    assert "does not match" in await refused(verifier, forged)


async def test_refresh_typed_and_incomplete_tokens_are_refused(verifier: JwtAuthorizer) -> None:
    assert "not an access token" in await refused(verifier, testing.mint_token(typ="refresh"))
    assert "MissingRequiredClaim" in await refused(verifier, testing.mint_token(jti=None))
    assert "malformed" in await refused(verifier, "not.a.jwt")


async def test_logged_out_token_is_revoked(
    verifier: JwtAuthorizer, auth_client: TestClient, make_user: MakeUser, log_in: LogIn
) -> None:
    tokens = log_in(make_user("Operator"))
    assert (await verifier.verify(tokens["access_token"])).role == "Operator"
    headers = {"Authorization": f"Bearer {tokens['access_token']}"}
    assert auth_client.post("/api/v1/auth/logout", headers=headers).status_code == 200
    assert await refused(verifier, tokens["access_token"]) == "Invalid token: revoked"


async def test_deactivated_users_token_is_revoked_everywhere(
    verifier: JwtAuthorizer, auth_client: TestClient, make_user: MakeUser, log_in: LogIn
) -> None:
    manager = log_in(make_user("Management"))
    account = make_user("Supervisor")
    tokens = log_in(account)
    await verifier.verify(tokens["access_token"])
    response = auth_client.delete(
        f"/api/v1/auth/users/{account.id}",
        headers={"Authorization": f"Bearer {manager['access_token']}"},
    )
    assert response.status_code == 200
    assert await refused(verifier, tokens["access_token"]) == "Invalid token: revoked"


def _write_public(directory: Path, keys: KeySet) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / f"{keys.current.kid}.pem").write_bytes(
        public_key_pem(keys.private_key.public_key())
    )


async def test_key_rotation_keeps_old_tokens_valid_while_the_old_key_is_listed(
    auth_settings: Settings, tmp_path: Path, make_user: MakeUser
) -> None:
    old, new = testing.new_keys(), testing.new_keys("EdDSA")
    old_token = testing.mint_token("Operator", keys=old)
    retired = tmp_path / "previous"
    _write_public(retired, old)

    def settings_with(previous: Path | None) -> Settings:
        auth = auth_settings.auth.model_copy(
            update={
                "private_key": SecretStr(private_key_pem(new.private_key).decode()),
                "previous_keys_dir": previous,
            }
        )
        return auth_settings.model_copy(update={"auth": auth})

    rotated = settings_with(retired)
    verifier, cache, redis = await verifier_for(rotated)
    try:
        # Tokens signed before the rotation still verify...
        assert (await verifier.verify(old_token)).role == "Operator"
        # ...and new ones are signed with the new key (a real login through the rotated app).
        account = make_user("Operator")
        with TestClient(create_app(rotated)) as client:
            jwks = client.get("/.well-known/jwks.json").json()
            assert [k["kid"] for k in jwks["keys"]] == [new.current.kid, old.current.kid]
            assert [k["alg"] for k in jwks["keys"]] == ["EdDSA", "RS256"]
            login = client.post(
                "/api/v1/auth/login",
                json={"username": account.username, "password": account.password},
            )
        fresh = login.json()["access_token"]
        assert jwt.get_unverified_header(fresh) == {
            "alg": "EdDSA",
            "kid": new.current.kid,
            "typ": "JWT",
        }
        assert (await verifier.verify(fresh)).username == account.username
    finally:
        await cache.close()
        await redis.aclose()  # type: ignore[attr-defined]

    # Once the old key is dropped from the JWKS, its tokens stop verifying.
    verifier, cache, redis = await verifier_for(settings_with(tmp_path / "empty"))
    try:
        assert await refused(verifier, old_token) == "Invalid token: unknown signing key"
    finally:
        await cache.close()
        await redis.aclose()  # type: ignore[attr-defined]
