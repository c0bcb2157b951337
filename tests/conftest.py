"""Fixtures chain service URL → settings. Services come from environment URLs (``.run/env``,
loaded by ``make test``); a missing service fails the tests that need it, loudly."""

from __future__ import annotations

import importlib
import os
import socket
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest
from pydantic import SecretStr

from shared.settings import AmqpSettings, InfluxSettings, PostgresSettings, RedisSettings

TEST_DATABASE = "millrace_test"
# The Redis database of the tests (the running pipeline uses 0): login-throttle counters,
# revoked tokens and caches of the apps that tests start never mix with the pipeline's.
TEST_REDIS_DB = 13
# Tables of the test database that tests fill; emptied when a run that uses the database starts,
# so lists (machines of a location, users, dead letters) do not grow from run to run. The audit
# log is append-only by design (a trigger refuses deletes): tests find their entries by an actor
# or setting name of their own.
TEST_TABLES = (
    "alert_deliveries",
    "alerts",
    "alert_rules",
    "dead_letters",
    "config_settings",
    "gateway_clients",
    "users",
    "machine_metadata",
)


def _with_database(url: str, database: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path="/" + database))


@pytest.fixture(scope="session")
def postgres_settings() -> PostgresSettings:
    base = PostgresSettings()
    url = _with_database(base.url.get_secret_value(), TEST_DATABASE)
    return PostgresSettings(url=SecretStr(url), pool_min=1, pool_max=4)


def _with_redis_db(url: str, db: int) -> str:
    return urlunsplit(urlsplit(url)._replace(path=f"/{db}"))


def pytest_configure(config: pytest.Config) -> None:
    """Every app a test starts, and every child process it runs, takes the tests' Redis
    database from the environment (``RedisSettings()``), not the pipeline's."""
    os.environ["REDIS_URL"] = _with_redis_db(RedisSettings().url.get_secret_value(), TEST_REDIS_DB)


@pytest.fixture(scope="session")
def redis_settings() -> RedisSettings:
    return RedisSettings()


@pytest.fixture(scope="session", autouse=True)
def _fresh_test_stores(request: pytest.FixtureRequest) -> None:
    """A run with integration tests starts from an empty test database and test Redis database
    (they hold nothing but what earlier runs left). Runs without them touch neither, so unit
    tests run beside a locked integration run cannot pull its data away."""
    if not any(item.get_closest_marker("integration") for item in request.session.items):
        return
    import psycopg
    import redis
    from psycopg import sql

    url = _with_database(PostgresSettings().url.get_secret_value(), TEST_DATABASE)
    try:
        with psycopg.connect(url, connect_timeout=3, autocommit=True) as conn:
            for table in TEST_TABLES:
                if conn.execute("SELECT to_regclass(%s)", (table,)).fetchone() != (None,):
                    conn.execute(sql.SQL("DELETE FROM {}").format(sql.Identifier(table)))
    except psycopg.OperationalError:
        return  # not reachable: the tests that need it fail, saying so
    client = redis.Redis.from_url(RedisSettings().url.get_secret_value(), socket_timeout=3)
    try:
        assert client.connection_pool.connection_kwargs.get("db") == TEST_REDIS_DB
        client.flushdb()
    except (redis.RedisError, OSError):
        return
    finally:
        client.close()


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


# Modules of the product that decide from the wall clock which hour or day is still in progress.
CLOCK_MODULES = (
    "services.query_api.history",
    "services.query_api.summary_api",
    "services.query_api.status_api",
    "services.writer.rollup",
)


class FrozenClock:
    """The ``time`` module as :data:`CLOCK_MODULES` see it under the ``clock`` fixture: the wall
    clock (``time()``, ``time_ns()``) stands still at ``now_ns`` until a test moves it; the rest
    (``monotonic``, ``sleep``...) is the real one."""

    def __init__(self, now_ns: int) -> None:
        self.now_ns = now_ns

    def time_ns(self) -> int:
        return self.now_ns

    def time(self) -> float:
        return self.now_ns / 1e9

    def __getattr__(self, name: str) -> Any:
        return getattr(time, name)


def clock_start(now: datetime, spec: str | None) -> int:
    """The instant a frozen clock starts at: ``now``, or with ``spec`` ("MM:SS" or "HH:MM:SS",
    UTC) the latest instant not after ``now`` that shows those minutes and seconds (and hours).
    ``MILLRACE_TEST_CLOCK=59:45`` runs the clock-sensitive tests 15 s before an hour ends,
    ``00:05`` 5 s after one began, ``23:59:45`` 15 s before a day ends."""
    now = now.astimezone(UTC)
    if spec:
        parts = [int(p) for p in spec.split(":")]
        if len(parts) == 2:
            at = now.replace(minute=parts[0], second=parts[1], microsecond=0)
            step = timedelta(hours=1)
        else:
            at = now.replace(hour=parts[0], minute=parts[1], second=parts[2], microsecond=0)
            step = timedelta(days=1)
        now = at - step if at > now else at
    return int(now.timestamp()) * 10**9 + now.microsecond * 1000


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FrozenClock:
    """A wall clock that stands still for the whole test, shared by the test and the product's
    notion of "the hour/day in progress", so a test that straddles an hour boundary sees the
    same hour as the code it checks. ``MILLRACE_TEST_CLOCK`` (see :func:`clock_start`) puts it
    near a boundary on purpose."""
    frozen = FrozenClock(clock_start(datetime.now(UTC), os.environ.get("MILLRACE_TEST_CLOCK")))
    for name in CLOCK_MODULES:
        monkeypatch.setattr(importlib.import_module(name), "time", frozen)
    return frozen


@pytest.fixture
def refused_port() -> Iterator[int]:
    """A local port where every connection is refused at once, for as long as the test runs: it
    is bound by this process and never listens, so nothing else can take it (no port number
    is assumed to be free)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        yield int(s.getsockname()[1])


def service_url(name: str, default_port: int) -> str:
    port = os.environ.get(f"{name.upper()}_PORT", str(default_port))
    return os.environ.get(f"{name.upper()}_URL", f"http://127.0.0.1:{port}")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests that stop or freeze a dependency run last, so they cannot disturb the others."""
    items.sort(key=lambda item: item.get_closest_marker("disruptive") is not None)
