"""Query parameters of the history endpoint: parsed, checked, every problem reported at once."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from starlette.datastructures import QueryParams

from shared.http import ApiError
from shared.readings import to_ns
from shared.timefmt import iso

INTERVALS: dict[str, str | None] = {"raw": None, "1m": "1m", "5m": "5m", "1h": "1h", "1d": "1d"}
AGGREGATES = ("mean", "min", "max", "count")
MAX_LIMIT = 10_000
# InfluxDB stores 64-bit nanoseconds: times outside this range cannot be queried (they answered
# 500: an InfluxQL parse error, or a Python overflow computing the default range).
MIN_TIME = datetime(1677, 9, 21, 0, 12, 44, tzinfo=UTC)
MAX_TIME = datetime(2262, 4, 11, 23, 47, 16, tzinfo=UTC)


@dataclass(slots=True)
class HistoryQuery:
    start: datetime
    end: datetime
    interval: str
    fields: list[str]
    limit: int
    offset: int
    agg: str
    tier: str = "auto"

    @property
    def start_ns(self) -> int:
        return to_ns(self.start)

    @property
    def end_ns(self) -> int:
        return to_ns(self.end)

    def describe(self) -> dict[str, Any]:
        return {
            "start_time": iso(self.start),
            "end_time": iso(self.end),
            "interval": self.interval,
            "fields": self.fields,
            "agg": self.agg,
        }

    def cache_key(self) -> str:
        return "|".join(
            (
                str(self.start_ns),
                str(self.end_ns),
                self.interval,
                ",".join(self.fields),
                str(self.limit),
                str(self.offset),
                self.agg,
                self.tier,
            )
        )


def parse_time(name: str, raw: str | None, errors: list[dict[str, Any]]) -> datetime | None:
    if raw is None or raw == "":
        return None
    try:
        parsed = datetime.fromisoformat(raw)
    except ValueError:
        errors.append({"parameter": name, "error": "Invalid ISO 8601 format", "value": raw})
        return None
    if parsed.tzinfo is None or parsed.utcoffset() is None:
        errors.append(
            {"parameter": name, "error": "Timestamp must carry a time zone", "value": raw}
        )
        return None
    # Compared as offsets from MIN_TIME: converting e.g. 0001-01-01T00:00+01:00 to UTC overflows.
    if not timedelta(0) <= parsed - MIN_TIME <= MAX_TIME - MIN_TIME:
        errors.append(
            {
                "parameter": name,
                "error": f"Must be between {iso(MIN_TIME)} and {iso(MAX_TIME)}",
                "value": raw,
            }
        )
        return None
    return parsed


def before(end: datetime, seconds: float) -> datetime:
    """``end`` minus a default range, never before the earliest queryable time."""
    span = timedelta(seconds=seconds)
    return MIN_TIME if end - MIN_TIME <= span else end - span


def _int(
    name: str, raw: str | None, default: int, low: int, high: int, errors: list[dict[str, Any]]
) -> int:
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        errors.append({"parameter": name, "error": "Must be an integer", "value": raw})
        return default
    if not low <= value <= high:
        errors.append(
            {"parameter": name, "error": f"Must be between {low} and {high}", "value": raw}
        )
    return value


def one_of(name: str, value: Any, allowed: Iterable[str], errors: list[dict[str, Any]]) -> None:
    """Append the error of a parameter whose value is not one of ``allowed``."""
    allowed = list(allowed)
    if value not in allowed:
        errors.append(
            {"parameter": name, "error": "Must be one of: " + ", ".join(allowed), "value": value}
        )


def time_range(
    params: Mapping[str, str],
    errors: list[dict[str, Any]],
    default_s: float,
    now: datetime,
    *,
    order_despite_errors: bool = False,
) -> tuple[datetime, datetime]:
    """``start_time``/``end_time``: end defaults to ``now``, start to ``default_s`` before end;
    start must come first (checked even when a time was refused if ``order_despite_errors``)."""
    end = parse_time("end_time", params.get("end_time"), errors) or now
    start = parse_time("start_time", params.get("start_time"), errors) or before(end, default_s)
    refused = any(e["parameter"] in ("start_time", "end_time") for e in errors)
    if start >= end and (order_despite_errors or not refused):
        errors.append(
            {
                "parameter": "start_time",
                "error": "Must be before end_time",
                "value": params.get("start_time"),
            }
        )
    return start, end


def parse_history(
    params: QueryParams, known_fields: list[str], default_range_s: int, now: datetime
) -> HistoryQuery:
    errors: list[dict[str, Any]] = []
    interval = params.get("interval", "raw")
    one_of("interval", interval, INTERVALS, errors)
    agg = params.get("agg", "mean")
    one_of("agg", agg, AGGREGATES, errors)
    tier = params.get("tier", "auto")
    one_of("tier", tier, ("auto", "raw"), errors)
    raw_fields = params.get("fields")
    fields = list(known_fields)
    if raw_fields:
        fields = [f.strip() for f in raw_fields.split(",") if f.strip()]
        unknown = [f for f in fields if f not in known_fields]
        if unknown or not fields:
            errors.append(
                {
                    "parameter": "fields",
                    "error": "Unknown field(s); known: " + ", ".join(known_fields),
                    "value": raw_fields,
                }
            )
    limit = _int("limit", params.get("limit"), 1000, 1, MAX_LIMIT, errors)
    offset = _int("offset", params.get("offset"), 0, 0, 10**9, errors)
    start, end = time_range(params, errors, default_range_s, now)
    if errors:
        raise ApiError(400, "Invalid query parameters", errors)
    return HistoryQuery(start, end, interval, fields, limit, offset, agg, tier)
