"""The live stream of the running query API, fed by the running pipeline (RabbitMQ for real)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import httpx
import orjson
import pytest

from tests.e2e.pipeline import create_machine, iso
from tests.live_client import LiveReader
from tests.mqtt_fixtures import mosquitto_pub, service_mqtt

pytestmark = pytest.mark.e2e
Headers = Callable[[str], dict[str, str]]


def post_batch(urls: dict[str, str], headers: dict[str, str], batch: list[dict[str, Any]]) -> None:
    """``batch`` (readings of one or more machines) through the HTTP door, accepted whole."""
    resp = httpx.post(
        f"{urls['ingest_gateway']}/api/v1/data/ingest",
        json={"batch": batch},
        headers=headers,
        timeout=10,
    )
    assert resp.status_code == 202, resp.text


def post_reading(
    urls: dict[str, str],
    auth_headers: Headers,
    machine: str,
    temp: float,
    at: datetime | None = None,
    location: str = "Live hall",
) -> None:
    """One temperature reading of ``machine`` over HTTP, taken ``at`` (default now)."""
    reading = {"timestamp": iso(at or datetime.now(UTC)), "temperature": temp}
    batch = {"machine_id": machine, "sensor_type": "Temperature", "location": location}
    post_batch(urls, auth_headers("Operator"), [{**batch, "readings": [reading]}])


def test_http_and_mqtt_readings_reach_a_filtered_stream_within_2_s(
    urls: dict[str, str], auth_headers: Headers
) -> None:
    watched = create_machine(urls, auth_headers, "Live hall")
    other = create_machine(urls, auth_headers, "Live hall")
    with LiveReader(
        urls["query_api"],
        auth_headers("Operator"),
        {"machine_id": watched, "types": "reading,status"},
    ) as live:
        assert live.status_code == 200
        live.wait_for(lambda e: e.type == "hello", 5)
        post_reading(urls, auth_headers, other, 50.0)
        sent = time.monotonic()
        post_reading(urls, auth_headers, watched, 61.25)
        ev = live.wait_for(lambda e: e.type == "reading", 2)
        assert time.monotonic() - sent < 2
        # The reading of the other machine was filtered out: the first one is ours.
        assert ev.data["machine_id"] == watched
        assert ev.data["fields"] == {"temperature": 61.25}
        assert ev.data["source"] == "http"
        assert ev.id and ev.id.count("-") == 1

        # Over MQTT, on the topic of the machine's registered factory (another one is refused).
        registered = httpx.get(
            f"{urls['query_api']}/api/v1/machines/{watched}",
            headers=auth_headers("Operator"),
            timeout=10,
        )
        factory = registered.json()["machine"]["factory_id"]
        payload = orjson.dumps(
            {"timestamp": iso(datetime.now(UTC)), "sensor_type": "Temperature", "speed": 1234}
        )
        sent = time.monotonic()
        mosquitto_pub(service_mqtt(), f"factory/{factory}/machine/{watched}/telemetry", [payload])
        ev = live.wait_for(lambda e: e.type == "reading" and e.data["source"] == "mqtt", 2)
        assert time.monotonic() - sent < 2
        assert ev.data["fields"] == {"speed": 1234.0}
        assert ev.data["factory_id"] == factory


def test_stream_needs_the_history_permission_in_a_header(
    urls: dict[str, str], auth_headers: Headers
) -> None:
    base = f"{urls['query_api']}/api/v1/live"
    assert httpx.get(base, timeout=5).status_code == 401
    token = auth_headers("Operator")["Authorization"].split()[1]
    # A token in the URL is not a credential.
    assert httpx.get(base, params={"access_token": token}, timeout=5).status_code == 401
    stream = {**auth_headers("Operator"), "Accept": "text/event-stream"}
    bad = httpx.get(base, params={"machine_id": "nope"}, headers=stream)
    assert bad.status_code == 400
    assert bad.json()["errors"][0]["parameter"] == "machine_id"
    # A client that does not ask for an event stream is not left waiting on one.
    assert httpx.get(base, headers=auth_headers("Operator"), timeout=5).status_code == 406


def test_unknown_last_event_id_gets_a_gap(urls: dict[str, str], auth_headers: Headers) -> None:
    headers = {**auth_headers("Operator"), "Last-Event-ID": "0000dead-12"}
    with LiveReader(urls["query_api"], headers) as live:
        ev = live.wait_for(lambda e: e.type == "gap", 5)
        assert "history" in ev.data["reason"]


def test_a_user_of_one_factory_streams_only_that_factory(
    urls: dict[str, str], auth_headers: Headers, token_for: Callable[..., str]
) -> None:
    tag = uuid.uuid4().hex[:6]
    fa, fb = f"la-{tag}", f"lb-{tag}"
    q = urls["query_api"]
    admin = auth_headers("Supervisor")  # every factory
    machines = {}
    for factory in (fa, fb):
        machines[factory] = create_machine(urls, auth_headers, "Live hall", f"L-{tag}", factory)
    of_a = {"Authorization": f"Bearer {token_for('Operator', fa)}"}
    stream = {**of_a, "Accept": "text/event-stream"}
    refused = httpx.get(f"{q}/api/v1/live", params={"factory": fb}, headers=stream, timeout=10)
    assert refused.status_code == 403 and fb in refused.json()["message"]
    with LiveReader(q, of_a, {"types": "reading"}) as live:
        assert live.status_code == 200
        live.wait_for(lambda e: e.type == "hello", 5)
        now = iso(datetime.now(UTC))
        # One batch, B's machine first: had it not been filtered, its reading would come first.
        batch = [
            {"machine_id": machines[f], "readings": [{"timestamp": now, "temperature": 40.0}]}
            for f in (fb, fa)
        ]
        post_batch(urls, admin, batch)
        ev = live.wait_for(lambda e: e.type == "reading", 5)
        assert (ev.data["machine_id"], ev.data["factory_id"]) == (machines[fa], fa)
