"""Response shapes of the ingest endpoint (documentation models for the OpenAPI document)."""

from __future__ import annotations

from pydantic import BaseModel

from shared.openapi import FieldErrorOut


class AcceptedCounts(BaseModel):
    machines: int
    readings: int
    messages: int


class IngestAccepted(BaseModel):
    """Every reading is durably in RabbitMQ (publisher confirm received)."""

    status: str = "accepted"
    request_id: str
    accepted: AcceptedCounts


class RejectedMachine(BaseModel):
    machine_id: str
    reason: str
    index: int | None = None
    errors: list[FieldErrorOut] = []


class IngestPartial(BaseModel):
    """Some machines were rejected (listed with why); the others are durably accepted."""

    status: str = "partial"
    message: str
    request_id: str
    accepted: AcceptedCounts
    rejected: list[RejectedMachine]
    errors: list[FieldErrorOut]
