"""Redis refusing (stopped) or hanging (SIGSTOP): every query endpoint still answers correctly
from PostgreSQL/InfluxDB, logs a WARNING, and uses Redis again once it is back.

No wall-clock budget per request: what keeps requests fast while Redis hangs is that one failed
call makes the app skip Redis for a cool-down, so the tests check that exactly one call failed
for all the requests of an outage (the cool-down is made longer than the test)."""

from __future__ import annotations

import logging
import uuid

import pytest
from starlette.testclient import TestClient

from tests.dependencies import DependencyControl
from tests.query_fixtures import query_client  # noqa: F401  (fixture)
from tests.tokens import bearer

pytestmark = [pytest.mark.integration, pytest.mark.disruptive]


def exercise(client: TestClient, machine: dict[str, str]) -> None:
    op = bearer("Supervisor")
    where = {"location": machine["location"]}
    for url, params in (
        (f"/api/v1/machines/{machine['id']}", {}),
        ("/api/v1/machines", where),
        ("/api/v1/machines/status", where),
        (f"/api/v1/data/machine/{machine['id']}", {"interval": "1h"}),
    ):
        resp = client.get(url, params=params, headers=op)
        assert resp.status_code == 200, (url, resp.text)
    listed = client.get("/api/v1/machines", params=where, headers=op).json()["machines"]
    assert [m["id"] for m in listed] == [machine["id"]]
    machine_url = f"/api/v1/machines/{machine['id']}"
    resp = client.patch(machine_url, json={"status": "maintenance"}, headers=op)
    assert resp.status_code == 200
    assert client.get(machine_url, headers=op).json()["machine"]["status"] == "maintenance"
    assert client.patch(machine_url, json={"status": "active"}, headers=op).status_code == 200


def new_machine(client: TestClient) -> dict[str, str]:
    """A machine alone in a location of its own (the lists checked hold it and nothing else)."""
    tag = uuid.uuid4().hex[:6]
    resp = client.post(
        "/api/v1/machines",
        json={"name": f"R-{tag}", "location": f"Hall R-{tag}", "sensor_type": "Speed"},
        headers=bearer("Supervisor"),
    )
    assert resp.status_code == 201, resp.text
    machine: dict[str, str] = resp.json()["machine"]
    return machine


def status_source(client: TestClient, machine: dict[str, str]) -> str:
    params = {"location": machine["location"]}
    resp = client.get("/api/v1/machines/status", params=params, headers=bearer())
    return str(resp.json()["source"])


def outage_calls(client: TestClient) -> int:
    """Failed Redis calls of the current outage (the guard's count; 0 once Redis is back)."""
    return int(client.app_state["redis_guard"]._attempt)


def test_redis_stopped(
    client: TestClient, caplog: pytest.LogCaptureFixture, dependency_control: DependencyControl
) -> None:
    machine = new_machine(client)
    exercise(client, machine)
    guard = client.app_state["redis_guard"]
    guard.cooldown_s = 3600.0  # the outage's first failure decides for the whole test
    dependency_control.stop("redis")
    try:
        with caplog.at_level(logging.WARNING):
            exercise(client, machine)
            assert status_source(client, machine) == "influxdb"
        warnings = [r.name for r in caplog.records if r.levelno == logging.WARNING]
        # One WARNING per outage from the guard (with the retry time), and at most one from the
        # token denylist saying its revocation announcements are lost until it resubscribes.
        assert warnings.count("shared.redisguard") == 1
        assert warnings.count("shared.auth.denylist") <= 1
        assert set(warnings) <= {"shared.redisguard", "shared.auth.denylist"}
        assert outage_calls(client) == 1  # every later request skipped Redis
    finally:
        dependency_control.start("redis")
    guard._retry_at = 0.0  # skip the cool-down instead of waiting it out
    exercise(client, machine)
    assert status_source(client, machine) == "redis"
    assert outage_calls(client) == 0


def test_redis_frozen(
    client: TestClient, caplog: pytest.LogCaptureFixture, dependency_control: DependencyControl
) -> None:
    machine = new_machine(client)
    guard = client.app_state["redis_guard"]
    guard.cooldown_s = 3600.0
    with dependency_control.frozen("redis"):
        with caplog.at_level(logging.WARNING):
            exercise(client, machine)
        assert any("Redis" in r.getMessage() for r in caplog.records)
        # A hanging Redis costs one timeout, not one per request.
        assert outage_calls(client) == 1
    guard._retry_at = 0.0
    exercise(client, machine)
    assert status_source(client, machine) == "redis"
