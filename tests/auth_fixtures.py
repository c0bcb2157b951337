"""Fixtures for tests of the auth service against real PostgreSQL and Redis.

Loaded for every test by the root conftest.py. Builds on ``postgres_settings`` / ``redis_settings`` of
``tests/conftest.py`` (the test database); a dependency that does not answer fails the test with
the reason, nothing is skipped.
"""

from __future__ import annotations

import functools
import secrets
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import psycopg
import pytest
import redis
from pydantic import SecretStr
from starlette.applications import Starlette
from starlette.testclient import TestClient

from services.auth import users
from services.auth.app import create_app
from services.auth.security.keys import private_key_pem
from services.auth.settings import AuthSettings, Settings
from shared.audit import CLI_ACTOR
from shared.security import SecuritySettings
from shared.settings import JwtSettings, PostgresSettings, RedisSettings
from tests import auth_testing as testing
from tests.paths import ROOT

TEST_PASSWORD_LENGTH = 12


@pytest.fixture(scope="session")
def auth_postgres(postgres_settings: PostgresSettings) -> PostgresSettings:
    """The test database from ``tests/conftest.py``, checked to answer."""
    url = postgres_settings.url.get_secret_value()
    try:
        with psycopg.connect(url, connect_timeout=3) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as e:
        where = f"{urlsplit(url).hostname}:{urlsplit(url).port}{urlsplit(url).path}"
        pytest.fail(f"PostgreSQL test database not reachable at {where}: {e} (run `make up`)")
    return postgres_settings


@pytest.fixture(scope="session")
def auth_redis(redis_settings: RedisSettings) -> RedisSettings:
    url = redis_settings.url.get_secret_value()
    client = redis.Redis.from_url(url, socket_connect_timeout=2)
    try:
        client.ping()
    except (redis.RedisError, OSError) as e:
        pytest.fail(f"Redis not reachable at {urlsplit(url).netloc}: {e} (run `make up`)")
    finally:
        client.close()
    return redis_settings


def fast_auth_settings(tmp_path: Path, **overrides: Any) -> AuthSettings:
    """Auth settings with the testing key and argon2 made cheap (tests only)."""
    values: dict[str, Any] = {
        "private_key": SecretStr(private_key_pem(testing.signing_keys().private_key).decode()),
        "key_dir": tmp_path / "keys",
        "dev_users_file": tmp_path / "dev-users.txt",
        "argon2_time_cost": 1,
        "argon2_memory_kib": 8,
        "argon2_parallelism": 1,
        "min_password_length": TEST_PASSWORD_LENGTH,
        **overrides,
    }
    return AuthSettings(**values)


@pytest.fixture
def auth_settings(
    auth_postgres: PostgresSettings, auth_redis: RedisSettings, tmp_path: Path
) -> Settings:
    return Settings(
        millrace_env="development",
        auth=fast_auth_settings(tmp_path),
        postgres=auth_postgres,
        redis=auth_redis,
        jwt=JwtSettings(),
        security=SecuritySettings(cors_origins=[]),
    )


@pytest.fixture
def auth_app(auth_settings: Settings) -> Starlette:
    return create_app(auth_settings)


def unique_address() -> str:
    a, b, c = secrets.token_bytes(3)
    return f"10.{a}.{b}.{c}"


@pytest.fixture
def client_address() -> str:
    """The address ``auth_client`` connects from (its own: throttling counters never leak)."""
    return unique_address()


@pytest.fixture
def auth_client(auth_app: Starlette, client_address: str) -> Iterator[TestClient]:
    with TestClient(auth_app, client=(client_address, 50000)) as client:
        yield client


@dataclass(frozen=True)
class AccountForTest:
    id: str
    username: str
    password: str
    role: str


def unique_name(prefix: str = "user") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def _add_user(client: TestClient, role: str = "Operator", **kwargs: Any) -> AccountForTest:
    username = kwargs.pop("username", None) or unique_name(role.lower())
    password = kwargs.pop("password", None) or secrets.token_urlsafe(12)
    state = client.app_state
    assert client.portal is not None, "use inside `with TestClient(app) as client:`"
    user = client.portal.call(
        functools.partial(
            users.create,
            state["pool"],
            state["hasher"],
            CLI_ACTOR,
            username=username,
            password=password,
            role=role,
            min_password_length=TEST_PASSWORD_LENGTH,
            **kwargs,
        )
    )
    return AccountForTest(user.id, user.username, password, user.role)


MakeUser = Callable[..., AccountForTest]
LogIn = Callable[[AccountForTest], dict[str, Any]]


@pytest.fixture
def make_user(auth_client: TestClient) -> MakeUser:
    """``make_user("Supervisor")``: a user created through the app's own code, in its event
    loop (no HTTP, no permissions needed); unique username, known password."""
    return functools.partial(_add_user, auth_client)


def exchange(client: TestClient, client_id: str, secret: str) -> Any:
    """The client-credentials grant: a gateway's id and secret for a token (the response)."""
    return client.post(
        "/api/v1/auth/token",
        data={"grant_type": "client_credentials", "client_id": client_id, "client_secret": secret},
    )


@pytest.fixture
def log_in(auth_client: TestClient) -> LogIn:
    """``log_in(account)``: the login response body (asserted 200)."""

    def run(account: AccountForTest) -> dict[str, Any]:
        response = auth_client.post(
            "/api/v1/auth/login",
            json={"username": account.username, "password": account.password},
        )
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    return run


def auth_cli(env: dict[str, str], *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    """``python -m services.auth <args>`` as an operator runs it, in ``env``; not checked."""
    return subprocess.run(
        [sys.executable, "-m", "services.auth", *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=60,
        check=False,
    )
