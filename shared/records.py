"""Records read from PostgreSQL rows (auth's users and gateways): one way to build them from a
row and one way to show them in an API answer."""

from __future__ import annotations

import dataclasses
from datetime import datetime
from typing import Any, ClassVar, Self

from shared.timefmt import row_iso


class RowRecord:
    """Base of a frozen dataclass whose fields are the columns of its row.

    ``from_row``: the fields from a row (which may hold more columns, from a join), ``id`` (a
    UUID) as text and the optional list column ``LISTED`` sorted (None, meaning "all of them",
    stays None). ``public``: every field its repr shows (secrets are
    declared ``field(repr=False)``), in declaration order, timestamps as :func:`row_iso` writes
    them.
    """

    __slots__ = ()
    LISTED: ClassVar[str]

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Self:
        values = {f.name: row[f.name] for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        listed = values[cls.LISTED]
        sort = None if listed is None else sorted(str(v) for v in listed)
        return cls(**{**values, "id": str(values["id"]), cls.LISTED: sort})

    def public(self) -> dict[str, Any]:
        shown = (f.name for f in dataclasses.fields(self) if f.repr)  # type: ignore[arg-type]
        return {name: _shown(getattr(self, name)) for name in shown}


def columns(record: type[RowRecord], table: str = "") -> str:
    """The columns to select for ``record``: its fields, for a ``SELECT`` or ``RETURNING``
    (qualified by ``table``, an alias of a join, when given)."""
    prefix = f"{table}." if table else ""
    return ", ".join(prefix + f.name for f in dataclasses.fields(record))  # type: ignore[arg-type]


def _shown(value: Any) -> Any:
    return row_iso(value) if isinstance(value, datetime) else value
