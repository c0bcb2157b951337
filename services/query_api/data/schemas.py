"""Answer models of the data endpoints (the OpenAPI document)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from services.query_api.machines.schemas import MachineOut
from shared.schemas import Pagination, Success


class HistoryQueryOut(BaseModel):
    start_time: str
    end_time: str
    interval: str
    fields: list[str]
    agg: str
    tier: Literal["raw", "hourly", "daily"]


class HistoryOut(Success):
    """Readings (or aggregates) of one machine, oldest first."""

    machine: MachineOut
    query: HistoryQueryOut
    data: list[dict[str, Any]] = Field(description="{timestamp, <field>: value, ...}")
    pagination: Pagination


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
    factory_id: str
    windows: list[WindowOut]
    overall: Overall


class SummaryOut(Success):
    """Per-machine aggregates over a location, from the rollup tiers."""

    query: dict[str, str]
    machines_total: int
    machines: list[MachineSummaryOut]
