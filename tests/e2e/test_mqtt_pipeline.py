"""MQTT gateways → bridge → RabbitMQ → writer → InfluxDB → query API, with the running pipeline.

The first test goes through the bridge of ``make up``. The crash test runs a bridge of its own
(own client id, own topic prefix, the real topology and registry) so that it can SIGKILL it.
"""

from __future__ import annotations

import os
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

pytestmark = pytest.mark.e2e
pytest_plugins = ["tests.mqtt_fixtures"]
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
