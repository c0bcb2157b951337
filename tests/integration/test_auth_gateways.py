"""Gateway credentials: registration, the client-credentials grant, and disabling."""

from __future__ import annotations

import base64
from typing import TYPE_CHECKING, Any

import jwt
import pytest
from starlette.testclient import TestClient

from tests.auth_fixtures import exchange

if TYPE_CHECKING:
    from tests.auth_fixtures import LogIn, MakeUser

pytestmark = pytest.mark.integration


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def manager(make_user: MakeUser, log_in: LogIn) -> dict[str, str]:
    return {**auth(log_in(make_user("Management"))["access_token"])}


@pytest.fixture
def gateway(
    auth_client: TestClient, manager: dict[str, str], make_user: MakeUser
) -> dict[str, Any]:
    gateway_id = f"GW-{make_user('Operator').username}"
    response = auth_client.post(
        "/api/v1/auth/gateways", json={"gateway_id": gateway_id}, headers=manager
    )
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def test_registration_shows_the_secret_once(
    auth_client: TestClient, manager: dict[str, str], gateway: dict[str, Any]
) -> None:
    assert gateway["client_id"].startswith("gw_")
    assert len(gateway["client_secret"]) >= 40
    listed = auth_client.get("/api/v1/auth/gateways", headers=manager).json()["gateways"]
    mine = [g for g in listed if g["client_id"] == gateway["client_id"]]
    assert mine and mine[0]["active"] is True
    assert "client_secret" not in mine[0] and "secret_hash" not in mine[0]
    again = auth_client.post(
        "/api/v1/auth/gateways",
        json={"gateway_id": gateway["gateway"]["gateway_id"]},
        headers=manager,
    )
    assert again.status_code == 409


def test_client_credentials_token_only_writes_sensor_data(
    auth_client: TestClient, gateway: dict[str, Any]
) -> None:
    response = exchange(auth_client, gateway["client_id"], gateway["client_secret"])
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == 900
    assert body["scope"] == "write:sensor_data"
    assert "refresh_token" not in body
    assert response.headers["cache-control"] == "no-store"
    claims = jwt.decode(body["access_token"], options={"verify_signature": False})
    assert claims["role"] == "Gateway"
    assert claims["permissions"] == ["write:sensor_data"]
    assert claims["gateway_id"] == gateway["gateway"]["gateway_id"]
    assert claims["typ"] == "access"
    # A gateway token cannot read or administer anything.
    for path in ("/api/v1/auth/users", "/api/v1/auth/gateways"):
        denied = auth_client.get(path, headers=auth(body["access_token"]))
        assert denied.status_code == 403


def test_json_and_basic_auth_work_too(auth_client: TestClient, gateway: dict[str, Any]) -> None:
    as_json = auth_client.post(
        "/api/v1/auth/token",
        json={
            "grant_type": "client_credentials",
            "client_id": gateway["client_id"],
            "client_secret": gateway["client_secret"],
        },
    )
    assert as_json.status_code == 200, as_json.text
    basic = base64.b64encode(f"{gateway['client_id']}:{gateway['client_secret']}".encode())
    as_basic = auth_client.post(
        "/api/v1/auth/token",
        data={"grant_type": "client_credentials"},
        headers={"Authorization": f"Basic {basic.decode()}"},
    )
    assert as_basic.status_code == 200, as_basic.text


def test_wrong_secret_unknown_client_and_wrong_grant(
    auth_client: TestClient, gateway: dict[str, Any]
) -> None:
    wrong = exchange(auth_client, gateway["client_id"], "not-the-secret")
    unknown = exchange(auth_client, gateway["client_id"] + "x", gateway["client_secret"])
    assert wrong.status_code == unknown.status_code == 401
    assert wrong.json() == unknown.json()
    assert wrong.json()["error"] == "invalid_client"
    grant = auth_client.post("/api/v1/auth/token", data={"grant_type": "password"})
    assert grant.status_code == 400
    assert grant.json()["error"] == "unsupported_grant_type"


def test_disabling_kills_tokens_and_credentials(
    auth_client: TestClient, manager: dict[str, str], gateway: dict[str, Any]
) -> None:
    token = exchange(auth_client, gateway["client_id"], gateway["client_secret"]).json()
    gid = gateway["gateway"]["gateway_id"]
    assert (
        auth_client.get("/api/v1/auth/me", headers=auth(token["access_token"])).status_code == 200
    )
    disabled = auth_client.post(f"/api/v1/auth/gateways/{gid}/disable", headers=manager)
    assert disabled.status_code == 200, disabled.text
    assert disabled.json()["gateway"]["active"] is False
    assert (
        auth_client.get("/api/v1/auth/me", headers=auth(token["access_token"])).status_code == 401
    )
    assert exchange(auth_client, gateway["client_id"], gateway["client_secret"]).status_code == 401
    # The same gateway can be given new credentials.
    renewed = auth_client.post("/api/v1/auth/gateways", json={"gateway_id": gid}, headers=manager)
    assert renewed.status_code == 201
    assert renewed.json()["client_id"] != gateway["client_id"]
    missing = auth_client.post("/api/v1/auth/gateways/GW-never-was/disable", headers=manager)
    assert missing.status_code == 404


def test_gateway_failures_are_throttled(auth_client: TestClient, gateway: dict[str, Any]) -> None:
    for _ in range(5):
        assert exchange(auth_client, gateway["client_id"], "wrong").status_code == 401
    throttled = exchange(auth_client, gateway["client_id"], gateway["client_secret"])
    assert throttled.status_code == 429
    assert int(throttled.headers["retry-after"]) > 0
