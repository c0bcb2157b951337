"""The three events an on-call engineer needs, as JSON with request id, service, dependency and
attempt counts: DEBUG payload validated, WARNING Redis lost (fallback + retry), ERROR PostgreSQL
could not persist after 3 attempts."""

from __future__ import annotations

import asyncio
import io
import json
import logging
from collections.abc import Iterator

import pytest
from pydantic import SecretStr
from starlette.testclient import TestClient

from services.ingest_gateway.app import create_app as ingest_app
from services.ingest_gateway.settings import Settings as IngestSettings
from services.query_api.app import create_app as query_app
from services.query_api.settings import Settings as QuerySettings
from shared.log import configure_logging
from shared.settings import AmqpSettings, PostgresSettings, RedisSettings
from tests.dependencies import DependencyControl
from tests.integration.test_ingest_gateway import URL, _create_machines, batch
from tests.tokens import bearer, trust_test_key

pytestmark = pytest.mark.integration


@pytest.fixture
def json_logs() -> Iterator[io.StringIO]:
    """Capture what the services' own JSON log handler writes."""
    root = logging.getLogger()
    # configure_logging replaces the root handlers: pytest's capture handlers and whatever
    # else was installed come back afterwards, as they were.
    handlers, level = root.handlers[:], root.level
    stream = io.StringIO()
    configure_logging("test-service", "DEBUG")
    [handler] = [h for h in root.handlers if h not in handlers]
    assert isinstance(handler, logging.StreamHandler)
    handler.setStream(stream)
    try:
        yield stream
    finally:
        root.removeHandler(handler)
        for h in handlers:
            if h not in root.handlers:
                root.addHandler(h)
        root.setLevel(level)


def records(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines() if line.startswith("{")]


def test_debug_when_payload_validated(
    json_logs: io.StringIO, amqp_cleanup: AmqpSettings, postgres_settings: PostgresSettings
) -> None:
    [machine] = asyncio.run(_create_machines(postgres_settings, 1))
    settings = IngestSettings(amqp=amqp_cleanup, postgres=postgres_settings)
    with TestClient(ingest_app(settings)) as client:
        trust_test_key(client.app_state)
        resp = client.post(URL, json=batch(machine), headers={**bearer(), "X-Request-ID": "req-42"})
    assert resp.status_code == 202
    [event] = [r for r in records(json_logs) if "payload validated" in str(r["message"])]
    assert event["level"] == "DEBUG"
    assert event["service"] == "test-service"
    assert event["request_id"] == "req-42"


def test_warning_when_redis_lost(
    json_logs: io.StringIO,
    postgres_settings: PostgresSettings,
    amqp_cleanup: AmqpSettings,
    refused_port: int,
) -> None:
    dead_redis = RedisSettings(url=SecretStr(f"redis://127.0.0.1:{refused_port}/0"), timeout_s=0.2)
    settings = QuerySettings(postgres=postgres_settings, redis=dead_redis, amqp=amqp_cleanup)
    with TestClient(query_app(settings)) as client:
        trust_test_key(client.app_state)
        resp = client.get("/api/v1/machines", headers={**bearer(), "X-Request-ID": "req-7"})
        assert resp.status_code == 200
        client.get("/api/v1/machines/status", headers=bearer())
    [event] = [
        r for r in records(json_logs) if r["level"] == "WARNING" and "Redis" in str(r["message"])
    ]
    assert event["dependency"] == "redis" and event["attempt"] == 1
    assert "retrying in" in str(event["message"])
    assert event["request_id"] == "req-7"


@pytest.mark.disruptive
def test_error_when_postgres_cannot_persist_after_3_retries(
    json_logs: io.StringIO,
    postgres_settings: PostgresSettings,
    amqp_cleanup: AmqpSettings,
    dependency_control: DependencyControl,
) -> None:
    settings = QuerySettings(
        postgres=postgres_settings.model_copy(update={"timeout_s": 1.0}), amqp=amqp_cleanup
    )
    with TestClient(query_app(settings)) as client:
        trust_test_key(client.app_state)
        dependency_control.stop("postgres")
        try:
            resp = client.post(
                "/api/v1/machines",
                json={"name": "X", "location": "Y", "sensor_type": "Z"},
                headers={**bearer("Supervisor"), "X-Request-ID": "req-pg"},
            )
        finally:
            dependency_control.start("postgres")
    assert resp.status_code == 503 and resp.headers["retry-after"]
    logged = records(json_logs)
    warnings = [r for r in logged if r["level"] == "WARNING" and r.get("dependency") == "postgres"]
    assert [w["attempt"] for w in warnings] == [1, 2]
    [error] = [r for r in logged if r["level"] == "ERROR" and r.get("dependency") == "postgres"]
    assert error["attempt"] == 3 and error["request_id"] == "req-pg"
    assert "after 3 attempts" in str(error["message"])
