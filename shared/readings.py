"""Validation of sensor readings: one implementation for the HTTP and the MQTT door.

Models are pydantic (so OpenAPI documents come from them) and are validated straight from JSON
bytes with ``model_validate_json``. Errors come back as ``{"field", "error", "value"}`` records
whose ``field`` is the exact path in the request, e.g. ``batch[1].readings[0].timestamp``.

Deployment-specific extra fields and the clock are passed as validation context
(:class:`ValidationContext`), never read from globals.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Annotated, Any
from uuid import UUID

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

# Plausible physical ranges of the built-in fields (inclusive).
BUILTIN_FIELDS: dict[str, tuple[float, float]] = {
    "temperature": (-273.15, 3000.0),  # °C
    "pressure": (0.0, 1_000_000.0),  # kPa
    "speed": (0.0, 1_000_000.0),  # RPM
}
_RESERVED = {"timestamp", "sensor_type", "location", "machine_id", "factory_id", "readings"}

Label = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
GatewayId = Annotated[
    str,
    StringConstraints(
        strip_whitespace=True, min_length=1, max_length=128, pattern=r"^[A-Za-z0-9._:-]+$"
    ),
]


@dataclass(frozen=True, slots=True)
class ValidationContext:
    """What validation needs from the deployment: declared fields, limits and the clock."""

    extra_fields: dict[str, tuple[float, float]] = field(default_factory=dict)
    max_future_skew_s: float = 300.0
    max_batch_items: int = 1000
    max_readings_per_item: int = 10_000
    now_ns: int = 0
    # Older readings would fall outside the raw tier's retention (52 weeks by default) and be
    # refused by InfluxDB; refusing them here gives the gateway a clear answer instead.
    max_age_s: float = 364 * 86_400

    @property
    def fields(self) -> dict[str, tuple[float, float]]:
        return {**BUILTIN_FIELDS, **self.extra_fields}

    def with_now(self) -> ValidationContext:
        return ValidationContext(
            self.extra_fields,
            self.max_future_skew_s,
            self.max_batch_items,
            self.max_readings_per_item,
            time.time_ns(),
            self.max_age_s,
        )


def _ctx(info: ValidationInfo) -> ValidationContext:
    ctx = info.context
    return ctx if isinstance(ctx, ValidationContext) else ValidationContext(now_ns=time.time_ns())


def at_most(value: Any, limit: int, what: str) -> Any:
    """``value`` as it is, unless it is a list of more than ``limit`` items (``too_many``)."""
    if isinstance(value, list) and len(value) > limit:
        raise PydanticCustomError("too_many", f"At most {{limit}} {what}", {"limit": limit})
    return value


def max_readings_per_item(info: ValidationInfo) -> int:
    """The bound on the readings of one machine (or one MQTT message) being validated."""
    return _ctx(info).max_readings_per_item


def parse_timestamp(value: object) -> datetime:
    """ISO 8601 / RFC 3339 with an explicit zone (``Z`` or ``±hh:mm``) → aware datetime."""
    if not isinstance(value, str):
        raise PydanticCustomError("iso8601", "Invalid ISO 8601 format: expected a string")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise PydanticCustomError("iso8601", "Invalid ISO 8601 format") from None
    if parsed.tzinfo is None or parsed.utcoffset() is None:
        raise PydanticCustomError(
            "iso8601_zone", "Timestamp must carry a time zone (e.g. Z or +01:00)"
        )
    return parsed


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def to_ns(ts: datetime) -> int:
    delta = ts - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000_000 + delta.microseconds * 1000


class Reading(BaseModel):
    """One timestamped set of sensor values. Any declared numeric field may appear."""

    model_config = ConfigDict(extra="allow")
    __pydantic_extra__: dict[str, Any] = Field(init=False)

    timestamp: Annotated[str, Field(description="ISO 8601 with a zone, e.g. 2025-12-13T10:00:00Z")]
    temperature: float | None = Field(default=None, description="°C", strict=True)
    pressure: float | None = Field(default=None, description="kPa", strict=True)
    speed: float | None = Field(default=None, description="RPM", strict=True)

    @field_validator("timestamp")
    @classmethod
    def _timestamp(cls, value: str, info: ValidationInfo) -> str:
        ts = parse_timestamp(value)
        ctx = _ctx(info)
        ns = to_ns(ts)
        if ns > ctx.now_ns + int(ctx.max_future_skew_s * 1e9):
            raise PydanticCustomError("future", "Timestamp is too far in the future (clock skew?)")
        if ns < ctx.now_ns - int(ctx.max_age_s * 1e9):
            raise PydanticCustomError(
                "too_old",
                "Timestamp is older than the raw data retention ({days} days)",
                {"days": int(ctx.max_age_s // 86_400)},
            )
        return value

    @field_validator("temperature", "pressure", "speed")
    @classmethod
    def _builtin_range(cls, value: float | None, info: ValidationInfo) -> float | None:
        if value is None:
            return None
        assert info.field_name is not None
        return _check_value(value, BUILTIN_FIELDS[info.field_name])

    @model_validator(mode="after")
    def _values(self, info: ValidationInfo) -> Reading:
        extras = self.__pydantic_extra__ or {}
        if extras:
            declared = _ctx(info).extra_fields
            for name, value in extras.items():
                if name in _RESERVED or name not in declared:
                    raise PydanticCustomError(
                        "unknown_field",
                        "Unknown sensor field '{name}' (declared: {declared})",
                        {"name": name, "declared": ", ".join(sorted(_ctx(info).fields))},
                    )
                if isinstance(value, bool) or not isinstance(value, int | float):
                    raise PydanticCustomError(
                        "number", "Field '{name}' must be a number", {"name": name}
                    )
                _check_value(float(value), declared[name], name)
        if self.temperature is None and self.pressure is None and self.speed is None and not extras:
            raise PydanticCustomError("no_values", "A reading needs at least one sensor value")
        return self

    def values(self) -> dict[str, float]:
        out = {
            k: v
            for k, v in (
                ("temperature", self.temperature),
                ("pressure", self.pressure),
                ("speed", self.speed),
            )
            if v is not None
        }
        if self.__pydantic_extra__:
            out.update({k: float(v) for k, v in self.__pydantic_extra__.items()})
        return out

    def ts_ns(self) -> int:
        return to_ns(datetime.fromisoformat(self.timestamp))


def _check_value(value: float, bounds: tuple[float, float], name: str | None = None) -> float:
    if not math.isfinite(value):
        raise PydanticCustomError("finite", "Value must be a finite number")
    low, high = bounds
    if not low <= value <= high:
        raise PydanticCustomError(
            "range",
            "Value out of plausible range [{low}, {high}]" + (f" for '{name}'" if name else ""),
            {"low": low, "high": high},
        )
    return value


class MachineBatch(BaseModel):
    """Readings of one machine inside a gateway batch."""

    machine_id: UUID
    sensor_type: Label | None = Field(
        default=None, description="Defaults to the machine's registered sensor type"
    )
    location: Label | None = Field(
        default=None, description="Defaults to the machine's registered location"
    )
    readings: list[Reading] = Field(min_length=1)

    @field_validator("readings")
    @classmethod
    def _limit(cls, value: list[Reading], info: ValidationInfo) -> list[Reading]:
        limited: list[Reading] = at_most(value, max_readings_per_item(info), "readings per machine")
        return limited


class IngestRequest(BaseModel):
    """``POST /api/v1/data/ingest``: a batch from one gateway, several machines."""

    gateway_id: GatewayId | None = Field(
        default=None, description="Optional and not used: the credential names the gateway"
    )
    timestamp: str | None = Field(default=None, description="When the gateway sent the batch")
    factory_id: GatewayId | None = Field(
        default=None, description="Optional and not used: each machine's registered factory is"
    )
    batch: list[MachineBatch] = Field(min_length=1)

    @field_validator("timestamp")
    @classmethod
    def _timestamp(cls, value: str | None) -> str | None:
        if value is not None:
            parse_timestamp(value)
        return value

    @field_validator("batch", mode="before")
    @classmethod
    def _limit(cls, value: Any, info: ValidationInfo) -> Any:
        return at_most(value, _ctx(info).max_batch_items, "machines per batch")


@dataclass(slots=True)
class FieldError:
    field: str
    error: str
    value: Any = None

    def as_dict(self) -> dict[str, Any]:
        return {"field": self.field, "error": self.error, "value": self.value}


def format_loc(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


_MISSING_TYPES = {"missing"}


def _json_safe(value: Any) -> Any:
    if value is None or isinstance(value, str | int | float | bool):
        if isinstance(value, str) and len(value) > 200:
            return value[:200] + "…"
        if isinstance(value, float) and not math.isfinite(value):
            return str(value)
        if isinstance(value, int) and not -(2**63) <= value < 2**64:
            return str(value)  # the JSON encoder (orjson) refuses wider integers: a 500
        return value
    return None  # objects and lists are not echoed back: the path says where


def field_errors(exc: ValidationError, prefix: tuple[int | str, ...] = ()) -> list[FieldError]:
    out: list[FieldError] = []
    for err in exc.errors(include_url=False):
        loc = prefix + tuple(err["loc"])
        message = err["msg"]
        if err["type"] in _MISSING_TYPES:
            message = "Field required"
            value = None
        else:
            value = _json_safe(err.get("input"))
        out.append(FieldError(format_loc(loc), message, value))
    return out
