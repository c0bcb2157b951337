"""Answer shapes every list endpoint shares (documentation models for the OpenAPI document)."""

from __future__ import annotations

from pydantic import BaseModel


class Pagination(BaseModel):
    limit: int
    offset: int
    returned_records: int
    total_records: int
    has_more: bool
