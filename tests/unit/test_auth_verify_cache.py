"""Token verification remembers a verified signature, never the token's validity.

The same token sent again skips the RSA check, but its expiry and the denylist are looked at on
every request, and a token whose key is no longer published is checked in full again.
"""

from __future__ import annotations

import pytest

from shared.auth.verify import JwtAuthorizer
from shared.http import ApiError
from tests import auth_testing as testing


class Denylist:
    """Stands in for the RedisGuard: which jtis are revoked."""

    def __init__(self) -> None:
        self.revoked: set[str] = set()
        self.client = self

    def usable(self) -> bool:
        return True

    def ok(self) -> None:
        pass

    def failed(self, what: str, exc: BaseException) -> None:
        raise AssertionError(f"unexpected Redis failure: {exc}")

    async def mget(self, keys: list[str]) -> list[bytes | None]:
        jti_key, _ = keys
        return [b"1" if jti_key.rsplit(":", 1)[1] in self.revoked else None, None]


@pytest.fixture
def denylist() -> Denylist:
    return Denylist()


@pytest.fixture
def verifier(denylist: Denylist) -> JwtAuthorizer:
    authorizer = testing.authorizer()
    authorizer.redis = denylist  # type: ignore[assignment]
    return authorizer


async def refused(verifier: JwtAuthorizer, token: str) -> str:
    with pytest.raises(ApiError) as e:
        await verifier.verify(token)
    assert e.value.status == 401
    return e.value.message


async def test_signature_is_checked_once_per_token(
    verifier: JwtAuthorizer, monkeypatch: pytest.MonkeyPatch
) -> None:
    decodes = testing.count_decodes(monkeypatch)
    token = testing.mint_token("Operator")
    first = await verifier.verify(token)
    again = await verifier.verify(token)
    assert again == first
    assert decodes[0] == 1
    await verifier.verify(testing.mint_token("Operator"))
    assert decodes[0] == 2


async def test_a_remembered_token_is_still_refused_once_revoked(
    verifier: JwtAuthorizer, denylist: Denylist
) -> None:
    token = testing.mint_token("Operator")
    principal = await verifier.verify(token)
    denylist.revoked.add(principal.jti)
    assert await refused(verifier, token) == "Invalid token: revoked"


async def test_a_remembered_token_still_expires(
    verifier: JwtAuthorizer, monkeypatch: pytest.MonkeyPatch
) -> None:
    token = testing.mint_token("Operator", ttl_s=60)
    await verifier.verify(token)
    testing.advance_clock(monkeypatch, 3600)
    assert await refused(verifier, token) == "Invalid token: expired"


async def test_a_token_whose_key_was_withdrawn_is_refused(verifier: JwtAuthorizer) -> None:
    token = testing.mint_token("Operator")
    await verifier.verify(token)
    other = testing.new_keys()
    verifier.jwks.load(testing.jwks(other))  # rotation: the old key is no longer published
    assert await refused(verifier, token) == "Invalid token: unknown signing key"
