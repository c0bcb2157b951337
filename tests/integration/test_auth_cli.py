"""The admin CLI as an operator runs it: real processes, password on standard input."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from services.auth.settings import Settings

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


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


def cli(env: dict[str, str], *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
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


def login(client: TestClient, username: str, password: str) -> Any:
    return client.post("/api/v1/auth/login", json={"username": username, "password": password})


def test_create_user_reads_the_password_from_stdin(
    cli_env: dict[str, str], auth_client: TestClient
) -> None:
    name = f"cli-{uuid.uuid4().hex[:8]}"
    done = cli(
        cli_env, "create-user", name, "--role", "supervisor", stdin="correct horse battery\n"
    )
    assert done.returncode == 0, done.stderr
    assert f"created user {name} (Supervisor)" in done.stdout
    response = login(auth_client, name, "correct horse battery")
    assert response.status_code == 200, response.text
    assert response.json()["user"]["role"] == "Supervisor"

    again = cli(cli_env, "create-user", name, "--role", "Operator", stdin="another password\n")
    assert again.returncode == 1
    assert "already exists" in again.stderr


def test_create_user_refuses_weak_passwords_and_bad_roles(cli_env: dict[str, str]) -> None:
    short = cli(
        cli_env, "create-user", f"cli-{uuid.uuid4().hex[:8]}", "--role", "Operator", stdin="short\n"
    )
    assert short.returncode == 1
    assert "password" in short.stderr
    role = cli(
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
    done = cli(cli_env, "create-gateway", gateway_id)
    assert done.returncode == 0, done.stderr
    printed = dict(
        line.split(":", 1) for line in done.stdout.splitlines() if line.startswith("client_")
    )
    client_id, secret = printed["client_id"].strip(), printed["client_secret"].strip()
    token = auth_client.post(
        "/api/v1/auth/token",
        data={"grant_type": "client_credentials", "client_id": client_id, "client_secret": secret},
    )
    assert token.status_code == 200, token.text


def test_dev_users_is_idempotent_and_private(
    cli_env: dict[str, str], auth_client: TestClient, tmp_path: Path
) -> None:
    first = cli(cli_env, "dev-users")
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
    second = cli(cli_env, "dev-users")
    assert second.returncode == 0, second.stderr
    assert path.read_text().splitlines()[1:] == [" ".join(r) for r in rows]


def test_dev_users_and_key_generation_refused_in_production(cli_env: dict[str, str]) -> None:
    # A production configuration in every other respect (argon2 at its production cost), so
    # that what refuses is the command itself, with the operator's message and exit status 2.
    production = {
        **{k: v for k, v in cli_env.items() if not k.startswith("AUTH_ARGON2_")},
        "MILLRACE_ENV": "production",
    }
    refused = cli(production, "dev-users")
    assert (refused.returncode, refused.stderr) == (
        2,
        "error: dev-users is for development only (MILLRACE_ENV=production)\n",
    )
    rotate = cli(production, "rotate-key")
    assert rotate.returncode == 2
    assert rotate.stderr.startswith("error: rotate-key only rotates the generated development key")
    no_key = {
        k: v
        for k, v in production.items()
        if k not in ("AUTH_PRIVATE_KEY", "AUTH_PRIVATE_KEY_FILE")
    }
    serve = cli(no_key, "serve")
    assert serve.returncode == 2
    assert serve.stderr.startswith("error: configuration refused: ")
    assert "AUTH_PRIVATE_KEY or AUTH_PRIVATE_KEY_FILE is required in production" in serve.stderr
    assert "Traceback" not in refused.stderr + rotate.stderr + serve.stderr
