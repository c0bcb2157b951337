"""Test-only signing: a throwaway RSA key whose JWKS is loaded into an app's verifier, so
service tests exercise the real verification code without the auth service running."""

from __future__ import annotations

import time
import uuid
from functools import lru_cache
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa

from shared.auth.roles import PERMISSIONS, Role
from shared.settings import JwtSettings

KID = "test-key"


@lru_cache(maxsize=1)
def _key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def jwks() -> dict[str, Any]:
    public = jwt.algorithms.RSAAlgorithm.to_jwk(_key().public_key(), as_dict=True)
    return {"keys": [{**public, "kid": KID, "alg": "RS256", "use": "sig"}]}


def mint(role: str = "Operator", settings: JwtSettings | None = None, **claims: Any) -> str:
    s = settings or JwtSettings()
    now = int(time.time())
    body = {
        "sub": str(uuid.uuid4()),
        "username": role.lower(),
        "role": role,
        "permissions": sorted(PERMISSIONS[Role(role)]),
        "iss": s.issuer,
        "aud": s.audience,
        "iat": now,
        "nbf": now,
        "exp": now + 900,
        "jti": uuid.uuid4().hex,
        "typ": "access",
    }
    body.update(claims)
    return jwt.encode(body, _key(), algorithm="RS256", headers={"kid": KID})


def bearer(role: str = "Operator", **claims: Any) -> dict[str, str]:
    return {"Authorization": f"Bearer {mint(role, **claims)}"}


def trust_test_key(app_state: dict[str, Any]) -> None:
    """Load the test JWKS into the verifier of an app started by ``TestClient``."""
    app_state["authorizer"].jwks.load(jwks())
