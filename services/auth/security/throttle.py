"""Failed-attempt throttling in Redis, with one policy per kind of subject.

Accounts (``("user", name)``, ``("client", client_id)``) back off: a few free failures, then each
further failure doubles the wait before the next attempt (capped), so guessing one account's
password slows to one try per ``max_wait_s`` while its owner, who mistyped a few times, waits
seconds. Addresses (``("addr", ip)``) have a limit high enough for a whole plant behind one NAT:
only failures count, so operators who sign in correctly never use it up, and past it the address
waits for its window to end (this stops spraying guesses across many accounts). An account that
signed in correctly from an address before is *known* there: an address past its limit does not
stop it, only its own backoff does, so a guesser behind a plant's NAT cannot lock the plant's
people out (the OWASP cheat sheet's device cookies, keyed by account and address). Modelled on
the OWASP Authentication Cheat Sheet and Keycloak's brute-force detection.

Redis is a guard, not a dependency: when it is unreachable the check is skipped with a WARNING
(fail-open), so an outage of the cache never locks everyone out.
"""

from __future__ import annotations

import hashlib
import logging
import time
from dataclasses import dataclass

import redis.asyncio as aioredis

from services.auth.security.revocation import REDIS_ERRORS

log = logging.getLogger(__name__)

Subject = tuple[str, str]


@dataclass(frozen=True, slots=True)
class Policy:
    """``free`` failures within ``window_s`` cost nothing; then a wait (see :meth:`wait`)."""

    free: int
    window_s: int
    backoff_s: int = 0  # 0: locked until the window ends; else the first wait, doubling
    max_wait_s: int = 900

    def wait(self, failures: int) -> int:
        """Seconds to wait after the ``failures``-th failure (0: none)."""
        if failures < self.free:
            return 0
        if not self.backoff_s:
            return self.window_s
        return min(self.max_wait_s, self.backoff_s << min(failures - self.free, 30))

    @property
    def remember_s(self) -> int:
        # An account's failures are forgotten a window after the last one, and never before
        # the wait they imposed has passed.
        return max(self.window_s, self.max_wait_s) if self.backoff_s else self.window_s


@dataclass(frozen=True, slots=True)
class Throttle:
    redis: aioredis.Redis
    policies: dict[str, Policy]
    namespace: str
    known_s: int = 0  # how long a correct sign-in makes its account known at its address

    def _key(self, subject: Subject) -> str:
        kind, value = subject
        digest = hashlib.sha256(value.encode()).hexdigest()[:32]
        # Hashes (failures, until); the counters of earlier versions were strings under
        # "millrace:auth:throttle:", which a hash command would refuse with WRONGTYPE.
        return f"millrace:auth:failures:{self.namespace}:{kind}:{digest}"

    def _known_key(self, account: Subject, address: str) -> str:
        kind, value = account
        digest = hashlib.sha256(f"{kind}\0{value}\0{address}".encode()).hexdigest()[:32]
        return f"millrace:auth:known:{self.namespace}:{digest}"

    async def retry_after_sign_in(self, account: Subject, address: str) -> int | None:
        """Seconds until ``account`` may try to sign in from ``address`` again; None if now.
        The address's limit does not apply to an account known there (see the module)."""
        wait = await self.retry_after(account, ("addr", address))
        if wait is None or not self.known_s:
            return wait
        own = await self.retry_after(account)
        if own is not None:
            return own
        try:
            known = await self.redis.exists(self._known_key(account, address))
        except REDIS_ERRORS as e:
            self._unavailable(e)
            return None
        return None if known else wait

    async def succeeded(self, account: Subject, address: str) -> None:
        """A correct sign-in: forget the account's failures, know it at this address."""
        try:
            async with self.redis.pipeline(transaction=False) as pipe:
                pipe.delete(self._key(account))
                if self.known_s:
                    pipe.set(self._known_key(account, address), 1, ex=self.known_s)
                await pipe.execute()
        except REDIS_ERRORS as e:
            self._unavailable(e)

    def _unavailable(self, e: Exception) -> None:
        log.warning(
            "Redis unreachable for %s throttling (%s); not throttling",
            self.namespace,
            e,
            extra={"dependency": "redis"},
        )

    async def retry_after(self, *subjects: Subject) -> int | None:
        """Seconds until the most throttled subject may try again; None if none is throttled."""
        try:
            async with self.redis.pipeline(transaction=False) as pipe:
                for subject in subjects:
                    pipe.hget(self._key(subject), "until")
                replies = await pipe.execute()
        except REDIS_ERRORS as e:
            self._unavailable(e)
            return None
        now = time.time()
        waits = [int(float(until) - now) + 1 for until in replies if until is not None]
        waits = [w for w in waits if w > 0]
        return max(waits) if waits else None

    async def failure(self, *subjects: Subject) -> None:
        try:
            async with self.redis.pipeline(transaction=False) as pipe:
                for subject in subjects:
                    key, policy = self._key(subject), self.policies[subject[0]]
                    pipe.hincrby(key, "failures", 1)
                    if policy.backoff_s:
                        pipe.expire(key, policy.remember_s)  # from the last failure
                    else:
                        pipe.expire(key, policy.window_s, nx=True)  # from the first one
                    pipe.ttl(key)
                replies = await pipe.execute()
            now = time.time()
            async with self.redis.pipeline(transaction=False) as pipe:
                for subject, failures, ttl in zip(
                    subjects, replies[::3], replies[2::3], strict=True
                ):
                    policy = self.policies[subject[0]]
                    wait = policy.wait(int(failures))
                    if wait and not policy.backoff_s:
                        wait = max(1, int(ttl))  # until the address's window ends
                    if wait:
                        pipe.hset(self._key(subject), "until", now + wait)
                await pipe.execute()
        except REDIS_ERRORS as e:
            self._unavailable(e)

    async def reset(self, subject: Subject) -> None:
        """Forget a subject's failures (an account after a successful sign-in; never an
        address, or one valid account would let an address keep guessing others)."""
        try:
            await self.redis.delete(self._key(subject))
        except REDIS_ERRORS as e:
            self._unavailable(e)
