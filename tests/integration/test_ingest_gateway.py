"""The HTTP door against real PostgreSQL, Redis and RabbitMQ (a private topology per test)."""

from __future__ import annotations

import asyncio
import gzip
import subprocess
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
from starlette.testclient import TestClient

from services.ingest_gateway.app import create_app
from services.ingest_gateway.settings import Settings
from shared.settings import AmqpSettings, IngestLimits, PostgresSettings
from tests.paths import DEPS
from tests.queues import delete_topology, take_messages
from tests.registry import register_machines
from tests.tokens import bearer, trust_test_key

pytestmark = pytest.mark.integration
URL = "/api/v1/data/ingest"


async def _create_machines(pg: PostgresSettings, n: int, factory: str = "default") -> list[str]:
    machines = await register_machines(pg, n, location="Hall 2, Bay 4", factory=factory)
    return [m.id for m in machines]


@pytest.fixture
def machines(postgres_settings: PostgresSettings) -> list[str]:
    return asyncio.run(_create_machines(postgres_settings, 2))


@pytest.fixture
def plants(postgres_settings: PostgresSettings) -> dict[str, list[str]]:
    """Two factories of their own, two machines each: {factory id: machine ids}."""
    names = [f"plant-{uuid.uuid4().hex[:8]}" for _ in range(2)]
    return {f: asyncio.run(_create_machines(postgres_settings, 2, f)) for f in names}


@pytest.fixture
def client(
    amqp_settings: AmqpSettings, postgres_settings: PostgresSettings
) -> Iterator[TestClient]:
    settings = Settings(
        amqp=amqp_settings,
        postgres=postgres_settings,
        limits=IngestLimits(max_body_bytes=64 * 1024, readings_per_message=3),
    )
    with TestClient(create_app(settings)) as c:
        trust_test_key(c.app_state)
        yield c
    asyncio.run(delete_topology(amqp_settings))


# An hour ago, to the second: recent enough for the retention check, forever.
TS_NS = (time.time_ns() // 10**9 - 3600) * 10**9
TS = datetime.fromtimestamp(TS_NS // 10**9, UTC).isoformat().replace("+00:00", "Z")


def batch(*machine_ids: str, readings: int = 1, ts: str = TS) -> dict[str, Any]:
    return {
        "gateway_id": "GW-01",
        "timestamp": TS,
        "batch": [
            {
                "machine_id": m,
                "sensor_type": "Temperature",
                "location": "Floor 1",
                "readings": [
                    {"timestamp": ts, "temperature": 60.5 + i, "pressure": 102.0, "speed": 1400}
                    for i in range(readings)
                ],
            }
            for m in machine_ids
        ],
    }


def test_accepted_only_after_confirm_and_packed(
    client: TestClient, machines: list[str], amqp_settings: AmqpSettings
) -> None:
    resp = client.post(URL, json=batch(*machines, readings=4), headers=bearer("Operator"))
    assert resp.status_code == 202, resp.text
    assert resp.json()["accepted"] == {"machines": 2, "readings": 8, "messages": 3}
    envelopes = take_messages(amqp_settings)
    readings = [r for e in envelopes for r in e.readings]
    assert len(readings) == 8
    assert {e.source for e in envelopes} == {"http"}
    assert envelopes[0].request_id == resp.headers["x-request-id"]
    assert envelopes[0].routing_key == f"reading.default.{machines[0]}"
    first = readings[0]
    assert first["fields"] == {"temperature": 60.5, "pressure": 102.0, "speed": 1400.0}
    assert first["ts"] == TS_NS
    assert first["location"] == "Floor 1" and first["factory_id"] == "default"


def test_registry_fills_missing_tags_and_the_factory(
    client: TestClient, plants: dict[str, list[str]], amqp_settings: AmqpSettings
) -> None:
    factory, [machine, _] = next(iter(plants.items()))
    body = batch(machine)
    del body["batch"][0]["location"], body["batch"][0]["sensor_type"]
    # The body's factory is not used: the machine's registered one is.
    body["factory_id"] = "plant-7"
    assert client.post(URL, json=body, headers=bearer()).status_code == 202
    [env] = take_messages(amqp_settings)
    assert env.readings[0]["location"] == "Hall 2, Bay 4"
    assert env.readings[0]["factory_id"] == factory
    assert env.routing_key == f"reading.{factory}.{machine}"


def test_unknown_machine_among_known_is_207(
    client: TestClient, machines: list[str], amqp_settings: AmqpSettings
) -> None:
    stranger = str(uuid.uuid4())
    resp = client.post(URL, json=batch(machines[0], stranger), headers=bearer())
    assert resp.status_code == 207, resp.text
    body = resp.json()
    assert body["rejected"] == [
        {
            "machine_id": stranger,
            "reason": "unknown machine",
            "index": 1,
            "errors": [
                {"field": "batch[1].machine_id", "error": "Unknown machine", "value": stranger}
            ],
        }
    ]
    assert body["accepted"]["readings"] == 1
    assert len(take_messages(amqp_settings)) == 1


def test_nothing_valid_is_400_and_nothing_published(
    client: TestClient, machines: list[str], amqp_settings: AmqpSettings
) -> None:
    resp = client.post(URL, json=batch(machines[0], ts="2025-13-45"), headers=bearer())
    assert resp.status_code == 400
    assert resp.json() == {
        "status": "error",
        "message": "Validation failed",
        "errors": [
            {
                "field": "batch[0].readings[0].timestamp",
                "error": "Invalid ISO 8601 format",
                "value": "2025-13-45",
            }
        ],
    }
    resp = client.post(URL, json=batch(str(uuid.uuid4())), headers=bearer())
    assert resp.status_code == 400 and resp.json()["errors"][0]["error"] == "Unknown machine"
    assert take_messages(amqp_settings) == []


def test_bodies(client: TestClient, machines: list[str], amqp_settings: AmqpSettings) -> None:
    raw = orjson.dumps(batch(machines[0]))
    auth = bearer()
    resp = client.post(URL, content=raw, headers={**auth, "content-type": "text/plain"})
    assert resp.status_code == 415
    resp = client.post(
        URL, content=b"x" * 70_000, headers={**auth, "content-type": "application/json"}
    )
    assert resp.status_code == 413
    resp = client.post(
        URL,
        content=gzip.compress(raw),
        headers={**auth, "content-type": "application/json", "content-encoding": "gzip"},
    )
    assert resp.status_code == 202, resp.text
    bomb = gzip.compress(b" " * 1_000_000)
    resp = client.post(
        URL,
        content=bomb,
        headers={**auth, "content-type": "application/json", "content-encoding": "gzip"},
    )
    assert resp.status_code == 413
    resp = client.post(URL, content=b"{nope", headers={**auth, "content-type": "application/json"})
    assert resp.status_code == 400 and resp.json()["errors"][0]["field"] == "body"
    gzipped = {**auth, "content-type": "application/json", "content-encoding": "gzip"}
    for bad in (b"plain text, not gzip", gzip.compress(raw)[:-12]):  # not gzip; truncated
        resp = client.post(URL, content=bad, headers=gzipped)
        assert resp.status_code == 400, resp.text
        assert resp.json()["message"] == "Body is not valid gzip"
    for encoding in ("br", "deflate", "gzip, br"):
        resp = client.post(URL, content=raw, headers={**gzipped, "content-encoding": encoding})
        assert resp.status_code == 415, (encoding, resp.text)
        assert resp.json()["message"] == "Content-Encoding must be gzip or identity"
    assert len(take_messages(amqp_settings)) == 1  # only the valid gzip body was published


def test_credentials(client: TestClient, machines: list[str]) -> None:
    assert client.post(URL, json=batch(machines[0])).status_code == 401
    expired = bearer(exp=1_000_000_000, iat=999_999_000, nbf=999_999_000)
    assert client.post(URL, json=batch(machines[0]), headers=expired).status_code == 401
    no_write = bearer("Operator", permissions=["read:sensor_data"])
    resp = client.post(URL, json=batch(machines[0]), headers=no_write)
    assert resp.status_code == 403
    assert "write:sensor_data" in resp.json()["message"]


def test_broker_unavailable_is_503_with_retry_after(
    client: TestClient, machines: list[str]
) -> None:
    publisher = client.app_state["publisher"]
    client.portal.call(publisher.close)  # type: ignore[union-attr]
    resp = client.post(URL, json=batch(machines[0]), headers=bearer())
    assert resp.status_code == 503
    assert resp.headers["retry-after"] == "5"
    assert "nothing was accepted" in resp.json()["message"]


@pytest.mark.disruptive
def test_registry_down_is_503_with_retry_after_and_nothing_published(
    client: TestClient, amqp_settings: AmqpSettings
) -> None:
    machine = str(uuid.uuid4())  # cached nowhere: only PostgreSQL can say whether it exists
    subprocess.run([DEPS, "stop", "postgres"], check=True, timeout=90)
    try:
        resp = client.post(URL, json=batch(machine), headers=bearer())
    finally:
        subprocess.run([DEPS, "start", "postgres"], check=True, timeout=90)
    assert resp.status_code == 503, resp.text
    assert resp.headers["retry-after"] == "5"
    assert "machine registry" in resp.json()["message"]
    assert take_messages(amqp_settings) == []


# --------------------------------------------------------------------------- factory scope


def gateway(factory: str, gateway_id: str = "GW-A", **claims: Any) -> dict[str, str]:
    """A gateway token as auth's client-credentials grant mints it."""
    return bearer("Gateway", factories=[factory], gateway_id=gateway_id, **claims)


def out_of_scope(index: int, machine: str, where: str = "its factories") -> dict[str, Any]:
    error = f"Machine {machine} is not in {where}: this credential may not write for it"
    return {
        "machine_id": machine,
        "reason": "out of scope",
        "index": index,
        "errors": [{"field": f"batch[{index}].machine_id", "error": error, "value": machine}],
    }


def test_a_gateway_cannot_write_for_another_factorys_machine(
    client: TestClient, plants: dict[str, list[str]], amqp_settings: AmqpSettings
) -> None:
    (a, _), (_, [foreign, other]) = plants.items()
    resp = client.post(URL, json=batch(foreign, other), headers=gateway(a))
    assert resp.status_code == 403, resp.text
    body = resp.json()
    assert body["message"] == (
        f"Nothing accepted: this credential may not write for machine(s) {foreign}, {other}"
    )
    assert body["rejected"] == [out_of_scope(0, foreign), out_of_scope(1, other)]
    assert take_messages(amqp_settings) == []


def test_a_batch_mixing_factories_is_207_and_only_the_gateways_own_are_published(
    client: TestClient, plants: dict[str, list[str]], amqp_settings: AmqpSettings
) -> None:
    (a, [own, _]), (_, [foreign, _]) = plants.items()
    resp = client.post(URL, json=batch(foreign, own), headers=gateway(a))
    assert resp.status_code == 207, resp.text
    body = resp.json()
    assert body["accepted"]["machines"] == 1
    assert body["rejected"] == [out_of_scope(0, foreign)]
    [env] = take_messages(amqp_settings)
    assert env.gateway_id == "GW-A"
    assert {r["machine_id"] for r in env.readings} == {own}
    assert {r["factory_id"] for r in env.readings} == {a}


def test_a_gateway_limited_to_some_machines_writes_for_those_only(
    client: TestClient, plants: dict[str, list[str]], amqp_settings: AmqpSettings
) -> None:
    a, [allowed, other] = next(iter(plants.items()))
    headers = gateway(a, machines=[allowed])
    resp = client.post(URL, json=batch(allowed, other), headers=headers)
    assert resp.status_code == 207, resp.text
    assert resp.json()["rejected"] == [out_of_scope(1, other, "this gateway's machines")]
    [env] = take_messages(amqp_settings)
    assert {r["machine_id"] for r in env.readings} == {allowed}
    resp = client.post(URL, json=batch(other), headers=headers)
    assert resp.status_code == 403 and resp.json()["rejected"][0]["machine_id"] == other


def test_the_gateway_and_factory_in_the_body_are_not_used(
    client: TestClient, plants: dict[str, list[str]], amqp_settings: AmqpSettings
) -> None:
    (a, [own, _]), (b, _) = plants.items()
    spoofed = batch(own) | {"gateway_id": "GW-SOMEONE-ELSE", "factory_id": b}
    resp = client.post(URL, json=spoofed, headers=gateway(a, "GW-REAL"))
    assert resp.status_code == 202, resp.text
    without = batch(own)
    del without["gateway_id"]
    resp = client.post(URL, json=without, headers=gateway(a, "GW-REAL"))
    assert resp.status_code == 202, resp.text
    envelopes = take_messages(amqp_settings)
    assert [e.gateway_id for e in envelopes] == ["GW-REAL", "GW-REAL"]
    assert {r["factory_id"] for e in envelopes for r in e.readings} == {a}
    assert {e.routing_key for e in envelopes} == {f"reading.{a}.{own}"}


def test_people_with_write_sensor_data_are_limited_to_their_factories(
    client: TestClient, plants: dict[str, list[str]], amqp_settings: AmqpSettings
) -> None:
    (a, [own, _]), (_, [foreign, _]) = plants.items()
    operator = bearer("Operator", factories=[a], username="ann")
    resp = client.post(URL, json=batch(foreign), headers=operator)
    assert resp.status_code == 403, resp.text
    assert resp.json()["rejected"] == [out_of_scope(0, foreign)]
    resp = client.post(URL, json=batch(own, foreign), headers=operator)
    assert resp.status_code == 207, resp.text
    # Every factory: both accepted; a person's readings are recorded as theirs.
    everywhere = bearer("Operator", username="bob")
    assert client.post(URL, json=batch(own, foreign), headers=everywhere).status_code == 202
    envelopes = take_messages(amqp_settings)
    assert [e.gateway_id for e in envelopes] == ["user:ann", "user:bob"]
    assert [len(e.readings) for e in envelopes] == [1, 2]
    # A token scoped to no factory at all writes nothing.
    nowhere = bearer("Operator", factories=[])
    assert client.post(URL, json=batch(own), headers=nowhere).status_code == 403
