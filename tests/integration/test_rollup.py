"""Rollup tiers equal aggregating the raw data — for 30 days x 20 machines, late readings too."""

from __future__ import annotations

import random
import uuid

import pytest

from services.writer.batch import reading_line
from services.writer.rollup import DAY_NS, HOUR_NS, Rollup
from shared.influx import InfluxClient, any_of, quote_ident
from shared.settings import InfluxSettings
from tests.clock import FrozenClock

pytestmark = pytest.mark.integration
FIELDS = ["temperature", "pressure", "speed"]
STEP_S = 600  # one reading per 10 minutes: 4,320 per machine over 30 days


def generate(machines: list[str], start: int, days: int, rng: random.Random) -> list[dict]:
    out = []
    for m in machines:
        temp = rng.uniform(40, 80)
        for i in range(days * 86_400 // STEP_S):
            temp += rng.uniform(-0.5, 0.5)
            out.append(
                {
                    "machine_id": m,
                    "factory_id": "f",
                    "sensor_type": "Temperature",
                    "location": "Hall T",
                    "ts": start + i * STEP_S * 10**9,
                    "fields": {
                        "temperature": round(temp, 3),
                        "pressure": rng.uniform(90, 110),
                        "speed": float(rng.randrange(900, 1500)),
                    },
                }
            )
    return out


async def write(influx: InfluxClient, readings: list[dict]) -> None:
    for i in range(0, len(readings), 20_000):
        body = "\n".join(reading_line(r) for r in readings[i : i + 20_000]).encode()
        await influx.write(body)


async def compare(
    influx: InfluxClient, machines: list[str], start: int, end: int, tier: str, bucket: str
) -> int:
    """Every window of every machine, every statistic: tier == aggregate of raw."""
    s = influx.settings
    src_raw = f"{quote_ident(s.database)}.{quote_ident(s.raw_rp)}.sensor_readings"
    src_tier = f"{quote_ident(s.database)}.{quote_ident(tier)}.sensor_readings"
    cond = f"{any_of('machine_id', machines)} AND time >= {start} AND time < {end}"
    raw_sel = ", ".join(
        f"{st}({quote_ident(f)}) AS {quote_ident(st + '_' + f)}"
        for f in FIELDS
        for st in ("mean", "min", "max", "count")
    )
    [raw] = await influx.query(
        f"SELECT {raw_sel} FROM {src_raw} WHERE {cond} GROUP BY time({bucket}), machine_id fill(none)"
    )
    tier_sel = ", ".join(
        quote_ident(st + "_" + f) for f in FIELDS for st in ("mean", "min", "max", "count")
    )
    [got] = await influx.query(
        f"SELECT {tier_sel} FROM {src_tier} WHERE {cond} GROUP BY machine_id"
    )
    expected = {(se.tags["machine_id"], r["time"]): r for se in raw for r in se.rows()}
    actual = {(se.tags["machine_id"], r["time"]): r for se in got for r in se.rows()}
    assert actual.keys() == expected.keys()
    for key, row in expected.items():
        for col, value in row.items():
            if col != "time":
                assert actual[key][col] == pytest.approx(value, rel=1e-9, abs=1e-9), (key, col)
    return len(expected)


async def test_tiers_equal_raw_aggregates_with_late_readings(
    influx_settings: InfluxSettings, clock: FrozenClock
) -> None:
    influx = InfluxClient(influx_settings)
    await influx.provision()
    rng = random.Random(7)
    machines = [str(uuid.uuid4()) for _ in range(20)]
    now = clock.now_ns  # the rollup's wall clock too (frozen)
    end = now - now % DAY_NS
    start = end - 30 * DAY_NS
    readings = generate(machines, start, 30, rng)
    await write(influx, readings)
    rollup = Rollup(influx, FIELDS, interval_s=60)
    rollup.touched(readings)
    await rollup.run_once()
    hours = await compare(influx, machines, start, end, "hourly", "1h")
    days = await compare(influx, machines, start, end, "daily", "1d")
    assert (hours, days) == (20 * 30 * 24, 20 * 30)

    # Late readings (and a re-delivered duplicate) land in old windows; those re-aggregate.
    late = [
        {**readings[rng.randrange(len(readings))], "ts": start + rng.randrange(30 * DAY_NS)}
        for _ in range(200)
    ]
    late.append(dict(readings[0]))
    for r in late:
        r["fields"] = {"temperature": rng.uniform(0, 200), "pressure": 1.0, "speed": 5.0}
    await write(influx, late)
    rollup.touched(late)
    await rollup.run_once()
    await compare(influx, machines, start, end, "hourly", "1h")
    await compare(influx, machines, start, end, "daily", "1d")
    await influx.close()


async def test_windows_are_rolled_up_once_ended_and_again_at_most_every_repeat_interval(
    influx_settings: InfluxSettings, clock: FrozenClock
) -> None:
    influx = InfluxClient(influx_settings)
    await influx.provision()
    machine = str(uuid.uuid4())
    now = clock.now_ns  # the rollup's wall clock too (frozen)
    current = now - now % HOUR_NS
    ended = current - 3 * HOUR_NS

    def reading(ts: int, temperature: float) -> dict:
        return {
            "machine_id": machine,
            "factory_id": "f",
            "sensor_type": "Temperature",
            "location": "Hall T",
            "ts": ts,
            "fields": {"temperature": temperature},
        }

    async def count(rp: str, window: int) -> int:
        [series] = await influx.query(
            f"SELECT count_temperature FROM {quote_ident(rp)}.sensor_readings "
            f"WHERE machine_id = '{machine}' AND time = {window}"
        )
        return int(series[0].values[0][1]) if series else 0

    async def counts() -> tuple[int, int]:
        return await count(influx.settings.hourly_rp, current), await count(
            influx.settings.hourly_rp, ended
        )

    async def store(readings: list[dict]) -> None:
        await write(influx, readings)
        rollup.touched(readings)
        await rollup.run_once()

    rollup = Rollup(influx, FIELDS, interval_s=60, repeat_s=3600)
    # The hour in progress waits (history reads it from raw); an ended hour goes at once.
    await store([reading(current + 1, 1.0), reading(ended + 1, 1.0)])
    assert await counts() == (0, 1)

    # Late data into the ended hour moments later: it waits for the repeat interval.
    await store([reading(ended + 2, 2.0)])
    assert await counts() == (0, 1)
    rollup.repeat_s = 0
    await rollup.run_once()
    assert await counts() == (0, 2)

    # Once the current hour has ended it is rolled up: it was kept pending, not forgotten. Its
    # day only once the day has ended too.
    await rollup.run_once(now_ns=current + HOUR_NS)
    assert await counts() == (1, 2)
    day = current - current % DAY_NS
    day_total = 1 + (ended >= day) * 2  # the readings of both hours, if both are of this day
    # (In the last hour of a day, that hour's end is the day's end too.)
    day_ended = current + HOUR_NS == day + DAY_NS
    assert await count(influx.settings.daily_rp, day) == (day_total if day_ended else 0)
    await rollup.run_once(now_ns=day + DAY_NS)
    assert await count(influx.settings.daily_rp, day) == day_total

    # Shutdown: the last round aggregates what is pending, in progress or not.
    await store([reading(current + 3, 3.0)])
    assert await counts() == (1, 2)
    await rollup.run_once(final=True)
    assert await counts() == (2, 2)
    await influx.close()


async def test_the_hour_in_progress_at_start_up_is_rolled_up_for_every_machine_once_ended(
    influx_settings: InfluxSettings, clock: FrozenClock
) -> None:
    """A writer that died mid-hour took its list of touched machines with it: its successor
    rolls that hour up for every machine, not only for those it touches itself."""
    influx = InfluxClient(influx_settings)
    await influx.provision()
    machine = str(uuid.uuid4())
    now = clock.now_ns  # the rollup's wall clock too (frozen)
    current = now - now % HOUR_NS
    reading = {
        "machine_id": machine,
        "factory_id": "f",
        "sensor_type": "Temperature",
        "location": "Hall T",
        "ts": current + 1,
        "fields": {"temperature": 3.0},
    }
    await write(influx, [reading])  # stored by a writer that is gone; nobody touched it here
    rollup = Rollup(influx, FIELDS, interval_s=60, repeat_s=60)
    await rollup.sweep(hours_back=0)
    s = influx.settings
    query = (
        f"SELECT count_temperature FROM {quote_ident(s.hourly_rp)}.sensor_readings "
        f"WHERE machine_id = '{machine}' AND time = {current}"
    )
    await rollup.run_once()
    assert (await influx.query(query)) == [[]]  # still in progress
    await rollup.run_once(now_ns=current + HOUR_NS)
    [[series]] = await influx.query(query)
    assert series.values[0][1] == 1
    await influx.close()
