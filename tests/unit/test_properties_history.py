"""Property tests of the history endpoint's query parameters (``parse_history``).

Any query string gives either a ``HistoryQuery`` that InfluxDB can run (an ordered range inside
the 64-bit nanosecond range, a known interval, aggregate and fields, bounded limit and offset)
or ``ApiError(400)`` whose every error names one of the endpoint's parameters; never another
exception. Fast by default (200 examples); ``HYPOTHESIS_PROFILE=thorough`` runs 5,000.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta, timezone
from urllib.parse import urlencode

import orjson
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from starlette.datastructures import QueryParams

from services.query_api.history import build_statements
from services.query_api.params import AGGREGATES, INTERVALS, MAX_LIMIT, HistoryQuery, parse_history
from shared.http import ApiError
from shared.settings import InfluxSettings

PROFILE = settings(
    max_examples=5000 if os.environ.get("HYPOTHESIS_PROFILE") == "thorough" else 200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)

NOW = datetime(2025, 12, 13, 12, 0, tzinfo=UTC)
KNOWN = ["temperature", "pressure", "speed", "vibration"]
PARAMETERS = {"start_time", "end_time", "interval", "agg", "tier", "fields", "limit", "offset"}
INT64 = (-(2**63), 2**63 - 1)

offsets = st.sampled_from(
    [
        None,
        UTC,
        timezone(timedelta(hours=5, minutes=30)),
        timezone(timedelta(hours=-23, minutes=-59)),
    ]
)
times = st.one_of(
    st.datetimes(
        min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31), timezones=offsets
    ).map(lambda d: d.isoformat()),
    st.datetimes(
        min_value=datetime(2020, 1, 1), max_value=datetime(2030, 1, 1), timezones=offsets
    ).map(lambda d: d.isoformat().replace("+00:00", "Z")),
    st.text(max_size=30),
    st.sampled_from(["", "now", "2025-12-13", "2025-12-13T25:00:00Z", "1677-09-21T00:12:43Z"]),
)
numbers = st.one_of(
    st.integers().map(str),
    st.integers(min_value=-(10**30), max_value=10**30).map(str),
    st.sampled_from(["", "0", "1", "10000", "10001", "1e3", " 5 ", "٣", "0x10", "-0", "1_000"]),
    st.text(max_size=10),
)
values = {
    "start_time": times,
    "end_time": times,
    "interval": st.sampled_from([*INTERVALS, "2h", "", "RAW"]) | st.text(max_size=5),
    "agg": st.sampled_from([*AGGREGATES, "sum", ""]) | st.text(max_size=5),
    "tier": st.sampled_from(["auto", "raw", "hourly", ""]) | st.text(max_size=5),
    "fields": st.lists(st.sampled_from([*KNOWN, "", " ", "x", "speed "]), max_size=5).map(",".join)
    | st.text(max_size=20),
    "limit": numbers,
    "offset": numbers,
}
structured = st.fixed_dictionaries({}, optional=values).map(urlencode)
query_strings = st.one_of(
    structured,
    structured,
    st.text(max_size=80),
    st.lists(st.tuples(st.sampled_from(sorted(PARAMETERS)), st.text(max_size=20)), max_size=6).map(
        urlencode
    ),
)


def parse(query: str) -> HistoryQuery | ApiError:
    try:
        return parse_history(QueryParams(query), KNOWN, 86_400, NOW)
    except ApiError as e:
        return e


@PROFILE
@given(query_strings)
@example("end_time=0001-01-01T00:00:00Z")
@example("start_time=0001-01-01T00:00:00%2B01:00&end_time=2020-01-01T00:00:00Z")
@example("start_time=2300-01-01T00:00:00Z&end_time=2400-01-01T00:00:00Z")
@example("end_time=1677-09-21T00:12:44Z")
@example("start_time=9999-12-31T23:59:59-23:59")
@example("limit=99999999999999999999999&offset=-1")
@example("fields=%2C%2C&interval=%00")
def test_any_query_string_gives_a_runnable_query_or_a_400(query: str) -> None:
    result = parse(query)
    if isinstance(result, ApiError):
        assert result.status == 400
        assert result.errors, "a 400 without parameter errors"
        result.response()  # renders as JSON (orjson), as the endpoint would
        for err in result.errors:
            assert err["parameter"] in PARAMETERS, err
            assert isinstance(err["error"], str) and err["error"]
        return
    q = result
    assert q.start < q.end
    assert INT64[0] < q.start_ns < q.end_ns < INT64[1]
    assert q.interval in INTERVALS and q.agg in AGGREGATES and q.tier in ("auto", "raw")
    assert q.fields and set(q.fields) <= set(KNOWN)
    assert 1 <= q.limit <= MAX_LIMIT and 0 <= q.offset <= 10**9
    orjson.dumps(q.describe())
    assert q.cache_key()
    for tier in ("raw", "hourly", "daily"):
        page, count = build_statements(InfluxSettings(), "m", q, tier)
        assert str(q.start_ns) in page and str(q.end_ns) in count


@PROFILE
@given(
    st.datetimes(
        min_value=datetime(1700, 1, 1),
        max_value=datetime(2200, 1, 1),
        timezones=offsets.filter(bool),
    ),
    st.integers(min_value=1, max_value=10**8),
)
def test_a_valid_range_is_taken_as_given(start: datetime, seconds: int) -> None:
    end = start + timedelta(seconds=seconds)
    result = parse(urlencode({"start_time": start.isoformat(), "end_time": end.isoformat()}))
    assert isinstance(result, HistoryQuery), getattr(result, "errors", None)
    assert (result.start, result.end) == (start, end)
