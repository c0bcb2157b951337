from __future__ import annotations

from datetime import UTC, datetime

import pytest
from starlette.datastructures import QueryParams

from services.query_api.history import build_statements, ns_to_iso
from services.query_api.params import parse_history
from shared.http import ApiError
from shared.settings import InfluxSettings

NOW = datetime(2025, 12, 13, 12, 0, tzinfo=UTC)
FIELDS = ["temperature", "pressure", "speed"]


def parse(qs: str):  # type: ignore[no-untyped-def]
    return parse_history(QueryParams(qs), FIELDS, 86_400, NOW)


def test_defaults() -> None:
    q = parse("")
    assert (q.interval, q.limit, q.offset, q.fields) == ("raw", 1000, 0, FIELDS)
    assert q.end == NOW and (q.end - q.start).total_seconds() == 86_400


def test_bad_interval_names_parameter() -> None:
    with pytest.raises(ApiError) as exc:
        parse("interval=2h")
    assert exc.value.status == 400
    assert exc.value.errors == [
        {"parameter": "interval", "error": "Must be one of: raw, 1m, 5m, 1h, 1d", "value": "2h"}
    ]


def test_every_bad_parameter_reported() -> None:
    with pytest.raises(ApiError) as exc:
        parse("limit=0&offset=-1&fields=temperature,colour&start_time=yesterday&agg=median")
    names = {e["parameter"] for e in exc.value.errors or []}
    assert names == {"limit", "offset", "fields", "start_time", "agg"}


def test_range_must_be_ordered() -> None:
    with pytest.raises(ApiError) as exc:
        parse("start_time=2025-12-13T10:00:00Z&end_time=2025-12-13T09:00:00Z")
    assert exc.value.errors and exc.value.errors[0]["parameter"] == "start_time"


def test_raw_statement() -> None:
    q = parse(
        "start_time=2025-12-13T10:00:00Z&end_time=2025-12-13T11:00:00Z&limit=10&offset=20"
        "&fields=temperature"
    )
    page, count = build_statements(InfluxSettings(), "m'1", q)
    assert page == (
        'SELECT "temperature" FROM "millrace"."raw"."sensor_readings" WHERE machine_id = '
        "'m\\'1' AND time >= 1765620000000000000 AND time < 1765623600000000000"
        " ORDER BY time ASC LIMIT 10 OFFSET 20"
    )
    assert count.startswith('SELECT count("temperature") FROM')


@pytest.mark.parametrize("interval", ["1m", "5m", "1h", "1d"])
def test_interval_maps_to_group_by(interval: str) -> None:
    page, count = build_statements(InfluxSettings(), "m", parse(f"interval={interval}&agg=max"))
    assert f"GROUP BY time({interval}) fill(none)" in page
    assert 'max("speed") AS "speed"' in page
    assert count.startswith('SELECT count("temperature"), count("pressure"), count("speed") FROM (')


def test_ns_to_iso() -> None:
    assert ns_to_iso(1_765_620_000_123_456_789) == "2025-12-13T10:00:00.123456Z"


def test_ns_to_iso_writes_what_datetime_writes() -> None:
    import random
    from datetime import UTC, datetime

    from services.query_api.params import iso

    rng = random.Random(5)
    samples = [0, 1, 999, 1000, 1_765_620_000_000_000_000, 1_765_620_000_123_456_789, -1]
    samples += [rng.randrange(-(2**63) + 10**9, 2**63 - 1) for _ in range(20_000)]
    for ns in samples:
        seconds, rest = divmod(ns, 10**9)
        expected = iso(datetime.fromtimestamp(seconds, tz=UTC).replace(microsecond=rest // 1000))
        assert ns_to_iso(ns) == expected, ns
