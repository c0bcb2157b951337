"""Alert and rule endpoints; the decisions (filters, transitions) are in :mod:`.queries`."""

from __future__ import annotations

from typing import Any

import orjson
from psycopg.rows import dict_row
from pydantic import BaseModel, ValidationError
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from services.query_api.alerts import queries
from services.query_api.alerts.schemas import (
    AlertActionIn,
    AlertEnvelope,
    AlertListOut,
    AlertParams,
    RuleEnvelope,
    RuleIn,
    RuleListOut,
)
from shared import alert_events, audit
from shared.auth.verify import Principal
from shared.http import ApiError, JSONResponse, read_json, requires
from shared.machines import valid_uuid
from shared.openapi import doc
from shared.readings import field_errors

MAX_BODY_BYTES = 16 * 1024


async def _body(request: Request, model: type[BaseModel]) -> Any:
    raw = await read_json(request, MAX_BODY_BYTES)
    if not raw.strip():
        raw = b"{}"
    try:
        return model.model_validate_json(raw)
    except ValidationError as e:
        raise ApiError(400, "Validation failed", [f.as_dict() for f in field_errors(e)]) from None


def _rule_id(request: Request) -> str:
    rid = str(request.path_params["rule_id"])
    if not valid_uuid(rid):
        raise ApiError(
            400,
            "Invalid path parameter",
            [{"parameter": "rule_id", "error": "Must be a UUID", "value": rid}],
        )
    return rid


def _alert_id(request: Request) -> int:
    raw = str(request.path_params["alert_id"])
    if not raw.isdigit() or len(raw) > 18:
        raise ApiError(
            400,
            "Invalid path parameter",
            [{"parameter": "alert_id", "error": "Must be a positive integer", "value": raw}],
        )
    return int(raw)


async def _announce(request: Request, event: str, alert: dict[str, Any]) -> None:
    # After the commit: the live stream and the notifier see what PostgreSQL holds.
    await alert_events.publish(request.state.live.exchange, event, alert)


@doc(
    "Alerts, filtered (state, severity, machine, rule, time)",
    query=AlertParams,
    responses={200: AlertListOut},
    tags=["alerts"],
)
@requires("read:alerts")
async def list_alerts(request: Request) -> Response:
    where, args, limit, offset = queries.alert_filters(request.query_params)
    async with request.state.pool.connection() as conn:
        cur = conn.cursor(row_factory=dict_row)
        await cur.execute(f"SELECT count(*) AS n FROM alerts WHERE {where}", args)
        total = (await cur.fetchone())["n"]
        await cur.execute(
            f"SELECT * FROM alerts WHERE {where} ORDER BY {queries.URGENCY} LIMIT %s OFFSET %s",
            [*args, limit, offset],
        )
        rows = [queries.alert_out(r) for r in await cur.fetchall()]
    return JSONResponse(
        {
            "status": "success",
            "alerts": rows,
            "pagination": {
                "limit": limit,
                "offset": offset,
                "returned_records": len(rows),
                "total_records": total,
                "has_more": offset + len(rows) < total,
            },
        }
    )


@doc("One alert", responses={200: AlertEnvelope, 404: "No such alert"}, tags=["alerts"])
@requires("read:alerts")
async def get_alert(request: Request) -> Response:
    async with request.state.pool.connection() as conn:
        cur = conn.cursor(row_factory=dict_row)
        await cur.execute("SELECT * FROM alerts WHERE id = %s", (_alert_id(request),))
        row = await cur.fetchone()
    if row is None:
        raise ApiError(404, "Alert not found")
    return JSONResponse({"status": "success", "alert": queries.alert_out(row)})


async def _transition(request: Request, target: str) -> Response:
    alert_id = _alert_id(request)
    body: AlertActionIn = await _body(request, AlertActionIn)
    principal: Principal = request.state.principal
    async with request.state.pool.connection() as conn:
        cur = conn.cursor(row_factory=dict_row)
        await cur.execute("SELECT * FROM alerts WHERE id = %s FOR UPDATE", (alert_id,))
        before = await cur.fetchone()
        if before is None:
            raise ApiError(404, "Alert not found")
        problem = queries.transition_problem(before["state"], target)
        if problem:
            raise ApiError(409, problem, state=before["state"])
        sql, args = queries.transition_sql(target, alert_id, principal.username, body.note)
        await cur.execute(sql, args)
        after = await cur.fetchone()
        assert after is not None
        await audit.record(
            conn,
            audit.Actor.of(request, principal),
            f"alert.{'acknowledge' if target == 'acknowledged' else 'clear'}",
            f"alert:{alert_id}",
            {"state": before["state"]},
            {"state": after["state"], "note": body.note},
        )
    alert = queries.alert_out(after)
    await _announce(request, target, alert)
    return JSONResponse({"status": "success", "alert": alert})


@doc(
    "Acknowledge an alert (who and when are recorded, with an optional note)",
    body=AlertActionIn,
    responses={200: AlertEnvelope, 404: "No such alert", 409: "Already acknowledged or cleared"},
    tags=["alerts"],
)
@requires("ack:alerts")
async def acknowledge(request: Request) -> Response:
    return await _transition(request, "acknowledged")


@doc(
    "Clear an alert by hand (who and when are recorded, with an optional note)",
    body=AlertActionIn,
    responses={200: AlertEnvelope, 404: "No such alert", 409: "Already cleared"},
    tags=["alerts"],
)
@requires("ack:alerts")
async def clear(request: Request) -> Response:
    return await _transition(request, "cleared")


@doc("Alert rules", responses={200: RuleListOut}, tags=["alerts"])
@requires("read:alerts")
async def list_rules(request: Request) -> Response:
    async with request.state.pool.connection() as conn:
        cur = conn.cursor(row_factory=dict_row)
        await cur.execute("SELECT * FROM alert_rules ORDER BY created_at, id")
        rows = [queries.rule_out(r) for r in await cur.fetchall()]
    return JSONResponse({"status": "success", "rules": rows})


@doc(
    "Create an alert rule (the alerter applies it within seconds)",
    body=RuleIn,
    responses={201: RuleEnvelope},
    tags=["alerts"],
)
@requires("write:alert_rules")
async def create_rule(request: Request) -> Response:
    rule: RuleIn = await _body(request, RuleIn)
    principal: Principal = request.state.principal
    values = rule.model_dump()
    async with request.state.pool.connection() as conn:
        cur = conn.cursor(row_factory=dict_row)
        cols = ", ".join(values)
        marks = ", ".join(["%s"] * len(values))
        await cur.execute(
            f"INSERT INTO alert_rules ({cols}, created_by) VALUES ({marks}, %s) RETURNING *",
            [*values.values(), principal.username],
        )
        row = await cur.fetchone()
        assert row is not None
        await audit.record(
            conn,
            audit.Actor.of(request, principal),
            "alert_rule.create",
            f"rule:{row['id']}",
            None,
            values,
        )
    return JSONResponse({"status": "success", "rule": queries.rule_out(row)}, status_code=201)


async def _managed_guard(cur: Any, rule_id: str) -> dict[str, Any]:
    await cur.execute("SELECT * FROM alert_rules WHERE id = %s FOR UPDATE", (rule_id,))
    before = await cur.fetchone()
    if before is None:
        raise ApiError(404, "Rule not found")
    if before["managed_by"]:
        raise ApiError(
            409,
            f"This rule follows the setting {before['managed_by']}: change the setting instead",
        )
    return dict(before)


async def _close_open_alerts(
    cur: Any, request: Request, rule_id: str, username: str, why: str
) -> list[dict[str, Any]]:
    await cur.execute(
        "UPDATE alerts SET state = 'cleared', cleared_at = now(), cleared_by = %s,"
        " ack_note = coalesce(ack_note, %s), updated_at = now()"
        " WHERE rule_id = %s AND state <> 'cleared' RETURNING *",
        (username, why, rule_id),
    )
    return [queries.alert_out(r) for r in await cur.fetchall()]


@doc(
    "Replace an alert rule (a disabled rule's open alerts are cleared)",
    body=RuleIn,
    responses={200: RuleEnvelope, 404: "No such rule", 409: "Kept by a config setting"},
    tags=["alerts"],
)
@requires("write:alert_rules")
async def update_rule(request: Request) -> Response:
    rule_id = _rule_id(request)
    rule: RuleIn = await _body(request, RuleIn)
    principal: Principal = request.state.principal
    values = rule.model_dump()
    cleared: list[dict[str, Any]] = []
    async with request.state.pool.connection() as conn:
        cur = conn.cursor(row_factory=dict_row)
        before = await _managed_guard(cur, rule_id)
        sets = ", ".join(f"{k} = %s" for k in values)
        await cur.execute(
            f"UPDATE alert_rules SET {sets}, updated_at = now() WHERE id = %s RETURNING *",
            [*values.values(), rule_id],
        )
        row = await cur.fetchone()
        assert row is not None
        if not rule.enabled:
            cleared = await _close_open_alerts(
                cur, request, rule_id, principal.username, "rule disabled"
            )
        await audit.record(
            conn,
            audit.Actor.of(request, principal),
            "alert_rule.update",
            f"rule:{rule_id}",
            orjson.loads(orjson.dumps(queries.rule_out(before))),
            values,
        )
    for alert in cleared:
        await _announce(request, "cleared", alert)
    return JSONResponse({"status": "success", "rule": queries.rule_out(row)})


@doc(
    "Delete an alert rule (its open alerts are cleared; past alerts are kept)",
    responses={204: "Deleted", 404: "No such rule", 409: "Kept by a config setting"},
    tags=["alerts"],
)
@requires("delete:alert_rules")
async def delete_rule(request: Request) -> Response:
    rule_id = _rule_id(request)
    principal: Principal = request.state.principal
    async with request.state.pool.connection() as conn:
        cur = conn.cursor(row_factory=dict_row)
        before = await _managed_guard(cur, rule_id)
        cleared = await _close_open_alerts(
            cur, request, rule_id, principal.username, "rule deleted"
        )
        await cur.execute("DELETE FROM alert_rules WHERE id = %s", (rule_id,))
        await audit.record(
            conn,
            audit.Actor.of(request, principal),
            "alert_rule.delete",
            f"rule:{rule_id}",
            queries.rule_out(before),
            None,
        )
    for alert in cleared:
        await _announce(request, "cleared", alert)
    return Response(status_code=204)


def alert_routes() -> list[Route]:
    return [
        Route("/api/v1/alerts", list_alerts, methods=["GET"]),
        Route("/api/v1/alerts/rules", list_rules, methods=["GET"]),
        Route("/api/v1/alerts/rules", create_rule, methods=["POST"]),
        Route("/api/v1/alerts/rules/{rule_id}", update_rule, methods=["PUT"]),
        Route("/api/v1/alerts/rules/{rule_id}", delete_rule, methods=["DELETE"]),
        Route("/api/v1/alerts/{alert_id}", get_alert, methods=["GET"]),
        Route("/api/v1/alerts/{alert_id}/acknowledge", acknowledge, methods=["POST"]),
        Route("/api/v1/alerts/{alert_id}/clear", clear, methods=["POST"]),
    ]
