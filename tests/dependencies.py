"""Where the tests' PostgreSQL, Redis, RabbitMQ and InfluxDB come from: the fixtures chain
service → url → settings.

With a Docker engine (``docker info`` succeeds; a ``docker`` client alone is not enough)
testcontainers starts a throwaway one of each, once per run, and every integration test (with
the apps and child processes it starts) sees their URLs. Without one, the tests use the URLs
that ``make up`` provides (``.run/env``, loaded by ``make test``); a dependency that does not
answer there fails the tests that need it, loudly. End-to-end tests always use the running
pipeline's dependencies.

Tests that stop, start or freeze a dependency do it through :class:`DependencyControl`
(``dependency_control``): ``infra/local/deps.sh`` for the local ones, the Docker engine for
containers.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest
from pydantic import SecretStr

from shared.influx import InfluxClient
from shared.rabbitctl import rabbitmqctl_command
from shared.settings import AmqpSettings, InfluxSettings, PostgresSettings, RedisSettings
from tests.paths import DEPS
from tests.queues import delete_topology

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
# The images of the containers: the versions `make up` installs from Debian (InfluxDB 1.x).
IMAGES = {
    "postgres": "postgres:16",
    "redis": "redis:7",
    "rabbitmq": "rabbitmq:3.13",
    "influx": "influxdb:1.8",
}


def docker_engine(docker: str = "docker") -> bool:
    """Whether a Docker engine answers: ``docker info`` exits 0 within 30 s."""
    path = shutil.which(docker)
    if path is None:
        return False
    try:
        done = subprocess.run([path, "info"], capture_output=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


def with_path(url: str, path: str) -> str:
    """``url`` with its path (a PostgreSQL database, a Redis database number) replaced."""
    return urlunsplit(urlsplit(url)._replace(path="/" + path))


@dataclass(frozen=True)
class Dependencies:
    """The URLs of the tests' dependencies; ``containers`` names the containers serving them
    (empty when they are the environment's)."""

    postgres: str  # the test database
    redis: str  # the tests' Redis database
    amqp: str
    influx: str
    influx_rpc: str | None = None  # influxd's backup address, when not INFLUX_URL's host:8088
    containers: dict[str, Any] = field(default_factory=dict, compare=False)
    waits: dict[str, Any] = field(default_factory=dict, compare=False)  # readiness, by name

    def environ(self) -> dict[str, str]:
        """The environment variables that point an app or a child process at them."""
        env = {
            "POSTGRES_URL": self.postgres,
            "REDIS_URL": self.redis,
            "AMQP_URL": self.amqp,
            "INFLUX_URL": self.influx,
        }
        if self.influx_rpc:
            env["INFLUX_RPC"] = self.influx_rpc
        return env


def environment_dependencies() -> Dependencies:
    """The dependencies of the environment (``make up``): the test database and the tests'
    Redis database on the servers the pipeline uses."""
    return Dependencies(
        postgres=with_path(PostgresSettings().url.get_secret_value(), TEST_DATABASE),
        redis=with_path(RedisSettings().url.get_secret_value(), str(TEST_REDIS_DB)),
        amqp=AmqpSettings().url.get_secret_value(),
        influx=InfluxSettings().url,
    )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _container(image: str, port: int, wait: Any, **env: str) -> Any:
    from testcontainers.core.container import DockerContainer

    # A fixed host port, so that a container stopped and started again by a test keeps its URL.
    container = DockerContainer(image).with_bind_ports(port, _free_port()).waiting_for(wait)
    return container.with_envs(**env)


def start_containers(stack: ExitStack) -> Dependencies:
    """A throwaway PostgreSQL, Redis, RabbitMQ and InfluxDB, stopped when ``stack`` closes."""
    from testcontainers.core.wait_strategies import (
        ExecWaitStrategy,
        HttpWaitStrategy,
        LogMessageWaitStrategy,
    )

    password = uuid.uuid4().hex
    specs = {
        "postgres": (
            5432,
            ExecWaitStrategy(["pg_isready", "-h", "127.0.0.1", "-U", "millrace"]),
            {
                "POSTGRES_USER": "millrace",
                "POSTGRES_PASSWORD": password,
                "POSTGRES_DB": TEST_DATABASE,
            },
        ),
        "redis": (6379, LogMessageWaitStrategy("Ready to accept connections"), {}),
        "rabbitmq": (5672, LogMessageWaitStrategy("Server startup complete"), {}),
        # The backup RPC listens beyond the container's loopback for `tools.backup`.
        "influx": (
            8086,
            HttpWaitStrategy(8086, "/ping").for_status_code(204),
            {"INFLUXDB_BIND_ADDRESS": ":8088"},
        ),
    }
    started: dict[str, Any] = {}
    waits = {name: spec[1] for name, spec in specs.items()}
    for name, (port, wait, env) in specs.items():
        container = _container(IMAGES[name], port, wait, **env)
        if name == "influx":
            container.with_bind_ports(8088, _free_port())
        stack.enter_context(container)
        started[name] = container

    def address(name: str, port: int) -> str:
        container = started[name]
        return f"{container.get_container_host_ip()}:{container.get_exposed_port(port)}"

    return Dependencies(
        postgres=f"postgresql://millrace:{password}@{address('postgres', 5432)}/{TEST_DATABASE}",
        redis=f"redis://{address('redis', 6379)}/{TEST_REDIS_DB}",
        amqp=f"amqp://guest:guest@{address('rabbitmq', 5672)}/",
        influx=f"http://{address('influx', 8086)}",
        influx_rpc=address("influx", 8088),
        containers=started,
        waits=waits,
    )


def select_dependencies(stack: ExitStack) -> Dependencies:
    """Containers (stopped when ``stack`` closes) where a Docker engine answers, else the
    environment's dependencies."""
    return start_containers(stack) if docker_engine() else environment_dependencies()


@pytest.fixture(scope="session")
def dependencies() -> Iterator[Dependencies]:
    with ExitStack() as stack:
        yield select_dependencies(stack)


@pytest.fixture(autouse=True)
def _integration_environment(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An integration test served by containers, and whatever it starts, reads their URLs from
    the environment (an end-to-end test keeps the pipeline's)."""
    node = request.node
    if not node.get_closest_marker("integration") or node.get_closest_marker("e2e"):
        return
    deps: Dependencies = request.getfixturevalue("dependencies")
    if deps.containers:
        for name, value in deps.environ().items():
            monkeypatch.setenv(name, value)


def pytest_configure(config: pytest.Config) -> None:
    """Every app a test starts, and every child process it runs, takes the tests' Redis
    database from the environment (``RedisSettings()``), not the pipeline's."""
    os.environ["REDIS_URL"] = with_path(RedisSettings().url.get_secret_value(), str(TEST_REDIS_DB))


# The PostgreSQL advisory lock that integration runs on the same test stores share: each run
# holds it shared for as long as it lasts; emptying the stores needs it alone.
STORES_IN_USE = 0x6D696C6C  # "mill"


@pytest.fixture(scope="session", autouse=True)
def _fresh_test_stores(request: pytest.FixtureRequest) -> Iterator[None]:
    """A run with integration tests starts from an empty test database and test Redis database
    (they hold nothing but what earlier runs left), unless another run is using them at the
    time: then both keep what is there, so neither pulls the other's data away. Runs without
    integration tests touch neither."""
    if not any(item.get_closest_marker("integration") for item in request.session.items):
        yield
        return
    import psycopg

    deps: Dependencies = request.getfixturevalue("dependencies")
    try:
        conn = psycopg.connect(deps.postgres, connect_timeout=3, autocommit=True)
    except psycopg.OperationalError:
        yield  # not reachable: the tests that need it fail, saying so
        return
    try:
        alone = conn.execute("SELECT pg_try_advisory_lock(%s)", (STORES_IN_USE,)).fetchone()
        if alone == (True,):
            _empty_test_stores(conn, deps.redis)
        # Shared from now on (taken before the exclusive one is let go: no run can slip in).
        conn.execute("SELECT pg_advisory_lock_shared(%s)", (STORES_IN_USE,))
        if alone == (True,):
            conn.execute("SELECT pg_advisory_unlock(%s)", (STORES_IN_USE,))
        yield  # the connection, and with it the shared lock, lasts until the run ends
    finally:
        conn.close()  # also after a PostgreSQL restart broke it


def _empty_test_stores(conn: Any, redis_url: str) -> None:
    import redis
    from psycopg import sql

    for table in TEST_TABLES:
        if conn.execute("SELECT to_regclass(%s)", (table,)).fetchone() != (None,):
            conn.execute(sql.SQL("DELETE FROM {}").format(sql.Identifier(table)))
    client = redis.Redis.from_url(redis_url, socket_timeout=3)
    try:
        assert client.connection_pool.connection_kwargs.get("db") == TEST_REDIS_DB
        client.flushdb()
    except (redis.RedisError, OSError):
        return
    finally:
        client.close()


@pytest.fixture(scope="session")
def postgres_settings(dependencies: Dependencies) -> PostgresSettings:
    return PostgresSettings(url=SecretStr(dependencies.postgres), pool_min=1, pool_max=4)


@pytest.fixture(scope="session")
def redis_settings(dependencies: Dependencies) -> RedisSettings:
    return RedisSettings(url=SecretStr(dependencies.redis))


@pytest.fixture(scope="session")
def influx_settings(dependencies: Dependencies) -> InfluxSettings:
    """The test database, provisioned once: a test that only reads must not depend on another
    test having written first."""
    settings = InfluxSettings(url=dependencies.influx, database=TEST_DATABASE)

    async def provision() -> None:
        client = InfluxClient(settings)
        try:
            await client.provision()
        finally:
            await client.close()

    asyncio.run(provision())
    return settings


@pytest.fixture
def amqp_settings(dependencies: Dependencies) -> AmqpSettings:
    """A private topology per test: the running writer pool never sees test messages."""
    tag = uuid.uuid4().hex[:8]
    return AmqpSettings(
        url=SecretStr(dependencies.amqp),
        exchange=f"test-{tag}.telemetry",
        queue=f"test-{tag}.telemetry.writer",
        dead_letter=f"test-{tag}.telemetry.dead",
    )


@pytest.fixture
async def amqp_cleanup(amqp_settings: AmqpSettings) -> AsyncIterator[AmqpSettings]:
    yield amqp_settings
    await delete_topology(amqp_settings)


class DependencyControl:
    """Stops, starts and freezes the tests' dependencies ("postgres", "redis", "rabbitmq"),
    wherever they run."""

    def __init__(self, deps: Dependencies) -> None:
        self.deps = deps

    def _container(self, name: str) -> Any:
        return self.deps.containers[name].get_wrapped_container()

    def stop(self, name: str) -> None:
        if self.deps.containers:
            self._container(name).stop(timeout=30)
        else:
            subprocess.run([DEPS, "stop", name], check=True, capture_output=True, timeout=90)

    def start(self, name: str) -> None:
        if self.deps.containers:
            self._container(name).start()
            self.deps.waits[name].wait_until_ready(self.deps.containers[name])
        else:
            subprocess.run([DEPS, "start", name], check=True, capture_output=True, timeout=90)

    @contextmanager
    def frozen(self, name: str) -> Iterator[None]:
        """The dependency hangs (SIGSTOP / ``docker pause``) for the ``with`` block."""
        if self.deps.containers:
            container = self._container(name)
            container.pause()
            try:
                yield
            finally:
                container.unpause()
            return
        if name != "redis":
            raise ValueError(f"freezing a local {name} is not supported (only redis)")
        import redis

        info = redis.Redis.from_url(self.deps.redis).info("server")
        pid = int(info["process_id"])
        os.kill(pid, signal.SIGSTOP)
        try:
            yield
        finally:
            os.kill(pid, signal.SIGCONT)

    def rabbitmqctl(self, *args: str) -> str:
        """``rabbitmqctl -q ARGS`` against the tests' RabbitMQ node; its output."""
        if self.deps.containers:
            code, output = self.deps.containers["rabbitmq"].exec(["rabbitmqctl", "-q", *args])
            assert code == 0, output
            return str(output.decode()).strip()
        command = rabbitmqctl_command(self.deps.amqp, "-q", *args)
        done = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
        assert done.returncode == 0, done.stderr
        return done.stdout.strip()


@pytest.fixture(scope="session")
def dependency_control(dependencies: Dependencies) -> DependencyControl:
    return DependencyControl(dependencies)
