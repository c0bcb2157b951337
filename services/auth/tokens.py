"""Access tokens (signed JWTs) and refresh tokens (opaque random strings, stored hashed).

Refresh tokens are deliberately not JWTs: they can never be mistaken for an access token by a
verifier, and a database row (not a signature) decides whether one is still good.
"""

from __future__ import annotations

import hashlib
import secrets
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import jwt

from services.auth.security.keys import KeySet
from shared.auth.scope import factories_claim
from shared.redact import REFRESH_TOKEN_PREFIX


@dataclass(frozen=True, slots=True)
class MintedToken:
    token: str
    jti: str
    issued_at: int
    expires_at: int


class TokenIssuer:
    """Signs access tokens with the current key; ``kid`` names the key in the JWKS."""

    def __init__(self, keys: KeySet, issuer: str, audience: str) -> None:
        self.keys = keys
        self.issuer = issuer
        self.audience = audience

    def mint(
        self,
        *,
        sub: str,
        username: str,
        role: str,
        permissions: Iterable[str],
        ttl_s: int,
        factories: Iterable[str] | None = None,
        now: float | None = None,
        extra: dict[str, Any] | None = None,
    ) -> MintedToken:
        """``factories``: the factories the token may see and write; None = every factory."""
        issued = int(time.time() if now is None else now)
        jti = uuid.uuid4().hex
        claims: dict[str, Any] = {
            **(extra or {}),
            "sub": sub,
            "username": username,
            "role": role,
            "permissions": sorted(permissions),
            "factories": factories_claim(factories),
            "iss": self.issuer,
            "aud": self.audience,
            "iat": issued,
            "nbf": issued,
            "exp": issued + ttl_s,
            "jti": jti,
            "typ": "access",
        }
        token = jwt.encode(
            claims,
            self.keys.private_key,
            algorithm=self.keys.current.algorithm,
            headers={"kid": self.keys.current.kid},
        )
        return MintedToken(token=token, jti=jti, issued_at=issued, expires_at=issued + ttl_s)


def new_refresh_token() -> str:
    # The prefix lets log redaction and secret scanners recognise the token (shared.redact).
    return REFRESH_TOKEN_PREFIX + secrets.token_urlsafe(32)


def refresh_token_hash(token: str) -> bytes:
    # 256 random bits need no slow hash: SHA-256 makes a leaked table useless and stays indexable.
    return hashlib.sha256(token.encode()).digest()
