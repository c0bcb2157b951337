"""Request bodies of the auth endpoints: JSON objects or, for OAuth2 clients, HTML forms."""

from __future__ import annotations

import base64
import binascii
from typing import Any
from urllib.parse import parse_qsl, unquote

import orjson
from starlette.requests import Request

from shared.http import ApiError, read_limited

MAX_BODY_BYTES = 16 * 1024
FORM = "application/x-www-form-urlencoded"


async def read_fields(request: Request, *, optional: bool = False) -> dict[str, Any]:
    """The body as a dict, from JSON or a urlencoded form; an empty body only if ``optional``."""
    media_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    raw = await read_limited(request, MAX_BODY_BYTES)
    if not raw.strip():
        if optional:
            return {}
        raise ApiError(400, "Request body required")
    if media_type == FORM:
        try:
            pairs = parse_qsl(raw.decode(), keep_blank_values=True, max_num_fields=32)
        except (UnicodeDecodeError, ValueError) as e:
            raise ApiError(400, "Malformed form body") from e
        return dict(pairs)
    if media_type not in ("application/json", ""):
        raise ApiError(415, "Send application/json or application/x-www-form-urlencoded")
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as e:
        raise ApiError(400, "Malformed JSON body") from e
    if not isinstance(body, dict):
        raise ApiError(400, "The JSON body must be an object")
    return body


def basic_credentials(request: Request) -> tuple[str, str] | None:
    """``Authorization: Basic`` client credentials (RFC 6749 §2.3.1: each part form-encoded)."""
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError) as e:
        raise ApiError(400, "Malformed Basic credentials", error="invalid_request") from e
    client_id, sep, secret = decoded.partition(":")
    if not sep:
        raise ApiError(400, "Malformed Basic credentials", error="invalid_request")
    return unquote(client_id.replace("+", " ")), unquote(secret.replace("+", " "))


def string_field(fields: dict[str, Any], name: str) -> str | None:
    value = fields.get(name)
    return value if isinstance(value, str) and value != "" else None


def query_int(request: Request, name: str, default: int, low: int, high: int) -> int:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        value = low - 1
    if not low <= value <= high:
        raise ApiError(
            400,
            "Invalid query parameters",
            [
                {
                    "parameter": name,
                    "error": f"Must be an integer from {low} to {high}",
                    "value": raw,
                }
            ],
        )
    return value


def query_bool(request: Request, name: str) -> bool | None:
    raw = request.query_params.get(name)
    if raw is None:
        return None
    if raw.lower() in ("true", "1", "yes"):
        return True
    if raw.lower() in ("false", "0", "no"):
        return False
    raise ApiError(
        400,
        "Invalid query parameters",
        [{"parameter": name, "error": "Must be true or false", "value": raw}],
    )
