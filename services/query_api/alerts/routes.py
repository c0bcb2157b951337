"""Alert and rule endpoints; the decisions (filters, transitions) are in :mod:`.queries`.

Factories: a caller sees the alerts of its factories, and the rules of its factories plus those
of every factory; an alert or rule of another factory answers 404 as an unknown one. A rule of
every factory is changed only with a token of every factory (403); a new or changed rule names
a factory of the caller (403 otherwise), or is a machine's rule and takes the machine's factory.
"""

from __future__ import annotations

from functools import partial
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
from services.query_api.params import path_uuid
from services.query_api.scope import OUTSIDE, principal, require_every_factory, require_factory
from services.query_api.state import state
from shared import alert_events, audit
from shared.auth.verify import Principal
from shared.db import fetch_page
from shared.http import ApiError, JSONResponse, read_json, requires, resource_routes
from shared.machines import valid_uuid
from shared.openapi import doc
from shared.params import parse_query
from shared.readings import field_errors
from shared.schemas import page

api_doc = partial(doc, tags=["alerts"])  # this module's OpenAPI tag
ACKNOWLEDGED = {200: AlertEnvelope, 404: "No such alert", 409: "Already acknowledged or cleared"}
CLEARED = {200: AlertEnvelope, 404: "No such alert", 409: "Already cleared"}

MAX_BODY_BYTES = 16 * 1024


async def _body(request: Request, model: type[BaseModel]) -> Any:
    raw = await read_json(request, MAX_BODY_BYTES)
    if not raw.strip():
        raw = b"{}"
    try:
        return model.model_validate_json(raw)
    except ValidationError as e:
        raise ApiError(400, "Validation failed", [f.as_dict() for f in field_errors(e)]) from None


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
    await alert_events.publish(state(request)["live"].exchange, event, alert)


@api_doc("Alerts of your factories, filtered", query=AlertParams, responses={200: AlertListOut})
@requires("read:alerts")
async def list_alerts(request: Request) -> Response:
    q = parse_query(AlertParams, request.query_params)
    caller = principal(request)
    if q.factory_id is not None:
        require_factory(caller, q.factory_id)
    where, args = queries.alert_filters(q, caller)
    async with state(request)["pool"].connection() as conn:
        found, total = await fetch_page(
            conn, "alerts", where, args, order_by=queries.URGENCY, limit=q.limit, offset=q.offset
        )
    rows = [queries.alert_out(r) for r in found]
    return JSONResponse(
        {
            "status": "success",
            "alerts": rows,
            "pagination": page(q.limit, q.offset, len(rows), total),
        }
    )


async def _alert(cur: Any, request: Request, alert_id: int, *, lock: bool = False) -> Any:
    """The alert when the caller may see it; 404 otherwise (another factory's too)."""
    scope, args = queries.alert_scope(principal(request))
    await cur.execute(
        f"SELECT * FROM alerts WHERE id = %s AND {scope}" + (" FOR UPDATE" if lock else ""),
        [alert_id, *args],
    )
    row = await cur.fetchone()
    if row is None:
        raise ApiError(404, "Alert not found")
    return row


@api_doc("One alert", responses={200: AlertEnvelope, 404: "No such alert"})
@requires("read:alerts")
async def get_alert(request: Request) -> Response:
    async with state(request)["pool"].connection() as conn:
        row = await _alert(conn.cursor(row_factory=dict_row), request, _alert_id(request))
    return JSONResponse({"status": "success", "alert": queries.alert_out(row)})


async def _transition(request: Request, target: str) -> Response:
    alert_id = _alert_id(request)
    body: AlertActionIn = await _body(request, AlertActionIn)
    caller = principal(request)
    async with state(request)["pool"].connection() as conn:
        cur = conn.cursor(row_factory=dict_row)
        before = await _alert(cur, request, alert_id, lock=True)
        problem = queries.transition_problem(before["state"], target)
        if problem:
            raise ApiError(409, problem, state=before["state"])
        sql, args = queries.transition_sql(target, alert_id, caller.username, body.note)
        await cur.execute(sql, args)
        after = await cur.fetchone()
        assert after is not None
        await audit.record(
            conn,
            audit.Actor.of(request, caller),
            f"alert.{'acknowledge' if target == 'acknowledged' else 'clear'}",
            f"alert:{alert_id}",
            {"state": before["state"]},
            {"state": after["state"], "note": body.note},
        )
    alert = queries.alert_out(after)
    await _announce(request, target, alert)
    return JSONResponse({"status": "success", "alert": alert})


@api_doc("Acknowledge an alert (who, when, a note)", body=AlertActionIn, responses=ACKNOWLEDGED)
@requires("ack:alerts")
async def acknowledge(request: Request) -> Response:
    return await _transition(request, "acknowledged")


@api_doc("Clear an alert by hand (who, when, a note)", body=AlertActionIn, responses=CLEARED)
@requires("ack:alerts")
async def clear(request: Request) -> Response:
    return await _transition(request, "cleared")


@api_doc("Alert rules of your factories, and those of every factory", responses={200: RuleListOut})
@requires("read:alerts")
async def list_rules(request: Request) -> Response:
    scope, args = queries.rule_scope(principal(request))
    async with state(request)["pool"].connection() as conn:
        cur = conn.cursor(row_factory=dict_row)
        await cur.execute(f"SELECT * FROM alert_rules WHERE {scope} ORDER BY created_at, id", args)
        rows = [queries.rule_out(r) for r in await cur.fetchall()]
    return JSONResponse({"status": "success", "rules": rows})


async def _rule_factory(cur: Any, caller: Principal, rule: RuleIn) -> str | None:
    """The factory a new or changed rule belongs to, within the caller's scope: the one it
    names, or its machine's (a machine of another factory is unknown: 404)."""
    factory = rule.factory_id
    if rule.scope_type == "machine" and rule.scope_value is not None:
        if not valid_uuid(rule.scope_value):
            error = {"field": "scope_value", "error": "Must be a machine id (UUID)"}
            raise ApiError(400, "Validation failed", [error])
        await cur.execute(
            "SELECT factory_id FROM machine_metadata WHERE id = %s", (rule.scope_value,)
        )
        row = await cur.fetchone()
        if row is not None and caller.sees_factory(row["factory_id"]):
            if factory not in (None, row["factory_id"]):
                error = {"field": "factory_id", "error": "Must be the machine's factory"}
                raise ApiError(400, "Validation failed", [error])
            return str(row["factory_id"])
        if row is not None or caller.factories is not None:
            raise ApiError(404, "Machine not found", machine_id=rule.scope_value)
    if factory is None:
        require_every_factory(caller, "a rule of every factory (name a factory_id)")
    else:
        require_factory(caller, factory)
    return factory


@api_doc("Create an alert rule", body=RuleIn, responses={201: RuleEnvelope, 403: OUTSIDE})
@requires("write:alert_rules")
async def create_rule(request: Request) -> Response:
    rule: RuleIn = await _body(request, RuleIn)
    caller = principal(request)
    async with state(request)["pool"].connection() as conn:
        cur = conn.cursor(row_factory=dict_row)
        values = {**rule.model_dump(), "factory_id": await _rule_factory(cur, caller, rule)}
        cols = ", ".join(values)
        marks = ", ".join(["%s"] * len(values))
        await cur.execute(
            f"INSERT INTO alert_rules ({cols}, created_by) VALUES ({marks}, %s) RETURNING *",
            [*values.values(), caller.username],
        )
        row = await cur.fetchone()
        assert row is not None
        await audit.record(
            conn,
            audit.Actor.of(request, caller),
            "alert_rule.create",
            f"rule:{row['id']}",
            None,
            values,
        )
    return JSONResponse({"status": "success", "rule": queries.rule_out(row)}, status_code=201)


async def _rule_to_change(cur: Any, caller: Principal, rule_id: str) -> dict[str, Any]:
    """The rule, locked, when the caller may change it: 404 when it cannot see it, 403 for a
    rule of every factory without a token of every factory, 409 for a setting's rule."""
    scope, args = queries.rule_scope(caller)
    await cur.execute(
        f"SELECT * FROM alert_rules WHERE id = %s AND {scope} FOR UPDATE", [rule_id, *args]
    )
    before = await cur.fetchone()
    if before is None:
        raise ApiError(404, "Rule not found")
    if before["factory_id"] is None:
        require_every_factory(caller, "a rule of every factory")
    if before["managed_by"]:
        raise ApiError(
            409,
            f"This rule follows the setting {before['managed_by']}: change the setting instead",
        )
    return dict(before)


async def _close_open_alerts(
    cur: Any, rule_id: str, username: str, why: str
) -> list[dict[str, Any]]:
    await cur.execute(
        "UPDATE alerts SET state = 'cleared', cleared_at = now(), cleared_by = %s,"
        " ack_note = coalesce(ack_note, %s), updated_at = now()"
        " WHERE rule_id = %s AND state <> 'cleared' RETURNING *",
        (username, why, rule_id),
    )
    return [queries.alert_out(r) for r in await cur.fetchall()]


@api_doc(
    "Replace an alert rule (a disabled rule's open alerts are cleared)",
    body=RuleIn,
    responses={200: RuleEnvelope, 404: "No such rule", 409: "Kept by a config setting"},
)
@requires("write:alert_rules")
async def update_rule(request: Request) -> Response:
    rule_id = path_uuid(request, "rule_id")
    rule: RuleIn = await _body(request, RuleIn)
    caller = principal(request)
    cleared: list[dict[str, Any]] = []
    async with state(request)["pool"].connection() as conn:
        cur = conn.cursor(row_factory=dict_row)
        before = await _rule_to_change(cur, caller, rule_id)
        values = {**rule.model_dump(), "factory_id": await _rule_factory(cur, caller, rule)}
        sets = ", ".join(f"{k} = %s" for k in values)
        await cur.execute(
            f"UPDATE alert_rules SET {sets}, updated_at = now() WHERE id = %s RETURNING *",
            [*values.values(), rule_id],
        )
        row = await cur.fetchone()
        assert row is not None
        if not rule.enabled:
            cleared = await _close_open_alerts(cur, rule_id, caller.username, "rule disabled")
        await audit.record(
            conn,
            audit.Actor.of(request, caller),
            "alert_rule.update",
            f"rule:{rule_id}",
            orjson.loads(orjson.dumps(queries.rule_out(before))),
            values,
        )
    for alert in cleared:
        await _announce(request, "cleared", alert)
    return JSONResponse({"status": "success", "rule": queries.rule_out(row)})


@api_doc(
    "Delete an alert rule (its open alerts are cleared; past alerts are kept)",
    responses={204: "Deleted", 404: "No such rule", 409: "Kept by a config setting"},
)
@requires("delete:alert_rules")
async def delete_rule(request: Request) -> Response:
    rule_id = path_uuid(request, "rule_id")
    caller = principal(request)
    async with state(request)["pool"].connection() as conn:
        cur = conn.cursor(row_factory=dict_row)
        before = await _rule_to_change(cur, caller, rule_id)
        cleared = await _close_open_alerts(cur, rule_id, caller.username, "rule deleted")
        await cur.execute("DELETE FROM alert_rules WHERE id = %s", (rule_id,))
        await audit.record(
            conn,
            audit.Actor.of(request, caller),
            "alert_rule.delete",
            f"rule:{rule_id}",
            queries.rule_out(before),
            None,
        )
    for alert in cleared:
        await _announce(request, "cleared", alert)
    return Response(status_code=204)


def alert_routes() -> list[Route]:
    return resource_routes(
        "/api/v1/alerts",
        {
            "": {"GET": list_alerts},
            # Before /{alert_id}: "rules" is no alert id.
            "/rules": {"GET": list_rules, "POST": create_rule},
            "/rules/{rule_id}": {"PUT": update_rule, "DELETE": delete_rule},
            "/{alert_id}": {"GET": get_alert},
            "/{alert_id}/acknowledge": {"POST": acknowledge},
            "/{alert_id}/clear": {"POST": clear},
        },
    )
