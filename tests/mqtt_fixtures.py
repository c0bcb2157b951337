"""Fixtures and helpers for MQTT bridge tests: the real MQTT edge (RabbitMQ's MQTT plugin),
RabbitMQ and PostgreSQL.

Loaded for every test by the root conftest.py.

Isolation: every test gets its own MQTT client id, its own topic prefix and edge queue (so
neither the bridge of ``make up`` nor another test sees its messages), its own RabbitMQ topology
(``amqp_settings``) and machines of its own in the test database. Tests of the bridge publish as
a service user of the broker (the credentials of ``AMQP_URL``), which may publish anywhere; what a
gateway may publish is tested with real gateway credentials in tests/e2e/test_mqtt_edge.py.
Retained status messages and edge queues are removed afterwards.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr
from starlette.applications import Starlette

from services.mqtt_bridge.app import create_app
from services.mqtt_bridge.settings import Settings
from shared.edge import EdgeSettings, mqtt_client, service_credentials
from shared.machines import Machine
from shared.settings import AmqpSettings, MqttSettings, PostgresSettings, RedisSettings
from tests.paths import ROOT
from tests.registry import register_machines
from tools.simulator.measure import AmqpTap

TEMPLATE = "factory/{factory_id}/machine/{machine_id}/telemetry"
# The factory test machines are registered in (create_machines): telemetry topics name it.
FACTORY = "default"


def _poll_once(predicate: Callable[[], Any], start: float, timeout_s: float, what: str) -> Any:
    """``predicate()``; past the deadline, a false result fails the wait."""
    result = predicate()
    if not result and time.monotonic() > start + timeout_s:
        raise AssertionError(f"{what} not reached within {timeout_s} s (last: {result!r})")
    return result


def wait_until(predicate: Callable[[], Any], timeout_s: float, what: str = "condition") -> Any:
    """Poll ``predicate`` until it returns something truthy; fail at the deadline."""
    start = time.monotonic()
    while True:
        if result := _poll_once(predicate, start, timeout_s, what):
            return result
        time.sleep(0.05)


async def async_wait_until(
    predicate: Callable[[], Any], timeout_s: float, what: str = "condition"
) -> Any:
    """:func:`wait_until` without blocking the event loop."""
    start = time.monotonic()
    while True:
        if result := _poll_once(predicate, start, timeout_s, what):
            return result
        await asyncio.sleep(0.05)


def free_port() -> int:
    """A port that was free a moment ago. Another process may take it before the child that is
    given it binds it: :meth:`BridgeProcess.start` starts again on another port then."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PortTaken(Exception):
    """The child could not bind its HTTP port: someone took it after :func:`free_port`."""


# ---------------------------------------------------------------- MQTT


@dataclass(frozen=True, slots=True)
class MqttScope:
    """One test's corner of the broker: a client id and a topic prefix nobody else uses."""

    mqtt: MqttSettings
    prefix: str

    @property
    def template(self) -> str:
        return f"{self.prefix}/{TEMPLATE}"

    @property
    def other_topics(self) -> str:
        """A second subscription whose topics never fit the template (→ ``bad_topic``)."""
        return f"{self.prefix}/other/#"

    def topic(self, factory_id: str, machine_id: str) -> str:
        return self.template.format(factory_id=factory_id, machine_id=machine_id)

    @property
    def status_topic(self) -> str:
        return f"factory/bridge/{self.mqtt.client_id}/status"


def service_mqtt(base: MqttSettings | None = None, **changes: Any) -> MqttSettings:
    """MQTT settings signed in as a service user of the edge (``AMQP_URL``'s broker user)."""
    base = base or MqttSettings()
    credentials = service_credentials(base, AmqpSettings())
    username, password = credentials if credentials else (None, None)
    return MqttSettings(
        **{
            **base.model_dump(),
            "username": username,
            "password": SecretStr(password) if password else None,
            **changes,
        }
    )


@pytest.fixture
def mqtt_scope() -> Iterator[MqttScope]:
    tag = uuid.uuid4().hex[:10]
    prefix = f"test-{tag}"
    scope = MqttScope(
        service_mqtt(
            client_id=f"bridge-test-{tag}",
            topics=[
                f"{prefix}/factory/+/machine/+/telemetry",
                f"{prefix}/other/#",
            ],
        ),
        prefix,
    )
    yield scope
    forget_session(scope.mqtt)


def forget_session(settings: MqttSettings) -> None:
    """Drop the retained status of a bridge's client id."""
    client = mqtt_client(settings, f"{settings.client_id}-forget")
    try:
        client.connect(settings.host, settings.port)
    except OSError:
        return
    client.loop_start()
    info = client.publish(f"factory/bridge/{settings.client_id}/status", b"", qos=1, retain=True)
    with contextlib.suppress(RuntimeError, ValueError):
        info.wait_for_publish(5)
    client.disconnect()
    client.loop_stop()


def mosquitto_pub(
    settings: MqttSettings, topic: str, payloads: list[bytes], *, qos: int = 1
) -> None:
    """Publish with the real ``mosquitto_pub`` client, one message per payload (``-l``).

    Returns once the broker acknowledged every message (QoS 1: PUBACK); fails otherwise.
    """
    assert all(b"\n" not in p and p for p in payloads), "one non-empty line per message"
    cmd = ["mosquitto_pub", "-h", settings.host, "-p", str(settings.port), "-t", topic]
    cmd += ["-q", str(qos), "-l", "-M", "500", "-V", "mqttv311"]
    cmd += ["-i", f"{settings.username or 'pub'}-{uuid.uuid4().hex[:8]}"]
    if settings.username:
        cmd += ["-u", settings.username]
        if settings.password:
            cmd += ["-P", settings.password.get_secret_value()]
    result = subprocess.run(
        cmd, input=b"\n".join(payloads) + b"\n", capture_output=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr.decode(errors="replace")


def retained_status(settings: MqttSettings, timeout_s: float = 5) -> bytes | None:
    """The retained message on a bridge's status topic (real ``mosquitto_sub``)."""
    cmd = [
        "mosquitto_sub",
        "-h",
        settings.host,
        "-p",
        str(settings.port),
        "-t",
        f"factory/bridge/{settings.client_id}/status",
        "-C",
        "1",
        "-W",
        str(int(timeout_s)),
        "--retained-only",
        "-V",
        "mqttv311",
        "-i",
        f"{settings.username or 'sub'}-{uuid.uuid4().hex[:8]}",
    ]
    if settings.username:
        cmd += ["-u", settings.username]
        if settings.password:
            cmd += ["-P", settings.password.get_secret_value()]
    result = subprocess.run(cmd, capture_output=True, timeout=timeout_s + 5, check=False)
    return result.stdout.rstrip(b"\n") if result.returncode == 0 else None


# ---------------------------------------------------------------- registry


async def create_machines(
    pg: PostgresSettings, n: int, sensor_type: str = "Temperature"
) -> list[Machine]:
    return await register_machines(
        pg, n, location="Hall 7, Line 2", sensor_type=sensor_type, prefix="MQ"
    )


@pytest.fixture
async def machines(postgres_settings: PostgresSettings) -> list[Machine]:
    return await create_machines(postgres_settings, 2)


# ---------------------------------------------------------------- the bridge


@pytest.fixture
def bridge_settings(
    mqtt_scope: MqttScope,
    amqp_cleanup: AmqpSettings,
    postgres_settings: PostgresSettings,
    redis_settings: RedisSettings,
) -> Settings:
    return Settings(
        mqtt=mqtt_scope.mqtt,
        amqp=amqp_cleanup,
        postgres=postgres_settings,
        redis=redis_settings,
        edge=EdgeSettings(
            queue=f"{mqtt_scope.prefix}.mqtt.telemetry", topic_template=mqtt_scope.template
        ),
        shutdown_timeout_s=10,
    )


@pytest.fixture
async def edge_cleanup(bridge_settings: Settings) -> AsyncIterator[None]:
    """Deletes the test's edge queue afterwards."""
    yield None
    import aio_pika

    async with await aio_pika.connect(bridge_settings.amqp.url.get_secret_value()) as conn:
        channel = await conn.channel()
        await channel.queue_delete(bridge_settings.edge.queue)


@pytest.fixture
async def bridge(bridge_settings: Settings, edge_cleanup: None) -> AsyncIterator[dict[str, Any]]:
    """The bridge running in the test's event loop, through its app's real lifespan."""
    app: Starlette = create_app(bridge_settings)
    async with app.router.lifespan_context(app) as state:
        assert state is not None
        await async_wait_until(lambda: state["bridge"].edge_ready, 15, "bridge consuming")
        yield dict(state)


@pytest.fixture
async def taps(amqp_cleanup: AmqpSettings) -> AsyncIterator[tuple[AmqpTap, AmqpTap]]:
    """(readings, dead letters) of the test's private topology, declared if need be."""
    import aio_pika

    from shared.broker import declare_topology

    conn = await aio_pika.connect(amqp_cleanup.url.get_secret_value())
    async with conn:
        await declare_topology(await conn.channel(), amqp_cleanup)
    data = await AmqpTap(amqp_cleanup, exchange=amqp_cleanup.exchange, binding="reading.#").start()
    dead = await AmqpTap(amqp_cleanup, exchange=amqp_cleanup.dead_letter).start()
    yield data, dead
    await data.close()
    await dead.close()


def with_inflight(settings: Settings, inflight: int) -> Settings:
    """The same bridge settings with another MQTT_BRIDGE_MAX_INFLIGHT."""
    bridge = settings.bridge.model_copy(update={"max_inflight": inflight})
    return settings.model_copy(update={"bridge": bridge})


def bridge_env(settings: Settings, port: int) -> dict[str, str]:
    """Environment for ``python -m services.mqtt_bridge`` equivalent to ``settings``."""
    import json

    env = {k: v for k, v in os.environ.items() if not k.startswith(("MQTT_", "AMQP_"))}
    env.update(
        {
            "MQTT_BRIDGE_PORT": str(port),
            "MQTT_HOST": settings.mqtt.host,
            "MQTT_PORT": str(settings.mqtt.port),
            "MQTT_CLIENT_ID": settings.mqtt.client_id,
            "MQTT_TOPICS": json.dumps(settings.mqtt.topics),
            "MQTT_BRIDGE_TOPIC_TEMPLATE": settings.edge.topic_template,
            "MQTT_EDGE_QUEUE": settings.edge.queue,
            "MQTT_EDGE_MAX_BYTES": str(settings.edge.max_bytes),
            "AMQP_URL": settings.amqp.url.get_secret_value(),
            "AMQP_EXCHANGE": settings.amqp.exchange,
            "AMQP_QUEUE": settings.amqp.queue,
            "AMQP_DEAD_LETTER": settings.amqp.dead_letter,
            "POSTGRES_URL": settings.postgres.url.get_secret_value(),
            "REDIS_URL": settings.redis.url.get_secret_value(),
            "SHUTDOWN_TIMEOUT_S": str(settings.shutdown_timeout_s),
            "MQTT_BRIDGE_MAX_INFLIGHT": str(settings.bridge.max_inflight),
            "LOG_LEVEL": "INFO",
        }
    )
    if settings.mqtt.username:
        env["MQTT_USERNAME"] = settings.mqtt.username
    if settings.mqtt.password:
        env["MQTT_PASSWORD"] = settings.mqtt.password.get_secret_value()
    return env


class BridgeProcess:
    """``python -m services.mqtt_bridge`` as a child process, as an operator runs it."""

    def __init__(self, settings: Settings, log_path: Path) -> None:
        self.settings = settings
        self.port = free_port()
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, ready_timeout_s: float = 30) -> BridgeProcess:
        for _ in range(5):
            # Only this start's lines tell whether its port was taken.
            self._log_from = self.log_path.stat().st_size if self.log_path.exists() else 0
            with self.log_path.open("ab") as log:
                self.proc = subprocess.Popen(
                    [sys.executable, "-m", "services.mqtt_bridge"],
                    cwd=ROOT,
                    env=bridge_env(self.settings, self.port),
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            try:
                wait_until(self.ready, ready_timeout_s, f"bridge ready (log: {self.log_path})")
                return self
            except PortTaken:
                self.port = free_port()
        raise AssertionError(f"no free port for the bridge after 5 tries: {self.log()}")

    _log_from = 0

    def ready(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            tail = self.log_path.read_bytes()[self._log_from :].decode(errors="replace")
            if "address already in use" in tail.lower():
                raise PortTaken(self.port)
            raise AssertionError(f"bridge exited with {self.proc.returncode}: {self.log()}")
        try:
            return httpx.get(f"{self.url}/ready", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def metric(self, name: str) -> float:
        text = httpx.get(f"{self.url}/metrics", timeout=5).text
        for line in text.splitlines():
            if line.startswith(name + " ") or line.startswith(name + "{"):
                return float(line.rsplit(" ", 1)[1])
        raise KeyError(name)

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def terminate(self, timeout_s: float = 30) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout_s)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


@pytest.fixture
def bridge_process(
    bridge_settings: Settings, tmp_path: Path, edge_cleanup: None
) -> Iterator[BridgeProcess]:
    """A bridge child process (not started): ``.start()``, ``.kill()``, ``.terminate()``."""
    proc = BridgeProcess(bridge_settings, tmp_path / "bridge.log")
    yield proc
    proc.close()
