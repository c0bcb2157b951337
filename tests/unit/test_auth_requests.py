"""Parsing of auth request bodies and of configuration updates (no services needed)."""

from __future__ import annotations

import base64
from typing import Any

import pytest
from starlette.requests import Request

from services.auth.api.bodies import basic_credentials, read_fields
from services.query_api.config.routes import parse_update
from shared.http import ApiError


def request(body: bytes = b"", **headers: str) -> Request:
    sent = False

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    raw = [(k.replace("_", "-").encode(), v.encode()) for k, v in headers.items()]
    return Request({"type": "http", "method": "POST", "headers": raw, "path": "/"}, receive)


async def test_json_and_form_bodies() -> None:
    as_json = request(b'{"username": "a", "password": "b"}', content_type="application/json")
    assert await read_fields(as_json) == {"username": "a", "password": "b"}
    form = request(b"username=a%40b&password=p+w", content_type="application/x-www-form-urlencoded")
    assert await read_fields(form) == {"username": "a@b", "password": "p w"}
    assert await read_fields(request(), optional=True) == {}


@pytest.mark.parametrize(
    ("body", "content_type", "status"),
    [
        (b"", "application/json", 400),
        (b"[1, 2]", "application/json", 400),
        (b"{", "application/json", 400),
        (b"<a/>", "text/xml", 415),
        (b"x" * 20_000, "application/json", 413),
    ],
)
async def test_bad_bodies(body: bytes, content_type: str, status: int) -> None:
    with pytest.raises(ApiError) as caught:
        await read_fields(request(body, content_type=content_type))
    assert caught.value.status == status


def test_basic_credentials() -> None:
    encoded = base64.b64encode(b"gw_1:s%3Acret").decode()
    assert basic_credentials(request(authorization=f"Basic {encoded}")) == ("gw_1", "s:cret")
    assert basic_credentials(request(authorization="Bearer x")) is None
    with pytest.raises(ApiError):
        basic_credentials(request(authorization="Basic !!!"))


def test_config_update_body() -> None:
    assert parse_update({"setting_name": "max_temp", "setting_value": 85.0}) == ("max_temp", 85.0)
    assert parse_update({"setting_name": "a.b-c_d", "setting_value": {"x": [1]}})[1] == {"x": [1]}
    with pytest.raises(ApiError) as caught:
        parse_update({"setting_name": "Max Temp", "setting_value": None, "why": "x"})
    fields = [e["field"] for e in caught.value.errors or []]
    assert fields == ["setting_name", "setting_value", "why"]
    with pytest.raises(ApiError):
        parse_update(["not", "an", "object"])
