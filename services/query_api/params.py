"""Query parameters of the data and machine endpoints, one pydantic model per endpoint.

The model documents the parameters (``doc(query=Model)``, the OpenAPI document) and validates
them (:func:`shared.params.parse_query`): one definition, one way to parse. A refusal is a 400
naming every bad parameter, with the messages below. What a check needs from the service (the
known fields, "now", the default range) travels in the validation context.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, Field, ValidationInfo, field_validator
from pydantic_core import PydanticCustomError, PydanticUseDefault
from starlette.requests import Request

from shared.auth.scope import factory_id_error
from shared.http import ApiError
from shared.machines import valid_uuid
from shared.params import parse_query
from shared.readings import to_ns
from shared.timefmt import iso

INTERVALS: dict[str, str | None] = {"raw": None, "1m": "1m", "5m": "5m", "1h": "1h", "1d": "1d"}
AGGREGATES = ("mean", "min", "max", "count")
SUMMARY_BUCKETS = {"1h": "hourly", "1d": "daily", "7d": "daily", "30d": "daily"}
MACHINE_STATUSES = ("active", "inactive", "maintenance", "error")
MAX_LIMIT = 10_000
MAX_OFFSET = 10**9  # PostgreSQL's OFFSET is a bigint; larger values answered 500
# InfluxDB stores 64-bit nanoseconds: times outside this range cannot be queried (they answered
# 500: an InfluxQL parse error, or a Python overflow computing the default range).
MIN_TIME = datetime(1677, 9, 21, 0, 12, 44, tzinfo=UTC)
MAX_TIME = datetime(2262, 4, 11, 23, 47, 16, tzinfo=UTC)


def refuse(message: str) -> PydanticCustomError:
    """A parameter error whose text is ``message`` exactly (what the 400 shows)."""
    return PydanticCustomError("invalid_parameter", message)


def one_of(allowed: Iterable[str]) -> Callable[[Any], Any]:
    """A before-validator: the value must be one of ``allowed``."""
    names = list(allowed)
    message = "Must be one of: " + ", ".join(names)

    def check(value: Any) -> Any:
        if value not in names:
            raise refuse(message)
        return value

    return check


def _blank_is_absent(value: Any) -> Any:
    """An empty filter (``?location=``) filters nothing."""
    if value == "":
        raise PydanticUseDefault()
    return value


def bounded(low: int, high: int) -> Callable[[Any], Any]:
    """A before-validator: an integer within ``[low, high]`` (empty = the default)."""

    def check(raw: Any) -> Any:
        if raw is None or raw == "":
            raise PydanticUseDefault()
        try:
            value = int(raw)
        except (TypeError, ValueError):
            raise refuse("Must be an integer") from None
        if not low <= value <= high:
            raise refuse(f"Must be between {low} and {high}")
        return value

    return check


def _instant(raw: Any) -> datetime | None:
    """ISO 8601 with a zone, within what InfluxDB can hold (empty = absent)."""
    if raw is None or raw == "":
        return None
    if isinstance(raw, datetime):
        parsed = raw
    else:
        try:
            parsed = datetime.fromisoformat(str(raw))
        except ValueError:
            raise refuse("Invalid ISO 8601 format") from None
    if parsed.tzinfo is None or parsed.utcoffset() is None:
        raise refuse("Timestamp must carry a time zone")
    # Compared as offsets from MIN_TIME: converting e.g. 0001-01-01T00:00+01:00 to UTC overflows.
    if not timedelta(0) <= parsed - MIN_TIME <= MAX_TIME - MIN_TIME:
        raise refuse(f"Must be between {iso(MIN_TIME)} and {iso(MAX_TIME)}")
    return parsed


def _factory(value: Any) -> Any:
    if value == "":
        raise PydanticUseDefault()
    problem = factory_id_error(value)
    if problem:
        raise refuse(problem)
    return value


Instant = Annotated[datetime | None, BeforeValidator(_instant)]
FactoryId = Annotated[str, BeforeValidator(_factory)]
Filter = Annotated[str | None, BeforeValidator(_blank_is_absent)]


def before(end: datetime, seconds: float) -> datetime:
    """``end`` minus a default range, never before the earliest queryable time."""
    span = timedelta(seconds=seconds)
    return MIN_TIME if end - MIN_TIME <= span else end - span


class TimeWindow(BaseModel):
    """``start_time``/``end_time``: end defaults to now, start to the default range before end
    (both from the validation context); start must come first."""

    # end_time first: start_time's check reads it.
    end_time: Instant = Field(None, description="ISO 8601 with zone; default now")
    start_time: Instant = Field(
        None,
        description="ISO 8601 with zone; default end - the default range",
        validate_default=True,
    )

    @field_validator("start_time")
    @classmethod
    def _ordered(cls, start: datetime | None, info: ValidationInfo) -> datetime | None:
        context = info.context or {}
        if "now" in context:
            first, last = window(start, info.data.get("end_time"), context)
            if first >= last:
                raise refuse("Must be before end_time")
        return start

    def window(self, context: Mapping[str, Any]) -> tuple[datetime, datetime]:
        return window(self.start_time, self.end_time, context)


def window(
    start: datetime | None, end: datetime | None, context: Mapping[str, Any]
) -> tuple[datetime, datetime]:
    """(start, end) with the defaults of ``context`` (``now``, ``default_range_s``) filled in."""
    last = end or context["now"]
    return start or before(last, context["default_range_s"]), last


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


class HistoryParams(TimeWindow):
    interval: Annotated[
        Literal["raw", "1m", "5m", "1h", "1d"], BeforeValidator(one_of(INTERVALS))
    ] = "raw"
    agg: Annotated[Literal["mean", "min", "max", "count"], BeforeValidator(one_of(AGGREGATES))] = (
        "mean"
    )
    fields: str | None = Field(None, description="Comma-separated, e.g. temperature,speed")
    limit: Annotated[int, Field(ge=1, le=MAX_LIMIT), BeforeValidator(bounded(1, MAX_LIMIT))] = 1000
    offset: Annotated[int, Field(ge=0, le=MAX_OFFSET), BeforeValidator(bounded(0, MAX_OFFSET))] = 0
    tier: Annotated[Literal["auto", "raw"], BeforeValidator(one_of(("auto", "raw")))] = Field(
        "auto", description="raw forces aggregation from raw"
    )

    @field_validator("fields")
    @classmethod
    def _fields(cls, raw: str | None, info: ValidationInfo) -> str | None:
        known = list((info.context or {}).get("known_fields", ()))
        if raw:
            names = [f.strip() for f in raw.split(",") if f.strip()]
            if not names or any(f not in known for f in names):
                raise refuse("Unknown field(s); known: " + ", ".join(known))
        return raw

    def field_list(self, known_fields: list[str]) -> list[str]:
        if not self.fields:
            return list(known_fields)
        return [f.strip() for f in self.fields.split(",") if f.strip()]


def parse_history(
    params: Mapping[str, str], known_fields: list[str], default_range_s: int, now: datetime
) -> HistoryQuery:
    """The history endpoint's parameters, or 400 naming every bad one."""
    context = {"known_fields": known_fields, "default_range_s": default_range_s, "now": now}
    p = parse_query(HistoryParams, params, context)
    start, end = p.window(context)
    return HistoryQuery(
        start, end, p.interval, p.field_list(known_fields), p.limit, p.offset, p.agg, p.tier
    )


class SummaryParams(TimeWindow):
    location: Annotated[str, Field(min_length=1, description="Machines at this location")]
    field: Annotated[str, Field(description="A known field")] = "temperature"
    interval: Annotated[
        Literal["1h", "1d", "7d", "30d"], BeforeValidator(one_of(SUMMARY_BUCKETS))
    ] = "1d"
    factory_id: FactoryId | None = Field(None, description="Only machines of this factory")

    @field_validator("field")
    @classmethod
    def _known(cls, value: str, info: ValidationInfo) -> str:
        known = list((info.context or {}).get("known_fields", ()))
        if value not in known:
            raise refuse("Must be one of: " + ", ".join(known))
        return value


class StatusParams(BaseModel):
    location: Filter = None
    status: Annotated[
        Literal["active", "inactive", "maintenance", "error"] | None,
        BeforeValidator(one_of(MACHINE_STATUSES)),
        BeforeValidator(_blank_is_absent),  # runs first (the last before-validator does)
    ] = None
    sensor_type: Filter = None
    factory_id: FactoryId | None = Field(None, description="Only machines of this factory")

    def filters(self) -> dict[str, str]:
        """The filters given, by column."""
        return {
            k: v
            for k in ("location", "status", "sensor_type", "factory_id")
            if (v := getattr(self, k)) is not None
        }


class MachineListParams(StatusParams):
    limit: Annotated[int, Field(ge=1, le=1000), BeforeValidator(bounded(1, 1000))] = 100
    offset: Annotated[int, Field(ge=0, le=MAX_OFFSET), BeforeValidator(bounded(0, MAX_OFFSET))] = 0


def path_uuid(request: Request, name: str) -> str:
    """A path parameter that must be a UUID (400 naming it otherwise)."""
    value = str(request.path_params[name])
    if not valid_uuid(value):
        raise ApiError(
            400,
            "Invalid path parameter",
            [{"parameter": name, "error": "Must be a UUID", "value": value}],
        )
    return value
