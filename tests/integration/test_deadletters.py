"""Dead letters: archive consumer, API and replay against real RabbitMQ and PostgreSQL.

Every test has its own RabbitMQ topology (``amqp_settings``), so the running pipeline never sees
its messages; letters are told apart in the shared test database by a gateway id or reason code
of their own.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import aio_pika
import orjson
import pytest
from psycopg_pool import AsyncConnectionPool
from pydantic import SecretStr
from starlette.testclient import TestClient

from services.query_api.deadletters.archive import DeadLetterArchive
from shared import broker
from shared.db import create_pool, migrate
from shared.envelope import Envelope, dead_letter
from shared.readings import to_ns
from shared.settings import AmqpSettings, PostgresSettings
from tests.polling import eventually, poll
from tests.query_fixtures import query_client  # noqa: F401  (fixture)
from tests.queues import publish, take_messages
from tests.tokens import bearer

pytestmark = pytest.mark.integration


def management() -> dict[str, str]:
    """A Management token minted now: tokens live 15 minutes, so none is kept across tests."""
    return bearer("Management")


# ---------------------------------------------------------------- helpers


async def publish_raw_dead(amqp: AmqpSettings, body: bytes, message_id: str | None) -> None:
    conn = await aio_pika.connect(amqp.url.get_secret_value())
    async with conn:
        ch = await conn.channel(publisher_confirms=True)
        await broker.declare_topology(ch, amqp)
        exchange = await ch.get_exchange(amqp.dead_letter)
        await exchange.publish(aio_pika.Message(body, message_id=message_id), routing_key="dead")


async def sql(pg: PostgresSettings, statement: str, *params: Any) -> None:
    pool = create_pool(pg, "tests")
    await pool.open(wait=True)
    try:
        async with pool.connection() as conn:
            await conn.execute(statement, params)
    finally:
        await pool.close()


def iso(ts: datetime) -> str:
    return ts.isoformat().replace("+00:00", "Z")


def mqtt_letter(gateway: str, machine_id: str, payload: bytes, **over: Any) -> Envelope:
    """A dead letter as the MQTT bridge writes one (see services/mqtt_bridge/triage.py)."""
    extra = {
        "topic": f"factory/f1/machine/{machine_id}/telemetry",
        "qos": 1,
        "factory_id": "f1",
        "machine_id": machine_id,
    }
    return dead_letter(
        source="mqtt",
        reason=over.pop("reason", "unknown_machine"),
        error=over.pop("error", f"Unknown machine: {machine_id}"),
        raw=payload,
        gateway_id=gateway,
        request_id=uuid.uuid4().hex,
        extra=extra,
        **over,
    )


def writer_letter(
    gateway: str, reason: str, machine_id: str, fields: dict[str, float], ts: datetime
) -> Envelope:
    """A dead letter as the writer writes one for a reading InfluxDB refused."""
    reading = {
        "machine_id": machine_id,
        "factory_id": "f1",
        "sensor_type": "Temperature",
        "location": "Hall 1",
        "ts": to_ns(ts),
        "fields": fields,
    }
    return dead_letter(
        source="writer",
        reason=reason,
        error="partial write: field type conflict",
        readings=[reading],
        gateway_id=gateway,
        request_id=uuid.uuid4().hex,
        extra={"origin_source": "http", "message_id": uuid.uuid4().hex},
    )


# ---------------------------------------------------------------- the archive consumer


@pytest.fixture
async def pool(postgres_settings: PostgresSettings) -> AsyncIterator[AsyncConnectionPool]:
    pool = create_pool(postgres_settings, "tests")
    await pool.open(wait=True)
    await migrate(pool)
    yield pool
    await pool.close()


async def rows_of(pool: AsyncConnectionPool, where: str, *params: Any) -> list[dict[str, Any]]:
    from psycopg.rows import dict_row

    async with pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(f"SELECT * FROM dead_letters WHERE {where} ORDER BY id", params)
        return await cur.fetchall()


async def test_archive_stores_every_kind_once(
    amqp_cleanup: AmqpSettings, pool: AsyncConnectionPool
) -> None:
    amqp = amqp_cleanup
    gateway = f"GW-{uuid.uuid4().hex[:8]}"
    machine = str(uuid.uuid4())
    now = datetime.now(UTC)
    unknown = mqtt_letter(gateway, machine, b'{"timestamp": "2025-12-13T10:00:00Z", "speed": 1}')
    bad_json = mqtt_letter(
        gateway, machine, b'{"temperature": 1\x00, "x": "\xff"', reason="invalid_json", error="x"
    )
    rejected = writer_letter(gateway, "influx_rejected", machine, {"temperature": 1.0}, now)
    garbage_id = f"garbage-{uuid.uuid4().hex}"

    conn = await broker.connect(amqp, "tests-archive")
    archive = DeadLetterArchive(amqp, conn, pool, prefetch=10)
    await archive.start()
    try:
        await publish(amqp, [unknown, bad_json, rejected], dead=True)
        await publish(amqp, [unknown], dead=True)  # the same message again: a redelivery
        await publish_raw_dead(amqp, b"\x00\xffnot an envelope", garbage_id)

        # An envelope the writer queue itself dead-letters (nack without requeue → DLX).
        poison = Envelope(
            source="http",
            readings=rejected.readings,
            routing_key=f"reading.f1.{machine}",
            gateway_id=gateway,
            request_id="r-poison",
        )
        amqp_conn = await broker.connect(amqp, "tests")
        async with amqp_conn:
            publisher = broker.Publisher(amqp, amqp_conn)
            await publisher.start()
            await publisher.publish([poison])
            ch = await amqp_conn.channel()
            writer_queue = await ch.declare_queue(amqp.queue, passive=True)
            msg = await writer_queue.get(no_ack=False, fail=False, timeout=10)
            assert msg is not None
            await msg.reject(requeue=False)

        async def all_there() -> bool:
            found = await rows_of(pool, "gateway_id = %s OR message_id = %s", gateway, garbage_id)
            return len(found) == 5

        await eventually(all_there)
        # The duplicate was seen (acked, not stored again) before or after the others.
        await eventually(lambda: archive.archived + archive.duplicates >= 6)
    finally:
        await archive.stop()
        await conn.close()

    rows = {r["message_id"]: r for r in await rows_of(pool, "gateway_id = %s", gateway)}
    assert len(rows) == 4
    u = rows[unknown.message_id]
    assert (u["reason"], u["source"], u["gateway_id"]) == ("unknown_machine", "mqtt", gateway)
    assert u["topic"] == f"factory/f1/machine/{machine}/telemetry"
    assert u["raw"] == '{"timestamp": "2025-12-13T10:00:00Z", "speed": 1}'
    assert u["details"] == {"qos": 1, "factory_id": "f1", "machine_id": machine}
    assert u["readings"] == [] and u["attempts"] == 1 and u["replayed_at"] is None
    assert abs(u["first_seen"] - now) < timedelta(seconds=30)

    # NUL and invalid UTF-8 survive as text, and invalid JSON stays invalid.
    assert rows[bad_json.message_id]["raw"] == '{"temperature": 1\\x00, "x": "\\xff"'

    r = rows[rejected.message_id]
    assert (r["reason"], r["source"], r["origin_source"]) == ("influx_rejected", "writer", "http")
    assert r["readings"] == rejected.readings

    dlx = rows[poison.message_id]
    assert (dlx["reason"], dlx["source"], dlx["origin_source"]) == ("rejected", "writer", "http")
    assert dlx["readings"] == poison.readings and dlx["request_id"] == "r-poison"
    assert dlx["details"]["x_death"]["queue"] == amqp.queue

    [g] = await rows_of(pool, "message_id = %s", garbage_id)
    assert (g["reason"], g["source"]) == ("undecodable", "unknown")
    assert g["raw"] == "\\x00\\xffnot an envelope"

    # Everything was acknowledged: the dead-letter queue is empty.
    async with await aio_pika.connect(amqp.url.get_secret_value()) as check:
        channel = await check.channel()
        q = await channel.declare_queue(amqp.dead_letter, passive=True)
        assert q.declaration_result.message_count == 0


async def test_archive_retries_and_stop_leaves_the_letter_in_the_queue(
    amqp_cleanup: AmqpSettings, caplog: pytest.LogCaptureFixture, refused_port: int
) -> None:
    """PostgreSQL unreachable: retried with a WARNING, nothing acked; stop leaves it queued."""
    amqp = amqp_cleanup
    unreachable = create_pool(
        PostgresSettings(
            url=SecretStr(f"postgresql://nobody@127.0.0.1:{refused_port}/none"), timeout_s=0.2
        ),
        "tests",
    )
    await unreachable.open(wait=False)
    conn = await broker.connect(amqp, "tests-archive")
    archive = DeadLetterArchive(amqp, conn, unreachable, drain_timeout_s=1.0)
    await archive.start()
    letter = mqtt_letter("GW-x", str(uuid.uuid4()), b"{}")
    try:
        await publish(amqp, [letter], dead=True)
        await eventually(lambda: "archiving a dead letter failed (attempt 2" in caplog.text)
    finally:
        await archive.stop()
        await conn.close()
        await unreachable.close()
    assert archive.archived == 0
    retry = next(r for r in caplog.records if r.getMessage().startswith("archiving a dead"))
    assert retry.levelname == "WARNING" and retry.dependency == "postgres"  # type: ignore[attr-defined]

    amqp_conn = await aio_pika.connect(amqp.url.get_secret_value())
    async with amqp_conn:
        ch = await amqp_conn.channel()
        q = await ch.declare_queue(amqp.dead_letter, passive=True)
        msg = await q.get(no_ack=True, fail=False, timeout=10)
        assert msg is not None and msg.message_id == letter.message_id


# ---------------------------------------------------------------- the API


def listed(client: TestClient, **params: Any) -> dict[str, Any]:
    resp = client.get("/api/v1/deadletters", params=params, headers=management())
    assert resp.status_code == 200, resp.text
    body: dict[str, Any] = resp.json()
    return body


def archived(client: TestClient, n: int, **params: Any) -> list[dict[str, Any]]:
    """Poll the list until the archive consumer stored ``n`` letters matching ``params``."""
    body = poll(lambda: listed(client, **params), lambda b: b["pagination"]["total_records"] >= n)
    assert body["pagination"]["total_records"] == n
    letters: list[dict[str, Any]] = body["dead_letters"]
    return letters


def replay(client: TestClient, **body: Any) -> dict[str, Any]:
    resp = client.post("/api/v1/deadletters/replay", json=body, headers=management())
    assert resp.status_code == 200, resp.text
    out: dict[str, Any] = resp.json()
    return out


def test_list_filter_stats_and_inspect(client: TestClient, amqp_cleanup: AmqpSettings) -> None:
    gateway = f"GW-{uuid.uuid4().hex[:8]}"
    tag = f"test_{uuid.uuid4().hex[:8]}"
    machine = str(uuid.uuid4())
    now = datetime.now(UTC)
    letters = [
        mqtt_letter(gateway, machine, b'{"speed": 1}', reason=tag, error="no timestamp"),
        mqtt_letter(gateway, machine, b"{", reason=tag, error="Malformed JSON"),
        writer_letter(gateway, tag, machine, {"temperature": 2.0}, now),
        writer_letter(gateway, "influx_rejected", str(uuid.uuid4()), {"speed": 3.0}, now),
    ]
    asyncio.run(publish(amqp_cleanup, letters, dead=True))

    everything = archived(client, 4, gateway_id=gateway)
    assert [d["first_seen"] for d in everything] == sorted(
        (d["first_seen"] for d in everything), reverse=True
    )
    assert len(archived(client, 3, reason=tag)) == 3
    assert len(archived(client, 2, reason=tag, source="mqtt")) == 2
    assert len(archived(client, 3, machine_id=machine)) == 3
    assert len(archived(client, 4, gateway_id=gateway, replayed="false")) == 4
    assert listed(client, gateway_id=gateway, replayed="true")["pagination"]["total_records"] == 0
    assert (
        listed(client, gateway_id=gateway, since=iso(now + timedelta(hours=1)))["dead_letters"]
        == []
    )
    window = listed(
        client,
        gateway_id=gateway,
        since=iso(now - timedelta(minutes=5)),
        until=iso(now + timedelta(minutes=5)),
        limit=3,
    )
    assert window["pagination"] == {
        "limit": 3,
        "offset": 0,
        "returned_records": 3,
        "total_records": 4,
        "has_more": True,
    }

    bad = client.get(
        "/api/v1/deadletters",
        params={"limit": 0, "since": "2025-12-13T10:00:00", "replayed": "maybe"},
        headers=management(),
    )
    assert bad.status_code == 400
    assert {e["parameter"] for e in bad.json()["errors"]} == {"limit", "since", "replayed"}

    stats = client.get("/api/v1/deadletters/stats", headers=management()).json()
    assert {"key": tag, "total": 3, "pending": 3} in stats["by_reason"]
    assert stats["total"] >= 4 and stats["total"] == stats["pending"] + stats["replayed"]
    assert stats["oldest"] <= stats["newest"]
    assert {g["key"] for g in stats["by_source"]} >= {"mqtt", "writer"}

    summary = next(d for d in everything if d["source"] == "writer" and d["reason"] == tag)
    assert (summary["machine_id"], summary["readings_count"], summary["has_raw"]) == (
        machine,
        1,
        False,
    )
    detail = client.get(f"/api/v1/deadletters/{summary['id']}", headers=management()).json()
    d = detail["dead_letter"]
    assert d["readings"] == letters[2].readings
    assert d["details"] == {"message_id": letters[2].dead["message_id"]}  # type: ignore[index]
    assert d["origin_source"] == "http" and d["raw"] is None

    mqtt_row = next(x for x in everything if x["error"] == "Malformed JSON")
    d = client.get(f"/api/v1/deadletters/{mqtt_row['id']}", headers=management()).json()
    assert d["dead_letter"]["raw"] == "{"
    assert d["dead_letter"]["topic"] == f"factory/f1/machine/{machine}/telemetry"

    assert client.get("/api/v1/deadletters/999999999999", headers=management()).status_code == 404
    for bad_id in ("abc", "²", "-1", "9" * 30):
        resp = client.get(f"/api/v1/deadletters/{bad_id}", headers=management())
        assert resp.status_code == 400, bad_id

    metrics = client.get("/metrics").text
    assert f'millrace_deadletters_archived_total{{reason="{tag}",source="mqtt"}} 2.0' in metrics
    assert f'millrace_deadletters_pending{{reason="{tag}"}} 3.0' in metrics


def test_replay_unknown_machine_after_registration(
    client: TestClient, amqp_cleanup: AmqpSettings, postgres_settings: PostgresSettings
) -> None:
    gateway = f"GW-{uuid.uuid4().hex[:8]}"
    machine = str(uuid.uuid4())
    ts = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=5)
    payload = orjson.dumps(
        {
            "sensor_type": "Vibration",
            "readings": [
                {"timestamp": iso(ts), "temperature": 71.5},
                {"timestamp": iso(ts + timedelta(seconds=1)), "speed": 1200, "location": "Bay 2"},
            ],
        }
    )
    asyncio.run(publish(amqp_cleanup, [mqtt_letter(gateway, machine, payload)], dead=True))
    [letter] = archived(client, 1, gateway_id=gateway)

    # The machine is still unknown: the letter stays, with the new error.
    out = replay(client, ids=[letter["id"]])
    assert out["replayed"] == 0 and out["still_invalid"] == 1
    [result] = out["results"]
    assert (result["outcome"], result["reason"]) == ("still_invalid", "unknown_machine")
    after = client.get(f"/api/v1/deadletters/{letter['id']}", headers=management()).json()
    after = after["dead_letter"]
    assert after["replayed_at"] is None and after["replay_count"] == 0
    assert after["last_replay_error"] == f"unknown_machine: Unknown machine: {machine}"
    assert take_messages(amqp_cleanup) == []

    asyncio.run(
        sql(
            postgres_settings,
            "INSERT INTO machine_metadata (id, name, location, sensor_type)"
            " VALUES (%s, %s, 'Hall 9', 'Temperature')",
            machine,
            f"Late-{machine[:6]}",
        )
    )
    out = replay(client, ids=[letter["id"]])
    assert out["results"] == [
        {"id": letter["id"], "outcome": "replayed", "reason": None, "error": None, "readings": 2}
    ]
    [envelope] = take_messages(amqp_cleanup)
    assert (envelope.source, envelope.gateway_id) == ("replay", gateway)
    assert envelope.routing_key == f"reading.f1.{machine}"
    assert envelope.readings == [
        {
            "machine_id": machine,
            "factory_id": "f1",
            "sensor_type": "Vibration",
            "location": "Hall 9",
            "ts": to_ns(ts),
            "fields": {"temperature": 71.5},
        },
        {
            "machine_id": machine,
            "factory_id": "f1",
            "sensor_type": "Vibration",
            "location": "Bay 2",
            "ts": to_ns(ts) + 10**9,
            "fields": {"speed": 1200},
        },
    ]
    done = client.get(f"/api/v1/deadletters/{letter['id']}", headers=management()).json()
    done = done["dead_letter"]
    assert done["replayed_at"] is not None and done["replay_count"] == 1
    assert done["last_replay_error"] is None
    assert listed(client, gateway_id=gateway, replayed="true")["pagination"]["total_records"] == 1

    # Once is enough unless forced.
    again = replay(client, ids=[letter["id"], 999_999_999_999])
    assert [r["outcome"] for r in again["results"]] == ["already_replayed", "not_found"]
    assert take_messages(amqp_cleanup) == []
    forced = replay(client, ids=[letter["id"]], force=True)
    assert forced["replayed"] == 1 and len(take_messages(amqp_cleanup)) == 1

    audit = client.get(
        "/api/v1/audit", params={"action": "deadletters.replay"}, headers=management()
    ).json()
    assert any(e["new_value"]["replayed"] == [letter["id"]] for e in audit["entries"])


def test_replay_by_reason_validates_again(client: TestClient, amqp_cleanup: AmqpSettings) -> None:
    gateway = f"GW-{uuid.uuid4().hex[:8]}"
    tag = f"test_{uuid.uuid4().hex[:8]}"
    resp = client.post(
        "/api/v1/machines",
        json={"name": f"R-{tag}", "location": "Hall 3", "sensor_type": "Temperature"},
        headers=bearer("Supervisor"),
    )
    machine = resp.json()["machine"]["id"]
    now = datetime.now(UTC) - timedelta(minutes=1)
    good = writer_letter(gateway, tag, machine, {"temperature": 20.5}, now)
    too_hot = writer_letter(gateway, tag, machine, {"temperature": 5000.0}, now)
    future = writer_letter(gateway, tag, machine, {"speed": 1.0}, now + timedelta(days=1))
    asyncio.run(publish(amqp_cleanup, [good, too_hot, future], dead=True))
    archived(client, 3, reason=tag)

    out = replay(client, reason=tag, limit=10)
    assert (out["replayed"], out["still_invalid"]) == (1, 2)
    errors = sorted(r["error"] for r in out["results"] if r["outcome"] == "still_invalid")
    assert "Value out of plausible range" in errors[0]
    assert "future" in errors[1]
    [envelope] = take_messages(amqp_cleanup)
    assert envelope.readings == good.readings and envelope.source == "replay"

    # The still-invalid ones stay pending; a second replay by reason tries them again only.
    again = replay(client, reason=tag, limit=10)
    assert len(again["results"]) == 2 and again["replayed"] == 0
    pending = listed(client, reason=tag, replayed="false")["dead_letters"]
    assert len(pending) == 2 and all(p["last_replay_error"].startswith("schema:") for p in pending)

    bad = client.post(
        "/api/v1/deadletters/replay", json={"ids": [1], "reason": tag}, headers=management()
    )
    assert bad.status_code == 400
    assert (
        client.post(
            "/api/v1/deadletters/replay", content=b"ids=1", headers=management()
        ).status_code
        == 415
    )


def test_purge(client: TestClient, amqp_cleanup: AmqpSettings) -> None:
    gateway = f"GW-{uuid.uuid4().hex[:8]}"
    tag = f"test_{uuid.uuid4().hex[:8]}"
    machine = str(uuid.uuid4())
    letters = [mqtt_letter(gateway, machine, b"{", reason=tag) for _ in range(3)]
    letters.append(mqtt_letter(gateway, machine, b"{", reason="invalid_json"))
    asyncio.run(publish(amqp_cleanup, letters, dead=True))
    rows = archived(client, 4, gateway_id=gateway)

    def purge(body: dict[str, Any]) -> Any:
        return client.post("/api/v1/deadletters/purge", json=body, headers=management())

    assert purge({}).status_code == 400
    assert purge({"ids": [1], "reason": tag}).status_code == 400
    assert purge({"reason": tag, "before": "2025-01-01T00:00:00"}).status_code == 400

    one = next(r["id"] for r in rows if r["reason"] == tag)
    assert purge({"ids": [one]}).json() == {
        "status": "success",
        "deleted": 1,
        "by_reason": {tag: 1},
    }
    assert client.get(f"/api/v1/deadletters/{one}", headers=management()).status_code == 404

    # Nothing first seen before an hour ago: nothing deleted.
    past = iso(datetime.now(UTC) - timedelta(hours=1))
    assert purge({"reason": tag, "before": past}).json()["deleted"] == 0
    future = iso(datetime.now(UTC) + timedelta(minutes=1))
    assert purge({"reason": tag, "before": future}).json()["by_reason"] == {tag: 2}
    assert [r["reason"] for r in listed(client, gateway_id=gateway)["dead_letters"]] == [
        "invalid_json"
    ]

    audit = client.get(
        "/api/v1/audit", params={"action": "deadletters.purge"}, headers=management()
    ).json()
    assert any(e["old_value"] == {"deleted": 2, "by_reason": {tag: 2}} for e in audit["entries"])
    metrics = client.get("/metrics").text
    assert f'millrace_deadletters_purged_total{{reason="{tag}"}} 3.0' in metrics


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("GET", "/api/v1/deadletters", None),
        ("GET", "/api/v1/deadletters/stats", None),
        ("GET", "/api/v1/deadletters/1", None),
        ("POST", "/api/v1/deadletters/replay", {"ids": [1]}),
        ("POST", "/api/v1/deadletters/purge", {"ids": [1]}),
    ],
)
def test_management_only(
    client: TestClient, method: str, path: str, body: dict[str, Any] | None
) -> None:
    for role in ("Operator", "Supervisor"):
        resp = client.request(method, path, json=body, headers=bearer(role))
        assert resp.status_code == 403, (role, resp.text)
    assert client.request(method, path, json=body).status_code == 401


def test_ready_reports_rabbitmq_and_openapi_documents_the_api(client: TestClient) -> None:
    ready = client.get("/ready").json()
    assert ready["checks"]["rabbitmq"] is True
    paths = client.get("/openapi.json").json()["paths"]
    assert paths["/api/v1/deadletters/replay"]["post"]["x-required-permission"] == "write:config"
    assert (
        paths["/api/v1/deadletters/purge"]["post"]["x-required-permission"] == "delete:sensor_data"
    )
    assert paths["/api/v1/deadletters/{letter_id}"]["get"]["x-required-permission"] == (
        "read:config"
    )
