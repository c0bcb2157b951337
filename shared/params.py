"""Query parameters and JSON bodies validated by the pydantic model that documents them
(``doc(query=Model)`` / ``doc(body=Model)``): the OpenAPI document and the validation are one
model, and a refusal names every bad parameter or field (400)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from starlette.requests import Request

from shared.http import ApiError, read_json
from shared.readings import field_errors

M = TypeVar("M", bound=BaseModel)

MAX_BODY_BYTES = 64 * 1024


def parse_query(
    model: type[M], params: Mapping[str, str], context: Mapping[str, Any] | None = None
) -> M:
    """``params`` through ``model`` (its validators may read ``context``); 400 "Invalid query
    parameters" naming each bad one."""
    try:
        return model.model_validate(dict(params), context=context)
    except ValidationError as e:
        errors = [
            {
                "parameter": str(err["loc"][0]) if err["loc"] else "query",
                "error": err["msg"],
                "value": params.get(str(err["loc"][0])) if err["loc"] else None,
            }
            for err in e.errors(include_url=False)
        ]
        raise ApiError(400, "Invalid query parameters", errors) from None


async def parse_body(request: Request, model: type[M], limit: int = MAX_BODY_BYTES) -> M:
    """The JSON body through ``model`` (415 unless JSON, 413 beyond ``limit``); 400
    "Validation failed" with each field's path (``body`` for the body as a whole)."""
    raw = await read_json(request, limit)
    try:
        return model.model_validate_json(raw)
    except ValidationError as e:
        errors = [fe.as_dict() for fe in field_errors(e)]
        for err in errors:
            err["field"] = err["field"] or "body"
        raise ApiError(400, "Validation failed", errors) from None
