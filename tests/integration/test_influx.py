"""InfluxDB v1 API against the real server: provisioning, escaping round trip, rejections."""

from __future__ import annotations

import time
import uuid

import pytest

from services.writer.batch import reading_line, write_isolating
from shared.errors import InfluxRejected, InfluxUnavailable
from shared.influx import InfluxClient, quote_literal
from shared.settings import InfluxSettings

pytestmark = pytest.mark.integration


@pytest.fixture
async def influx(influx_settings: InfluxSettings):  # type: ignore[no-untyped-def]
    client = InfluxClient(influx_settings)
    await client.provision()
    yield client
    await client.close()


def reading(machine: str, ts: int, **fields: float) -> dict[str, object]:
    return {
        "machine_id": machine,
        "factory_id": "plant=1",
        "sensor_type": "Temperature",
        "location": 'Building A, Zone 3 "east"',
        "ts": ts,
        "fields": fields or {"temperature": 21.5},
    }


async def test_provision_creates_tiers(influx: InfluxClient) -> None:
    await influx.provision()  # idempotent
    [[series]] = await influx.query(f"SHOW RETENTION POLICIES ON {influx.settings.database}")
    policies = {row["name"]: row for row in series.rows()}
    assert {"raw", "hourly", "daily"} <= set(policies)
    assert policies["raw"]["default"] is True
    assert policies["raw"]["duration"] == "8736h0m0s"  # 52 weeks


async def test_awkward_tag_values_round_trip(influx: InfluxClient) -> None:
    machine = str(uuid.uuid4())
    ts = time.time_ns()
    await influx.write(reading_line(reading(machine, ts, temperature=60.5, speed=1400)).encode())
    [[series]] = await influx.query(
        "SELECT temperature, speed, location, factory_id FROM sensor_readings"
        f" WHERE machine_id = {quote_literal(machine)}"
    )
    [row] = series.rows()
    assert row == {
        "time": ts,
        "temperature": 60.5,
        "speed": 1400.0,
        "location": 'Building A, Zone 3 "east"',
        "factory_id": "plant=1",
    }


async def test_rewrite_is_idempotent(influx: InfluxClient) -> None:
    machine = str(uuid.uuid4())
    base = time.time_ns()
    body = "\n".join(reading_line(reading(machine, base + i)) for i in range(3)).encode()
    await influx.write(body)
    await influx.write(body)
    [[series]] = await influx.query(
        f"SELECT count(temperature) FROM sensor_readings WHERE machine_id = {quote_literal(machine)}"
    )
    assert series.values[0][1] == 3


async def test_malformed_point_is_isolated(influx: InfluxClient) -> None:
    """A field type conflict refuses one point; bisection stores all the others."""
    machine = str(uuid.uuid4())
    base = time.time_ns()
    # Make a fresh field a string in this shard, so the float point carrying it conflicts.
    field = f"f{uuid.uuid4().hex[:12]}"
    await influx.write(f'sensor_readings,machine_id=other {field}="hot" {base}'.encode())
    lines = [reading_line(reading(machine, base + i)) for i in range(9)]
    lines.insert(4, reading_line(reading(machine, base + 100, **{field: 1.0})))
    owners = [(0, i) for i in range(len(lines))]
    outcome = await write_isolating(lines, owners, influx.write)
    assert [r.owner for r in outcome.rejected] == [(0, 4)]
    assert "conflict" in outcome.rejected[0].error
    assert outcome.written == 9
    [[series]] = await influx.query(
        f"SELECT count(temperature) FROM sensor_readings WHERE machine_id = {quote_literal(machine)}"
    )
    assert series.values[0][1] == 9


async def test_errors_are_classified(influx_settings: InfluxSettings, refused_port: int) -> None:
    client = InfluxClient(influx_settings)
    with pytest.raises(InfluxRejected):
        await client.write(b"not line protocol at all")
    await client.close()
    down = InfluxClient(InfluxSettings(url=f"http://127.0.0.1:{refused_port}", timeout_s=1.0))
    with pytest.raises(InfluxUnavailable):
        await down.write(b"m v=1 1")
    await down.close()


async def test_a_database_not_yet_provisioned_is_retryable(influx_settings: InfluxSettings) -> None:
    """Before the writer's first start the database is missing: readers get a retryable
    answer (503 in the APIs), not an error that reads as a bug."""
    missing = InfluxSettings(url=influx_settings.url, database=f"absent_{uuid.uuid4().hex[:8]}")
    client = InfluxClient(missing)
    try:
        with pytest.raises(InfluxUnavailable, match="database not found"):
            await client.query("SELECT * FROM sensor_readings LIMIT 1")
    finally:
        await client.close()
