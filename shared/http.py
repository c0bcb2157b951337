"""What every HTTP service shares: JSON responses, errors, request ids, health, metrics, RBAC slot.

Errors are raised as :class:`ApiError` anywhere in a handler and turned into the contract's
``{"status": "error", "message": ..., "errors": [...]}`` body in one place.
"""

from __future__ import annotations

import logging
import os
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from functools import wraps
from typing import Any, Protocol

import orjson
import psycopg
import psycopg_pool
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

import shared.metrics  # noqa: F401  (registers millrace_build_info for every service's /metrics)
from shared.errors import DependencyUnavailable, MillraceError
from shared.log import request_id

log = logging.getLogger(__name__)

HTTP_REQUESTS = Counter(
    "millrace_http_requests_total", "HTTP requests", ["service", "route", "status"]
)
HTTP_LATENCY = Histogram(
    "millrace_http_request_seconds",
    "HTTP request latency",
    ["service", "route"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)


class JSONResponse(Response):
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content, option=orjson.OPT_NON_STR_KEYS)


class ApiError(MillraceError):
    """An error with its HTTP status, message and optional per-field/parameter errors."""

    def __init__(
        self,
        status: int,
        message: str,
        errors: list[dict[str, Any]] | None = None,
        headers: Mapping[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.errors = errors
        self.headers = dict(headers or {})
        self.extra = extra

    def response(self) -> JSONResponse:
        body: dict[str, Any] = {"status": "error", "message": self.message}
        if self.errors is not None:
            body["errors"] = self.errors
        body.update(self.extra)
        return JSONResponse(body, status_code=self.status, headers=self.headers)


async def _api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return exc.response()


async def _http_exception(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    return ApiError(exc.status_code, str(exc.detail), headers=exc.headers).response()


async def _dependency(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, DependencyUnavailable)
    return ApiError(
        503,
        f"{exc.dependency} is unavailable, retry later",
        headers={"Retry-After": "5"},
        request_id=request_id.get(),
    ).response()


async def _database_data(request: Request, exc: Exception) -> Response:
    # A value PostgreSQL cannot hold (a NUL character, an out-of-range number): the client's.
    return ApiError(
        400, "Invalid value", [{"field": "body", "error": str(exc).splitlines()[0], "value": None}]
    ).response()


async def _database_unavailable(request: Request, exc: Exception) -> Response:
    log.warning("PostgreSQL failed mid-request: %s", exc, extra={"dependency": "postgres"})
    return ApiError(
        503,
        "postgres is unavailable, retry later",
        headers={"Retry-After": "5"},
        request_id=request_id.get(),
    ).response()


async def _client_gone(request: Request, exc: Exception) -> Response:
    # The client closed the connection before its body arrived: nobody reads an answer, and
    # nothing was accepted (the body is read before anything is published).
    log.info("client disconnected during %s %s", request.method, request.url.path)
    return Response(status_code=499)


async def _unhandled(request: Request, exc: Exception) -> Response:
    # This handler runs outside the request-context middleware: the id is read from the scope.
    rid = request.scope.get("millrace.request_id")
    log.error(
        "unhandled error on %s %s",
        request.method,
        request.url.path,
        exc_info=exc,
        extra={"request_id": rid},
    )
    return ApiError(500, "Internal server error", request_id=rid).response()


EXCEPTION_HANDLERS: dict[Any, Callable[[Request, Exception], Awaitable[Response]]] = {
    ApiError: _api_error,
    HTTPException: _http_exception,
    DependencyUnavailable: _dependency,
    psycopg.DataError: _database_data,
    psycopg.OperationalError: _database_unavailable,
    psycopg_pool.PoolTimeout: _database_unavailable,
    ClientDisconnect: _client_gone,
    Exception: _unhandled,
}


class RequestContextMiddleware:
    """Request id in (``X-Request-ID`` or a new one), in logs, and back out; request metrics."""

    def __init__(self, app: ASGIApp, service: str) -> None:
        self.app = app
        self.service = service

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rid = None
        for name, value in scope["headers"]:
            if name == b"x-request-id":
                rid = value.decode("latin-1")[:64]
                break
        rid = rid or uuid.uuid4().hex
        scope["millrace.request_id"] = rid
        token = request_id.set(rid)
        started = time.perf_counter()
        status = 500

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (b"x-request-id", rid.encode())]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            route = scope.get("route")
            path = getattr(route, "path", "unmatched")
            HTTP_REQUESTS.labels(self.service, path, str(status)).inc()
            HTTP_LATENCY.labels(self.service, path).observe(time.perf_counter() - started)
            request_id.reset(token)


def body_too_large(limit: int) -> ApiError:
    return ApiError(413, f"Request body exceeds {limit} bytes", max_body_bytes=limit)


async def read_limited(request: Request, limit: int) -> bytes:
    """The raw body, refused with 413 as soon as it (or its Content-Length) exceeds ``limit``."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise body_too_large(limit)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise body_too_large(limit)
        chunks.append(chunk)
    return b"".join(chunks)


def media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";", 1)[0].strip().lower()


def require_json(request: Request) -> None:
    """415 unless the body is declared JSON (``application/json`` or ``*+json``)."""
    mt = media_type(request)
    if mt != "application/json" and not mt.endswith("+json"):
        raise ApiError(415, "Content-Type must be application/json", value=mt or None)


async def read_json(request: Request, limit: int) -> bytes:
    """A JSON body's bytes: 415 for another media type, 413 beyond ``limit``."""
    require_json(request)
    return await read_limited(request, limit)


ReadyCheck = Callable[[Request], Awaitable[dict[str, bool]]]


def ops_routes(ready: ReadyCheck) -> list[Route]:
    """``/health`` (the process answers), ``/ready`` (dependencies reachable), ``/metrics``."""

    async def health(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def ready_endpoint(request: Request) -> Response:
        checks = await ready(request)
        ok = all(checks.values())
        return JSONResponse(
            {"status": "ready" if ok else "not ready", "checks": checks},
            status_code=200 if ok else 503,
        )

    async def metrics(request: Request) -> Response:
        if "PROMETHEUS_MULTIPROC_DIR" in os.environ:
            # Several worker processes serve this port: add up what every one of them counted
            # (see shared.workers), whichever worker answers.
            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)
            return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    return [
        Route("/health", health, methods=["GET"], include_in_schema=False),
        Route("/ready", ready_endpoint, methods=["GET"], include_in_schema=False),
        Route("/metrics", metrics, methods=["GET"], include_in_schema=False),
    ]


class Authorizer(Protocol):
    """Checks a request's credentials; raises :class:`ApiError` 401/403. Stored in app state."""

    async def check(self, request: Request, permission: str) -> Any: ...


Endpoint = Callable[[Request], Awaitable[Response]]


def resource_routes(prefix: str, table: Mapping[str, Mapping[str, Endpoint]]) -> list[Route]:
    """A service's routes as a table of resources: ``{path below prefix: {method: handler}}``.
    One :class:`Route` per method, in the table's order (a fixed path such as ``/status`` must
    come before ``/{id}``, which would otherwise take it)."""
    return [
        Route(prefix + path, endpoint, methods=[method])
        for path, methods in table.items()
        for method, endpoint in methods.items()
    ]


def requires(permission: str) -> Callable[[Endpoint], Endpoint]:
    """Guard an endpoint with a permission. The principal lands in ``request.state.principal``."""

    def decorate(endpoint: Endpoint) -> Endpoint:
        @wraps(endpoint)
        async def guarded(request: Request) -> Response:
            authorizer: Authorizer | None = getattr(request.state, "authorizer", None)
            if authorizer is None:
                raise ApiError(503, "Authorization is not configured")
            request.state.principal = await authorizer.check(request, permission)
            return await endpoint(request)

        guarded.required_permission = permission  # type: ignore[attr-defined]
        return guarded

    return decorate
