"""The query API as an in-process app for integration tests (real stores, test tokens).

Import the fixture into a test module (``from tests.query_fixtures import query_client``); tests
ask for it as ``client``."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from starlette.testclient import TestClient

from services.query_api.app import create_app
from services.query_api.settings import Settings
from shared.settings import AmqpSettings, InfluxSettings, PostgresSettings
from tests.tokens import bearer, trust_test_key


@contextmanager
def query_app(
    postgres: PostgresSettings, influx: InfluxSettings, amqp: AmqpSettings
) -> Iterator[TestClient]:
    """The query API on these stores, started, trusting the test tokens."""
    settings = Settings(postgres=postgres, influx=influx, amqp=amqp)
    with TestClient(create_app(settings)) as c:
        trust_test_key(c.app_state)
        yield c


@pytest.fixture(name="client")
def query_client(
    postgres_settings: PostgresSettings,
    influx_settings: InfluxSettings,
    amqp_cleanup: AmqpSettings,
) -> Iterator[TestClient]:
    """The query API on the test stores, with a private RabbitMQ topology (deleted afterwards):
    the app's dead-letter archive must not drain the real queue."""
    with query_app(postgres_settings, influx_settings, amqp_cleanup) as c:
        yield c


def new_machine(client: TestClient, **over: str) -> dict[str, str]:
    """A machine registered through the API (a Pressure machine in Hall 1 unless ``over``)."""
    body = {
        "name": f"Press-{uuid.uuid4().hex[:6]}",
        "location": "Hall 1",
        "sensor_type": "Pressure",
    }
    body.update(over)
    resp = client.post("/api/v1/machines", json=body, headers=bearer("Supervisor"))
    assert resp.status_code == 201, resp.text
    machine: dict[str, str] = resp.json()["machine"]
    return machine
