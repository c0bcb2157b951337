"""MQTT gateways → edge → bridge → RabbitMQ → writer → InfluxDB → query API, with the running
pipeline.

The first test publishes to the edge as a Millrace service (the broker user of ``AMQP_URL``) and
goes through the bridge of ``make up``; the simulator test signs in as a registered gateway. The
crash test runs a bridge of its own (own client id, own topic prefix and edge queue, the real
topology and registry) so that it can SIGKILL it. What gateways may publish is
tests/e2e/test_mqtt_edge.py.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aio_pika
import httpx
import orjson
import pytest

from services.mqtt_bridge.settings import Settings
from shared.edge import EdgeSettings
from shared.settings import MqttSettings
from tests.e2e import cleanup
from tests.e2e.pipeline import create_machine, history, iso, poll, stored_history
from tests.logscan import remember
from tests.mqtt_fixtures import (
    FACTORY,
    ROOT,
    BridgeProcess,
    MqttScope,
    mosquitto_pub,
    service_mqtt,
    wait_until,
    with_inflight,
)
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
    # A machine of a factory of its own: the topic must name the factory it is registered in.
    factory = f"e2e-{uuid.uuid4().hex[:8]}"
    created = cleanup.created(
        httpx.post(
            f"{urls['query_api']}/api/v1/machines",
            json={
                "name": "Press 4",
                "location": "Press shop, Line 4",
                "sensor_type": "Temperature",
                "factory_id": factory,
            },
            headers=auth_headers("Supervisor"),
        )
    )
    assert created.status_code == 201, created.text
    machine = str(created.json()["machine"]["id"])
    at = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=3)
    payload = orjson.dumps(
        {"timestamp": iso(at), "sensor_type": "Temperature", "temperature": 72.5, "speed": 1450}
    )
    topic = f"factory/{factory}/machine/{machine}/telemetry"
    mosquitto_pub(service_mqtt(), topic, [payload])

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


@pytest.fixture
async def own_edge(mqtt_scope: MqttScope) -> AsyncIterator[Settings]:
    """Bridge settings with an edge queue of the test's own on the real topology (so the
    writers of ``make up`` store what it bridges); the queue is deleted afterwards."""
    settings = Settings(
        mqtt=mqtt_scope.mqtt,
        edge=EdgeSettings(
            queue=f"{mqtt_scope.prefix}.mqtt.telemetry", topic_template=mqtt_scope.template
        ),
    )
    yield settings
    async with await aio_pika.connect(settings.amqp.url.get_secret_value()) as conn:
        await (await conn.channel()).queue_delete(settings.edge.queue)


def test_bridge_sigkilled_mid_stream_loses_nothing_and_stores_each_reading_once(
    own_edge: Settings,
    mqtt_scope: MqttScope,
    urls: dict[str, str],
    auth_headers: Headers,
    tmp_path: Path,
) -> None:
    """The bridge is killed while messages are in flight; the ones it had not acknowledged come
    again after the restart. InfluxDB would overwrite a repeated point with itself, so the
    repeats are counted where they happen: the writers count every reading stored again
    (identical: a harmless re-delivery; different values: a conflict, which must not happen)."""
    inflight = 50
    bridge = BridgeProcess(with_inflight(own_edge, inflight), tmp_path / "b.log")
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
                mosquitto_pub, mqtt_scope.mqtt, mqtt_scope.topic(FACTORY, machine), readings
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


def create_gateway() -> tuple[str, str, str]:
    """(client id, secret, factory) of a gateway made through the admin CLI, printed once, as an
    operator gets them."""
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "services.auth",
            "create-gateway",
            cleanup.gateway(f"E2E-SIM-{uuid.uuid4().hex[:8]}"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    fields = {
        name: value.strip()
        for name, value in (
            line.split(":", 1) for line in result.stdout.splitlines() if ":" in line
        )
    }
    return fields["client_id"], remember(fields["client_secret"]), fields["factory"]


def test_simulated_gateways_over_mqtt_and_http_reach_the_query_api(
    running_bridge: str, urls: dict[str, str], auth_headers: Headers
) -> None:
    """One gateway, both doors: over MQTT it signs in to the edge with the client id and secret
    it exchanges for tokens over HTTP."""
    machines = [create_machine(urls, auth_headers, "Paint shop") for _ in range(2)]
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=15)
    client_id, secret, factory = create_gateway()  # the factory the machines were created in
    mqtt = MqttSettings()
    config = Config(
        [SimMachine(m, factory) for m in machines],
        rate=0,  # unpaced; timestamps 1 ms apart from start_us
        ticks=20,
        transport="both",  # the first machine over MQTT, the second over HTTP
        readings_per_message=5,
        start_us=int(start.timestamp() * 1_000_000),
    )
    with MqttPublisher(
        mqtt.host, mqtt.port, client_id=f"{client_id}-sim", username=client_id, password=secret
    ) as gateway:
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
        stored_history(urls, auth_headers, machine, start, records=20)
