"""Signing-key rotation through the admin CLI, and passwords re-hashed on login once the hash
parameters are raised: the auth app against real PostgreSQL and Redis."""

from __future__ import annotations

import os
from pathlib import Path

import jwt
import pytest
from starlette.testclient import TestClient

from services.auth.app import create_app
from services.auth.settings import Settings
from tests.auth_fixtures import _add_user, auth_cli, fast_auth_settings, unique_address

pytestmark = pytest.mark.integration


def _client(settings: Settings) -> TestClient:
    return TestClient(create_app(settings), client=(unique_address(), 50000))


def _login(client: TestClient, username: str, password: str) -> str:
    resp = client.post("/api/v1/auth/login", json={"username": username, "password": password})
    assert resp.status_code == 200, resp.text
    return str(resp.json()["access_token"])


def _kids(client: TestClient) -> set[str]:
    return {k["kid"] for k in client.get("/.well-known/jwks.json").json()["keys"]}


def test_rotate_key_signs_with_a_new_key_and_keeps_the_old_one_published(
    auth_settings: Settings, tmp_path: Path
) -> None:
    # Development with no configured key: auth generates one in its key directory.
    settings = auth_settings.model_copy(
        update={"auth": fast_auth_settings(tmp_path, private_key=None)}
    )
    with _client(settings) as before:
        account = _add_user(before, "Operator")
        old_token = _login(before, account.username, account.password)
        [old_kid] = _kids(before)
    assert jwt.get_unverified_header(old_token)["kid"] == old_kid

    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("AUTH_PRIVATE_KEY", "AUTH_PRIVATE_KEY_FILE", "AUTH_PREVIOUS_KEYS_DIR")
    }
    env.update(
        MILLRACE_ENV="development",
        AUTH_KEY_DIR=str(settings.auth.key_dir),
        POSTGRES_URL=settings.postgres.url.get_secret_value(),
        REDIS_URL=settings.redis.url.get_secret_value(),
    )
    done = auth_cli(env, "rotate-key")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"retired key {old_kid}; new signing key ")

    with _client(settings) as after:  # "Restart auth to sign with it."
        kids = _kids(after)
        [new_kid] = kids - {old_kid}
        assert kids == {old_kid, new_kid}
        assert f"new signing key {new_kid}." in done.stdout
        new_token = _login(after, account.username, account.password)
        assert jwt.get_unverified_header(new_token)["kid"] == new_kid
        # A token signed before the rotation stays valid until it expires.
        for token in (old_token, new_token):
            me = after.get("/api/v1/auth/me", headers={"Authorization": f"Bearer {token}"})
            assert me.status_code == 200, me.text
            assert me.json()["user"]["username"] == account.username


def _stored_hash(client: TestClient, username: str) -> str:
    from services.auth import users

    assert client.portal is not None
    user = client.portal.call(users.by_username, client.app_state["pool"], username)
    assert user is not None
    return user.password_hash


def test_login_rehashes_a_password_stored_with_weaker_parameters(
    auth_settings: Settings, tmp_path: Path
) -> None:
    with _client(auth_settings) as weak:
        account = _add_user(weak, "Operator")
        stored = _stored_hash(weak, account.username)
    assert ",t=1," in stored

    stronger = auth_settings.model_copy(
        update={"auth": fast_auth_settings(tmp_path, argon2_time_cost=2)}
    )
    with _client(stronger) as client:
        _login(client, account.username, account.password)
        rehashed = _stored_hash(client, account.username)
        assert rehashed != stored and ",t=2," in rehashed
        # The new hash holds the same password, and is not replaced again.
        _login(client, account.username, account.password)
        assert _stored_hash(client, account.username) == rehashed
        wrong = client.post(
            "/api/v1/auth/login", json={"username": account.username, "password": "not it"}
        )
        assert wrong.status_code == 401
        assert _stored_hash(client, account.username) == rehashed
