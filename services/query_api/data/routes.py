"""``GET /api/v1/data/machine/{machine_id}`` (one machine's history; ``history.py`` builds and
runs the queries, answers are cached briefly, see ``history.HistoryCache``) and
``GET /api/v1/data/summary`` (per-machine aggregates over a location, ``summary.py``)."""

from __future__ import annotations

from datetime import UTC, datetime
from functools import partial

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from services.query_api import history
from services.query_api.data.schemas import HistoryOut, SummaryOut
from services.query_api.data.summary import SUMMARY_RANGE_S, SummaryQuery, summary_answer
from services.query_api.params import HistoryParams, SummaryParams, parse_history, path_uuid
from services.query_api.scope import UNKNOWN, machine_or_404, principal, require_factory
from services.query_api.state import state
from shared.http import JSONResponse, requires, resource_routes
from shared.machines import MachineRepository
from shared.openapi import doc
from shared.params import parse_query
from shared.schemas import page

api_doc = partial(doc, tags=["data"])  # this module's OpenAPI tag

MAX_SUMMARY_MACHINES = 500
HISTORY_ANSWERS = {200: HistoryOut, 404: UNKNOWN, 503: "InfluxDB unavailable"}


@api_doc("One machine's history", query=HistoryParams, responses=HISTORY_ANSWERS)
@requires("read:sensor_data")
async def machine_history(request: Request) -> Response:
    st = state(request)
    mid = path_uuid(request, "machine_id")
    now = datetime.now(UTC)
    q = parse_history(
        request.query_params, st["known_fields"], st["settings"].query.default_range_s, now
    )
    machine = machine_or_404(principal(request), await st["machines"].get(mid), mid)
    cache = st["history_cache"]
    key = await cache.key(mid, q.cache_key())
    cached = await cache.get(key)
    if cached is not None:
        return JSONResponse({**cached, "machine": machine.as_dict(), "cached": True})
    with history.influx_answers("History"):
        rows, total = await history.fetch(st["influx"], mid, q)
    body = {
        "status": "success",
        "machine": machine.as_dict(),
        "query": {**q.describe(), "tier": history.choose_tier(q)},
        "data": rows,
        "pagination": page(q.limit, q.offset, len(rows), total),
    }
    await cache.put(key, body)
    return JSONResponse(body)


@api_doc("Aggregates per machine of a location", query=SummaryParams, responses={200: SummaryOut})
@requires("read:sensor_data")
async def summary(request: Request) -> Response:
    st = state(request)
    context = {
        "known_fields": st["known_fields"],
        "now": datetime.now(UTC),
        "default_range_s": SUMMARY_RANGE_S,
    }
    p = parse_query(SummaryParams, request.query_params, context)
    caller = principal(request)
    filters = {"location": p.location}
    if p.factory_id is not None:
        require_factory(caller, p.factory_id)
        filters["factory_id"] = p.factory_id
    machines, total = await MachineRepository(st["pool"]).list(
        filters, MAX_SUMMARY_MACHINES, 0, caller.factory_list
    )
    return JSONResponse(
        await summary_answer(st["influx"], SummaryQuery.of(p, context), machines, total)
    )


def data_routes() -> list[Route]:
    return resource_routes(
        "/api/v1/data",
        {"/machine/{machine_id}": {"GET": machine_history}, "/summary": {"GET": summary}},
    )
