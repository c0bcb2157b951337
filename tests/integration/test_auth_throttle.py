"""Login throttling in Redis: an account backs off after 5 failures (429 + Retry-After, the
wait doubling with each further failure); an address only past AUTH_THROTTLE_ADDRESS_MAX_FAILURES
failures, so a plant behind one NAT keeps signing in, and never for an account that signed in
from there before; fail-open (with a WARNING) when Redis is
down. Behind a trusted proxy (the console passes sign-ins on), the address counted is the one
it forwards."""

from __future__ import annotations

import logging
import secrets
from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest
from pydantic import SecretStr
from starlette.testclient import TestClient

from services.auth.app import create_app
from services.auth.settings import Settings
from shared.settings import RedisSettings

if TYPE_CHECKING:
    from tests.auth_fixtures import MakeUser

pytestmark = pytest.mark.integration

LOGIN = "/api/v1/auth/login"


def fresh_address() -> str:
    """Never used before: counters of earlier runs (same window) cannot interfere."""
    return "10." + ".".join(str(b) for b in secrets.token_bytes(3))


def attempt(client: TestClient, username: str, password: str) -> int:
    return client.post(LOGIN, json={"username": username, "password": password}).status_code


def test_five_failures_for_a_username_lock_it_even_with_the_right_password(
    auth_client: TestClient, make_user: MakeUser
) -> None:
    account = make_user("Operator")
    for _ in range(5):
        assert attempt(auth_client, account.username, "wrong password!") == 401
    response = auth_client.post(
        LOGIN, json={"username": account.username, "password": account.password}
    )
    assert response.status_code == 429
    retry_after = int(response.headers["retry-after"])
    assert 0 < retry_after <= 900
    assert response.json()["status"] == "error"


def test_username_lock_holds_from_any_address(auth_client: TestClient, make_user: MakeUser) -> None:
    account = make_user("Operator")
    for _ in range(5):
        attempt(auth_client, account.username, "wrong password!")
    with TestClient(auth_client.app, client=(fresh_address(), 1)) as elsewhere:
        assert attempt(elsewhere, account.username, account.password) == 429


def test_a_plant_behind_one_address_mistypes_and_still_signs_in(
    auth_client: TestClient, make_user: MakeUser
) -> None:
    operators = [make_user("Operator") for _ in range(50)]
    for account in operators:
        assert attempt(auth_client, account.username, "mistyped password") == 401
    for account in operators:
        assert attempt(auth_client, account.username, account.password) == 200


def test_guesses_from_one_address_are_stopped_at_its_limit(
    auth_client: TestClient, auth_settings: Settings, make_user: MakeUser
) -> None:
    limit = auth_settings.auth.throttle_address_max_failures
    manager = make_user("Management")
    answers = [attempt(auth_client, f"guess-{i}", "password123!") for i in range(limit + 20)]
    assert answers[:limit] == [401] * limit
    assert set(answers[limit:]) == {429}
    # The address is stopped whatever it sends, a correct password included...
    response = auth_client.post(
        LOGIN, json={"username": manager.username, "password": manager.password}
    )
    assert response.status_code == 429 and int(response.headers["retry-after"]) > 0
    # ...but the account is not locked: from another address it signs in.
    with TestClient(auth_client.app, client=(fresh_address(), 1)) as elsewhere:
        assert attempt(elsewhere, manager.username, manager.password) == 200


def test_an_account_known_at_an_address_signs_in_while_that_address_is_stopped(
    auth_client: TestClient, auth_settings: Settings, make_user: MakeUser
) -> None:
    limit = auth_settings.auth.throttle_address_max_failures
    manager, stranger, careless = (
        make_user(role) for role in ("Management", "Operator", "Operator")
    )
    with TestClient(auth_client.app, client=(fresh_address(), 1)) as plant:
        # Earlier shifts signed in from the plant's address: they are known there.
        assert attempt(plant, manager.username, manager.password) == 200
        assert attempt(plant, careless.username, careless.password) == 200
        # Someone behind the same NAT sprays guesses until the address is stopped.
        guesses = [attempt(plant, f"guess-{i}", "password123!") for i in range(limit + 5)]
        assert guesses[-1] == 429
        # The known manager still signs in; an account never seen there does not.
        assert attempt(plant, manager.username, manager.password) == 200
        assert attempt(plant, stranger.username, stranger.password) == 429
        # Known is not a free pass to guess: the account's own backoff still holds.
        for _ in range(5):
            assert attempt(plant, careless.username, "wrong password!") == 401
        assert attempt(plant, careless.username, careless.password) == 429


async def test_an_account_waits_twice_as_long_after_each_further_failure(
    auth_settings: Settings,
) -> None:
    import redis.asyncio as aioredis

    from services.auth.security.throttle import Policy, Throttle

    redis = aioredis.from_url(auth_settings.redis.url.get_secret_value())
    throttle = Throttle(redis, {"user": Policy(free=3, window_s=900, backoff_s=15)}, "test")
    subject = ("user", f"backoff-{secrets.token_hex(6)}")
    waits = []
    try:
        for _ in range(6):
            await throttle.failure(subject)
            waits.append(await throttle.retry_after(subject))
        await throttle.reset(subject)
        assert await throttle.retry_after(subject) is None
    finally:
        await redis.aclose()
    assert waits[:2] == [None, None]
    for got, want in zip(waits[2:], (15, 30, 60, 120), strict=True):
        assert got is not None and want - 2 <= got <= want + 1


def test_success_resets_the_username_counter(auth_client: TestClient, make_user: MakeUser) -> None:
    account = make_user("Operator")
    for _ in range(4):
        attempt(auth_client, account.username, "wrong password!")
    assert attempt(auth_client, account.username, account.password) == 200
    # The address counter is not reset by a success; use a fresh address for the next four.
    with TestClient(auth_client.app, client=(fresh_address(), 1)) as other:
        for _ in range(4):
            assert attempt(other, account.username, "wrong password!") == 401
        assert attempt(other, account.username, account.password) == 200


def test_redis_down_fails_open_with_a_warning(
    auth_settings: Settings,
    make_user: MakeUser,
    caplog: pytest.LogCaptureFixture,
    refused_port: int,
) -> None:
    # Nothing listens on the refused port: every Redis call is refused at once.
    dead = auth_settings.model_copy(
        update={"redis": RedisSettings(url=SecretStr(f"redis://127.0.0.1:{refused_port}/0"))}
    )
    account = make_user("Operator")
    caplog.set_level(logging.WARNING)
    with TestClient(create_app(dead)) as client:
        for _ in range(6):
            assert attempt(client, account.username, "wrong password!") == 401
        response = client.post(
            LOGIN, json={"username": account.username, "password": account.password}
        )
        assert response.status_code == 200
        token = response.json()["access_token"]
        # Verification still works (revocation check skipped, logged)...
        me = client.get("/api/v1/auth/me", headers={"Authorization": f"Bearer {token}"})
        assert me.status_code == 200
        # ...but a logout that cannot reach the denylist says so instead of pretending.
        out = client.post("/api/v1/auth/logout", headers={"Authorization": f"Bearer {token}"})
        assert out.status_code == 503
        assert "retry-after" in out.headers
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("Redis unreachable for login throttling" in m for m in warnings)
    assert any("token denylist" in m for m in warnings)


@pytest.fixture
def console(auth_settings: Settings) -> Iterator[TestClient]:
    """Auth as the console reaches it: from a peer listed in AUTH_TRUSTED_PROXIES."""
    proxy = fresh_address()
    trusting = auth_settings.auth.model_copy(update={"trusted_proxies": f"127.0.0.1,{proxy}"})
    settings = auth_settings.model_copy(update={"auth": trusting})
    with TestClient(create_app(settings), client=(proxy, 40000)) as client:
        yield client


def forwarded(client: TestClient, address: str, username: str, password: str) -> int:
    return client.post(
        LOGIN,
        json={"username": username, "password": password},
        headers={"X-Forwarded-For": address},
    ).status_code


def test_behind_the_console_a_plant_mistypes_and_signs_in_while_guessing_is_stopped(
    console: TestClient, auth_settings: Settings, make_user: MakeUser
) -> None:
    plant, guesser = fresh_address(), fresh_address()
    operators = [make_user("Operator") for _ in range(50)]
    for account in operators:
        assert forwarded(console, plant, account.username, "mistyped password") == 401
    for account in operators:
        assert forwarded(console, plant, account.username, account.password) == 200
    limit = auth_settings.auth.throttle_address_max_failures
    answers = [forwarded(console, guesser, f"guess-{i}", "password123!") for i in range(1000)]
    assert answers[:limit] == [401] * limit
    assert set(answers[limit:]) == {429}
    # The guesser's address is stopped, the console (everyone else's way in) is not.
    manager = make_user("Management")
    assert forwarded(console, guesser, manager.username, manager.password) == 429
    assert forwarded(console, plant, manager.username, manager.password) == 200


def test_a_forged_forwarded_address_is_not_believed(
    console: TestClient, auth_client: TestClient, auth_settings: Settings
) -> None:
    limit = auth_settings.auth.throttle_address_max_failures
    # From an untrusted peer, X-Forwarded-For is ignored: every guess counts against the peer.
    answers = [
        forwarded(auth_client, fresh_address(), f"guess-{i}", "password123!")
        for i in range(limit + 1)
    ]
    assert answers == [401] * limit + [429]
    # Through the console, a client's own X-Forwarded-For comes first; the console's entry
    # (the real client) is the one counted.
    real = fresh_address()
    answers = [
        forwarded(console, f"{fresh_address()}, {real}", f"guess-{i}", "password123!")
        for i in range(limit + 1)
    ]
    assert answers == [401] * limit + [429]


def test_trusted_proxies_must_be_addresses_or_networks() -> None:
    from services.auth.settings import AuthSettings

    assert AuthSettings(trusted_proxies="10.0.0.0/8, ::1,*").trusted_proxies
    with pytest.raises(ValueError, match=r"AUTH_TRUSTED_PROXIES: 'proxy\.local' is not an address"):
        AuthSettings(trusted_proxies="127.0.0.1,proxy.local")
