"""Fixtures chain service URL → settings. Services come from environment URLs (``.run/env``,
loaded by ``make test``); a missing service fails the tests that need it, loudly."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from urllib.parse import urlsplit, urlunsplit

import pytest
from pydantic import SecretStr

from shared.settings import AmqpSettings, InfluxSettings, PostgresSettings, RedisSettings

TEST_DATABASE = "millrace_test"


def _with_database(url: str, database: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path="/" + database))


@pytest.fixture(scope="session")
def postgres_settings() -> PostgresSettings:
    base = PostgresSettings()
    url = _with_database(base.url.get_secret_value(), TEST_DATABASE)
    return PostgresSettings(url=SecretStr(url), pool_min=1, pool_max=4)


@pytest.fixture(scope="session")
def redis_settings() -> RedisSettings:
    return RedisSettings()


@pytest.fixture(scope="session")
def influx_settings() -> InfluxSettings:
    return InfluxSettings(database=TEST_DATABASE)


@pytest.fixture
def amqp_settings() -> Iterator[AmqpSettings]:
    """A private topology per test: the running writer pool never sees test messages."""
    tag = uuid.uuid4().hex[:8]
    yield AmqpSettings(
        exchange=f"test-{tag}.telemetry",
        queue=f"test-{tag}.telemetry.writer",
        dead_letter=f"test-{tag}.telemetry.dead",
    )


@pytest.fixture
async def amqp_cleanup(amqp_settings: AmqpSettings) -> AsyncIterator[AmqpSettings]:
    yield amqp_settings
    import aio_pika

    conn = await aio_pika.connect(amqp_settings.url.get_secret_value())
    async with conn:
        ch = await conn.channel()
        for q in (amqp_settings.queue, amqp_settings.dead_letter):
            await ch.queue_delete(q)
        for ex in (amqp_settings.exchange, amqp_settings.dead_letter):
            await ch.exchange_delete(ex)


def service_url(name: str, default_port: int) -> str:
    port = os.environ.get(f"{name.upper()}_PORT", str(default_port))
    return os.environ.get(f"{name.upper()}_URL", f"http://127.0.0.1:{port}")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests that stop or freeze a dependency run last, so they cannot disturb the others."""
    items.sort(key=lambda item: item.get_closest_marker("disruptive") is not None)
