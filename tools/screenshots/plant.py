"""A private, empty Millrace for the pictures: the README shows a tidy plant, not the development
database cluttered with test machines and alerts.

Beside the running pipeline and on the same servers, but sharing no data with it: its own
PostgreSQL database, RabbitMQ virtual host, InfluxDB database and Redis database number, and its
own auth, writer, ingest_gateway, query_api and alerter on ports of their own (logs in
``.run/soak-<service>.log``, as the soak's private stack, which this one extends). Everything it
created is removed when it stops: the databases, the virtual host, the Redis keys and the
alerter's retained MQTT topics.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote, urlsplit, urlunsplit

import httpx
import paho.mqtt.client as mqtt
import psycopg
import redis

from shared.settings import AmqpSettings, InfluxSettings, MqttSettings, PostgresSettings
from tools.soak.stack import PrivateStack, StackError

SERVICES = ("auth", "writer", "ingest_gateway", "query_api", "alerter")
# The pipeline's Redis is database 0; the tests use 0 too. Flushed before and after.
REDIS_DB = 11


def _with_path(url: str, path: str) -> str:
    return urlunsplit(urlsplit(url)._replace(path=path))


def _superuser_psql(url: str, sql: str) -> None:
    """As the local ``postgres`` superuser (the services' role may not create databases)."""
    parts = urlsplit(url)
    runuser = shutil.which("runuser")
    if not (os.geteuid() == 0 and runuser and parts.hostname in ("127.0.0.1", "localhost")):
        raise StackError("creating a database needs CREATEDB or root beside a local PostgreSQL")
    done = subprocess.run(
        [runuser, "-u", "postgres", "--", "psql", "-X", "-q", "-v", "ON_ERROR_STOP=1",
         "-p", str(parts.port or 5432), "-d", "postgres", "-c", sql],
        capture_output=True, text=True, cwd="/", timeout=60, check=False,
    )  # fmt: skip
    if done.returncode != 0:
        raise StackError(f"psql: {done.stderr.strip()}")


def _rabbitmqctl(*args: str) -> None:
    done = subprocess.run(
        ["rabbitmqctl", "-q", *args], capture_output=True, text=True, timeout=60, check=False
    )
    if done.returncode != 0:
        raise StackError(f"rabbitmqctl {args[0]}: {(done.stderr or done.stdout).strip()}")


@dataclass
class PrivatePlant(PrivateStack):
    """The soak's private stack with the rest of the pipeline, on data of its own."""

    name: str = field(default_factory=lambda: f"millrace_shots_{uuid.uuid4().hex[:8]}")
    alert_topic: str = field(default_factory=lambda: f"millrace-shots/{uuid.uuid4().hex[:8]}")

    @property
    def ports(self) -> dict[str, int]:
        return {svc: self.base_port + i for i, svc in enumerate(SERVICES)}

    @property
    def postgres_url(self) -> str:
        return _with_path(PostgresSettings().url.get_secret_value(), f"/{self.name}")

    @property
    def amqp_url(self) -> str:
        return _with_path(AmqpSettings().url.get_secret_value(), "/" + quote(self.name, safe=""))

    @property
    def redis_url(self) -> str:
        return _with_path(os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"), f"/{REDIS_DB}")

    @property
    def dev_users(self) -> Path:
        return self.key_dir / "dev-users.txt"

    def env(self) -> dict[str, str]:
        env = super().env()
        env.update(
            {
                "POSTGRES_URL": self.postgres_url,
                "AMQP_URL": self.amqp_url,
                "INFLUX_DATABASE": self.name,
                "REDIS_URL": self.redis_url,
                "WRITER_PORT": str(self.ports["writer"]),
                "ALERTER_PORT": str(self.ports["alerter"]),
                "ALERTER_MQTT_TOPIC": self.alert_topic,
                "AUTH_ACCESS_TTL_S": "900",
            }
        )
        return env

    # -- its data --------------------------------------------------------------------------------
    def create(self) -> None:
        admin = PostgresSettings().url.get_secret_value()
        role = urlsplit(admin).username
        try:
            with psycopg.connect(admin, autocommit=True) as conn:
                conn.execute(f'CREATE DATABASE "{self.name}"')
        except psycopg.errors.InsufficientPrivilege:
            _superuser_psql(admin, f'CREATE DATABASE "{self.name}" OWNER "{role}"')
        user = urlsplit(AmqpSettings().url.get_secret_value()).username or "guest"
        _rabbitmqctl("add_vhost", self.name)
        _rabbitmqctl("set_permissions", "-p", self.name, user, ".*", ".*", ".*")
        redis.Redis.from_url(self.redis_url).flushdb()

    def destroy(self, machine_ids: list[str]) -> None:
        """Remove everything it created; each step runs even when another failed."""
        errors: list[str] = []
        admin = PostgresSettings().url.get_secret_value()
        steps = (
            ("postgres", lambda: self._drop_postgres(admin)),
            ("rabbitmq", lambda: _rabbitmqctl("delete_vhost", self.name)),
            ("influxdb", self._drop_influx),
            ("redis", lambda: redis.Redis.from_url(self.redis_url).flushdb()),
            ("mqtt", lambda: self._clear_retained(machine_ids)),
        )
        for what, step in steps:
            try:
                step()
            except Exception as e:  # noqa: BLE001 (reported together below)
                errors.append(f"{what}: {e}")
        if errors:
            raise StackError("left behind: " + "; ".join(errors))

    def _drop_postgres(self, admin: str) -> None:
        sql = f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)'
        try:
            with psycopg.connect(admin, autocommit=True) as conn:
                conn.execute(sql)
        except psycopg.errors.InsufficientPrivilege:
            _superuser_psql(admin, sql)

    def _drop_influx(self) -> None:
        s = InfluxSettings()
        resp = httpx.post(f"{s.url}/query", params={"q": f'DROP DATABASE "{self.name}"'})
        resp.raise_for_status()

    def _clear_retained(self, machine_ids: list[str]) -> None:
        """The alerter keeps a retained topic per machine with alerts: emptied, so gone."""
        s = MqttSettings()
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"shots-{self.name}")
        if s.username:
            password = s.password.get_secret_value() if s.password else None
            client.username_pw_set(s.username, password)
        client.connect(s.host, s.port)
        client.loop_start()
        try:
            deadline = time.monotonic() + 5
            while not client.is_connected():
                if time.monotonic() > deadline:
                    return  # refused to us, so to the alerter too (same settings): none retained
                time.sleep(0.05)  # paho has no blocking wait for CONNACK
            for mid in machine_ids:
                info = client.publish(f"{self.alert_topic}/{mid}", b"", qos=1, retain=True)
                info.wait_for_publish(10)
        finally:
            client.loop_stop()
            client.disconnect()

    def add_dev_users(self) -> None:
        self.auth_command("dev-users")


@contextmanager
def private_plant(base_port: int) -> Iterator[tuple[PrivatePlant, list[str]]]:
    """A running private plant; the caller appends the machine ids it registers to the list,
    so that their retained alert topics are cleared at the end."""
    plant = PrivatePlant(base_port)
    machine_ids: list[str] = []
    plant.create()
    try:
        for service in SERVICES:  # auth first: the others fetch its JWKS
            plant.start(service)
            plant.wait_ready(service)
        plant.add_dev_users()
        yield plant, machine_ids
    finally:
        for service in reversed(SERVICES):
            with suppress(StackError):
                plant.stop(service)
        plant.destroy(machine_ids)
        shutil.rmtree(plant.key_dir, ignore_errors=True)
