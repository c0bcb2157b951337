"""Test helpers for any service's tests: a signing key, tokens minted with the auth service's
real signing code, and the matching JWKS. Never imported by production code.

    from tests import auth_testing as testing

    headers = testing.bearer("Operator")             # {"Authorization": "Bearer ..."}
    with TestClient(app) as client:
        testing.install(client.app_state["authorizer"])   # the app now trusts testing keys
        client.get("/api/v1/machines", headers=headers)

Tokens carry the issuer and audience of ``JwtSettings()`` (the environment's), like auth's.
"""

from __future__ import annotations

import uuid
from functools import lru_cache
from typing import Any

import jwt
import redis.asyncio as aioredis

from services.auth.security.keys import KeySet, generate_private_key
from services.auth.tokens import TokenIssuer
from shared.auth.roles import PERMISSIONS, Role
from shared.auth.verify import JwksCache, JwtAuthorizer
from shared.settings import JwtSettings


def new_keys(algorithm: str = "RS256") -> KeySet:
    """A fresh key set (RS256 or EdDSA)."""
    return KeySet.of(generate_private_key(algorithm))


@lru_cache(maxsize=1)
def signing_keys() -> KeySet:
    """The process-wide testing key set (generated once, on first use)."""
    return new_keys()


def jwks(keys: KeySet | None = None) -> dict[str, Any]:
    return (keys or signing_keys()).jwks()


def mint_token(
    role: Role | str = Role.OPERATOR,
    *,
    keys: KeySet | None = None,
    jwt_settings: JwtSettings | None = None,
    sub: str | None = None,
    username: str | None = None,
    permissions: list[str] | None = None,
    ttl_s: int = 900,
    now: float | None = None,
    factories: list[str] | None = None,
    **overrides: Any,
) -> str:
    """An access token for ``role`` (its permissions per the role table unless given), scoped to
    ``factories`` (None = every factory, the claim ``"*"``).

    ``overrides`` replace claims after minting (``None`` removes one): e.g. ``iss="other"``,
    ``nbf=time.time() + 600`` to build the tokens a verifier must refuse.
    """
    keys = keys or signing_keys()
    settings = jwt_settings or JwtSettings()
    role_value = Role(role).value
    issuer = TokenIssuer(keys, settings.issuer, settings.audience)
    minted = issuer.mint(
        sub=sub or str(uuid.uuid4()),
        username=username or f"test-{role_value.lower()}",
        role=role_value,
        permissions=PERMISSIONS[Role(role)] if permissions is None else permissions,
        ttl_s=ttl_s,
        factories=factories,
        now=now,
    )
    if not overrides:
        return minted.token
    claims = jwt.decode(minted.token, options={"verify_signature": False})
    claims.update(overrides)
    claims = {k: v for k, v in claims.items() if v is not None}
    return jwt.encode(
        claims,
        keys.private_key,
        algorithm=keys.current.algorithm,
        headers={"kid": keys.current.kid},
    )


def bearer(role: Role | str = Role.OPERATOR, **kwargs: Any) -> dict[str, str]:
    return {"Authorization": f"Bearer {mint_token(role, **kwargs)}"}


def install(authorizer: JwtAuthorizer, keys: KeySet | None = None) -> None:
    """Make a running app's authorizer trust ``keys`` (no auth service needed)."""
    authorizer.jwks.load(jwks(keys))


def authorizer(
    jwt_settings: JwtSettings | None = None,
    redis: aioredis.Redis | None = None,
    keys: KeySet | None = None,
) -> JwtAuthorizer:
    """A verifier that trusts ``keys``; with ``redis`` it also checks the denylist."""
    settings = jwt_settings or JwtSettings()
    cache = JwksCache(settings)
    cache.load(jwks(keys))
    return JwtAuthorizer(settings, cache, redis)


def advance_clock(monkeypatch: Any, seconds: float) -> None:
    """Make the verifier (``time.time``) and PyJWT (``datetime.now``) see a later time."""
    import time
    from datetime import datetime, timedelta

    later = time.time() + seconds

    class Later(datetime):
        @classmethod
        def now(cls, tz: Any = None) -> Any:
            return datetime.now(tz) + timedelta(seconds=seconds)

    monkeypatch.setattr(time, "time", lambda: later)
    monkeypatch.setattr(jwt.api_jwt, "datetime", Later)


def count_decodes(monkeypatch: Any) -> list[int]:
    """Count PyJWT's ``jwt.decode`` calls (signature checks) from now on: ``[calls]``."""
    calls = [0]
    real = jwt.decode

    def counting(*args: Any, **kwargs: Any) -> Any:
        calls[0] += 1
        return real(*args, **kwargs)

    monkeypatch.setattr(jwt, "decode", counting)
    return calls
