"""Dead letters you can act on (Management): list, count, inspect, replay, purge.

    GET  /api/v1/deadletters             read:config         filters, newest first
    GET  /api/v1/deadletters/stats       read:config         counts by reason and by source
    GET  /api/v1/deadletters/{id}        read:config         one letter, readings and payload
    POST /api/v1/deadletters/replay      write:config        validate again, publish, mark
    POST /api/v1/deadletters/purge       delete:sensor_data  delete letters

Permissions: the role table has no dead-letter permission, and only Management may touch this
plumbing. Reading letters exposes raw gateway payloads and pipeline internals, which is what
``read:config`` guards for the runtime configuration. Replaying changes what flows into the
pipeline, an operational change like a configuration update: ``write:config``. Purging destroys
readings that never reached InfluxDB, often their last copy: ``delete:sensor_data``. Replays and
purges are written to the audit log (who, what, how many).

Replay publishes with publisher confirms and marks a letter replayed only once RabbitMQ confirmed
its readings; the selected rows stay locked meanwhile, so concurrent replays never publish a
letter twice. Should the commit fail after the confirm, a later replay publishes the same
readings again, which InfluxDB stores as the same points (no duplicate).

Factories: every list, count, read, replay and purge keeps to the letters of the caller's
factories (a letter's factory is the one its topic or readings name); a letter of another
factory, or one whose factory cannot be told, answers as an unknown id to a caller of some
factories only (README "Factories: what a token sees").

Needs ``request.state``: ``pool``, ``publisher`` (:class:`shared.broker.Publisher`),
``settings`` (query_api settings: validation limits) and ``authorizer``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from typing import Any, TypeVar

from psycopg import AsyncConnection
from pydantic import BaseModel
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from services.query_api.deadletters import store
from services.query_api.deadletters.metrics import PURGED, REPLAY_REFUSED, REPLAYED, set_pending
from services.query_api.deadletters.replay import (
    Letter,
    Unreplayable,
    machine_ids,
    replay_readings,
)
from services.query_api.deadletters.schemas import (
    DeadLetterEnvelope,
    DeadLetterListOut,
    DeadLetterListParams,
    DeadLetterStatsOut,
    PurgeIn,
    PurgeOut,
    ReplayIn,
    ReplayOut,
)
from services.query_api.deadletters.store import LetterFilter
from services.query_api.scope import principal, require_factory
from services.query_api.state import state
from shared import audit
from shared.broker import Publisher
from shared.envelope import Envelope
from shared.errors import BrokerUnavailable
from shared.http import ApiError, JSONResponse, requires, resource_routes
from shared.ingest import pack
from shared.log import request_id
from shared.machines import Machine, MachineRepository
from shared.openapi import doc
from shared.params import parse_body, parse_query
from shared.readings import ValidationContext
from shared.schemas import page
from shared.timefmt import row_iso as _iso

api_doc = partial(doc, tags=["dead letters"])  # this module's OpenAPI tag

log = logging.getLogger(__name__)
M = TypeVar("M", bound=BaseModel)
MAX_BODY_BYTES = 256 * 1024
_ROW_TIMES = ("first_seen", "archived_at", "replayed_at", "last_replay_at")


def letter_out(row: dict[str, Any]) -> dict[str, Any]:
    return {k: _iso(v) if k in _ROW_TIMES else v for k, v in row.items()}


def _scope(request: Request) -> LetterFilter:
    """The letters the caller's factories hold."""
    return LetterFilter(factories=principal(request).factory_list)


def _letter_id(request: Request) -> int:
    raw = str(request.path_params["letter_id"])
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 18:
        raise ApiError(
            400,
            "Invalid path parameter",
            [{"parameter": "letter_id", "error": "Must be an integer", "value": raw}],
        )
    return int(raw)


def _target(ids: list[int] | None, **selector: Any) -> str:
    """What an audit entry is about, within the column's 200 characters."""
    if ids is not None:
        text = "ids=" + ",".join(map(str, ids))
    else:
        text = ",".join(
            f"{k}={_iso(v) if isinstance(v, datetime) else v}"
            for k, v in selector.items()
            if v is not None
        )
    return text if len(text) <= 200 else text[:197] + "..."


@api_doc(
    "Dead letters, newest first", query=DeadLetterListParams, responses={200: DeadLetterListOut}
)
@requires("read:config")
async def list_dead_letters(request: Request) -> Response:
    q = parse_query(DeadLetterListParams, request.query_params)
    if q.factory_id is not None:
        require_factory(principal(request), q.factory_id)
    flt = LetterFilter(
        reason=q.reason,
        source=q.source,
        gateway_id=q.gateway_id,
        factory_id=q.factory_id,
        factories=principal(request).factory_list,
        machine_id=q.machine_id,
        replayed=q.replayed,
        since=q.since,
        until=q.until,
    )
    rows, total = await store.list_letters(state(request)["pool"], flt, q.limit, q.offset)
    return JSONResponse(
        {
            "status": "success",
            "dead_letters": [letter_out(r) for r in rows],
            "pagination": page(q.limit, q.offset, len(rows), total),
        }
    )


@api_doc("Dead letters counted by reason and by source", responses={200: DeadLetterStatsOut})
@requires("read:config")
async def dead_letter_stats(request: Request) -> Response:
    scope = _scope(request)
    s = await store.stats(state(request)["pool"], scope)
    if scope.factories is None:  # the gauge counts every factory's letters
        set_pending({r["key"]: int(r["pending"]) for r in s["by_reason"] if r["pending"]})
    return JSONResponse(
        {
            "status": "success",
            "total": s["total"],
            "pending": s["pending"],
            "replayed": s["total"] - s["pending"],
            "oldest": _iso(s["oldest"]),
            "newest": _iso(s["newest"]),
            "by_reason": s["by_reason"],
            "by_source": s["by_source"],
        }
    )


@api_doc(
    "One dead letter with its readings and original payload",
    responses={
        200: DeadLetterEnvelope,
        400: "The id is not an integer",
        404: "No such dead letter",
    },
)
@requires("read:config")
async def get_dead_letter(request: Request) -> Response:
    letter_id = _letter_id(request)
    row = await store.get(state(request)["pool"], letter_id, _scope(request))
    if row is None:
        raise ApiError(404, "Dead letter not found", id=letter_id)
    return JSONResponse({"status": "success", "dead_letter": letter_out(row)})


def _context(request: Request) -> tuple[ValidationContext, int]:
    limits = state(request)["settings"].limits
    ctx = ValidationContext(
        extra_fields=dict(limits.extra_fields),
        max_future_skew_s=limits.max_future_skew_s,
        max_batch_items=limits.max_batch_items,
        max_readings_per_item=limits.max_readings_per_item,
        max_age_s=limits.max_age_s,
    )
    return ctx.with_now(), int(limits.readings_per_message)


Plans = dict[int, tuple[str, list[Envelope]]]


def _plan(
    todo: list[tuple[dict[str, Any], Letter]],
    known: Mapping[str, Machine | None],
    ctx: ValidationContext,
    *,
    per_message: int,
    request_id: str,
) -> tuple[Plans, list[tuple[int, str, Unreplayable]]]:
    """Envelopes to publish per letter (with its reason), and the letters still invalid."""
    plans: Plans = {}
    invalid: list[tuple[int, str, Unreplayable]] = []
    for row, letter in todo:
        try:
            readings = replay_readings(letter, known, ctx)
        except Unreplayable as e:
            invalid.append((letter.id, row["reason"], e))
            continue
        envelopes = pack(
            readings,
            source="replay",
            gateway_id=row["gateway_id"],
            # The original request id, so that logs tie the replay to the first attempt.
            request_id=row["request_id"] or request_id,
            per_message=per_message,
        )
        plans[letter.id] = (row["reason"], envelopes)
    return plans, invalid


@dataclass
class _Replay:
    """What one replay request did, letter by letter."""

    results: dict[int, dict[str, Any]] = field(default_factory=dict)
    refused: list[tuple[int, str, Unreplayable]] = field(default_factory=list)
    published: dict[int, str] = field(default_factory=dict)
    broker_error: BrokerUnavailable | None = None
    planned: int = 0


async def _locked(
    conn: AsyncConnection[Any], body: ReplayIn, run: _Replay, scope: LetterFilter
) -> list[tuple[dict[str, Any], Letter]]:
    """The letters this request may replay (of the caller's factories), locked; the others
    answered (busy, not found, already replayed)."""
    rows = await store.lock_for_replay(
        conn, ids=body.ids, reason=body.reason, limit=body.limit, force=body.force, scope=scope
    )
    if body.ids is not None:
        locked = {r["id"] for r in rows}
        missing = [i for i in dict.fromkeys(body.ids) if i not in locked]
        exist = await store.existing_ids(conn, missing, scope) if missing else set()
        for i in missing:
            run.results[i] = {"id": i, "outcome": "busy" if i in exist else "not_found"}
    todo: list[tuple[dict[str, Any], Letter]] = []
    for row in rows:
        if row["replayed_at"] is not None and not body.force:
            run.results[row["id"]] = {"id": row["id"], "outcome": "already_replayed"}
        else:
            todo.append((row, Letter.from_row(row)))
    return todo


async def _publish(
    publisher: Publisher, plans: dict[int, tuple[str, list[Envelope]]], run: _Replay
) -> None:
    """Publish every planned letter at once; a broker refusal leaves that letter pending."""
    run.planned = len(plans)
    outcomes = await asyncio.gather(
        *(publisher.publish(envelopes) for _, envelopes in plans.values()),
        return_exceptions=True,
    )
    for (letter_id, (reason, envelopes)), outcome in zip(plans.items(), outcomes, strict=True):
        if isinstance(outcome, BrokerUnavailable):
            run.broker_error = outcome
            run.results[letter_id] = {
                "id": letter_id,
                "outcome": "not_published",
                "error": str(outcome),
            }
        elif isinstance(outcome, BaseException):
            raise outcome
        else:
            run.published[letter_id] = reason
            run.results[letter_id] = {
                "id": letter_id,
                "outcome": "replayed",
                "readings": sum(len(e.readings) for e in envelopes),
            }


def _refuse(run: _Replay, invalid: list[tuple[int, str, Unreplayable]]) -> None:
    for letter_id, reason, e in invalid:
        run.refused.append((letter_id, reason, e))
        run.results[letter_id] = {
            "id": letter_id,
            "outcome": "still_invalid",
            "reason": e.reason,
            "error": e.error,
        }


def _replay_answer(body: ReplayIn, run: _Replay) -> Response:
    """200 with every letter's outcome, or 503 with the same body when the broker refused."""
    for reason in run.published.values():
        REPLAYED.labels(reason).inc()
    for _, reason, _ in run.refused:
        REPLAY_REFUSED.labels(reason).inc()
    log.info(
        "replay: %d letters published, %d still invalid, %d not published",
        len(run.published),
        len(run.refused),
        run.planned - len(run.published),
    )
    results = run.results
    ordered = (
        [results[i] for i in dict.fromkeys(body.ids)]
        if body.ids is not None
        else list(results.values())
    )
    payload: dict[str, Any] = {
        "status": "success",
        "replayed": len(run.published),
        "still_invalid": len(run.refused),
        "results": [{"reason": None, "error": None, "readings": 0, **r} for r in ordered],
    }
    if run.broker_error is not None:
        log.warning(
            "replay: broker unavailable: %s", run.broker_error, extra={"dependency": "rabbitmq"}
        )
        raise ApiError(
            503,
            "The message broker cannot take the replay now; unconfirmed letters stay pending",
            headers={"Retry-After": "5"},
            **{k: v for k, v in payload.items() if k != "status"},
        )
    return JSONResponse(payload)


@api_doc(
    "Replay dead letters: validate again, publish to telemetry, mark replayed",
    body=ReplayIn,
    responses={
        200: ReplayOut,
        503: "Broker unavailable: letters not confirmed stay pending (results in the body)",
    },
)
@requires("write:config")
async def replay_dead_letters(request: Request) -> Response:
    body = await parse_body(request, ReplayIn, MAX_BODY_BYTES)
    ctx, per_message = _context(request)
    pool = state(request)["pool"]
    rid = request_id.get() or ""
    run = _Replay()
    async with pool.connection() as conn, conn.transaction():
        todo = await _locked(conn, body, run, _scope(request))
        wanted: set[str] = set()
        for _, letter in todo:
            wanted |= machine_ids(letter)
        # Straight from PostgreSQL, not the cache: a machine registered a moment ago counts.
        known = await MachineRepository(pool).get_many(sorted(wanted))
        plans, invalid = _plan(todo, known, ctx, per_message=per_message, request_id=rid)
        _refuse(run, invalid)
        await _publish(state(request)["publisher"], plans, run)
        await store.mark_replayed(conn, list(run.published))
        await store.mark_still_invalid(
            conn, [(i, f"{e.reason}: {e.error}") for i, _, e in run.refused]
        )
        if run.published or run.refused:
            await audit.record(
                conn,
                audit.Actor.of(request, principal(request)),
                "deadletters.replay",
                _target(body.ids, reason=body.reason, limit=body.limit if body.reason else None),
                None,
                {"replayed": list(run.published), "still_invalid": [i for i, _, _ in run.refused]},
            )
    return _replay_answer(body, run)


@api_doc("Delete dead letters (for good)", body=PurgeIn, responses={200: PurgeOut})
@requires("delete:sensor_data")
async def purge_dead_letters(request: Request) -> Response:
    body = await parse_body(request, PurgeIn, MAX_BODY_BYTES)
    flt = LetterFilter(
        reason=body.reason,
        before=body.before,
        replayed=body.replayed,
        factories=principal(request).factory_list,
    )
    pool = state(request)["pool"]
    async with pool.connection() as conn, conn.transaction():
        by_reason = await store.purge(conn, ids=body.ids, flt=flt)
        deleted = sum(by_reason.values())
        if deleted:
            await audit.record(
                conn,
                audit.Actor.of(request, principal(request)),
                "deadletters.purge",
                _target(body.ids, reason=body.reason, before=body.before, replayed=body.replayed),
                {"deleted": deleted, "by_reason": by_reason},
                None,
            )
    for reason, n in by_reason.items():
        PURGED.labels(reason).inc(n)
    log.info("purge: %d dead letters deleted", deleted)
    return JSONResponse({"status": "success", "deleted": deleted, "by_reason": by_reason})


def deadletter_routes() -> list[Route]:
    return resource_routes(
        "/api/v1/deadletters",
        {
            "": {"GET": list_dead_letters},
            "/stats": {"GET": dead_letter_stats},
            "/replay": {"POST": replay_dead_letters},
            "/purge": {"POST": purge_dead_letters},
            # After the fixed paths: "stats" is no letter id.
            "/{letter_id}": {"GET": get_dead_letter},
        },
    )
