"""Login, refresh rotation and reuse detection, logout, ``/me`` (real PostgreSQL and Redis)."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

import pytest
from starlette.testclient import TestClient

if TYPE_CHECKING:
    from tests.auth_fixtures import LogIn, MakeUser

pytestmark = pytest.mark.integration


def refresh(client: TestClient, refresh_token: str) -> Any:
    """The JSON refresh grant: ``refresh_token`` for a new pair."""
    return client.post("/api/v1/auth/refresh", json={"refresh_token": refresh_token})


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_login_json_returns_the_contract_body(auth_client: TestClient, make_user: MakeUser) -> None:
    account = make_user("Supervisor")
    response = auth_client.post(
        "/api/v1/auth/login", json={"username": account.username, "password": account.password}
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == 900
    assert body["access_token"] and body["refresh_token"]
    user = body["user"]
    assert (user["username"], user["role"], user["active"]) == (
        account.username,
        "Supervisor",
        True,
    )
    assert "write:machines" in user["permissions"]
    assert "password_hash" not in user
    assert user["last_login"] is not None
    assert response.headers["cache-control"] == "no-store"


def test_login_form_encoded_oauth2_password_grant(
    auth_client: TestClient, make_user: MakeUser
) -> None:
    account = make_user("Operator")
    response = auth_client.post(
        "/api/v1/auth/login",
        data={"grant_type": "password", "username": account.username, "password": account.password},
    )
    assert response.status_code == 200, response.text
    assert response.json()["user"]["role"] == "Operator"


def test_username_is_case_insensitive(auth_client: TestClient, make_user: MakeUser) -> None:
    account = make_user("Operator")
    response = auth_client.post(
        "/api/v1/auth/login",
        json={"username": account.username.upper(), "password": account.password},
    )
    assert response.status_code == 200, response.text


def test_wrong_password_and_unknown_user_get_the_same_answer(
    auth_client: TestClient, make_user: MakeUser
) -> None:
    account = make_user("Operator")
    wrong = auth_client.post(
        "/api/v1/auth/login", json={"username": account.username, "password": "not-the-password"}
    )
    unknown = auth_client.post(
        "/api/v1/auth/login", json={"username": "nobody-" + account.username, "password": "x" * 12}
    )
    assert wrong.status_code == unknown.status_code == 401
    assert wrong.json() == unknown.json()
    assert wrong.json()["error"] == "invalid_grant"


def test_login_validation_and_media_types(auth_client: TestClient) -> None:
    missing = auth_client.post("/api/v1/auth/login", json={"username": "someone"})
    assert missing.status_code == 400
    assert missing.json()["errors"] == [{"field": "password", "error": "Required"}]
    assert (
        auth_client.post(
            "/api/v1/auth/login", content=b"{", headers={"content-type": "application/json"}
        ).status_code
        == 400
    )
    assert (
        auth_client.post(
            "/api/v1/auth/login", content=b"<x/>", headers={"content-type": "application/xml"}
        ).status_code
        == 415
    )
    wrong_grant = auth_client.post(
        "/api/v1/auth/login", data={"grant_type": "client_credentials", "username": "a"}
    )
    assert wrong_grant.status_code == 400
    assert wrong_grant.json()["error"] == "unsupported_grant_type"


def test_me_returns_the_caller(auth_client: TestClient, make_user: MakeUser, log_in: LogIn) -> None:
    email = f"boss-{uuid.uuid4().hex[:8]}@example.com"
    account = make_user("Management", email=email)
    tokens = log_in(account)
    response = auth_client.get("/api/v1/auth/me", headers=auth(tokens["access_token"]))
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["user"]["id"] == account.id
    assert body["user"]["email"] == email
    assert body["token"]["role"] == "Management"
    assert "delete:users" in body["token"]["permissions"]
    assert auth_client.get("/api/v1/auth/me").status_code == 401


def test_refresh_rotates_and_the_new_pair_works(
    auth_client: TestClient, make_user: MakeUser, log_in: LogIn
) -> None:
    first = log_in(make_user("Operator"))
    response = refresh(auth_client, first["refresh_token"])
    assert response.status_code == 200, response.text
    second = response.json()
    assert second["refresh_token"] != first["refresh_token"]
    assert second["access_token"] != first["access_token"]
    assert second["user"]["username"] == first["user"]["username"]
    assert (
        auth_client.get("/api/v1/auth/me", headers=auth(second["access_token"])).status_code == 200
    )
    # Form-encoded OAuth2 refresh grant works too.
    third = auth_client.post(
        "/api/v1/auth/refresh",
        data={"grant_type": "refresh_token", "refresh_token": second["refresh_token"]},
    )
    assert third.status_code == 200, third.text


def test_reused_refresh_token_revokes_the_whole_family(
    auth_client: TestClient, make_user: MakeUser, log_in: LogIn
) -> None:
    first = log_in(make_user("Operator"))
    second = refresh(auth_client, first["refresh_token"]).json()
    # An attacker (or a confused client) presents the already-rotated token.
    reuse = refresh(auth_client, first["refresh_token"])
    assert reuse.status_code == 401
    assert "revoked" in reuse.json()["message"]
    # Every token of the family is dead: the newest refresh token and both access tokens.
    after = refresh(auth_client, second["refresh_token"])
    assert after.status_code == 401
    for access in (first["access_token"], second["access_token"]):
        me = auth_client.get("/api/v1/auth/me", headers=auth(access))
        assert me.status_code == 401
        assert me.json()["message"] == "Invalid token: revoked"


def test_reuse_revokes_only_that_login(
    auth_client: TestClient, make_user: MakeUser, log_in: LogIn
) -> None:
    account = make_user("Operator")
    phone, laptop = log_in(account), log_in(account)
    refresh(auth_client, phone["refresh_token"])
    refresh(auth_client, phone["refresh_token"])
    ok = refresh(auth_client, laptop["refresh_token"])
    assert ok.status_code == 200


def test_garbage_refresh_token_is_refused(auth_client: TestClient) -> None:
    response = refresh(auth_client, "nope")
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_grant"


def test_refresh_token_is_not_an_access_token(
    auth_client: TestClient, make_user: MakeUser, log_in: LogIn
) -> None:
    tokens = log_in(make_user("Management"))
    response = auth_client.get("/api/v1/auth/me", headers=auth(tokens["refresh_token"]))
    assert response.status_code == 401


def test_logout_revokes_access_and_refresh_tokens(
    auth_client: TestClient, make_user: MakeUser, log_in: LogIn
) -> None:
    tokens = log_in(make_user("Supervisor"))
    response = auth_client.post("/api/v1/auth/logout", headers=auth(tokens["access_token"]))
    assert response.status_code == 200, response.text
    me = auth_client.get("/api/v1/auth/me", headers=auth(tokens["access_token"]))
    assert me.status_code == 401
    refreshed = refresh(auth_client, tokens["refresh_token"])
    assert refreshed.status_code == 401
    # Logging out twice is refused: the token is gone.
    again = auth_client.post("/api/v1/auth/logout", headers=auth(tokens["access_token"]))
    assert again.status_code == 401


def test_logout_leaves_other_sessions_alone(
    auth_client: TestClient, make_user: MakeUser, log_in: LogIn
) -> None:
    account = make_user("Operator")
    phone, laptop = log_in(account), log_in(account)
    auth_client.post("/api/v1/auth/logout", headers=auth(phone["access_token"]))
    assert (
        auth_client.get("/api/v1/auth/me", headers=auth(laptop["access_token"])).status_code == 200
    )
    ok = refresh(auth_client, laptop["refresh_token"])
    assert ok.status_code == 200


def test_logout_needs_a_token(auth_client: TestClient) -> None:
    response = auth_client.post("/api/v1/auth/logout")
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"


def test_inactive_user_cannot_log_in(
    auth_client: TestClient, make_user: MakeUser, log_in: LogIn
) -> None:
    manager = log_in(make_user("Management"))
    account = make_user("Operator")
    deleted = auth_client.delete(
        f"/api/v1/auth/users/{account.id}", headers=auth(manager["access_token"])
    )
    assert deleted.status_code == 200, deleted.text
    response = auth_client.post(
        "/api/v1/auth/login", json={"username": account.username, "password": account.password}
    )
    assert response.status_code == 401
    assert response.json()["message"] == "Invalid username or password"
