"""The reusable security middleware: headers on every response, CORS only when configured."""

from __future__ import annotations

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from shared.security import SecuritySettings, security_middleware


def app(settings: SecuritySettings, **kwargs: str | None) -> Starlette:
    async def plain(request: Request) -> PlainTextResponse:
        return PlainTextResponse("ok")

    async def cached(request: Request) -> PlainTextResponse:
        return PlainTextResponse("ok", headers={"Cache-Control": "public, max-age=60"})

    async def page(request: Request) -> HTMLResponse:
        return HTMLResponse("<html></html>")

    return Starlette(
        routes=[Route("/plain", plain), Route("/cached", cached), Route("/page", page)],
        middleware=security_middleware(settings, **kwargs),
    )


def test_headers_are_added_without_overriding_the_handler() -> None:
    client = TestClient(app(SecuritySettings(cors_origins=[]), cache_control="no-store"))
    plain = client.get("/plain")
    assert plain.headers["x-content-type-options"] == "nosniff"
    assert plain.headers["x-frame-options"] == "DENY"
    assert plain.headers["referrer-policy"] == "no-referrer"
    assert plain.headers["content-security-policy"] == "default-src 'none'; frame-ancestors 'none'"
    assert plain.headers["cache-control"] == "no-store"
    assert client.get("/cached").headers["cache-control"] == "public, max-age=60"
    page = client.get("/page")
    assert "content-security-policy" not in page.headers  # the docs page loads its scripts
    assert page.headers["x-frame-options"] == "DENY"


def test_no_cache_control_or_csp_unless_asked() -> None:
    client = TestClient(app(SecuritySettings(cors_origins=[]), content_security_policy=None))
    response = client.get("/plain")
    assert "cache-control" not in response.headers
    assert "content-security-policy" not in response.headers


def test_cors_headers_only_for_listed_origins() -> None:
    client = TestClient(app(SecuritySettings(cors_origins=["https://dash.example"])))
    ok = client.get("/plain", headers={"origin": "https://dash.example"})
    assert ok.headers["access-control-allow-origin"] == "https://dash.example"
    assert "x-request-id" in ok.headers["access-control-expose-headers"].lower()
    other = client.get("/plain", headers={"origin": "https://evil.example"})
    assert "access-control-allow-origin" not in other.headers
    off = TestClient(app(SecuritySettings(cors_origins=[])))
    assert (
        "access-control-allow-origin"
        not in off.get("/plain", headers={"origin": "https://dash.example"}).headers
    )


def test_cors_origins_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CORS_ORIGINS", "https://a.example/, https://b.example ,")
    assert SecuritySettings().cors_origins == ["https://a.example", "https://b.example"]
    monkeypatch.setenv("CORS_ORIGINS", "")
    assert SecuritySettings().cors_origins == []
