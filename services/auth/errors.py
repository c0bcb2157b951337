"""Errors of the auth domain, raised by the modules that know the rules and mapped to HTTP
responses (or CLI messages) by their callers."""

from __future__ import annotations

from typing import Any

from shared.errors import MillraceError


class InvalidInput(MillraceError):
    """Field-level validation errors, ``[{"field", "error", "value"}]`` as the contract shows."""

    def __init__(self, errors: list[dict[str, Any]]) -> None:
        super().__init__("; ".join(f"{e['field']}: {e['error']}" for e in errors))
        self.errors = errors


class Conflict(MillraceError):
    """The change collides with existing state (a taken username, an active gateway id)."""


def field_error(field: str, error: str, value: Any = None) -> dict[str, Any]:
    entry: dict[str, Any] = {"field": field, "error": error}
    if value is not None:
        entry["value"] = value
    return entry


class OutOfScope(MillraceError):
    """The change reaches a factory outside the actor's own (HTTP 403)."""
