"""The query API against real PostgreSQL, Redis and InfluxDB (test database)."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from starlette.testclient import TestClient

from services.query_api.app import create_app
from services.query_api.settings import Settings
from services.writer.batch import reading_line
from services.writer.rollup import DAY_NS, Rollup
from shared.influx import InfluxClient
from shared.settings import AmqpSettings, InfluxSettings, PostgresSettings
from tests.clock import FrozenClock
from tests.query_fixtures import new_machine, query_app, query_client  # noqa: F401  (fixture)
from tests.tokens import bearer

pytestmark = pytest.mark.integration


def write_points(
    settings: InfluxSettings, machine: str, start_ns: int, n: int, step_s: int
) -> None:
    async def run() -> None:
        client = InfluxClient(settings)
        await client.provision()
        lines = [
            reading_line(
                {
                    "machine_id": machine,
                    "factory_id": "f",
                    "sensor_type": "Pressure",
                    "location": "Hall 1",
                    "ts": start_ns + i * step_s * 10**9,
                    "fields": {"temperature": float(i), "pressure": 100.0 + i},
                }
            )
            for i in range(n)
        ]
        await client.write("\n".join(lines).encode())
        await client.close()

    asyncio.run(run())


def test_machine_registry_crud_and_filters(client: TestClient) -> None:
    loc = f"Hall {uuid.uuid4().hex[:6]}"
    a = new_machine(client, location=loc)
    new_machine(client, location=loc, status="maintenance")
    op = bearer("Operator")
    resp = client.get("/api/v1/machines", params={"location": loc}, headers=op)
    assert resp.json()["pagination"]["total_records"] == 2
    resp = client.get(
        "/api/v1/machines", params={"location": loc, "status": "maintenance"}, headers=op
    )
    assert [m["status"] for m in resp.json()["machines"]] == ["maintenance"]
    assert client.get(f"/api/v1/machines/{a['id']}", headers=op).json()["machine"] == a
    # A read right after a write sees the write (cache invalidated).
    resp = client.patch(
        f"/api/v1/machines/{a['id']}", json={"status": "error"}, headers=bearer("Supervisor")
    )
    assert resp.status_code == 200 and resp.json()["machine"]["status"] == "error"
    assert (
        client.get(f"/api/v1/machines/{a['id']}", headers=op).json()["machine"]["status"] == "error"
    )
    assert (
        client.delete(f"/api/v1/machines/{a['id']}", headers=bearer("Supervisor")).status_code
        == 403
    )
    assert (
        client.delete(f"/api/v1/machines/{a['id']}", headers=bearer("Management")).status_code
        == 204
    )
    assert client.get(f"/api/v1/machines/{a['id']}", headers=op).status_code == 404


def test_machine_validation(client: TestClient) -> None:
    sup = bearer("Supervisor")
    resp = client.post("/api/v1/machines", json={"name": "x", "location": "y"}, headers=sup)
    assert resp.status_code == 400 and resp.json()["errors"][0]["field"] == "sensor_type"
    resp = client.post(
        "/api/v1/machines",
        json={"name": "x", "location": "y", "sensor_type": "t", "status": "broken"},
        headers=sup,
    )
    assert resp.status_code == 400 and resp.json()["errors"][0]["field"] == "status"
    assert (
        client.post(
            "/api/v1/machines",
            json={"name": "x", "location": "y", "sensor_type": "t"},
            headers=bearer("Operator"),
        ).status_code
        == 403
    )
    assert client.get("/api/v1/machines/not-a-uuid", headers=bearer()).status_code == 400


def test_history_raw_pages_and_aggregates(
    client: TestClient, influx_settings: InfluxSettings, clock: FrozenClock
) -> None:
    machine = new_machine(client)
    hour = 3600 * 10**9
    start = (clock.now_ns // hour - 5) * hour  # whole hours, 5 hours ago
    write_points(influx_settings, machine["id"], start, 120, 60)  # 2 hours at 1/min
    op = bearer("Operator")
    url = f"/api/v1/data/machine/{machine['id']}"
    window = {"start_time": _iso(start), "end_time": _iso(start + 3 * hour)}
    resp = client.get(url, params={**window, "limit": 50, "offset": 100}, headers=op)
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["machine"]["id"] == machine["id"]
    assert body["pagination"] == {
        "limit": 50,
        "offset": 100,
        "returned_records": 20,
        "total_records": 120,
        "has_more": False,
    }
    assert body["data"][0]["temperature"] == 100.0 and body["data"][0]["pressure"] == 200.0
    hourly = {**window, "interval": "1h", "fields": "temperature"}
    resp = client.get(url, params={**hourly, "tier": "raw"}, headers=op)
    body = resp.json()
    assert (body["query"]["interval"], body["query"]["tier"]) == ("1h", "raw")
    assert [row["temperature"] for row in body["data"]] == [29.5, 89.5]
    assert body["pagination"]["total_records"] == 2
    resp = client.get(
        url, params={**window, "interval": "1h", "agg": "max", "tier": "raw"}, headers=op
    )
    assert [row["pressure"] for row in resp.json()["data"]] == [159.0, 219.0]

    # The hourly tier, once built, answers the same for every aggregate.
    build_tiers(influx_settings, [machine["id"]], start, start + 3 * hour)
    for agg in ("mean", "min", "max", "count"):
        from_raw = client.get(
            url, params={**window, "interval": "1h", "agg": agg, "tier": "raw"}, headers=op
        ).json()
        from_tier = client.get(
            url, params={**window, "interval": "1h", "agg": agg}, headers=op
        ).json()
        assert from_tier["query"]["tier"] == "hourly"
        assert from_tier["data"] == from_raw["data"], agg
    days = {
        "start_time": _iso(start - start % DAY_NS),
        "end_time": _iso(start + DAY_NS),
        "interval": "1d",
        "fields": "temperature",
    }
    daily = client.get(url, params=days, headers=op).json()
    daily_raw = client.get(url, params={**days, "tier": "raw"}, headers=op).json()
    assert daily["query"]["tier"] == "daily"
    assert [r["timestamp"] for r in daily["data"]] == [r["timestamp"] for r in daily_raw["data"]]
    assert [r["temperature"] for r in daily["data"]] == pytest.approx(
        [r["temperature"] for r in daily_raw["data"]]
    )


def test_hourly_history_answers_the_hour_in_progress_from_raw(
    client: TestClient, influx_settings: InfluxSettings, clock: FrozenClock
) -> None:
    machine = new_machine(client)
    hour = 3600 * 10**9
    now = clock.now_ns  # the query API's "now" too: the hour in progress is the same for both
    current = now - now % hour
    start = current - 2 * hour
    # One reading every 30 s up to now included: the hour in progress has one even in its
    # first 30 s.
    write_points(influx_settings, machine["id"], start, (now - start) // 10**9 // 30 + 1, 30)
    build_tiers(influx_settings, [machine["id"]], start, current)  # ended hours only
    op = bearer("Operator")
    url = f"/api/v1/data/machine/{machine['id']}"
    params = {"start_time": _iso(start), "end_time": _iso(current + hour), "interval": "1h"}
    for agg in ("mean", "min", "max", "count"):
        raw = client.get(url, params={**params, "agg": agg, "tier": "raw"}, headers=op).json()
        tiered = client.get(url, params={**params, "agg": agg}, headers=op).json()
        assert tiered["query"]["tier"] == "hourly"
        assert len(tiered["data"]) == 3 and tiered["data"][-1]["timestamp"] == _iso(current)
        assert tiered["data"] == raw["data"], agg
    # Pages across the ended windows and the one in progress.
    pages = [
        client.get(url, params={**params, "limit": 2, "offset": off}, headers=op).json()
        for off in (0, 1, 2, 3)
    ]
    assert [len(p["data"]) for p in pages] == [2, 2, 1, 0]
    assert [p["pagination"]["total_records"] for p in pages] == [3, 3, 3, 3]
    assert [p["pagination"]["has_more"] for p in pages] == [True, False, False, False]
    assert pages[1]["data"][1]["timestamp"] == pages[2]["data"][0]["timestamp"] == _iso(current)


def test_summary_adds_the_day_in_progress_from_raw_to_the_daily_tier(
    client: TestClient, influx_settings: InfluxSettings, clock: FrozenClock
) -> None:
    location = f"Hall S-{uuid.uuid4().hex[:6]}"
    machine = new_machine(client, location=location)
    now = clock.now_ns
    today = now - now % DAY_NS
    start = today - 2 * DAY_NS
    n = (now - start) // 10**9 // 600 + 1  # one reading per 10 minutes up to now included
    write_points(influx_settings, machine["id"], start, n, 600)
    build_tiers(influx_settings, [machine["id"]], start, today)  # ended days only
    params = {
        "location": location,
        "field": "temperature",
        "interval": "1d",
        "start_time": _iso(start),
        "end_time": _iso(today + DAY_NS),
    }
    resp = client.get("/api/v1/data/summary", params=params, headers=bearer("Operator"))
    assert resp.status_code == 200, resp.text
    [entry] = resp.json()["machines"]
    values = [float(i) for i in range(n)]  # write_points: temperature i at start + 10 min * i
    per_day = 144
    expected = [values[d * per_day : (d + 1) * per_day] for d in range(3)]
    assert [w["timestamp"] for w in entry["windows"]] == [
        _iso(start + d * DAY_NS) for d in range(3) if expected[d]
    ]
    for window, vals in zip(entry["windows"], expected, strict=False):
        assert window["count"] == len(vals)
        assert (window["min"], window["max"]) == (min(vals), max(vals))
        assert window["mean"] == pytest.approx(sum(vals) / len(vals))
    assert entry["overall"]["count"] == n


def test_history_errors(client: TestClient) -> None:
    op = bearer("Operator")
    machine = new_machine(client)
    resp = client.get(
        f"/api/v1/data/machine/{machine['id']}", params={"interval": "2h"}, headers=op
    )
    assert resp.status_code == 400
    assert resp.json()["errors"] == [
        {"parameter": "interval", "error": "Must be one of: raw, 1m, 5m, 1h, 1d", "value": "2h"}
    ]
    resp = client.get(f"/api/v1/data/machine/{uuid.uuid4()}", headers=op)
    assert resp.status_code == 404
    assert client.get(f"/api/v1/data/machine/{machine['id']}").status_code == 401
    no_read = bearer("Operator", permissions=["read:machines"])
    resp = client.get(f"/api/v1/data/machine/{machine['id']}", headers=no_read)
    assert resp.status_code == 403


def build_tiers(settings: InfluxSettings, machines: list[str], start: int, end: int) -> None:
    async def run() -> None:
        client = InfluxClient(settings)
        rollup = Rollup(client, ["temperature", "pressure", "speed"], 60)
        await rollup.hourly(start, end, machines)
        day = start - start % DAY_NS
        await rollup.daily(day, end + DAY_NS, machines)
        await client.close()

    asyncio.run(run())


def _iso(ns: int) -> str:
    from services.query_api.history import ns_to_iso

    return ns_to_iso(ns)


def test_summary_errors_empty_locations_and_influxdb_down(
    client: TestClient,
    postgres_settings: PostgresSettings,
    influx_settings: InfluxSettings,
    amqp_cleanup: AmqpSettings,
    refused_port: int,
) -> None:
    op = bearer("Operator")
    url = "/api/v1/data/summary"
    resp = client.get(url, params={"field": "nope", "interval": "2h"}, headers=op)
    assert resp.status_code == 400
    assert {e["parameter"] for e in resp.json()["errors"]} == {"location", "field", "interval"}
    backwards = {
        "location": "Hall 1",
        "start_time": "2025-12-13T10:00:00Z",
        "end_time": "2025-12-12T10:00:00Z",
    }
    resp = client.get(url, params=backwards, headers=op)
    assert resp.status_code == 400, resp.text
    assert [e["parameter"] for e in resp.json()["errors"]] == ["start_time"]
    # A location with no machine: an empty answer, not an error.
    nowhere = {"location": f"Nowhere {uuid.uuid4().hex[:6]}"}
    resp = client.get(url, params=nowhere, headers=op)
    assert resp.status_code == 200, resp.text
    assert resp.json()["machines"] == []
    assert client.get(url, params=nowhere).status_code == 401
    no_read = bearer("Operator", permissions=["read:machines"])
    assert client.get(url, params=nowhere, headers=no_read).status_code == 403

    # InfluxDB not answering: 503 with Retry-After, never a 500.
    location = f"Hall D-{uuid.uuid4().hex[:6]}"
    new_machine(client, location=location)
    down = influx_settings.model_copy(
        update={"url": f"http://127.0.0.1:{refused_port}", "timeout_s": 1.0}
    )
    with query_app(postgres_settings, down, amqp_cleanup) as other:
        resp = other.get(url, params={"location": location}, headers=op)
        assert resp.status_code == 503, resp.text
        assert resp.headers["retry-after"] == "5"


def test_ready_answers_503_naming_the_dependency_that_does_not_answer(
    postgres_settings: PostgresSettings,
    influx_settings: InfluxSettings,
    amqp_cleanup: AmqpSettings,
    refused_port: int,
) -> None:
    down = influx_settings.model_copy(
        update={"url": f"http://127.0.0.1:{refused_port}", "timeout_s": 1.0}
    )
    settings = Settings(postgres=postgres_settings, influx=down, amqp=amqp_cleanup)
    with TestClient(create_app(settings)) as c:
        assert c.get("/health").status_code == 200  # alive, just not ready
        resp = c.get("/ready")
        assert resp.status_code == 503, resp.text
        checks = resp.json()["checks"]
        assert checks["influxdb"] is False and checks["postgres"] is True


def test_alert_list_parameters_are_checked_by_their_model(client: TestClient) -> None:
    bad = {
        "state": "nope",
        "severity": "major,loud",
        "machine_id": "x",
        "since": "yesterday",
        "until": "2025-12-13T10:00:00",
        "limit": "0",
        "offset": "-1",
    }
    resp = client.get("/api/v1/alerts", params=bad, headers=bearer())
    assert resp.status_code == 400, resp.text
    errors = {e["parameter"]: e["error"] for e in resp.json()["errors"]}
    assert set(errors) == set(bad)
    assert errors["until"] == "Timestamp must carry a time zone"
    assert errors["state"] == "One of: active, acknowledged, cleared, open"
    good = {"state": "open", "severity": "major, critical", "since": "2025-12-13T10:00:00Z"}
    resp = client.get("/api/v1/alerts", params=good, headers=bearer())
    assert resp.status_code == 200, resp.text
    assert resp.json()["pagination"]["limit"] == 100
