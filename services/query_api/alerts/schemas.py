"""Request and answer models of the alerts API (the OpenAPI document and validation)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    model_validator,
)
from pydantic_core import PydanticUseDefault

from services.query_api.params import MAX_OFFSET, FactoryId, Instant, bounded, refuse
from shared.alert_events import SEVERITIES
from shared.machines import valid_uuid
from shared.schemas import Success

Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]
Note = Annotated[str, StringConstraints(strip_whitespace=True, max_length=500)]
Severity = Literal["critical", "major", "minor", "warning"]
Scope = Literal["all", "machine", "sensor_type", "location", "factory"]


class RuleIn(BaseModel):
    """A threshold rule (field, comparison, threshold, optional duration and clear threshold)
    or an offline rule (offline_after_s)."""

    model_config = ConfigDict(extra="forbid")

    name: Name
    kind: Literal["threshold", "offline"] = "threshold"
    field: Annotated[str, StringConstraints(pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")] | None = None
    comparison: Literal[">", ">=", "<", "<="] | None = None
    threshold: float | None = Field(None, allow_inf_nan=False)
    clear_threshold: float | None = Field(
        None, allow_inf_nan=False, description="Hysteresis: clears only past this value"
    )
    duration_s: int = Field(0, ge=0, le=86_400, description="How long the condition must hold")
    offline_after_s: int | None = Field(None, ge=1, le=30 * 86_400)
    severity: Severity = "major"
    scope_type: Scope = "all"
    scope_value: Annotated[str, StringConstraints(min_length=1, max_length=200)] | None = None
    factory_id: FactoryId | None = Field(
        None, description="The factory whose machines it watches (one of yours); none = every one"
    )
    enabled: bool = True

    @model_validator(mode="after")
    def _consistent(self) -> RuleIn:
        if self.kind == "threshold":
            missing = [n for n in ("field", "comparison", "threshold") if getattr(self, n) is None]
            if missing:
                raise ValueError("a threshold rule needs " + ", ".join(missing))
            if self.clear_threshold is not None and self.threshold is not None:
                wrong_side = (
                    self.clear_threshold > self.threshold
                    if self.comparison in (">", ">=")
                    else self.clear_threshold < self.threshold
                )
                if wrong_side:
                    raise ValueError("clear_threshold must be on the normal side of threshold")
        elif self.offline_after_s is None:
            raise ValueError("an offline rule needs offline_after_s")
        if (self.scope_type == "all") != (self.scope_value is None):
            raise ValueError("scope_value is required for a scope other than all (only then)")
        if self.scope_type == "factory":
            if self.factory_id not in (None, self.scope_value):
                raise ValueError("factory_id must be the factory the scope names")
            self.factory_id = self.scope_value
        return self


class RuleOut(BaseModel):
    id: str
    name: str
    kind: str
    field: str | None
    comparison: str | None
    threshold: float | None
    clear_threshold: float | None
    duration_s: int
    offline_after_s: int | None
    severity: str
    scope_type: str
    scope_value: str | None
    factory_id: str | None = Field(description="The factory it belongs to; null = every factory")
    enabled: bool
    managed_by: str | None = Field(description="Set when a config setting keeps this rule")
    created_by: str
    created_at: str
    updated_at: str


class RuleEnvelope(Success):
    """One rule."""

    rule: RuleOut


class RuleListOut(Success):
    """Every rule."""

    rules: list[RuleOut]


STATES = ("active", "acknowledged", "cleared", "open")
MAX_LIMIT = 500


def _state(value: Any) -> Any:
    if value == "":
        raise PydanticUseDefault()
    if value not in STATES:
        raise refuse("One of: " + ", ".join(STATES))
    return value


def _severities(value: Any) -> Any:
    wanted = [s.strip() for s in str(value).split(",") if s.strip()]
    if not wanted:
        raise PydanticUseDefault()
    if any(s not in SEVERITIES for s in wanted):
        raise refuse("One of: " + ", ".join(SEVERITIES))
    return ",".join(wanted)


def _uuid(value: Any) -> Any:
    if value == "":
        raise PydanticUseDefault()
    if not valid_uuid(str(value)):
        raise refuse("Must be a UUID")
    return value


class AlertParams(BaseModel):
    state: Annotated[
        Literal["active", "acknowledged", "cleared", "open"] | None, BeforeValidator(_state)
    ] = Field(None, description="active, acknowledged, cleared or open")
    severity: Annotated[str | None, BeforeValidator(_severities)] = Field(
        None, description="Comma-separated severities"
    )
    machine_id: Annotated[str | None, BeforeValidator(_uuid)] = None
    rule_id: Annotated[str | None, BeforeValidator(_uuid)] = None
    factory_id: FactoryId | None = Field(None, description="Only alerts of this factory")
    since: Instant = Field(None, description="Raised at or after (ISO 8601 with zone)")
    until: Instant = Field(None, description="Raised before (ISO 8601 with zone)")
    limit: Annotated[int, Field(ge=1, le=MAX_LIMIT), BeforeValidator(bounded(1, MAX_LIMIT))] = 100
    offset: Annotated[int, Field(ge=0, le=MAX_OFFSET), BeforeValidator(bounded(0, MAX_OFFSET))] = 0


class AlertOut(BaseModel):
    id: int
    rule_id: str | None
    rule_name: str
    kind: str
    severity: str
    machine_id: str
    factory_id: str | None
    location: str | None
    field: str | None
    comparison: str | None
    threshold: float | None
    value: float | None
    state: str
    started_at: str
    raised_at: str
    acknowledged_at: str | None
    acknowledged_by: str | None
    ack_note: str | None
    cleared_at: str | None
    cleared_by: str | None
    cleared_value: float | None


class AlertListOut(Success):
    """Alerts: open ones first, most severe first, newest first."""

    alerts: list[AlertOut]
    pagination: dict[str, Any]


class AlertEnvelope(Success):
    """One alert."""

    alert: AlertOut


class AlertActionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    note: Note | None = None
