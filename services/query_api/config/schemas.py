"""Request and answer models of the configuration and audit endpoints."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, Field

from services.query_api.params import Instant, bounded
from shared.schemas import Success

MAX_AUDIT_LIMIT = 500
MAX_AUDIT_OFFSET = 10_000_000


class ConfigParams(BaseModel):
    name: str | None = Field(None, description="One setting only")


class SettingOut(BaseModel):
    name: str
    value: Any
    updated_at: str
    updated_by: str = Field(description="Username of the last writer")


class ConfigOut(Success):
    """Settings, by name."""

    settings: list[SettingOut]


class ConfigUpdateIn(BaseModel):
    setting_name: str = Field(description="1-100 of a-z 0-9 _ . - (starting with a letter)")
    setting_value: Any = Field(description="Any JSON value but null, at most 16 KiB")


class UpdatedSettingOut(SettingOut):
    old_value: Any = None


class ConfigUpdateOut(Success):
    """The setting after the update (changed: false when the value was already set)."""

    message: str
    changed: bool
    updated_setting: UpdatedSettingOut


class AuditParams(BaseModel):
    limit: Annotated[
        int, Field(ge=1, le=MAX_AUDIT_LIMIT), BeforeValidator(bounded(1, MAX_AUDIT_LIMIT))
    ] = 100
    offset: Annotated[
        int, Field(ge=0, le=MAX_AUDIT_OFFSET), BeforeValidator(bounded(0, MAX_AUDIT_OFFSET))
    ] = 0
    action: str | None = Field(None, description="e.g. config.update, user.deactivate")
    actor: str | None = Field(None, description="Username of who made the change")
    target: str | None = Field(None, description="Setting name, username or gateway id")
    since: Instant = Field(None, description="ISO 8601 with zone, inclusive")
    until: Instant = Field(None, description="ISO 8601 with zone, exclusive")

    def where(self) -> tuple[str, list[Any]]:
        """The entries these parameters select, as a SQL condition and its arguments."""
        clauses: list[str] = []
        args: list[Any] = []
        for value, condition in (
            (self.action, "action = %s"),
            (self.actor, "actor_username = %s"),
            (self.target, "target = %s"),
            (self.since, "occurred_at >= %s"),
            (self.until, "occurred_at < %s"),
        ):
            if value is not None:
                clauses.append(condition)
                args.append(value)
        return " AND ".join(clauses) or "TRUE", args


class AuditEntryOut(BaseModel):
    id: int
    time: str
    user_id: str
    username: str
    role: str
    action: str
    target: str
    old_value: Any
    new_value: Any
    client_address: str | None
    user_agent: str | None
    request_id: str | None


class AuditPagination(BaseModel):
    limit: int
    offset: int
    returned_records: int
    total_records: int
    has_more: bool


class AuditOut(Success):
    """Audit entries, newest first."""

    entries: list[AuditEntryOut]
    pagination: AuditPagination
