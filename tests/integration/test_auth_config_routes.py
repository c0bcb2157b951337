"""``/api/v1/config`` and ``/api/v1/audit`` (mounted by query_api) on the real test database,
guarded by the shared verifier with tokens from ``tests.auth_testing``."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

import psycopg
import pytest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.testclient import TestClient

from services.query_api.config.routes import config_routes
from shared.db import create_pool, migrate
from shared.http import EXCEPTION_HANDLERS, RequestContextMiddleware
from shared.settings import PostgresSettings
from tests import auth_testing as testing

pytestmark = pytest.mark.integration


@pytest.fixture
def client(auth_postgres: PostgresSettings, client_address: str) -> Iterator[TestClient]:
    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[dict[str, Any]]:
        pool = create_pool(auth_postgres, "config-test")
        await pool.open(wait=True)
        await migrate(pool)
        try:
            yield {"pool": pool, "authorizer": testing.authorizer()}
        finally:
            await pool.close()

    app = Starlette(
        routes=config_routes(),
        middleware=[Middleware(RequestContextMiddleware, service="query_api")],
        exception_handlers=EXCEPTION_HANDLERS,
        lifespan=lifespan,
    )
    with TestClient(app, client=(client_address, 1)) as c:
        yield c


def manager(**claims: Any) -> dict[str, str]:
    return {**testing.bearer("Management", **claims), "user-agent": "dashboard/2.1"}


def update(client: TestClient, name: str, value: Any, headers: dict[str, str]) -> Any:
    return client.post(
        "/api/v1/config/update",
        json={"setting_name": name, "setting_value": value},
        headers=headers,
    )


@pytest.mark.parametrize("role", ["Operator", "Supervisor", "Gateway"])
def test_config_and_audit_are_management_only(client: TestClient, role: str) -> None:
    headers = testing.bearer(role)
    for method, path, permission in [
        ("GET", "/api/v1/config", "read:config"),
        ("POST", "/api/v1/config/update", "write:config"),
        ("GET", "/api/v1/audit", "read:users"),
    ]:
        response = client.request(method, path, headers=headers, json={})
        assert response.status_code == 403, (path, response.text)
        assert response.json()["message"] == f"Missing permission: {permission}"
        assert client.request(method, path, json={}).status_code == 401


def test_update_writes_the_setting_and_its_audit_entry(
    client: TestClient, client_address: str
) -> None:
    name = f"max_temperature_threshold.{uuid.uuid4().hex[:8]}"
    who = {"sub": str(uuid.uuid4()), "username": "jane.manager"}
    first = update(client, name, 80.0, manager(**who))
    assert first.status_code == 200, first.text
    assert first.json()["updated_setting"]["old_value"] is None
    second = update(client, name, 85.0, manager(**who))
    body = second.json()
    assert body["changed"] is True
    assert body["updated_setting"] | {"updated_at": None} == {
        "name": name,
        "value": 85.0,
        "old_value": 80.0,
        "updated_at": None,
        "updated_by": "jane.manager",
    }
    unchanged = update(client, name, 85, manager(**who))
    assert unchanged.json()["changed"] is False

    read = client.get("/api/v1/config", params={"name": name}, headers=manager())
    assert read.json()["settings"][0]["value"] == 85.0
    assert any(
        s["name"] == name
        for s in client.get("/api/v1/config", headers=manager()).json()["settings"]
    )

    audit = client.get(
        "/api/v1/audit", params={"target": name, "action": "config.update"}, headers=manager()
    ).json()
    assert audit["pagination"]["total_records"] == 2  # the no-op is not a change
    newest = audit["entries"][0]
    assert newest | {"id": 0, "time": None, "request_id": None} == {
        "id": 0,
        "time": None,
        "user_id": who["sub"],
        "username": "jane.manager",
        "role": "Management",
        "action": "config.update",
        "target": name,
        "old_value": 80.0,
        "new_value": 85.0,
        "client_address": client_address,
        "user_agent": "dashboard/2.1",
        "request_id": None,
    }
    assert newest["request_id"] == second.headers["x-request-id"]


def test_update_validation(client: TestClient) -> None:
    bad = client.post(
        "/api/v1/config/update",
        json={"setting_name": "Bad Name!", "extra": 1},
        headers=manager(),
    )
    assert bad.status_code == 400
    assert {e["field"] for e in bad.json()["errors"]} == {"setting_name", "setting_value", "extra"}
    assert (
        client.post(
            "/api/v1/config/update",
            content=b"x=1",
            headers={**manager(), "content-type": "text/plain"},
        ).status_code
        == 415
    )
    too_big = update(client, "big", "x" * 20_000, manager())
    assert too_big.status_code == 400
    assert (
        client.get("/api/v1/config", params={"name": "never.set"}, headers=manager()).status_code
        == 404
    )


def test_audit_query_parameters(client: TestClient) -> None:
    response = client.get(
        "/api/v1/audit", params={"limit": "0", "since": "yesterday"}, headers=manager()
    )
    assert response.status_code == 400
    assert {e["parameter"] for e in response.json()["errors"]} == {"limit", "since"}
    page = client.get(
        "/api/v1/audit", params={"limit": 1, "since": "2000-01-01T00:00:00Z"}, headers=manager()
    ).json()
    assert page["pagination"]["limit"] == 1
    assert page["pagination"]["returned_records"] <= 1


def test_audit_log_is_append_only(client: TestClient, auth_postgres: PostgresSettings) -> None:
    name = f"append.only.{uuid.uuid4().hex[:8]}"
    update(client, name, 1, manager())
    with psycopg.connect(auth_postgres.url.get_secret_value()) as conn:
        for statement in (
            "UPDATE audit_log SET actor_username = 'someone else' WHERE target = %s",
            "DELETE FROM audit_log WHERE target = %s",
        ):
            with pytest.raises(psycopg.errors.RaiseException, match="append-only"):
                conn.execute(statement, (name,))
            conn.rollback()
