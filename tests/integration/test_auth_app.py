"""The auth app's public surface: health, readiness, metrics, JWKS, OpenAPI, headers, CORS."""

from __future__ import annotations

import jwt
import pytest
from starlette.testclient import TestClient

from services.auth.app import create_app
from services.auth.settings import Settings
from shared.security import SecuritySettings
from tests import auth_testing as testing

pytestmark = pytest.mark.integration


def test_health_ready_metrics(auth_client: TestClient) -> None:
    assert auth_client.get("/health").json() == {"status": "ok"}
    ready = auth_client.get("/ready")
    assert ready.status_code == 200
    assert ready.json()["checks"] == {"postgres": True}
    auth_client.get("/health")
    assert "millrace_http_requests_total" in auth_client.get("/metrics").text


def test_jwks_publishes_the_signing_key(auth_client: TestClient) -> None:
    response = auth_client.get("/.well-known/jwks.json")
    assert response.status_code == 200
    assert response.headers["cache-control"] == "public, max-age=300"
    [key] = response.json()["keys"]
    keys = testing.signing_keys()
    assert key["kid"] == keys.current.kid
    assert (key["kty"], key["alg"], key["use"]) == ("RSA", "RS256", "sig")
    assert "d" not in key and "p" not in key  # never a private member
    assert jwt.PyJWK(key).key_id == keys.current.kid


def test_openapi_describes_every_route(auth_client: TestClient) -> None:
    spec = auth_client.get("/openapi.json").json()
    assert spec["openapi"].startswith("3.")
    paths = spec["paths"]
    expected = [
        ("/api/v1/auth/login", "post"),
        ("/api/v1/auth/refresh", "post"),
        ("/api/v1/auth/logout", "post"),
        ("/api/v1/auth/me", "get"),
        ("/api/v1/auth/token", "post"),
        ("/api/v1/auth/users", "get"),
        ("/api/v1/auth/users", "post"),
        ("/api/v1/auth/users/{user_id}", "get"),
        ("/api/v1/auth/users/{user_id}", "patch"),
        ("/api/v1/auth/users/{user_id}", "delete"),
        ("/api/v1/auth/gateways", "get"),
        ("/api/v1/auth/gateways", "post"),
        ("/api/v1/auth/gateways/{gateway_id}/disable", "post"),
        # The MQTT broker's HTTP authentication backend.
        ("/api/v1/mqtt/auth/user", "post"),
        ("/api/v1/mqtt/auth/vhost", "post"),
        ("/api/v1/mqtt/auth/resource", "post"),
        ("/api/v1/mqtt/auth/topic", "post"),
        ("/.well-known/jwks.json", "get"),
    ]
    assert sorted((p, m) for p, ops in paths.items() for m in ops) == sorted(expected)
    login = paths["/api/v1/auth/login"]["post"]
    assert "security" not in login
    assert set(login["requestBody"]["content"]) == {
        "application/json",
        "application/x-www-form-urlencoded",
    }
    users = paths["/api/v1/auth/users"]["get"]
    assert users["x-required-permission"] == "read:users"
    assert {"401", "403"} <= set(users["responses"])
    docs = auth_client.get("/docs")
    assert docs.status_code == 200
    assert "content-security-policy" not in docs.headers


def test_security_headers_on_every_response(auth_client: TestClient) -> None:
    for response in (auth_client.get("/health"), auth_client.get("/api/v1/auth/me")):
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["x-frame-options"] == "DENY"
        assert response.headers["referrer-policy"] == "no-referrer"
        assert response.headers["cache-control"] == "no-store"
    assert (
        "access-control-allow-origin"
        not in auth_client.get("/health", headers={"origin": "https://evil.example"}).headers
    )


def test_cors_only_for_configured_origins(auth_settings: Settings) -> None:
    settings = auth_settings.model_copy(
        update={"security": SecuritySettings(cors_origins=["https://dash.example"])}
    )
    with TestClient(create_app(settings)) as client:
        preflight = client.options(
            "/api/v1/auth/login",
            headers={
                "origin": "https://dash.example",
                "access-control-request-method": "POST",
                "access-control-request-headers": "content-type",
            },
        )
        assert preflight.status_code == 200
        assert preflight.headers["access-control-allow-origin"] == "https://dash.example"
        other = client.options(
            "/api/v1/auth/login",
            headers={"origin": "https://evil.example", "access-control-request-method": "POST"},
        )
        assert other.status_code == 400
        assert "access-control-allow-origin" not in other.headers


def test_database_trouble_is_a_503_not_a_500(auth_client: TestClient) -> None:
    assert auth_client.portal is not None
    auth_client.portal.call(auth_client.app_state["pool"].close)
    response = auth_client.post("/api/v1/auth/login", json={"username": "a", "password": "b"})
    assert response.status_code == 503
    assert response.headers["retry-after"] == "5"
