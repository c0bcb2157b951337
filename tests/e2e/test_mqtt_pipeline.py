"""MQTT gateways → bridge → RabbitMQ → writer → InfluxDB → query API, with the running pipeline.

The first test goes through the bridge of ``make up``. The crash test runs a bridge of its own
(own client id, own topic prefix, the real topology and registry) so that it can SIGKILL it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import orjson
import pytest

from services.mqtt_bridge.settings import Settings
from shared.settings import MqttSettings
from tests.e2e.conftest import poll
from tests.e2e.test_pipeline import create_machine, history, iso
from tests.mqtt_fixtures import BridgeProcess, MqttScope, mosquitto_pub
from tools.simulator import (
    ClientCredentials,
    Config,
    HttpPublisher,
    MqttPublisher,
    SimMachine,
    Simulator,
)

pytestmark = pytest.mark.e2e
Headers = Callable[[str], dict[str, str]]


@pytest.fixture(scope="module")
def running_bridge() -> str:
    port = os.environ.get("MQTT_BRIDGE_PORT", "8004")
    url = os.environ.get("MQTT_BRIDGE_URL", f"http://127.0.0.1:{port}")
    try:
        ok = httpx.get(f"{url}/ready", timeout=5).status_code == 200
    except httpx.HTTPError:
        ok = False
    if not ok:
        pytest.fail(f"mqtt_bridge is not ready at {url}: run `make up` first")
    return url


def test_mosquitto_pub_reading_is_served_by_the_query_api(
    running_bridge: str, urls: dict[str, str], auth_headers: Headers
) -> None:
    machine = create_machine(urls, auth_headers, "Press shop, Line 4")
    factory = f"e2e-{uuid.uuid4().hex[:8]}"
    at = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=3)
    payload = orjson.dumps(
        {"timestamp": iso(at), "sensor_type": "Temperature", "temperature": 72.5, "speed": 1450}
    )
    topic = f"factory/{factory}/machine/{machine}/telemetry"
    mosquitto_pub(MqttSettings(), topic, [payload])

    result = poll(
        lambda: history(urls, auth_headers, machine, at),
        lambda r: r.status_code == 200 and r.json()["pagination"]["total_records"] == 1,
        timeout=30,
    ).json()
    [row] = result["data"]
    assert row["timestamp"] == iso(at)
    assert (row["temperature"], row["speed"]) == (72.5, 1450.0)


@pytest.fixture
def own_bridge(mqtt_scope: MqttScope, tmp_path: Path) -> Iterator[BridgeProcess]:
    """A bridge child process on the real topology and registry, with a private topic prefix."""
    proc = BridgeProcess(
        Settings(mqtt=mqtt_scope.mqtt, topic_template=mqtt_scope.template), tmp_path / "b.log"
    )
    yield proc
    proc.close()


def test_sigkilled_bridge_loses_nothing_and_stores_nothing_twice(
    own_bridge: BridgeProcess, mqtt_scope: MqttScope, urls: dict[str, str], auth_headers: Headers
) -> None:
    machine = create_machine(urls, auth_headers, "Press shop, Line 5")
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=30)
    readings = [
        orjson.dumps(
            {"timestamp": iso(start + timedelta(milliseconds=i)), "temperature": 40 + i % 30}
        )
        for i in range(1000)
    ]
    own_bridge.start()
    own_bridge.kill()
    mosquitto_pub(mqtt_scope.mqtt, mqtt_scope.topic("e2e-kill", machine), readings)
    own_bridge.start()

    result = poll(
        lambda: history(urls, auth_headers, machine, start, limit=2000),
        lambda r: r.status_code == 200 and r.json()["pagination"]["total_records"] >= 1000,
        timeout=90,
    ).json()
    stamps = [row["timestamp"] for row in result["data"]]
    assert result["pagination"]["total_records"] == 1000
    assert len(stamps) == len(set(stamps)) == 1000


def create_gateway() -> tuple[str, str]:
    """Gateway credentials through the admin CLI, printed once, as an operator gets them."""
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "services.auth",
            "create-gateway",
            f"E2E-SIM-{uuid.uuid4().hex[:8]}",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    fields = dict(
        line.split(":", 1) for line in result.stdout.splitlines() if line.startswith("client_")
    )
    return fields["client_id"].strip(), fields["client_secret"].strip()


def test_simulated_gateways_over_mqtt_and_http_reach_the_query_api(
    running_bridge: str, urls: dict[str, str], auth_headers: Headers
) -> None:
    machines = [create_machine(urls, auth_headers, "Paint shop") for _ in range(2)]
    factory = f"e2e-sim-{uuid.uuid4().hex[:6]}"
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=15)
    client_id, secret = create_gateway()
    mqtt = MqttSettings()
    config = Config(
        [SimMachine(m, factory) for m in machines],
        rate=0,  # unpaced; timestamps 1 ms apart from start_us
        ticks=20,
        transport="both",  # the first machine over MQTT, the second over HTTP
        readings_per_message=5,
        start_us=int(start.timestamp() * 1_000_000),
    )
    with MqttPublisher(mqtt.host, mqtt.port) as gateway:
        http = HttpPublisher(
            urls["ingest_gateway"], credentials=ClientCredentials(urls["auth"], client_id, secret)
        )
        try:
            stats = Simulator(config, mqtt=gateway, http=http).run()
        finally:
            http.close()
    assert stats.readings == 40
    assert stats.http_statuses == {202: 4}
    for machine in machines:
        poll(
            lambda m=machine: history(urls, auth_headers, m, start),
            lambda r: r.status_code == 200 and r.json()["pagination"]["total_records"] == 20,
            timeout=30,
        )
