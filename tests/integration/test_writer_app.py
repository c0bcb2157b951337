"""The writer as a process runs it (its app's lifespan: start-up, /health, /ready, /metrics,
shutdown), its live-status updater, and what the query API's ``/machines/status`` makes of it.

Real RabbitMQ (a private topology), InfluxDB and Redis (the test databases); the status is read
back through a query API app on the same test stores.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import pytest
import redis
from starlette.testclient import TestClient

from services.query_api.app import create_app as query_app
from services.query_api.settings import QueryOptions
from services.query_api.settings import Settings as QuerySettings
from services.writer.app import create_app as writer_app
from services.writer.settings import Settings as WriterSettings
from services.writer.settings import WriterOptions
from shared.envelope import Envelope
from shared.keys import version_key
from shared.settings import AmqpSettings, InfluxSettings, PostgresSettings, RedisSettings
from tests.polling import wait_for
from tests.queues import publish, queue_depth
from tests.registry import register_machines
from tests.tokens import bearer, trust_test_key
from tests.writer_fixtures import stored
from tools.simulator.payloads import iso

pytestmark = pytest.mark.integration


def metric(text: str, name: str) -> float:
    return sum(float(ln.rsplit(" ", 1)[1]) for ln in text.splitlines() if ln.startswith(name + " "))


def machines_at(pg: PostgresSettings, location: str, n: int) -> list[str]:
    return [m.id for m in asyncio.run(register_machines(pg, n, location=location, prefix="W"))]


def envelope(machine: str, ts_ns: list[int], temperature: float) -> Envelope:
    readings = [
        {
            "machine_id": machine,
            "factory_id": "f-status",
            "sensor_type": "Temperature",
            "location": "Hall W",
            "ts": ts,
            "fields": {"temperature": temperature + i, "speed": 1200.0},
        }
        for i, ts in enumerate(ts_ns)
    ]
    return Envelope(source="http", readings=readings, routing_key=f"reading.f-status.{machine}")


def test_writer_process_serves_health_metrics_keeps_live_status_and_drains_on_shutdown(
    amqp_cleanup: AmqpSettings,
    influx_settings: InfluxSettings,
    postgres_settings: PostgresSettings,
) -> None:
    location = f"Hall W-{uuid.uuid4().hex[:6]}"
    recent, stale, silent = machines_at(postgres_settings, location, 3)
    now = time.time_ns()
    settings = WriterSettings(
        amqp=amqp_cleanup,
        influx=influx_settings,
        writer=WriterOptions(batch_ms=50, rollup_sweep_hours=0),
    )
    query = QuerySettings(postgres=postgres_settings, influx=influx_settings, amqp=amqp_cleanup)
    with TestClient(writer_app(settings)) as writer:
        assert writer.get("/health").json() == {"status": "ok"}
        ready = writer.get("/ready")
        assert ready.status_code == 200, ready.text
        assert ready.json()["checks"] == {"rabbitmq": True, "influxdb": True}
        before = metric(writer.get("/metrics").text, "millrace_writer_readings_written_total")

        # Two readings of a machine seen just now (the newer one is its status), one of a
        # machine last seen an hour ago; the third machine never sends anything.
        asyncio.run(
            publish(
                amqp_cleanup,
                [
                    envelope(recent, [now - 2 * 10**9, now - 10**9], 70.0),
                    envelope(stale, [now - 3600 * 10**9], 40.0),
                ],
            )
        )
        wait_for(
            lambda: (
                metric(writer.get("/metrics").text, "millrace_writer_readings_written_total")
                >= before + 3
            )
        )
        with TestClient(query_app(query)) as api:
            trust_test_key(api.app_state)
            body = wait_for(
                lambda: (
                    (
                        r := api.get(
                            "/api/v1/machines/status",
                            params={"location": location},
                            headers=bearer(),
                        )
                    ).status_code
                    == 200
                    and sum(m["last_seen"] is not None for m in r.json()["machines"]) == 2
                    and r.json()
                )
            )
    assert body["source"] == "redis"  # kept current by the writer, not scanned from InfluxDB
    by_id = {m["machine_id"]: m for m in body["machines"]}
    assert set(by_id) == {recent, stale, silent}
    assert by_id[recent]["online"] is True
    assert by_id[recent]["last_values"] == {"temperature": 71.0, "speed": 1200.0}
    assert by_id[stale]["online"] is False
    assert by_id[stale]["last_values"] == {"temperature": 40.0, "speed": 1200.0}
    assert by_id[silent]["online"] is False
    assert by_id[silent]["last_seen"] is None and by_id[silent]["last_values"] is None
    summary = body["summary"]
    assert (summary["online"], summary["offline"], summary["never_seen"]) == (1, 2, 1)


def test_writer_shutdown_stores_and_acknowledges_what_it_holds(
    amqp_cleanup: AmqpSettings, influx_settings: InfluxSettings
) -> None:
    """A batch still waiting for its time when the process stops is written, then acked."""
    settings = WriterSettings(
        amqp=amqp_cleanup,
        influx=influx_settings,
        writer=WriterOptions(
            batch_ms=600_000,  # the batch would wait ten minutes: only the shutdown flushes it
            batch_points=100_000,
            rollup_sweep_hours=0,
        ),
    )
    machine = str(uuid.uuid4())
    now = time.time_ns()
    with TestClient(writer_app(settings)) as writer:
        asyncio.run(
            publish(amqp_cleanup, [envelope(machine, [now - i * 10**6 for i in range(50)], 20.0)])
        )
        wait_for(
            lambda: metric(writer.get("/metrics").text, "millrace_writer_pending_readings") == 50
        )
        assert asyncio.run(stored(influx_settings, machine)) == 0  # held, not written yet
    assert asyncio.run(stored(influx_settings, machine)) == 50
    assert queue_depth(amqp_cleanup) == 0  # acknowledged once stored


def test_new_data_is_never_hidden_by_the_history_cache(
    amqp_cleanup: AmqpSettings,
    influx_settings: InfluxSettings,
    postgres_settings: PostgresSettings,
    redis_settings: RedisSettings,
) -> None:
    """Answers are cached (an hour here, so only invalidation can refresh them), keyed by the
    machine's data version; the writer bumps the version once it stored a batch, so the next
    request sees the new reading at once."""
    [machine] = machines_at(postgres_settings, f"Hall C-{uuid.uuid4().hex[:6]}", 1)
    now = time.time_ns() // 10**9 * 10**9
    writer_settings = WriterSettings(
        amqp=amqp_cleanup,
        influx=influx_settings,
        writer=WriterOptions(batch_ms=50, rollup_sweep_hours=0),
    )
    query = QuerySettings(
        postgres=postgres_settings,
        influx=influx_settings,
        amqp=amqp_cleanup,
        query=QueryOptions(cache_ttl_s=3600),
    )
    url = f"/api/v1/data/machine/{machine}"
    window = {"start_time": iso((now - 60 * 10**9) // 1000), "end_time": iso(now // 1000)}
    versions = redis.Redis.from_url(redis_settings.url.get_secret_value())

    def version() -> bytes | None:
        value: bytes | None = versions.get(version_key(machine))
        return value

    try:
        with TestClient(writer_app(writer_settings)) as _, TestClient(query_app(query)) as api:
            trust_test_key(api.app_state)

            def history() -> dict[str, Any]:
                resp = api.get(url, params=window, headers=bearer())
                assert resp.status_code == 200, resp.text
                body: dict[str, Any] = resp.json()
                return body

            asyncio.run(publish(amqp_cleanup, [envelope(machine, [now - 20 * 10**9], 50.0)]))
            wait_for(
                lambda: asyncio.run(stored(influx_settings, machine)) == 1 and version() is not None
            )
            first = history()
            assert first["pagination"]["total_records"] == 1 and "cached" not in first
            again = history()
            assert again["cached"] is True and again["data"] == first["data"]

            seen = version()
            asyncio.run(publish(amqp_cleanup, [envelope(machine, [now - 10 * 10**9], 60.0)]))
            wait_for(
                lambda: asyncio.run(stored(influx_settings, machine)) == 2 and version() != seen
            )
            fresh = history()
    finally:
        versions.close()
    assert "cached" not in fresh
    assert [row["temperature"] for row in fresh["data"]] == [50.0, 60.0]
