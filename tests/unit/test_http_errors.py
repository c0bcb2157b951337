"""Error answers carry the request id even for unexpected failures (outside the middleware)."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.testclient import TestClient

from shared.http import EXCEPTION_HANDLERS, RequestContextMiddleware


async def boom(request: Request) -> Response:
    raise RuntimeError("unexpected")


def test_unhandled_error_is_500_with_request_id() -> None:
    app = Starlette(
        routes=[Route("/boom", boom)],
        middleware=[Middleware(RequestContextMiddleware, service="t")],
        exception_handlers=EXCEPTION_HANDLERS,
    )
    client = TestClient(app, raise_server_exceptions=False)
    resp = client.get("/boom", headers={"X-Request-ID": "req-500"})
    assert resp.status_code == 500
    assert resp.json() == {
        "status": "error",
        "message": "Internal server error",
        "request_id": "req-500",
    }
