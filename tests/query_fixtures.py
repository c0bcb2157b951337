"""The query API as an in-process app for integration tests (real stores, test tokens)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from starlette.testclient import TestClient

from services.query_api.app import create_app
from services.query_api.settings import Settings
from shared.settings import AmqpSettings, InfluxSettings, PostgresSettings
from tests.tokens import trust_test_key


@contextmanager
def query_app(
    postgres: PostgresSettings, influx: InfluxSettings, amqp: AmqpSettings
) -> Iterator[TestClient]:
    """The query API on these stores, started, trusting the test tokens."""
    settings = Settings(postgres=postgres, influx=influx, amqp=amqp)
    with TestClient(create_app(settings)) as c:
        trust_test_key(c.app_state)
        yield c
