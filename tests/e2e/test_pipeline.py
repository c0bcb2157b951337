"""A reading travels gateway → ingest → RabbitMQ → writer → InfluxDB → query API, for real."""

from __future__ import annotations

import subprocess
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from shared.rabbitctl import rabbitmqctl_command
from shared.settings import AmqpSettings
from tests.e2e.pipeline import Headers, create_machine, history, iso, poll, stored_history
from tests.paths import ROOT

pytestmark = pytest.mark.e2e


def contract_batch(machines: list[str], start: datetime, n: int) -> dict[str, Any]:
    return {
        "gateway_id": "GW-01",
        "timestamp": iso(start),
        "batch": [
            {
                "machine_id": m,
                "sensor_type": "Temperature",
                "location": "Building A, Zone 3",
                "readings": [
                    {
                        "timestamp": iso(start + timedelta(seconds=i)),
                        "temperature": round(60.5 + i * 0.25 + k, 3),
                        "pressure": 102.0 + k,
                        "speed": 1400 + i,
                    }
                    for i in range(n)
                ],
            }
            for k, m in enumerate(machines)
        ],
    }


def test_batch_is_stored_and_served_with_identical_values(
    urls: dict[str, str], auth_headers: Headers
) -> None:
    machines = [create_machine(urls, auth_headers, "Building A, Zone 3") for _ in range(2)]
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=10)
    body = contract_batch(machines, start, 25)
    resp = httpx.post(
        f"{urls['ingest_gateway']}/api/v1/data/ingest", json=body, headers=auth_headers("Operator")
    )
    assert resp.status_code == 202, resp.text
    for k, machine in enumerate(machines):
        result = stored_history(urls, auth_headers, machine, start, records=25)
        sent = body["batch"][k]["readings"]
        got = result["data"]
        assert [row["timestamp"] for row in got] == [r["timestamp"] for r in sent]
        assert [(row["temperature"], row["pressure"], row["speed"]) for row in got] == [
            (r["temperature"], r["pressure"], float(r["speed"])) for r in sent
        ]


def test_errors_name_their_place(urls: dict[str, str], auth_headers: Headers) -> None:
    machine = create_machine(urls, auth_headers, "Floor 2")
    start = datetime.now(UTC) - timedelta(minutes=5)
    ingest = f"{urls['ingest_gateway']}/api/v1/data/ingest"
    bad = contract_batch([machine], start, 1)
    bad["batch"][0]["readings"][0]["timestamp"] = "2025-13-45"
    resp = httpx.post(ingest, json=bad, headers=auth_headers("Operator"))
    assert resp.status_code == 400
    assert resp.json()["errors"][0]["field"] == "batch[0].readings[0].timestamp"

    stranger = str(uuid.uuid4())
    resp = httpx.post(
        ingest, json=contract_batch([machine, stranger], start, 2), headers=auth_headers("Operator")
    )
    assert resp.status_code == 207, resp.text
    assert [r["machine_id"] for r in resp.json()["rejected"]] == [stranger]

    resp = history(urls, auth_headers, machine, start, interval="2h")
    assert resp.status_code == 400
    assert resp.json()["errors"][0]["parameter"] == "interval"
    assert history(urls, auth_headers, str(uuid.uuid4()), start).status_code == 404


def rabbit_queue(name: str) -> tuple[int, int]:
    """(ready, unacknowledged) as RabbitMQ itself reports them."""
    amqp_url = AmqpSettings().url.get_secret_value()
    out = subprocess.run(
        rabbitmqctl_command(
            amqp_url, "-q", "list_queues", "name", "messages_ready", "messages_unacknowledged"
        ),
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    ).stdout
    for line in out.splitlines():
        parts = line.split()
        if parts and parts[0] == name:
            return int(parts[1]), int(parts[2])
    raise AssertionError(f"queue {name} not found")


@pytest.mark.disruptive
def test_no_ack_before_the_write(urls: dict[str, str], auth_headers: Headers) -> None:
    """InfluxDB stopped: readings are accepted, wait in RabbitMQ, and are all stored exactly
    once when InfluxDB is back."""
    machine = create_machine(urls, auth_headers, "Floor 3")
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=20)
    deps = str(ROOT / "infra/local/deps.sh")
    subprocess.run([deps, "stop", "influxdb"], check=True, timeout=90)
    try:
        for chunk in range(4):
            body = contract_batch([machine], start + timedelta(minutes=chunk), 50)
            resp = httpx.post(
                f"{urls['ingest_gateway']}/api/v1/data/ingest",
                json=body,
                headers=auth_headers("Operator"),
                timeout=30,
            )
            assert resp.status_code == 202, resp.text
        ready, unacked = poll(
            lambda: rabbit_queue("telemetry.writer"), lambda q: sum(q) >= 4, timeout=20
        )
        assert ready + unacked >= 4
    finally:
        subprocess.run([deps, "start", "influxdb"], check=True, timeout=90)
    result = poll(
        lambda: history(urls, auth_headers, machine, start, limit=1000),
        lambda r: r.status_code == 200 and r.json()["pagination"]["total_records"] >= 200,
        timeout=90,
    ).json()
    assert result["pagination"]["total_records"] == 200
    stamps = [row["timestamp"] for row in result["data"]]
    assert len(stamps) == len(set(stamps)) == 200
