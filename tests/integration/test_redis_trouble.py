"""Redis refusing (stopped) or hanging (SIGSTOP): every query endpoint still answers correctly
from PostgreSQL/InfluxDB, logs a WARNING, and uses Redis again once it is back."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from starlette.testclient import TestClient

from services.query_api.app import create_app
from services.query_api.settings import Settings
from shared.settings import AmqpSettings, InfluxSettings, PostgresSettings, RedisSettings
from tests.tokens import bearer, trust_test_key

pytestmark = [pytest.mark.integration, pytest.mark.disruptive]
DEPS = str(Path(__file__).resolve().parents[2] / "infra/local/deps.sh")
BUDGET_S = 2.5  # per request, Redis timeouts included


@pytest.fixture
def client(
    postgres_settings: PostgresSettings,
    influx_settings: InfluxSettings,
    amqp_cleanup: AmqpSettings,
) -> Iterator[TestClient]:
    settings = Settings(postgres=postgres_settings, influx=influx_settings, amqp=amqp_cleanup)
    with TestClient(create_app(settings)) as c:
        trust_test_key(c.app_state)
        yield c


def exercise(client: TestClient, machine: str) -> None:
    op = bearer("Supervisor")
    for url in (
        f"/api/v1/machines/{machine}",
        "/api/v1/machines?location=Hall%20R",
        "/api/v1/machines/status?location=Hall%20R",
        f"/api/v1/data/machine/{machine}?interval=1h",
    ):
        started = time.monotonic()
        resp = client.get(url, headers=op)
        elapsed = time.monotonic() - started
        assert resp.status_code == 200, (url, resp.text)
        assert elapsed < BUDGET_S, (url, elapsed)
    resp = client.patch(f"/api/v1/machines/{machine}", json={"status": "maintenance"}, headers=op)
    assert resp.status_code == 200
    assert client.get(f"/api/v1/machines/{machine}", headers=op).json()["machine"]["status"] == (
        "maintenance"
    )
    client.patch(f"/api/v1/machines/{machine}", json={"status": "active"}, headers=op)


def new_machine(client: TestClient) -> str:
    resp = client.post(
        "/api/v1/machines",
        json={"name": f"R-{uuid.uuid4().hex[:6]}", "location": "Hall R", "sensor_type": "Speed"},
        headers=bearer("Supervisor"),
    )
    return str(resp.json()["machine"]["id"])


def redis_pid() -> int:
    info = redis.Redis.from_url(RedisSettings().url.get_secret_value()).info("server")
    return int(info["process_id"])


def test_redis_stopped(client: TestClient, caplog: pytest.LogCaptureFixture) -> None:
    machine = new_machine(client)
    exercise(client, machine)
    subprocess.run([DEPS, "stop", "redis"], check=True, timeout=60)
    try:
        with caplog.at_level(logging.WARNING):
            exercise(client, machine)
        assert any(
            "Redis" in r.getMessage() and r.levelno == logging.WARNING for r in caplog.records
        )
        status = client.get("/api/v1/machines/status?location=Hall%20R", headers=bearer())
        assert status.json()["source"] == "influxdb"
    finally:
        subprocess.run([DEPS, "start", "redis"], check=True, timeout=60)
    guard = client.app_state["redis_guard"]
    guard._retry_at = 0.0  # skip the cool-down instead of waiting it out
    exercise(client, machine)
    assert (
        client.get("/api/v1/machines/status?location=Hall%20R", headers=bearer()).json()["source"]
        == "redis"
    )


def test_redis_frozen(client: TestClient, caplog: pytest.LogCaptureFixture) -> None:
    machine = new_machine(client)
    pid = redis_pid()
    os.kill(pid, signal.SIGSTOP)
    try:
        with caplog.at_level(logging.WARNING):
            exercise(client, machine)
        assert any("Redis" in r.getMessage() for r in caplog.records)
    finally:
        os.kill(pid, signal.SIGCONT)
    client.app_state["redis_guard"]._retry_at = 0.0
    exercise(client, machine)
