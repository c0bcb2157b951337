"""The ASGI app every service serves: its routes, the shared middleware, error handlers and
``/health``, ``/ready``, ``/metrics``, around a lifespan that owns every connection."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, TypeVar, cast

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.routing import BaseRoute

from shared.http import EXCEPTION_HANDLERS, RequestContextMiddleware, ops_routes
from shared.openapi import openapi_routes
from shared.security import SecuritySettings, security_middleware
from shared.service.lifespan import OpenState, lifespan

SettingsT = TypeVar("SettingsT")
StateT = TypeVar("StateT", bound=Mapping[str, Any])

Ready = Callable[[StateT], Awaitable[dict[str, bool]]]


def request_state(request: Request) -> Any:
    """The state the service's lifespan yielded, as a handler sees it. Each service names its
    type once: ``state: Callable[[Request], State] = request_state``."""
    return request.scope["state"]


def service_app(
    name: str,
    settings: SettingsT,
    open_state: OpenState[SettingsT, StateT],
    ready: Ready[StateT],
    *,
    routes: Sequence[BaseRoute] = (),
    openapi_title: str | None = None,
    security: SecuritySettings | None = None,
    cache_control: str | None = None,
) -> Starlette:
    """``routes`` (documented at ``/openapi.json`` when ``openapi_title`` is given) plus the ops
    routes; request ids and metrics on every request; the security headers and CORS when
    ``security`` is given. A worker service (writer, bridge) passes no routes: its app is the
    ops endpoints, and its worker lives in the state ``open_state`` builds."""

    async def ready_checks(request: Request) -> dict[str, bool]:
        return await ready(cast(StateT, request_state(request)))

    docs = [*openapi_routes(openapi_title)] if openapi_title else []
    middleware = [Middleware(RequestContextMiddleware, service=name)]
    if security is not None:
        middleware += security_middleware(security, cache_control=cache_control)
    return Starlette(
        routes=[*routes, *docs, *ops_routes(ready_checks)],
        middleware=middleware,
        exception_handlers=EXCEPTION_HANDLERS,
        lifespan=lifespan(settings, open_state),
    )
