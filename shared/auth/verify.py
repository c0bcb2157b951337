"""Verify access tokens locally: JWKS fetched from auth (cached, refreshed on an unknown ``kid``),
``iss``/``aud``/``exp``/``nbf`` checked, revoked ``jti``s and revoked users looked up in Redis.

Redis is consulted for revocation only; if it is unreachable the check is skipped with a WARNING
(tokens live 15 minutes) so that reads keep working while the cache is down. The services'
verifiers remember a "not revoked" answer for up to a second while subscribed to revocation
announcements (:mod:`shared.auth.denylist`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any

import httpx
import jwt
import redis.asyncio as aioredis
from starlette.requests import Request

from shared.auth.denylist import DenylistCache
from shared.auth.scope import ScopeClaimError, parse_factories, parse_machines
from shared.http import ApiError
from shared.redisguard import REDIS_ERRORS, RedisGuard
from shared.settings import JwtSettings

log = logging.getLogger(__name__)

ALGORITHMS = ["RS256", "EdDSA"]
# ``factories`` is required: a token that names no scope is refused rather than read as "all".
REQUIRED_CLAIMS = ["sub", "role", "permissions", "factories", "iss", "aud", "iat", "exp", "jti"]


def revoked_jti_key(jti: str) -> str:
    return f"millrace:revoked:jti:{jti}"


def revoked_subject_key(sub: str) -> str:
    """Holds the time (s) before which every token of ``sub`` is void (deactivation)."""
    return f"millrace:revoked:sub:{sub}"


@dataclass(slots=True, frozen=True)
class Principal:
    sub: str
    username: str
    role: str
    permissions: frozenset[str]
    jti: str
    exp: int
    iat: int
    claims: dict[str, Any]
    # The factories this principal may see and write; None = every factory. The default (none)
    # keeps a Principal built by hand without a scope from seeing anything.
    factories: frozenset[str] | None = frozenset()
    # Set for a gateway limited to some machines of its factory; None = no machine limit.
    machines: frozenset[str] | None = None
    # The gateway a gateway token was issued to (None for people).
    gateway_id: str | None = None

    def sees_factory(self, factory_id: str) -> bool:
        return self.factories is None or factory_id in self.factories

    def sees_machine(self, machine_id: str, factory_id: str) -> bool:
        """A machine of ``factory_id``: in one of this principal's factories (and, for a gateway
        limited to some machines, one of them)."""
        return self.sees_factory(factory_id) and (
            self.machines is None or machine_id.lower() in self.machines
        )

    @property
    def factory_list(self) -> list[str] | None:
        """The factories as a sorted list for a SQL ``= ANY(%s)`` filter; None = no filter."""
        return None if self.factories is None else sorted(self.factories)


class JwksCache:
    """Public keys by ``kid``; refetched when a token names a key not seen yet."""

    def __init__(self, settings: JwtSettings, http: httpx.AsyncClient | None = None) -> None:
        self.settings = settings
        self._http = http or httpx.AsyncClient(timeout=5.0)
        self._keys: dict[str, jwt.PyJWK] = {}
        self._entries: dict[str, dict[str, Any]] = {}
        self._fetched_at = 0.0
        # When the last fetch was tried, successful or not: while auth is down, concurrent
        # requests must not queue behind the lock for one timed-out fetch each.
        self._tried_at = 0.0
        self._lock = asyncio.Lock()

    def load(self, jwks: dict[str, Any]) -> None:
        keys: dict[str, jwt.PyJWK] = {}
        entries: dict[str, dict[str, Any]] = {}
        for entry in jwks.get("keys", []):
            try:
                kid = entry["kid"]
                # An unchanged entry keeps its key object: tokens verified under it stay
                # remembered (the authorizer compares keys by identity) across refreshes.
                same = self._entries.get(kid) == entry and kid in self._keys
                keys[kid] = self._keys[kid] if same else jwt.PyJWK(entry)
                entries[kid] = entry
            except (jwt.PyJWKError, KeyError, TypeError) as e:
                log.warning("ignoring unusable JWKS entry: %s", type(e).__name__)
        # One assignment each: a request reading the cache between two awaits sees the old set
        # or the new one, never half of each.
        self._keys, self._entries = keys, entries
        self._fetched_at = time.monotonic()

    async def refresh(self, *, unknown_kid: bool = False) -> None:
        """Fetch the JWKS again, at most once a second whatever the load.

        A stale cache (``unknown_kid=False``) keeps serving the keys it holds when a fetch was
        tried less than a second ago (auth down or slow must not queue requests behind one
        timed-out fetch each). A token naming a key not held (``unknown_kid=True``) waits for
        the next allowed fetch instead: right after a rotation, the fetch that ran a moment ago
        (for a stale cache, or for a forged kid) may predate the new key.
        """
        if not unknown_kid and self._lock.locked():
            return  # a fetch is under way or queued: the keys held serve meanwhile
        asked = time.monotonic()
        async with self._lock:
            if self._tried_at >= asked:
                return  # a fetch started after this request asked: its answer is fresh enough
            wait = 1.0 - (time.monotonic() - self._tried_at)
            if wait > 0:
                if not unknown_kid:
                    return
                await asyncio.sleep(wait)  # the fetch budget: one a second
            self._tried_at = time.monotonic()
            await self._fetch()

    async def _fetch(self) -> None:
        try:
            resp = await self._http.get(self.settings.jwks_url)
            resp.raise_for_status()
            self.load(resp.json())
        except (httpx.HTTPError, ValueError) as e:
            log.warning(
                "JWKS fetch from %s failed: %s",
                self.settings.jwks_url,
                e,
                extra={"dependency": "auth"},
            )

    async def key(self, kid: str) -> jwt.PyJWK | None:
        if kid not in self._keys:
            await self.refresh(unknown_kid=True)
        elif time.monotonic() - self._fetched_at > self.settings.jwks_cache_s:
            await self.refresh()
        return self._keys.get(kid)

    @property
    def loaded(self) -> bool:
        return bool(self._keys)

    async def close(self) -> None:
        await self._http.aclose()


def _unauthorized(reason: str) -> ApiError:
    return ApiError(
        401,
        f"Invalid token: {reason}",
        headers={"WWW-Authenticate": 'Bearer error="invalid_token"'},
    )


class JwtAuthorizer:
    """The authorizer every service puts in its state (see :func:`shared.http.requires`)."""

    def __init__(
        self,
        settings: JwtSettings,
        jwks: JwksCache,
        redis: RedisGuard | aioredis.Redis | None,
        denylist_cache_s: float = 0.0,
    ) -> None:
        self.settings = settings
        self.jwks = jwks
        self.redis = RedisGuard(redis) if isinstance(redis, aioredis.Redis) else redis
        # With ``denylist_cache_s`` > 0, "not revoked" is remembered that long per token while
        # subscribed to revocation announcements (shared.auth.denylist); 0 asks Redis every time.
        self.denylist: DenylistCache | None = None
        if denylist_cache_s > 0 and self.redis is not None:
            self.denylist = DenylistCache(self.redis.client, denylist_cache_s)
        # Tokens whose signature and claims were verified: token → (kid, key, principal).
        # A gateway sends the same token with every request for 15 minutes; checking the RSA
        # signature once is enough while the same key is still published. Expiry and the
        # denylist are still checked on every request.
        self._verified: dict[str, tuple[str, jwt.PyJWK, Principal]] = {}

    async def authenticate(self, request: Request) -> Principal:
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise ApiError(401, "Missing bearer token", headers={"WWW-Authenticate": "Bearer"})
        return await self.verify(token.strip())

    async def check(self, request: Request, permission: str) -> Principal:
        principal = await self.authenticate(request)
        if permission not in principal.permissions:
            raise ApiError(
                403,
                f"Missing permission: {permission}",
                required_permission=permission,
                role=principal.role,
            )
        return principal

    async def verify(self, token: str) -> Principal:
        hit = self._verified.get(token)
        if hit is not None:
            kid, key, principal = hit
            # Exactly PyJWT's expiry rule; anything else (expired, key rotated away) takes
            # the full path below, which gives the same answer as before.
            if principal.exp > time.time() - self.settings.leeway_s and (
                await self.jwks.key(kid) is key
            ):
                await self._check_revocation(principal.claims, _unauthorized)
                return principal
            # Concurrent requests carrying the same token all reach this line when it expires
            # (the awaits above interleave them): the first one evicts it, the others find it
            # gone. A missing entry is not an error; the token is never used as an exception text.
            self._verified.pop(token, None)
        principal, kid, key = await self._verify_signature(token)
        if len(self._verified) >= 10_000:
            self._verified.clear()
        self._verified[token] = (kid, key, principal)
        return principal

    async def _verify_signature(self, token: str) -> tuple[Principal, str, jwt.PyJWK]:
        unauthorized = _unauthorized
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as e:
            raise unauthorized("malformed") from e
        alg = header.get("alg")
        kid = header.get("kid")
        if alg not in ALGORITHMS or not isinstance(kid, str):
            raise unauthorized("unsupported algorithm or missing kid")
        key = await self.jwks.key(kid)
        if key is None:
            raise unauthorized("unknown signing key")
        if key.algorithm_name != alg:
            raise unauthorized("algorithm does not match the key")
        try:
            claims = jwt.decode(
                token,
                key=key.key,
                algorithms=[alg],
                audience=self.settings.audience,
                issuer=self.settings.issuer,
                leeway=self.settings.leeway_s,
                options={"require": REQUIRED_CLAIMS},
            )
        except jwt.ExpiredSignatureError as e:
            raise unauthorized("expired") from e
        except jwt.ImmatureSignatureError as e:
            raise unauthorized("not yet valid") from e
        except jwt.PyJWTError as e:
            raise unauthorized(type(e).__name__) from e
        if claims.get("typ", "access") != "access":
            raise unauthorized("not an access token")
        await self._check_revocation(claims, unauthorized)
        perms = claims.get("permissions")
        if not isinstance(perms, list):
            raise unauthorized("permissions claim")
        gateway_id = claims.get("gateway_id")
        try:
            factories = parse_factories(claims["factories"])
            machines = parse_machines(claims.get("machines"))
        except ScopeClaimError as e:
            raise unauthorized(str(e)) from e
        if gateway_id is not None and not isinstance(gateway_id, str):
            raise unauthorized("gateway_id claim")
        principal = Principal(
            sub=str(claims["sub"]),
            username=str(claims.get("username", "")),
            role=str(claims["role"]),
            permissions=frozenset(str(p) for p in perms),
            jti=str(claims["jti"]),
            exp=int(claims["exp"]),
            iat=int(claims["iat"]),
            claims=claims,
            factories=factories,
            machines=machines,
            gateway_id=gateway_id,
        )
        return principal, kid, key

    async def close(self) -> None:
        if self.denylist is not None:
            await self.denylist.close()

    async def _check_revocation(self, claims: dict[str, Any], unauthorized: Any) -> None:
        if self.redis is None or not self.redis.usable():
            return
        denylist = self.denylist
        jti = str(claims["jti"])
        if denylist is not None and denylist.clean(jti):
            return
        generation = denylist.generation if denylist is not None else 0
        try:
            revoked, void_before = await self.redis.client.mget(
                [revoked_jti_key(jti), revoked_subject_key(str(claims["sub"]))]
            )
            self.redis.ok()
        except REDIS_ERRORS as e:
            # Accepting an unexpired token without the denylist check (15 minutes at most).
            self.redis.failed("token denylist", e)
            return
        if revoked is not None:
            raise unauthorized("revoked")
        if void_before is not None and int(claims["iat"]) <= int(float(void_before)):
            raise unauthorized("revoked")
        if denylist is not None:
            denylist.remember(jti, generation)
