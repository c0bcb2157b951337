"""Answer shapes the endpoints share (documentation models for the OpenAPI document)."""

from __future__ import annotations

from pydantic import BaseModel


class Success(BaseModel):
    """Base of every success answer: ``status`` is ``"success"`` (errors carry ``"error"``)."""

    status: str = "success"


class Pagination(BaseModel):
    limit: int
    offset: int
    returned_records: int
    total_records: int
    has_more: bool


def page(limit: int, offset: int, returned: int, total: int) -> dict[str, int | bool]:
    """The ``pagination`` object of a list answer (see :class:`Pagination`)."""
    return {
        "limit": limit,
        "offset": offset,
        "returned_records": returned,
        "total_records": total,
        "has_more": offset + returned < total,
    }
