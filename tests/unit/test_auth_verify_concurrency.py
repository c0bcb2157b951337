"""Token verification under concurrency: many requests carrying the same token interleave at
every ``await`` of :meth:`JwtAuthorizer.verify`; whatever the interleaving, each one gets the
answer it would get alone (a principal or 401), never an exception of the cache's bookkeeping.
"""

from __future__ import annotations

import asyncio
import socket
import time
from typing import Any

import pytest

from shared.auth.verify import JwksCache, JwtAuthorizer, Principal
from shared.http import ApiError
from tests import auth_testing as testing

CONCURRENCY = 64


class GatedJwks(JwksCache):
    """A JWKS cache whose fetch waits on ``gate`` (a slow auth service), then serves ``next``."""

    def __init__(self, inner: JwksCache) -> None:
        super().__init__(inner.settings)
        self._keys, self._entries = inner._keys, inner._entries
        self._fetched_at = inner._fetched_at
        self.gate = asyncio.Event()
        self.fetching = asyncio.Event()
        self.next: dict[str, Any] = {"keys": []}
        self.fetches = 0

    async def _fetch(self) -> None:
        self.fetches += 1
        self.fetching.set()
        await self.gate.wait()
        self.load(self.next)


async def answers(verifier: JwtAuthorizer, token: str) -> list[Principal | int]:
    async def one() -> Principal | int:
        try:
            return await verifier.verify(token)
        except ApiError as e:
            return e.status

    return await asyncio.gather(*(one() for _ in range(CONCURRENCY)))


async def parked(gated: GatedJwks) -> None:
    """Return once every request is suspended inside the refresh (one fetch, the rest queued on
    its lock): each ready task runs up to its first suspension within one turn of the loop."""
    await gated.fetching.wait()
    for _ in range(3):
        await asyncio.sleep(0)


def stale_gated(verifier: JwtAuthorizer, jwks: dict[str, Any]) -> GatedJwks:
    gated = GatedJwks(verifier.jwks)
    gated._fetched_at = time.monotonic() - verifier.settings.jwks_cache_s - 1
    gated.next = jwks
    verifier.jwks = gated
    return gated


async def test_requests_during_a_jwks_refresh_that_withdrew_the_key_get_a_principal_or_401() -> (
    None
):
    verifier = testing.authorizer()
    token = testing.mint_token("Operator")
    principal = await verifier.verify(token)  # remembered
    gated = stale_gated(verifier, testing.jwks(testing.new_keys()))  # rotated: key gone
    pending = asyncio.ensure_future(answers(verifier, token))
    await parked(gated)
    gated.gate.set()
    results = await pending
    # Requests that arrived while the fetch ran were served with the keys held then; the one
    # that fetched sees the key withdrawn. None fails otherwise.
    assert set(map(type, results)) <= {Principal, int}
    assert 401 in results and set(r for r in results if isinstance(r, int)) == {401}
    assert all(r == principal for r in results if not isinstance(r, int))
    assert await answers(verifier, token) == [401] * CONCURRENCY


async def test_a_token_of_a_key_published_a_moment_after_the_last_fetch_is_accepted() -> None:
    keys = testing.new_keys()
    verifier = testing.authorizer(keys=keys)
    rotated = testing.new_keys()
    gated = GatedJwks(verifier.jwks)
    gated.gate.set()
    gated.next = testing.jwks(keys)
    verifier.jwks = gated
    await gated.refresh(unknown_kid=True)  # a fetch just now, before the rotation
    gated.next = {"keys": testing.jwks(keys)["keys"] + testing.jwks(rotated)["keys"]}
    token = testing.mint_token("Operator", keys=rotated)
    results = await answers(verifier, token)
    assert all(isinstance(r, Principal) for r in results)
    assert gated.fetches == 2  # one more fetch, shared by every waiting request


async def test_a_jwks_refresh_that_keeps_the_key_keeps_the_token_remembered(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    verifier = testing.authorizer()
    token = testing.mint_token("Operator")
    first = await verifier.verify(token)
    gated = stale_gated(verifier, testing.jwks())  # the same key published again
    decodes = testing.count_decodes(monkeypatch)
    pending = asyncio.ensure_future(answers(verifier, token))
    await parked(gated)
    gated.gate.set()
    assert await pending == [first] * CONCURRENCY
    assert decodes[0] == 0  # no signature checked again


async def test_a_remembered_token_expiring_under_concurrent_requests_answers_401(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    verifier = testing.authorizer()
    token = testing.mint_token("Operator", ttl_s=60)
    await verifier.verify(token)
    testing.advance_clock(monkeypatch, 3600)
    assert await answers(verifier, token) == [401] * CONCURRENCY


async def test_while_auth_is_unreachable_requests_do_not_queue_one_fetch_each() -> None:
    # A port bound but not listening refuses connections, and nothing else can take it meanwhile.
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    settings = testing.authorizer().settings.model_copy(
        update={"jwks_url": f"http://127.0.0.1:{port}/.well-known/jwks.json"}
    )
    verifier = testing.authorizer(jwt_settings=settings)
    token = testing.mint_token("Operator")
    await verifier.verify(token)
    fetches = 0
    real_get = verifier.jwks._http.get

    async def counting_get(*args: Any, **kwargs: Any) -> Any:
        nonlocal fetches
        fetches += 1
        return await real_get(*args, **kwargs)

    verifier.jwks._http.get = counting_get  # type: ignore[method-assign]
    verifier.jwks._fetched_at -= settings.jwks_cache_s + 1  # stale: every request wants a fetch
    results = await answers(verifier, token)
    # The keys held keep serving; one failed fetch, not one per request.
    assert all(isinstance(r, Principal) for r in results)
    assert fetches == 1
    await verifier.jwks.close()
    closed.close()
