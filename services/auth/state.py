"""What the auth service opens at start-up, and the typed state its handlers read."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AsyncExitStack
from typing import TypedDict

import jwt
import redis.asyncio as aioredis
from psycopg_pool import AsyncConnectionPool
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request

from services.auth.security.keys import KeySet
from services.auth.security.passwords import Hasher
from services.auth.security.revocation import Revoker
from services.auth.security.throttle import Policy, Throttle
from services.auth.sessions import SessionStore
from services.auth.settings import Settings
from services.auth.tokens import TokenIssuer
from shared.auth.verify import JwksCache, JwtAuthorizer
from shared.service import postgres_ready, request_state, resources
from shared.settings import JwtSettings


class LocalJwks(JwksCache):
    """Auth verifies the tokens it signed with its own key set: nothing to fetch over HTTP."""

    def __init__(self, settings: JwtSettings, keys: KeySet) -> None:
        super().__init__(settings)
        self.load(keys.jwks())

    async def refresh(self, *, unknown_kid: bool = False) -> None:
        return None

    async def key(self, kid: str) -> jwt.PyJWK | None:
        return self._keys.get(kid)


class State(TypedDict):
    settings: Settings
    pool: AsyncConnectionPool
    redis: aioredis.Redis
    keys: KeySet
    issuer: TokenIssuer
    hasher: Hasher
    sessions: SessionStore
    revoker: Revoker
    login_throttle: Throttle
    client_throttle: Throttle
    authorizer: JwtAuthorizer


state: Callable[[Request], State] = request_state


async def open_state(
    stack: AsyncExitStack, settings: Settings, keys: KeySet, issuer: TokenIssuer
) -> State:
    auth = settings.auth
    redis = resources.redis(stack, settings.redis)
    pool = await resources.postgres(stack, settings.postgres, "auth")
    # Computes the dummy hash: a full argon2 hash, kept off the event loop.
    hasher = await run_in_threadpool(Hasher, auth)
    jwks = LocalJwks(settings.jwt, keys)

    account = Policy(
        free=auth.throttle_max_failures,
        window_s=auth.throttle_window_s,
        backoff_s=auth.throttle_backoff_s,
        max_wait_s=auth.throttle_max_backoff_s,
    )
    address = Policy(free=auth.throttle_address_max_failures, window_s=auth.throttle_window_s)

    def throttle(scope: str) -> Throttle:
        policies = {"user": account, "client": account, "addr": address}
        return Throttle(redis, policies, scope, known_s=auth.throttle_known_s)

    return {
        "settings": settings,
        "pool": pool,
        "redis": redis,
        "keys": keys,
        "issuer": issuer,
        "hasher": hasher,
        "sessions": SessionStore(pool, issuer, auth.access_ttl_s, auth.refresh_ttl_s),
        "revoker": Revoker(
            redis, settings.jwt.leeway_s, max(auth.access_ttl_s, auth.gateway_ttl_s)
        ),
        "login_throttle": throttle("login"),
        "client_throttle": throttle("client"),
        "authorizer": resources.authorizer(stack, settings.jwt, redis, jwks),
    }


async def ready(state: State) -> dict[str, bool]:
    return {"postgres": await postgres_ready(state["pool"])}
