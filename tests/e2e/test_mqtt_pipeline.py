"""MQTT gateways → bridge → RabbitMQ → writer → InfluxDB → query API, with the running pipeline.

The first test goes through the bridge of ``make up``. The crash test runs a bridge of its own
(own client id, own topic prefix, the real topology and registry) so that it can SIGKILL it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import orjson
import pytest

from services.mqtt_bridge.settings import Settings
from shared.settings import MqttSettings
from tests.e2e.pipeline import create_machine, history, iso, poll
from tests.mqtt_fixtures import ROOT, BridgeProcess, MqttScope, mosquitto_pub, wait_until
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


DUPLICATES = "millrace_writer_duplicates_total"
CONFLICTS = "millrace_writer_conflicts_total"


def writer_urls() -> list[str]:
    """Every writer of ``make up``: ``writer`` on WRITER_PORT, ``writer-<i>`` on WRITER_PORT +
    10 i (``infra/local/services.sh``)."""
    base = int(os.environ.get("WRITER_PORT", "8005"))
    others = sorted(int(p.stem.split("-", 1)[1]) for p in (ROOT / ".run").glob("writer-*.pid"))
    return [f"http://127.0.0.1:{base + 10 * i}" for i in [0, *others]]


def writers_total(name: str) -> float:
    """A counter summed over the writers (a re-delivery may reach any of them)."""
    total = 0.0
    for url in writer_urls():
        text = httpx.get(f"{url}/metrics", timeout=5).text
        total += sum(
            float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(name)
        )
    return total


def test_bridge_sigkilled_mid_stream_loses_nothing_and_stores_each_reading_once(
    mqtt_scope: MqttScope, urls: dict[str, str], auth_headers: Headers, tmp_path: Path
) -> None:
    """The bridge is killed while messages are in flight; the ones it had not acknowledged come
    again after the restart. InfluxDB would overwrite a repeated point with itself, so the
    repeats are counted where they happen: the writers count every reading stored again
    (identical: a harmless re-delivery; different values: a conflict, which must not happen)."""
    inflight = 50
    bridge = BridgeProcess(
        Settings(mqtt=mqtt_scope.mqtt, topic_template=mqtt_scope.template, max_inflight=inflight),
        tmp_path / "b.log",
    )
    machine = create_machine(urls, auth_headers, "Press shop, Line 5")
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=30)
    n = 3000
    readings = [
        orjson.dumps(
            {"timestamp": iso(start + timedelta(milliseconds=i)), "temperature": 40 + i % 30}
        )
        for i in range(n)
    ]
    before = writers_total(DUPLICATES), writers_total(CONFLICTS)

    def bridged() -> float:
        try:
            return bridge.metric('millrace_mqtt_messages_total{outcome="published"}')
        except KeyError:  # no message published yet: the labelled counter does not exist
            return 0.0

    try:
        bridge.start()
        with ThreadPoolExecutor(1) as pool:
            publishing = pool.submit(
                mosquitto_pub, mqtt_scope.mqtt, mqtt_scope.topic("e2e-kill", machine), readings
            )
            wait_until(lambda: bridged() >= 1, 30, "first message bridged")
            at_kill = bridged()
            bridge.kill()  # mid-stream
            publishing.result(timeout=120)
        assert at_kill < n, "everything was bridged before the kill: nothing was in flight"
        bridge.start()
        result = poll(
            lambda: history(urls, auth_headers, machine, start, limit=n + 1000),
            lambda r: r.status_code == 200 and r.json()["pagination"]["total_records"] >= n,
            timeout=90,
        ).json()
    finally:
        bridge.close()
    stamps = [row["timestamp"] for row in result["data"]]
    assert result["pagination"]["total_records"] == n
    assert len(stamps) == len(set(stamps)) == n
    duplicates, conflicts = writers_total(DUPLICATES), writers_total(CONFLICTS)
    assert conflicts == before[1], "a reading was stored again with other values"
    # Stored again, identical: at most what was in flight when the bridge died.
    assert duplicates - before[0] <= inflight, duplicates - before[0]


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
