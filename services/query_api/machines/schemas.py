"""Request and answer models of the machine endpoints (the OpenAPI document and validation)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from services.query_api.params import FactoryId
from shared.machines import STATUSES
from shared.schemas import Pagination, Success

Text = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=255)]
# The column is varchar(100): longer values were refused by PostgreSQL with a 500.
SensorType = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]
Status = Annotated[str, Field(pattern="^(" + "|".join(STATUSES) + ")$")]
MachineStatus = Literal["active", "inactive", "maintenance", "error"]


class MachineOut(BaseModel):
    id: str
    name: str
    location: str
    sensor_type: str
    status: MachineStatus
    created_at: str
    updated_at: str
    factory_id: str


class MachineListOut(Success):
    """Machines sorted by name."""

    machines: list[MachineOut]
    pagination: Pagination


class MachineEnvelope(Success):
    """One machine."""

    machine: MachineOut


class MachineIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Text
    location: Text
    sensor_type: SensorType
    status: Status = "active"
    factory_id: FactoryId | None = Field(
        None, description="One of the caller's factories; default the default factory"
    )


class MachinePatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Text | None = None
    location: Text | None = None
    sensor_type: SensorType | None = None
    status: Status | None = None
    factory_id: FactoryId | None = Field(None, description="Move it to another of your factories")


class MachineStatusOut(BaseModel):
    machine_id: str
    name: str
    location: str
    sensor_type: str
    factory_id: str
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


class StatusOut(Success):
    """Latest values and online state of every machine."""

    source: Literal["redis", "influxdb"]
    online_threshold_s: int
    summary: StatusSummary
    machines: list[MachineStatusOut]
