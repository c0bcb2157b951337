"""The MQTT edge signs gateways in and keeps each to its own machines, with the real
``mosquitto_pub``/``mosquitto_sub`` against the running pipeline (``make up``).

Two factories of the test's own, machines in each, and gateways made as an operator makes them
(the admin CLI and the gateway API). A gateway signs in with its client id as username and its
secret as password, under an MQTT client id that is its client id or starts with ``<client id>-``.
It may publish only its machines' telemetry topics and subscribe only to their alert topics; the
edge refuses the rest (a refused publish: the connection closes without PUBACK, so
``mosquitto_pub`` exits non-zero). What a refused publish carried is never stored: a reading sent
afterwards through the same edge queue is, and the refused one is still absent then.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import httpx
import orjson
import pytest

from shared.db import create_pool
from shared.machines import MachineRepository
from shared.settings import MqttSettings, PostgresSettings
from tests.e2e import cleanup
from tests.e2e.pipeline import history, iso, stored_history
from tests.logscan import remember

pytestmark = pytest.mark.e2e
Headers = Callable[[str], dict[str, str]]
ALERTS = os.environ.get("ALERTER_MQTT_TOPIC", "millrace/alerts").rstrip("/")
TOPIC = "factory/{factory}/machine/{machine}/telemetry"


@dataclass(frozen=True)
class Gateway:
    client_id: str
    secret: str


@dataclass(frozen=True)
class Site:
    """Factory A with machines a1, a2; factory B with machine b1; gateways of factory A."""

    a: str
    b: str
    a1: str
    a2: str
    b1: str
    whole: Gateway  # every machine of factory A
    limited: Gateway  # machine a1 only
    disabled: Gateway  # factory A, disabled


async def register_machines(factories: list[str]) -> list[str]:
    """One machine per entry, registered in that factory (the machine repository, as the query
    API's machine endpoint does)."""
    pool = create_pool(PostgresSettings(), "e2e")
    await pool.open(wait=True)
    try:
        repo = MachineRepository(pool)
        return [
            cleanup.machine(
                (
                    await repo.create(
                        f"EDGE-{uuid.uuid4().hex[:6]}",
                        "Edge hall",
                        "Temperature",
                        "active",
                        factory,
                    )
                ).id
            )
            for factory in factories
        ]
    finally:
        await pool.close()


def cli_gateway(factory: str, machines: list[str]) -> Gateway:
    """Credentials through the admin CLI, printed once, as an operator gets them."""
    gateway_id = cleanup.gateway(f"EDGE-{uuid.uuid4().hex[:8]}")
    cmd = [sys.executable, "-m", "services.auth", "create-gateway", gateway_id]
    cmd += ["--factory", factory]
    for machine in machines:
        cmd += ["--machine", machine]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    fields = dict(
        line.split(":", 1) for line in result.stdout.splitlines() if line.startswith("client_")
    )
    return Gateway(fields["client_id"].strip(), remember(fields["client_secret"].strip()))


def api_gateway(urls: dict[str, str], auth_headers: Headers, factory: str) -> tuple[str, Gateway]:
    """(gateway id, credentials) through the gateway admin API."""
    gateway_id = f"EDGE-{uuid.uuid4().hex[:8]}"
    resp = cleanup.created(
        httpx.post(
            f"{urls['auth']}/api/v1/auth/gateways",
            json={"gateway_id": gateway_id, "factory_id": factory},
            headers=auth_headers("Management"),
        )
    )
    assert resp.status_code == 201, resp.text
    body = resp.json()
    return gateway_id, Gateway(body["client_id"], remember(body["client_secret"]))


@pytest.fixture(scope="module")
def site(urls: dict[str, str], _tokens: Callable[[str], str]) -> Iterator[Site]:
    def auth_headers(role: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {_tokens(role)}"}

    tag = uuid.uuid4().hex[:8]
    a, b = f"edge-a-{tag}", f"edge-b-{tag}"
    a1, a2, b1 = asyncio.run(register_machines([a, a, b]))
    _, whole = api_gateway(urls, auth_headers, a)
    limited = cli_gateway(a, [a1])
    disabled_id, disabled = api_gateway(urls, auth_headers, a)
    resp = httpx.post(
        f"{urls['auth']}/api/v1/auth/gateways/{disabled_id}/disable",
        headers=auth_headers("Management"),
    )
    assert resp.status_code == 200, resp.text
    yield Site(a, b, a1, a2, b1, whole, limited, disabled)


def _client(tool: str, client_id: str) -> list[str]:
    mqtt = MqttSettings()
    return [tool, "-h", mqtt.host, "-p", str(mqtt.port), "-V", "mqttv311", "-i", client_id]


def publish(
    gateway: Gateway, topic: str, payload: bytes, *, client_id: str | None = None, secret: str = ""
) -> subprocess.CompletedProcess[str]:
    """One QoS 1 message with the real ``mosquitto_pub``; exit 0 only once PUBACKed."""
    cmd = _client("mosquitto_pub", client_id or own(gateway))
    cmd += ["-u", gateway.client_id, "-P", secret or gateway.secret]
    cmd += ["-q", "1", "-t", topic, "-m", payload.decode()]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=20, check=False)


def subscribe(gateway: Gateway, topic: str, timeout_s: float = 10) -> list[str]:
    """What ``mosquitto_sub -d`` printed until the edge answered a subscription to ``topic``:
    its SUBACK, or the connection closed under it (a refused subscription; ``mosquitto_sub``
    then connects again, which ends the reading)."""
    cmd = _client("mosquitto_sub", own(gateway))
    cmd += ["-u", gateway.client_id, "-P", gateway.secret, "-q", "1", "-t", topic, "-E", "-d"]
    # Line-buffered: the lines are read while it runs, not when it exits.
    proc = subprocess.Popen(
        ["stdbuf", "-oL", *cmd], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    deadline = threading.Timer(timeout_s, proc.kill)
    deadline.start()
    lines: list[str] = []
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line.strip())
            if "received SUBACK" in line or sum("sending CONNECT" in x for x in lines) > 1:
                break
    finally:
        deadline.cancel()
        proc.kill()
        proc.wait()
    return lines


def own(gateway: Gateway) -> str:
    return f"{gateway.client_id}-{uuid.uuid4().hex[:6]}"


def reading(at: datetime, temperature: float) -> bytes:
    return orjson.dumps({"timestamp": iso(at), "temperature": temperature})


def topic(factory: str, machine: str) -> str:
    return TOPIC.format(factory=factory, machine=machine)


def suback(lines: list[str]) -> bool:
    return any("received SUBACK" in line for line in lines)


def test_a_gateway_publishes_its_own_machines_readings_and_they_are_stored(
    site: Site, urls: dict[str, str], auth_headers: Headers
) -> None:
    at = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=2)
    for gateway, second, temperature in ((site.whole, 0, 61.5), (site.limited, 1, 62.5)):
        sent = publish(
            gateway, topic(site.a, site.a1), reading(at + timedelta(seconds=second), temperature)
        )
        assert sent.returncode == 0, sent.stderr  # PUBACKed: in the edge's quorum queue
    stored = stored_history(urls, auth_headers, site.a1, at, records=2)
    assert [(r["timestamp"], r["temperature"]) for r in stored["data"]] == [
        (iso(at), 61.5),
        (iso(at + timedelta(seconds=1)), 62.5),
    ]


def test_a_publish_outside_the_gateways_machines_is_refused_and_never_stored(
    site: Site, urls: dict[str, str], auth_headers: Headers
) -> None:
    at = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=3)
    refused = {
        "another factory's machine under its own factory": (
            site.whole,
            topic(site.a, site.b1),
        ),
        "another factory's topic": (site.whole, topic(site.b, site.b1)),
        "a machine of its factory outside its list": (site.limited, topic(site.a, site.a2)),
        "a machine nobody registered": (site.whole, topic(site.a, str(uuid.uuid4()))),
    }
    for what, (gateway, where) in refused.items():
        sent = publish(gateway, where, reading(at, 99.0))
        # No PUBACK: the edge closed the connection, mosquitto_pub lost it.
        assert sent.returncode != 0, what
        assert "connection was lost" in sent.stderr.lower(), (what, sent.stderr)
    # A reading sent afterwards through the same edge queue is stored; the refused ones are not.
    later = publish(site.whole, topic(site.a, site.a2), reading(at + timedelta(seconds=1), 42.0))
    assert later.returncode == 0, later.stderr
    stored = stored_history(urls, auth_headers, site.a2, at, records=1)
    assert [r["temperature"] for r in stored["data"]] == [42.0]
    b1 = history(urls, auth_headers, site.b1, at)
    assert b1.status_code == 200 and b1.json()["pagination"]["total_records"] == 0, b1.text


def test_a_connection_without_a_gateways_own_credentials_is_refused(site: Site) -> None:
    at = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=4)
    where = topic(site.a, site.a1)
    attempts = {
        "wrong secret": publish(site.limited, where, reading(at, 1.0), secret="not-the-secret"),
        "unknown client id": publish(
            Gateway(f"gw_{uuid.uuid4().hex[:20]}", site.whole.secret), where, reading(at, 1.0)
        ),
        "another gateway's MQTT client id": publish(
            site.whole, where, reading(at, 1.0), client_id=f"{site.limited.client_id}-x"
        ),
        "a client id not starting with its own": publish(
            site.whole, where, reading(at, 1.0), client_id=f"x{site.whole.client_id}"
        ),
        "a disabled gateway": publish(site.disabled, where, reading(at, 1.0)),
    }
    for what, sent in attempts.items():
        assert sent.returncode != 0, what
        assert "connection refused" in sent.stderr.lower(), (what, sent.stderr)


def test_a_gateway_subscribes_only_to_its_own_machines_alerts(site: Site) -> None:
    assert suback(subscribe(site.whole, f"{ALERTS}/{site.a1}"))
    assert suback(subscribe(site.limited, f"{ALERTS}/{site.a1}"))
    for gateway, where in (
        (site.whole, "#"),
        (site.whole, f"{ALERTS}/#"),
        (site.whole, f"{ALERTS}/{site.b1}"),  # another factory's machine
        (site.limited, f"{ALERTS}/{site.a2}"),  # outside its list
    ):
        lines = subscribe(gateway, where)
        subscribed = next(i for i, line in enumerate(lines) if "sending SUBSCRIBE" in line)
        after = lines[subscribed:]
        # No SUBACK: the edge closed the connection, and mosquitto_sub connected again.
        assert not suback(after) and any("sending CONNECT" in x for x in after), (where, lines)
