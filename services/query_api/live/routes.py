"""``GET /api/v1/live``: the live stream (``read:sensor_data``, the permission of history).

Send the token in the ``Authorization`` header (the console reads the stream with ``fetch``);
never in the URL. The stream ends when the token expires (event ``expired``): reconnect with a
fresh token and the ``Last-Event-ID`` header to resume.

Events: ``hello`` (once), ``reading``, ``status`` (online/offline), ``alert``
(opened/acknowledged/cleared), ``gap`` (events were lost: read that window from history),
``expired``; a comment every ``LIVE_HEARTBEAT_S`` keeps proxies from closing an idle stream.

Factories: a client gets only events of its token's factories (readings and status by the
factory of the reading, alerts by the factory of their machine); ``factory`` (or ``factory_id``)
narrows that further, and naming a factory outside the scope answers 403.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from functools import partial

from pydantic import BaseModel, Field
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from services.query_api.live.events import HEARTBEAT, TYPES, frame
from services.query_api.live.subscriber import Filter, Subscriber
from services.query_api.scope import principal as caller
from services.query_api.scope import require_factory
from services.query_api.state import state
from shared.auth.scope import factory_id_error
from shared.auth.verify import Principal
from shared.http import ApiError, requires
from shared.machines import valid_uuid
from shared.openapi import doc

api_doc = partial(doc, tags=["live"])  # this module's OpenAPI tag


class LiveParams(BaseModel):
    machine_id: str | None = Field(None, description="Comma-separated machine ids")
    location: str | None = Field(None, description="Comma-separated locations")
    factory: str | None = Field(None, description="Comma-separated factory ids (of yours)")
    factory_id: str | None = Field(None, description="Same as factory")
    types: str | None = Field(None, description="Comma-separated: reading, status, alert")


def _values(request: Request, name: str) -> frozenset[str]:
    out: set[str] = set()
    for raw in request.query_params.getlist(name):
        out.update(v.strip() for v in raw.split(",") if v.strip())
    return frozenset(out)


def _factories(request: Request, principal: Principal) -> frozenset[str]:
    """The factories the client gets events of: those it asked for, within its scope."""
    wanted = _values(request, "factory") | _values(request, "factory_id")
    bad = sorted(f for f in wanted if factory_id_error(f))
    if bad:
        error = {"parameter": "factory", "error": factory_id_error(bad[0]), "value": bad[0]}
        raise ApiError(400, "Invalid query parameters", [error])
    if principal.factories is None:
        return wanted
    for factory in sorted(wanted):
        require_factory(principal, factory)
    if not wanted and not principal.factories:
        raise ApiError(403, "Your token names no factory: there is nothing to stream")
    return wanted or principal.factories


def parse_filter(request: Request, principal: Principal) -> Filter:
    errors = []
    machines = _values(request, "machine_id")
    bad = sorted(m for m in machines if not valid_uuid(m))
    if bad:
        errors.append({"parameter": "machine_id", "error": "Must be UUIDs", "value": bad[0]})
    types = _values(request, "types")
    unknown = sorted(types - set(TYPES))
    if unknown:
        errors.append(
            {"parameter": "types", "error": "One of: " + ", ".join(TYPES), "value": unknown[0]}
        )
    if errors:
        raise ApiError(400, "Invalid query parameters", errors)
    return Filter(
        machine_ids=machines,
        locations=_values(request, "location"),
        factory_ids=_factories(request, principal),
        types=types,
    )


@api_doc(
    "Live stream (server-sent events) of readings, online/offline changes and alerts",
    query=LiveParams,
    responses={
        200: "text/event-stream",
        406: "Accept does not include text/event-stream",
        503: "Too many live clients on this instance",
    },
)
@requires("read:sensor_data")
async def live_stream(request: Request) -> Response:
    hub = state(request)["live"]
    # Only to clients that ask for an event stream (EventSource and the console do): a generic
    # client accepting anything would wait on a response that never ends.
    if "text/event-stream" not in request.headers.get("accept", ""):
        raise ApiError(406, "This endpoint answers Accept: text/event-stream only")
    principal = caller(request)
    filt = parse_filter(request, principal)
    settings = hub.settings
    if hub.client_count >= settings.max_clients:
        raise ApiError(503, "Too many live clients on this instance", headers={"Retry-After": "5"})
    sub = Subscriber(filt, settings.client_buffer)
    hub.subscribe(sub, request.headers.get("last-event-id"))

    async def body() -> AsyncIterator[bytes]:
        # One timer for the token's expiry; heartbeats come from the hub's periodic tick
        # (sub.due), so that waiting for events costs no timer per event.
        loop = asyncio.get_running_loop()
        expiry = loop.call_later(max(0.0, principal.exp - time.time()), sub.wake)
        try:
            yield frame(
                None,
                "hello",
                {"epoch": hub.epoch, "heartbeat_s": settings.heartbeat_s, "expires": principal.exp},
            )
            while True:
                if principal.exp - time.time() <= 0:
                    yield frame(None, "expired", {"reason": "token expired: reconnect"})
                    return
                sub.due = time.monotonic() + settings.heartbeat_s
                chunk = await sub.take()
                if chunk:
                    yield chunk
                elif time.monotonic() >= sub.due:
                    yield HEARTBEAT
        finally:
            expiry.cancel()
            hub.unsubscribe(sub)

    return StreamingResponse(
        body(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )


def live_routes() -> list[Route]:
    return [Route("/api/v1/live", live_stream, methods=["GET"])]
