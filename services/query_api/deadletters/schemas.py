"""Request and response models of the dead-letter API (validation and the OpenAPI document)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    model_validator,
)

from shared.schemas import Pagination, Success

MAX_IDS = 1000
MAX_REPLAY = 1000
Code = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:-]+$")]
# Free text compared with stored values: anything PostgreSQL can hold (no NUL).
Text = Annotated[str, StringConstraints(max_length=200, pattern=r"^[^\x00]*$")]
LetterId = Annotated[int, Field(ge=1, le=2**63 - 1)]
MAX_OFFSET = 10_000_000


class DeadLetterListParams(BaseModel):
    """Query parameters of ``GET /api/v1/deadletters``."""

    model_config = ConfigDict(extra="ignore")

    reason: Code | None = Field(None, description="Reason code, e.g. unknown_machine")
    source: Literal["http", "mqtt", "writer", "replay", "unknown"] | None = Field(
        None, description="Who dead-lettered it"
    )
    gateway_id: Text | None = None
    factory_id: Text | None = Field(None, description="Letters of this factory")
    machine_id: Text | None = Field(None, description="Letters about this machine")
    replayed: bool | None = Field(None, description="true: replayed already; false: pending")
    since: AwareDatetime | None = Field(
        None, description="First seen at or after (ISO 8601 with zone)"
    )
    until: AwareDatetime | None = Field(None, description="First seen before (ISO 8601 with zone)")
    limit: int = Field(100, ge=1, le=1000)
    offset: int = Field(0, ge=0, le=MAX_OFFSET)


class DeadLetterOut(BaseModel):
    """One archived dead letter (list view: without readings and payload)."""

    id: int
    message_id: str
    reason: str
    error: str
    source: str = Field(description="http, mqtt, writer, replay (who dead-lettered it)")
    origin_source: str | None = Field(None, description="Writer letters: the original door")
    gateway_id: str
    request_id: str
    topic: str | None = Field(None, description="MQTT topic the payload came on")
    factory_id: str | None = Field(description="The factory its topic or readings name")
    machine_id: str | None
    readings_count: int
    has_raw: bool = Field(description="The original payload is kept (see the detail view)")
    first_seen: str
    archived_at: str
    attempts: int
    replayed_at: str | None
    replay_count: int
    last_replay_at: str | None
    last_replay_error: str | None = Field(
        None, description="Why the last replay found the letter still invalid"
    )


class DeadLetterDetailOut(DeadLetterOut):
    readings: list[dict[str, Any]] = Field(
        description="{machine_id, factory_id, sensor_type, location, ts (ns), fields}"
    )
    raw: str | None = Field(description="Original payload (invalid bytes as \\xNN)")
    details: dict[str, Any] = Field(description="Per-field errors, topic ids, x-death, ...")


class DeadLetterListOut(Success):
    """Dead letters, newest first."""

    dead_letters: list[DeadLetterOut]
    pagination: Pagination


class DeadLetterEnvelope(Success):
    """One dead letter with its readings and original payload."""

    dead_letter: DeadLetterDetailOut


class CountOut(BaseModel):
    key: str
    total: int
    pending: int = Field(description="Not replayed yet")


class DeadLetterStatsOut(Success):
    """Counts of archived dead letters."""

    total: int
    pending: int
    replayed: int
    oldest: str | None = Field(description="First seen of the oldest letter")
    newest: str | None
    by_reason: list[CountOut]
    by_source: list[CountOut]


class ReplayIn(BaseModel):
    """Either ``ids`` or ``reason`` (the oldest ``limit`` letters of that reason not replayed)."""

    model_config = ConfigDict(extra="forbid")

    ids: list[LetterId] | None = Field(None, min_length=1, max_length=MAX_IDS)
    reason: Code | None = None
    limit: int = Field(100, ge=1, le=MAX_REPLAY)
    force: bool = Field(False, description="Replay letters that were replayed already, too")

    @model_validator(mode="after")
    def _one_selector(self) -> ReplayIn:
        if (self.ids is None) == (self.reason is None):
            raise ValueError("Give either ids or reason")
        return self


class ReplayResultOut(BaseModel):
    id: int
    outcome: Literal[
        "replayed", "still_invalid", "already_replayed", "not_found", "busy", "not_published"
    ] = Field(
        description="replayed: published (confirmed) to telemetry; still_invalid: kept, with"
        " the new error; busy: another replay holds it; not_published: broker unavailable"
    )
    reason: str | None = Field(None, description="still_invalid: the reason code now")
    error: str | None = None
    readings: int = 0


class ReplayOut(Success):
    """What happened to each selected letter."""

    replayed: int
    still_invalid: int
    results: list[ReplayResultOut]


class PurgeIn(BaseModel):
    """Either ``ids``, or a filter of ``reason``/``before``/``replayed`` (at least one)."""

    model_config = ConfigDict(extra="forbid")

    ids: list[LetterId] | None = Field(None, min_length=1, max_length=MAX_IDS)
    reason: Code | None = None
    before: AwareDatetime | None = Field(None, description="First seen before (ISO 8601 with zone)")
    replayed: bool | None = Field(None, description="true: only letters replayed already")

    @model_validator(mode="after")
    def _selector(self) -> PurgeIn:
        filtered = self.reason is not None or self.before is not None or self.replayed is not None
        if self.ids is not None and filtered:
            raise ValueError("Give either ids or a filter (reason, before, replayed), not both")
        if self.ids is None and not filtered:
            raise ValueError("Name what to purge: ids, or reason/before/replayed")
        return self


class PurgeOut(Success):
    """How many letters were deleted."""

    deleted: int
    by_reason: dict[str, int]
