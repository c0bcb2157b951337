"""``/console``: the page, its scripts, the chart library, and same-origin sign-in.

The console signs in through ``/console/auth/{login,refresh,logout}``, passed through to the auth
service as they are: the browser then talks to one origin only (no CORS to configure), and the
tokens stay in the page's memory and session storage, sent in the ``Authorization`` header.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import httpx
from starlette.requests import Request
from starlette.responses import FileResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from shared.http import ApiError, read_json
from shared.webassets import asset_dir

STATIC = Path(__file__).parent / "static"
# Scripts and styles of our own origin only; uPlot sets element styles from script.
CONSOLE_CSP = (
    "default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)
AUTH_PATHS = {"login", "refresh", "logout"}
MAX_BODY_BYTES = 16 * 1024


def auth_base(jwks_url: str) -> str:
    """The auth service's base URL, from the JWKS URL every service is configured with."""
    parts = urlsplit(jwks_url)
    return urlunsplit((parts.scheme, parts.netloc, "", "", ""))


async def page(request: Request) -> Response:
    return FileResponse(
        STATIC / "index.html",
        headers={"Content-Security-Policy": CONSOLE_CSP, "Cache-Control": "no-cache"},
    )


async def to_page(request: Request) -> Response:
    return RedirectResponse("/console/", status_code=307)


async def auth_pass_through(request: Request) -> Response:
    action = str(request.path_params["action"])
    if action not in AUTH_PATHS:
        raise ApiError(404, "Not found")
    body = await read_json(request, MAX_BODY_BYTES)
    headers = {"Content-Type": "application/json"}
    if "authorization" in request.headers:
        headers["Authorization"] = request.headers["authorization"]
    if request.client is not None:
        # Auth trusts this from us (AUTH_TRUSTED_PROXIES): its throttle counts the browser.
        headers["X-Forwarded-For"] = request.client.host
    base = auth_base(request.state.settings.jwt.jwks_url)
    try:
        async with httpx.AsyncClient(timeout=10) as client:
            resp = await client.post(f"{base}/api/v1/auth/{action}", content=body, headers=headers)
    except httpx.HTTPError as e:
        raise ApiError(503, "Sign-in service unavailable", headers={"Retry-After": "5"}) from e
    return Response(
        resp.content,
        status_code=resp.status_code,
        media_type=resp.headers.get("content-type", "application/json"),
        headers={"Cache-Control": "no-store"},
    )


def console_routes() -> list[BaseRoute]:
    return [
        Route("/console", to_page, methods=["GET"], include_in_schema=False),
        Route("/console/", page, methods=["GET"], include_in_schema=False),
        Route(
            "/console/auth/{action}",
            auth_pass_through,
            methods=["POST"],
            include_in_schema=False,
        ),
        Mount("/console/static", StaticFiles(directory=str(STATIC)), name="console"),
        Mount(
            "/console/vendor/uplot",
            StaticFiles(directory=str(asset_dir("uplot") / "dist"), check_dir=False),
            name="uplot",
        ),
    ]
