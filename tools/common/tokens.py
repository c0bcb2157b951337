"""Tokens for an app a tool runs in-process (``tools/bench_history.py``): signed with a key made
here, which the app's authorizer is told to trust. No auth service, no user."""

from __future__ import annotations

import uuid
from typing import Any

from services.auth.security.keys import KeySet, generate_private_key
from services.auth.tokens import TokenIssuer
from shared.auth.roles import PERMISSIONS, Role
from shared.settings import JwtSettings


class LocalTokens:
    def __init__(self, settings: JwtSettings | None = None) -> None:
        self.keys = KeySet.of(generate_private_key("RS256"))
        self.settings = settings or JwtSettings()

    def jwks(self) -> dict[str, Any]:
        return self.keys.jwks()

    def bearer(self, role: Role = Role.OPERATOR, ttl_s: int = 3600) -> dict[str, str]:
        issuer = TokenIssuer(self.keys, self.settings.issuer, self.settings.audience)
        minted = issuer.mint(
            sub=str(uuid.uuid4()),
            username=f"tool-{role.value.lower()}",
            role=role.value,
            permissions=PERMISSIONS[role],
            ttl_s=ttl_s,
        )
        return {"Authorization": f"Bearer {minted.token}"}
