"""Runtime configuration with an audit trail (README "Using it"), mounted by the query API.

    GET  /api/v1/config              read:config   every setting, or ?name=
    POST /api/v1/config/update       write:config  {"setting_name": ..., "setting_value": ...}
    GET  /api/v1/audit               read:users    the audit log, newest first

Every change is written to ``audit_log`` in the same transaction as the change: who (user id,
username, role), what (setting, old value, new value), when, and from where (client address,
user agent, request id). An update that changes nothing is answered but not audited.

The audit log is guarded by ``read:users`` (Management only): it records personal data about
users (who did what, from which address), and it also holds user and gateway administration
entries written by the auth service. The role table has no dedicated audit permission.

Factories: settings and the audit log span every factory. Reading the settings needs only
``read:config``; changing one, or reading the audit log, needs a token of every factory too
(403 otherwise; README "Factories: what a token sees").

Needs ``request.state.pool`` (psycopg ``AsyncConnectionPool``) and ``request.state.authorizer``.
"""

from __future__ import annotations

import re
from functools import partial
from typing import Any

import orjson
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from services.query_api.config.schemas import (
    AuditOut,
    AuditParams,
    ConfigOut,
    ConfigParams,
    ConfigUpdateIn,
    ConfigUpdateOut,
)
from services.query_api.scope import principal as caller
from services.query_api.scope import require_every_factory
from services.query_api.state import state
from shared import audit
from shared.db import fetch_page
from shared.http import ApiError, JSONResponse, read_json, requires, resource_routes
from shared.openapi import doc
from shared.params import parse_query
from shared.schemas import page
from shared.timefmt import row_iso as _iso

api_doc = partial(doc, tags=["config"])  # this module's OpenAPI tag

SETTING_NAME_RE = re.compile(r"^[a-z][a-z0-9_.-]{0,99}$")
MAX_BODY_BYTES = 64 * 1024
MAX_VALUE_BYTES = 16 * 1024


def _renderable(value: Any) -> Any:
    """A JSON value as stored, with integers too wide for 64 bits as floats. PostgreSQL's
    jsonb keeps e.g. 1e29 as the integer 1000...0, which the JSON encoder refuses (500)."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value if -(2**63) <= value < 2**64 else float(value)
    if isinstance(value, list):
        return [_renderable(v) for v in value]
    if isinstance(value, dict):
        return {k: _renderable(v) for k, v in value.items()}
    return value


def _setting(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": row["name"],
        "value": _renderable(row["value"]),
        "updated_at": _iso(row["updated_at"]),
        "updated_by": row["updated_by_username"],
    }


def parse_update(body: Any) -> tuple[str, Any]:
    """(name, value) of an update body; :class:`ApiError` 400 naming every problem."""
    if not isinstance(body, dict):
        raise ApiError(400, "The JSON body must be an object")
    errors = []
    name = body.get("setting_name")
    if not isinstance(name, str) or not SETTING_NAME_RE.fullmatch(name):
        errors.append(
            {
                "field": "setting_name",
                "error": "Required: 1-100 characters, lower-case letters, digits, '_', '.', '-'",
                "value": name,
            }
        )
    if "setting_value" not in body or body["setting_value"] is None:
        errors.append({"field": "setting_value", "error": "Required (any JSON value but null)"})
    elif len(orjson.dumps(body["setting_value"])) > MAX_VALUE_BYTES:
        errors.append({"field": "setting_value", "error": f"Larger than {MAX_VALUE_BYTES} bytes"})
    unknown = sorted(set(body) - {"setting_name", "setting_value"})
    errors.extend({"field": field, "error": "Unknown field"} for field in unknown)
    if errors:
        raise ApiError(400, "Validation failed", errors)
    assert isinstance(name, str)
    return name, body["setting_value"]


async def _json_body(request: Request) -> Any:
    raw = await read_json(request, MAX_BODY_BYTES)
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as e:
        raise ApiError(400, "Malformed JSON body") from e


@api_doc(
    "Runtime configuration", query=ConfigParams, responses={200: ConfigOut, 404: "No such setting"}
)
@requires("read:config")
async def get_config(request: Request) -> Response:
    name = request.query_params.get("name")
    async with state(request)["pool"].connection() as conn:
        cur = conn.cursor(row_factory=dict_row)
        if name is None:
            await cur.execute("SELECT * FROM config_settings ORDER BY name")
        else:
            await cur.execute("SELECT * FROM config_settings WHERE name = %s", (name,))
        rows = await cur.fetchall()
    if name is not None and not rows:
        raise ApiError(404, f"Setting {name} not found")
    return JSONResponse({"status": "success", "settings": [_setting(r) for r in rows]})


@api_doc("Change one setting (audited)", body=ConfigUpdateIn, responses={200: ConfigUpdateOut})
@requires("write:config")
async def update_config(request: Request) -> Response:
    principal = caller(request)
    require_every_factory(principal, "configuration changes apply to every factory")
    name, value = parse_update(await _json_body(request))
    async with state(request)["pool"].connection() as conn:
        # Serialize writers of one setting, including its first insert (nothing to row-lock),
        # so that every audit entry's old value is the value it really replaced.
        await conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"config:{name}",))
        cur = conn.cursor(row_factory=dict_row)
        await cur.execute("SELECT * FROM config_settings WHERE name = %s", (name,))
        before = await cur.fetchone()
        if before is not None and before["value"] == value:
            return JSONResponse(
                {
                    "status": "success",
                    "message": "Configuration unchanged",
                    "changed": False,
                    "updated_setting": _setting(before),
                }
            )
        await cur.execute(
            "INSERT INTO config_settings (name, value, updated_by, updated_by_username)"
            " VALUES (%s, %s, %s, %s)"
            " ON CONFLICT (name) DO UPDATE SET value = EXCLUDED.value, updated_at = now(),"
            " updated_by = EXCLUDED.updated_by,"
            " updated_by_username = EXCLUDED.updated_by_username"
            " RETURNING *",
            (name, Jsonb(value), principal.sub, principal.username),
        )
        after = await cur.fetchone()
        assert after is not None
        old_value = before["value"] if before is not None else None
        await audit.record(
            conn, audit.Actor.of(request, principal), "config.update", name, old_value, value
        )
    return JSONResponse(
        {
            "status": "success",
            "message": "Configuration updated",
            "changed": True,
            "updated_setting": {**_setting(after), "old_value": _renderable(old_value)},
        }
    )


@api_doc("The audit log (Management)", query=AuditParams, responses={200: AuditOut})
@requires("read:users")
async def audit_log(request: Request) -> Response:
    require_every_factory(caller(request), "the audit log spans every factory")
    q = parse_query(AuditParams, request.query_params)
    clause, values = q.where()
    limit, offset = q.limit, q.offset
    async with state(request)["pool"].connection() as conn:
        rows, total = await fetch_page(
            conn,
            "audit_log",
            clause,
            values,
            order_by="occurred_at DESC, id DESC",
            limit=limit,
            offset=offset,
        )
    entries = [
        {
            "id": r["id"],
            "time": _iso(r["occurred_at"]),
            "user_id": r["actor_id"],
            "username": r["actor_username"],
            "role": r["actor_role"],
            "action": r["action"],
            "target": r["target"],
            "old_value": _renderable(r["old_value"]),
            "new_value": _renderable(r["new_value"]),
            "client_address": r["client_address"],
            "user_agent": r["user_agent"],
            "request_id": r["request_id"],
        }
        for r in rows
    ]
    return JSONResponse(
        {
            "status": "success",
            "entries": entries,
            "pagination": page(limit, offset, len(entries), total),
        }
    )


def config_routes() -> list[Route]:
    return resource_routes(
        "/api/v1",
        {
            "/config": {"GET": get_config},
            "/config/update": {"POST": update_config},
            "/audit": {"GET": audit_log},
        },
    )
