"""Query parameters and response shapes (documentation models for the OpenAPI document)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field


class HistoryParams(BaseModel):
    start_time: str | None = Field(None, description="ISO 8601 with zone; default end - 24 h")
    end_time: str | None = Field(None, description="ISO 8601 with zone; default now")
    interval: Literal["raw", "1m", "5m", "1h", "1d"] = "raw"
    agg: Literal["mean", "min", "max", "count"] = "mean"
    fields: str | None = Field(None, description="Comma-separated, e.g. temperature,speed")
    limit: int = Field(1000, ge=1, le=10_000)
    offset: int = Field(0, ge=0)
    tier: Literal["auto", "raw"] = Field("auto", description="raw forces aggregation from raw")


class MachineOut(BaseModel):
    id: str
    name: str
    location: str
    sensor_type: str
    status: Literal["active", "inactive", "maintenance", "error"]
    created_at: str
    updated_at: str


class Pagination(BaseModel):
    limit: int
    offset: int
    returned_records: int
    total_records: int
    has_more: bool


class HistoryQueryOut(BaseModel):
    start_time: str
    end_time: str
    interval: str
    fields: list[str]
    agg: str
    tier: Literal["raw", "hourly", "daily"]


class HistoryOut(BaseModel):
    """Readings (or aggregates) of one machine, oldest first."""

    status: str = "success"
    machine: MachineOut
    query: HistoryQueryOut
    data: list[dict[str, Any]] = Field(description="{timestamp, <field>: value, ...}")
    pagination: Pagination


class MachineListParams(BaseModel):
    location: str | None = None
    status: Literal["active", "inactive", "maintenance", "error"] | None = None
    sensor_type: str | None = None
    limit: int = Field(100, ge=1, le=1000)
    offset: int = Field(0, ge=0, le=1_000_000_000)


class MachineListOut(BaseModel):
    """Machines sorted by name."""

    status: str = "success"
    machines: list[MachineOut]
    pagination: Pagination


class MachineEnvelope(BaseModel):
    """One machine."""

    status: str = "success"
    machine: MachineOut


class StatusParams(BaseModel):
    location: str | None = None
    status: Literal["active", "inactive", "maintenance", "error"] | None = None
    sensor_type: str | None = None


class MachineStatusOut(BaseModel):
    machine_id: str
    name: str
    location: str
    sensor_type: str
    status: str
    online: bool
    last_seen: str | None
    last_values: dict[str, float] | None


class StatusSummary(BaseModel):
    total: int
    online: int
    offline: int
    never_seen: int
    by_status: dict[str, int]


class StatusOut(BaseModel):
    """Latest values and online state of every machine."""

    status: str = "success"
    source: Literal["redis", "influxdb"]
    online_threshold_s: int
    summary: StatusSummary
    machines: list[MachineStatusOut]


class SummaryParams(BaseModel):
    location: str = Field(description="Machines at this location")
    field: str = "temperature"
    interval: Literal["1h", "1d", "7d", "30d"] = "1d"
    start_time: str | None = Field(None, description="Default end - 30 days")
    end_time: str | None = None


class WindowOut(BaseModel):
    timestamp: str
    mean: float | None
    min: float | None
    max: float | None
    count: int


class Overall(BaseModel):
    count: int
    mean: float | None
    min: float | None
    max: float | None


class MachineSummaryOut(BaseModel):
    machine_id: str
    name: str
    status: str
    windows: list[WindowOut]
    overall: Overall


class SummaryOut(BaseModel):
    """Per-machine aggregates over a location, from the rollup tiers."""

    status: str = "success"
    query: dict[str, str]
    machines_total: int
    machines: list[MachineSummaryOut]
