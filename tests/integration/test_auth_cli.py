"""The admin CLI as an operator runs it: real processes, password on standard input."""

from __future__ import annotations

import os
import stat
import uuid
from pathlib import Path
from typing import Any

import jwt
import psycopg
import pytest
from starlette.testclient import TestClient

from services.auth.settings import Settings
from tests.auth_fixtures import auth_cli, exchange

pytestmark = pytest.mark.integration


@pytest.fixture
def cli_env(auth_settings: Settings, tmp_path: Path) -> dict[str, str]:
    """The environment of an operator's shell pointing at the test database."""
    auth = auth_settings.auth
    assert auth.private_key is not None
    return {
        **os.environ,
        "MILLRACE_ENV": "development",
        "POSTGRES_URL": auth_settings.postgres.url.get_secret_value(),
        "REDIS_URL": auth_settings.redis.url.get_secret_value(),
        "AUTH_PRIVATE_KEY": auth.private_key.get_secret_value(),
        "AUTH_KEY_DIR": str(tmp_path / "keys"),
        "AUTH_DEV_USERS_FILE": str(tmp_path / "dev-users.txt"),
        "AUTH_ARGON2_TIME_COST": "1",
        "AUTH_ARGON2_MEMORY_KIB": "8",
        "AUTH_ARGON2_PARALLELISM": "1",
    }


def login(client: TestClient, username: str, password: str) -> Any:
    return client.post("/api/v1/auth/login", json={"username": username, "password": password})


def test_create_user_reads_the_password_from_stdin(
    cli_env: dict[str, str], auth_client: TestClient
) -> None:
    name = f"cli-{uuid.uuid4().hex[:8]}"
    done = auth_cli(
        cli_env, "create-user", name, "--role", "supervisor", stdin="correct horse battery\n"
    )
    assert done.returncode == 0, done.stderr
    assert f"created user {name} (Supervisor)" in done.stdout
    response = login(auth_client, name, "correct horse battery")
    assert response.status_code == 200, response.text
    assert response.json()["user"]["role"] == "Supervisor"

    again = auth_cli(cli_env, "create-user", name, "--role", "Operator", stdin="another password\n")
    assert again.returncode == 1
    assert "already exists" in again.stderr


def test_create_user_refuses_weak_passwords_and_bad_roles(cli_env: dict[str, str]) -> None:
    short = auth_cli(
        cli_env, "create-user", f"cli-{uuid.uuid4().hex[:8]}", "--role", "Operator", stdin="short\n"
    )
    assert short.returncode == 1
    assert "password" in short.stderr
    role = auth_cli(
        cli_env,
        "create-user",
        f"cli-{uuid.uuid4().hex[:8]}",
        "--role",
        "Gateway",
        stdin="long enough password\n",
    )
    assert role.returncode == 1
    assert "role" in role.stderr


def test_create_gateway_prints_credentials_once(
    cli_env: dict[str, str], auth_client: TestClient
) -> None:
    gateway_id = f"GW-{uuid.uuid4().hex[:8]}"
    done = auth_cli(cli_env, "create-gateway", gateway_id)
    assert done.returncode == 0, done.stderr
    printed = dict(
        line.split(":", 1) for line in done.stdout.splitlines() if line.startswith("client_")
    )
    client_id, secret = printed["client_id"].strip(), printed["client_secret"].strip()
    token = exchange(auth_client, client_id, secret)
    assert token.status_code == 200, token.text


def test_dev_users_is_idempotent_and_private(
    cli_env: dict[str, str], auth_client: TestClient, tmp_path: Path
) -> None:
    first = auth_cli(cli_env, "dev-users")
    assert first.returncode == 0, first.stderr
    assert "curl -s -X POST http://127.0.0.1:8003/api/v1/auth/login" in first.stdout
    path = tmp_path / "dev-users.txt"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    rows = [line.split() for line in path.read_text().splitlines() if not line.startswith("#")]
    assert [(u, r) for u, r, _ in rows] == [
        ("operator", "Operator"),
        ("supervisor", "Supervisor"),
        ("manager", "Management"),
    ]
    for username, role, password in rows:
        response = login(auth_client, username, password)
        assert response.status_code == 200, response.text
        assert response.json()["user"]["role"] == role
    # Run again: the same passwords stay valid.
    second = auth_cli(cli_env, "dev-users")
    assert second.returncode == 0, second.stderr
    assert path.read_text().splitlines()[1:] == [" ".join(r) for r in rows]


def test_dev_users_and_key_generation_refused_in_production(cli_env: dict[str, str]) -> None:
    # A production configuration in every other respect (argon2 at its production cost), so
    # that what refuses is the command itself, with the operator's message and exit status 2.
    production = {
        **{k: v for k, v in cli_env.items() if not k.startswith("AUTH_ARGON2_")},
        "MILLRACE_ENV": "production",
    }
    refused = auth_cli(production, "dev-users")
    assert (refused.returncode, refused.stderr) == (
        2,
        "error: dev-users is for development only (MILLRACE_ENV=production)\n",
    )
    rotate = auth_cli(production, "rotate-key")
    assert rotate.returncode == 2
    assert rotate.stderr.startswith("error: rotate-key only rotates the generated development key")
    no_key = {
        k: v
        for k, v in production.items()
        if k not in ("AUTH_PRIVATE_KEY", "AUTH_PRIVATE_KEY_FILE")
    }
    serve = auth_cli(no_key, "serve")
    assert serve.returncode == 2
    assert serve.stderr.startswith("error: configuration refused: ")
    assert "AUTH_PRIVATE_KEY or AUTH_PRIVATE_KEY_FILE is required in production" in serve.stderr
    assert "Traceback" not in refused.stderr + rotate.stderr + serve.stderr


def claims_of(response: Any) -> dict[str, Any]:
    assert response.status_code == 200, response.text
    decoded: dict[str, Any] = jwt.decode(
        response.json()["access_token"], options={"verify_signature": False}
    )
    return decoded


def test_create_user_with_factories_signs_in_to_those_only(
    cli_env: dict[str, str], auth_client: TestClient
) -> None:
    name = f"cli-{uuid.uuid4().hex[:8]}"
    done = auth_cli(
        cli_env,
        "create-user",
        name,
        "--role",
        "Operator",
        "--factory",
        "plant-b",
        "--factory",
        "plant-a",
        stdin="correct horse battery\n",
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().endswith("factories: plant-a, plant-b")
    assert claims_of(login(auth_client, name, "correct horse battery"))["factories"] == [
        "plant-a",
        "plant-b",
    ]
    everywhere = f"cli-{uuid.uuid4().hex[:8]}"
    done = auth_cli(
        cli_env, "create-user", everywhere, "--role", "Operator", stdin="long password!\n"
    )
    assert done.stdout.strip().endswith("factories: every factory")
    assert claims_of(login(auth_client, everywhere, "long password!"))["factories"] == "*"
    bad = auth_cli(
        cli_env,
        "create-user",
        f"cli-{uuid.uuid4().hex[:8]}",
        "--role",
        "Operator",
        "--factory",
        "no spaces",
        stdin="long password!\n",
    )
    assert bad.returncode == 1
    assert "--factory: A factory id is 1 to 100 characters" in bad.stderr


def create_machine(settings: Settings, factory: str) -> str:
    with psycopg.connect(settings.postgres.url.get_secret_value()) as conn:
        row = conn.execute(
            "INSERT INTO machine_metadata (name, location, sensor_type, factory_id)"
            " VALUES ('M-cli', 'Hall', 'Temperature', %s) RETURNING id",
            (factory,),
        ).fetchone()
    assert row is not None
    return str(row[0])


def test_create_gateway_in_a_factory_for_some_machines(
    cli_env: dict[str, str], auth_client: TestClient, auth_settings: Settings
) -> None:
    factory = f"plant-{uuid.uuid4().hex[:8]}"
    machine = create_machine(auth_settings, factory)
    gateway_id = f"GW-{uuid.uuid4().hex[:8]}"
    done = auth_cli(
        cli_env, "create-gateway", gateway_id, "--factory", factory, "--machine", machine
    )
    assert done.returncode == 0, done.stderr
    printed = {
        key.strip(): value.strip()
        for key, value in (line.split(":", 1) for line in done.stdout.splitlines()[:5])
    }
    assert printed["factory"] == factory and printed["machines"] == machine
    claims = claims_of(exchange(auth_client, printed["client_id"], printed["client_secret"]))
    assert (claims["factories"], claims["gateway_id"], claims["machines"]) == (
        [factory],
        gateway_id,
        [machine],
    )
    # Without --factory: the default factory, every machine of it.
    done = auth_cli(cli_env, "create-gateway", f"GW-{uuid.uuid4().hex[:8]}")
    assert "factory:       default" in done.stdout
    assert "machines:      every machine" in done.stdout
    # A machine of another factory, or not a machine id at all, is refused with the reason.
    foreign = auth_cli(
        cli_env,
        "create-gateway",
        f"GW-{uuid.uuid4().hex[:8]}",
        "--factory",
        "elsewhere",
        "--machine",
        machine,
    )
    assert foreign.returncode == 1
    assert f"Machine {machine} is not registered in factory elsewhere" in foreign.stderr
    garbled = auth_cli(cli_env, "create-gateway", "GW-x", "--machine", "m-1")
    assert garbled.returncode == 1 and "--machine: Not a machine id (UUID)" in garbled.stderr
