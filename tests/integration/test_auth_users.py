"""User management by Management, the permission matrix, and tokens following changes."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import psycopg
import pytest
from starlette.testclient import TestClient

from shared.settings import PostgresSettings

if TYPE_CHECKING:
    from tests.auth_fixtures import LogIn, MakeUser

pytestmark = pytest.mark.integration

ROLES = ("Operator", "Supervisor", "Management")


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def manager(make_user: MakeUser, log_in: LogIn) -> dict[str, Any]:
    return log_in(make_user("Management"))


# Every user/gateway administration endpoint and the permission it needs.
ENDPOINTS = [
    ("GET", "/api/v1/auth/users", None, "read:users"),
    ("POST", "/api/v1/auth/users", {"username": "x"}, "write:users"),
    ("GET", "/api/v1/auth/users/{id}", None, "read:users"),
    ("PATCH", "/api/v1/auth/users/{id}", {"role": "Operator"}, "write:users"),
    ("DELETE", "/api/v1/auth/users/{id}", None, "delete:users"),
    ("GET", "/api/v1/auth/gateways", None, "read:users"),
    ("POST", "/api/v1/auth/gateways", {"gateway_id": "GW-x"}, "write:users"),
    ("POST", "/api/v1/auth/gateways/GW-none/disable", None, "delete:users"),
]


@pytest.mark.parametrize("role", ["Operator", "Supervisor"])
@pytest.mark.parametrize(("method", "path", "body", "permission"), ENDPOINTS)
def test_only_management_administers(
    auth_client: TestClient,
    make_user: MakeUser,
    log_in: LogIn,
    role: str,
    method: str,
    path: str,
    body: dict[str, Any] | None,
    permission: str,
) -> None:
    caller = log_in(make_user(role))
    target = make_user("Operator")
    response = auth_client.request(
        method, path.format(id=target.id), json=body, headers=auth(caller["access_token"])
    )
    assert response.status_code == 403, response.text
    assert response.json()["message"] == f"Missing permission: {permission}"


@pytest.mark.parametrize(("method", "path", "body", "permission"), ENDPOINTS)
def test_administration_needs_a_token(
    auth_client: TestClient, method: str, path: str, body: Any, permission: str
) -> None:
    response = auth_client.request(method, path.format(id="x"), json=body)
    assert response.status_code == 401


def test_create_list_and_read_users(auth_client: TestClient, manager: dict[str, Any]) -> None:
    headers = auth(manager["access_token"])
    created = auth_client.post(
        "/api/v1/auth/users",
        json={
            "username": f"New.{manager['user']['username']}",
            "password": "a long enough password",
            "role": "supervisor",
            "email": f"{manager['user']['username']}@example.com",
        },
        headers=headers,
    )
    assert created.status_code == 201, created.text
    user = created.json()["user"]
    assert user["username"] == f"new.{manager['user']['username']}"
    assert user["role"] == "Supervisor"

    listed = auth_client.get(
        "/api/v1/auth/users", params={"role": "Supervisor", "limit": 500}, headers=headers
    )
    assert listed.status_code == 200
    assert user["id"] in {u["id"] for u in listed.json()["users"]}
    assert {u["role"] for u in listed.json()["users"]} == {"Supervisor"}
    page = auth_client.get("/api/v1/auth/users", params={"limit": 1}, headers=headers).json()
    assert page["pagination"]["returned_records"] == 1
    assert page["pagination"]["has_more"] is True

    read = auth_client.get(f"/api/v1/auth/users/{user['id']}", headers=headers)
    assert read.json()["user"] == user
    assert auth_client.get("/api/v1/auth/users/not-a-uuid", headers=headers).status_code == 404

    duplicate = auth_client.post(
        "/api/v1/auth/users",
        json={"username": user["username"], "password": "another long one", "role": "Operator"},
        headers=headers,
    )
    assert duplicate.status_code == 409


def test_create_user_validation_names_every_field(
    auth_client: TestClient, manager: dict[str, Any]
) -> None:
    response = auth_client.post(
        "/api/v1/auth/users",
        json={"username": "a b", "password": "short", "role": "Gateway", "email": "nope"},
        headers=auth(manager["access_token"]),
    )
    assert response.status_code == 400
    assert {e["field"] for e in response.json()["errors"]} == {
        "username",
        "password",
        "role",
        "email",
    }
    bad_query = auth_client.get(
        "/api/v1/auth/users", params={"limit": "0"}, headers=auth(manager["access_token"])
    )
    assert bad_query.status_code == 400
    assert bad_query.json()["errors"][0]["parameter"] == "limit"


def test_role_change_voids_live_tokens_and_refresh_carries_the_new_role(
    auth_client: TestClient, make_user: MakeUser, log_in: LogIn, manager: dict[str, Any]
) -> None:
    account = make_user("Supervisor")
    tokens = log_in(account)
    changed = auth_client.patch(
        f"/api/v1/auth/users/{account.id}",
        json={"role": "Operator"},
        headers=auth(manager["access_token"]),
    )
    assert changed.status_code == 200, changed.text
    assert changed.json()["user"]["role"] == "Operator"
    # The access token still claims Supervisor: it must no longer be accepted.
    assert (
        auth_client.get("/api/v1/auth/me", headers=auth(tokens["access_token"])).status_code == 401
    )
    refreshed = auth_client.post(
        "/api/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]}
    )
    assert refreshed.status_code == 200, refreshed.text
    me = auth_client.get("/api/v1/auth/me", headers=auth(refreshed.json()["access_token"]))
    assert me.json()["token"]["role"] == "Operator"
    assert "write:machines" not in me.json()["token"]["permissions"]


def test_deactivation_kills_every_token_of_the_user(
    auth_client: TestClient, make_user: MakeUser, log_in: LogIn, manager: dict[str, Any]
) -> None:
    account = make_user("Operator")
    phone, laptop = log_in(account), log_in(account)
    response = auth_client.delete(
        f"/api/v1/auth/users/{account.id}", headers=auth(manager["access_token"])
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["user"]["active"] is False
    assert "warning" not in body
    for tokens in (phone, laptop):
        me = auth_client.get("/api/v1/auth/me", headers=auth(tokens["access_token"]))
        assert me.status_code == 401
        refresh = auth_client.post(
            "/api/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]}
        )
        assert refresh.status_code == 401


def test_reactivation_allows_login_again(
    auth_client: TestClient, make_user: MakeUser, manager: dict[str, Any]
) -> None:
    headers = auth(manager["access_token"])
    account = make_user("Operator")
    auth_client.delete(f"/api/v1/auth/users/{account.id}", headers=headers)
    reactivated = auth_client.patch(
        f"/api/v1/auth/users/{account.id}", json={"active": True}, headers=headers
    )
    assert reactivated.status_code == 200
    assert reactivated.json()["user"]["active"] is True
    login = auth_client.post(
        "/api/v1/auth/login", json={"username": account.username, "password": account.password}
    )
    assert login.status_code == 200
    refused = auth_client.patch(
        f"/api/v1/auth/users/{account.id}", json={"active": False}, headers=headers
    )
    assert refused.status_code == 400


def test_managers_cannot_lock_themselves_out(
    auth_client: TestClient, manager: dict[str, Any]
) -> None:
    me = manager["user"]["id"]
    headers = auth(manager["access_token"])
    assert auth_client.delete(f"/api/v1/auth/users/{me}", headers=headers).status_code == 409
    demote = auth_client.patch(
        f"/api/v1/auth/users/{me}", json={"role": "Operator"}, headers=headers
    )
    assert demote.status_code == 409


def test_unknown_user_is_404(auth_client: TestClient, manager: dict[str, Any]) -> None:
    missing = "00000000-0000-4000-8000-000000000000"
    headers = auth(manager["access_token"])
    assert auth_client.delete(f"/api/v1/auth/users/{missing}", headers=headers).status_code == 404
    patched = auth_client.patch(
        f"/api/v1/auth/users/{missing}", json={"role": "Operator"}, headers=headers
    )
    assert patched.status_code == 404


def test_administration_is_audited(
    auth_client: TestClient,
    make_user: MakeUser,
    manager: dict[str, Any],
    auth_postgres: PostgresSettings,
    client_address: str,
) -> None:
    headers = {**auth(manager["access_token"]), "user-agent": "audit-test/1.0"}
    account = make_user("Operator")
    auth_client.patch(
        f"/api/v1/auth/users/{account.id}", json={"role": "Supervisor"}, headers=headers
    )
    auth_client.delete(f"/api/v1/auth/users/{account.id}", headers=headers)
    with psycopg.connect(auth_postgres.url.get_secret_value()) as conn:
        rows = conn.execute(
            "SELECT action, actor_username, actor_role, old_value, new_value, client_address,"
            " user_agent FROM audit_log WHERE target = %s ORDER BY id",
            (account.username,),
        ).fetchall()
    assert [r[0] for r in rows] == ["user.create", "user.update", "user.deactivate"]
    _, actor, role, old, new, address, agent = rows[1]
    assert (actor, role) == (manager["user"]["username"], "Management")
    assert (old, new) == ({"role": "Operator"}, {"role": "Supervisor"})
    assert address == client_address
    assert agent == "audit-test/1.0"
