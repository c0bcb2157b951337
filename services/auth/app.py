"""The auth service: signs tokens (alone), manages users, sessions and gateway credentials.

Everything else verifies its tokens with the JWKS published here (``shared.auth.verify``).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import jwt
import psycopg
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.requests import Request

from services.auth.gateway_routes import gateway_routes
from services.auth.keys import KeySet, load_keyset
from services.auth.passwords import Hasher
from services.auth.revocation import Revoker
from services.auth.session_routes import session_routes
from services.auth.sessions import SessionStore
from services.auth.settings import Settings
from services.auth.throttle import Throttle
from services.auth.tokens import TokenIssuer
from services.auth.user_routes import user_routes
from shared.auth.verify import JwksCache, JwtAuthorizer
from shared.db import open_postgres
from shared.http import (
    EXCEPTION_HANDLERS,
    RequestContextMiddleware,
    ops_routes,
)
from shared.openapi import openapi_routes
from shared.security import security_middleware
from shared.settings import JwtSettings
from shared.startup import create_redis

log = logging.getLogger(__name__)


class LocalJwks(JwksCache):
    """Auth verifies the tokens it signed with its own key set: nothing to fetch over HTTP."""

    def __init__(self, settings: JwtSettings, keys: KeySet) -> None:
        super().__init__(settings)
        self.load(keys.jwks())

    async def refresh(self) -> None:
        return None

    async def key(self, kid: str) -> jwt.PyJWK | None:
        return self._keys.get(kid)


def load_keys(settings: Settings) -> KeySet:
    auth = settings.auth
    return load_keyset(
        private_key=auth.private_key.get_secret_value() if auth.private_key else None,
        private_key_file=auth.private_key_file,
        previous_keys_dir=auth.previous_keys_dir,
        key_dir=auth.key_dir,
        production=settings.production,
    )


def create_app(settings: Settings) -> Starlette:
    """The ASGI app. Raises :class:`~services.auth.keys.KeyConfigError` without a usable key."""
    keys = load_keys(settings)
    issuer = TokenIssuer(keys, settings.jwt.issuer, settings.jwt.audience)
    auth = settings.auth

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[dict[str, Any]]:
        redis = create_redis(settings.redis)
        pool = await open_postgres(settings.postgres, "auth")
        # Computes the dummy hash: a full argon2 hash, kept off the event loop.
        hasher = await run_in_threadpool(Hasher, auth)
        jwks = LocalJwks(settings.jwt, keys)
        try:
            yield {
                "settings": settings,
                "pool": pool,
                "redis": redis,
                "keys": keys,
                "issuer": issuer,
                "hasher": hasher,
                "sessions": SessionStore(pool, issuer, auth.access_ttl_s, auth.refresh_ttl_s),
                "revoker": Revoker(
                    redis,
                    settings.jwt.leeway_s,
                    max(auth.access_ttl_s, auth.gateway_ttl_s),
                ),
                "login_throttle": Throttle(
                    redis, auth.throttle_max_failures, auth.throttle_window_s, "login"
                ),
                "client_throttle": Throttle(
                    redis, auth.throttle_max_failures, auth.throttle_window_s, "client"
                ),
                "authorizer": JwtAuthorizer(settings.jwt, jwks, redis),
            }
        finally:
            await pool.close()
            await redis.aclose()
            await jwks.close()

    async def ready(request: Request) -> dict[str, bool]:
        checks = {"postgres": True}
        try:
            async with request.state.pool.connection(timeout=2) as conn:
                await conn.execute("SELECT 1")
        except (psycopg.Error, TimeoutError):
            checks["postgres"] = False
        return checks

    return Starlette(
        routes=[
            *session_routes(keys),
            *user_routes(),
            *gateway_routes(),
            *openapi_routes("Millrace auth"),
            *ops_routes(ready),
        ],
        middleware=[
            Middleware(RequestContextMiddleware, service="auth"),
            # Nearly every answer here is a credential or personal data: never cache by default.
            *security_middleware(settings.security, cache_control="no-store"),
        ],
        exception_handlers=EXCEPTION_HANDLERS,
        lifespan=lifespan,
    )
