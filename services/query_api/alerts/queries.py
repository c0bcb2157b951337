"""The alerts API's decisions, pure: filters to SQL, which transitions are allowed, output."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from starlette.datastructures import QueryParams

from shared.alert_events import SEVERITIES
from shared.http import ApiError
from shared.machines import valid_uuid

STATES = ("active", "acknowledged", "cleared", "open")
MAX_LIMIT = 500
# Open before cleared, the most severe first, the newest first.
URGENCY = (
    "(state = 'cleared'), array_position(ARRAY['critical','major','minor','warning']::text[],"
    " severity::text), raised_at DESC, id DESC"
)


def _iso(value: Any) -> Any:
    return value.isoformat().replace("+00:00", "Z") if isinstance(value, datetime) else value


def alert_out(row: dict[str, Any]) -> dict[str, Any]:
    out = {k: _iso(v) for k, v in row.items() if k not in ("created_at", "updated_at", "ended_at")}
    for k in ("rule_id", "machine_id"):
        if out.get(k) is not None:
            out[k] = str(out[k])
    return out


def rule_out(row: dict[str, Any]) -> dict[str, Any]:
    out = {k: _iso(v) for k, v in row.items()}
    out["id"] = str(out["id"])
    return out


def _time(value: str, name: str, errors: list[dict[str, Any]]) -> datetime | None:
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        parsed = None
    if parsed is None or parsed.tzinfo is None:
        errors.append({"parameter": name, "error": "ISO 8601 with a zone", "value": value})
        return None
    return parsed


def alert_filters(params: QueryParams) -> tuple[str, list[Any], int, int]:
    """(WHERE clause, its arguments, limit, offset); 400 naming every bad parameter."""
    errors: list[dict[str, Any]] = []
    where: list[str] = ["true"]
    args: list[Any] = []
    state = params.get("state")
    if state:
        if state not in STATES:
            errors.append(
                {"parameter": "state", "error": "One of: " + ", ".join(STATES), "value": state}
            )
        elif state == "open":
            where.append("state <> 'cleared'")
        else:
            where.append("state = %s")
            args.append(state)
    severity = params.get("severity")
    if severity:
        wanted = [s.strip() for s in severity.split(",") if s.strip()]
        bad = [s for s in wanted if s not in SEVERITIES]
        if bad:
            errors.append(
                {
                    "parameter": "severity",
                    "error": "One of: " + ", ".join(SEVERITIES),
                    "value": bad[0],
                }
            )
        else:
            where.append("severity = ANY(%s)")
            args.append(wanted)
    for name in ("machine_id", "rule_id"):
        value = params.get(name)
        if value:
            if not valid_uuid(value):
                errors.append({"parameter": name, "error": "Must be a UUID", "value": value})
            else:
                where.append(f"{name} = %s")
                args.append(value)
    for name, op in (("since", ">="), ("until", "<")):
        value = params.get(name)
        if value:
            at = _time(value, name, errors)
            if at is not None:
                where.append(f"raised_at {op} %s")
                args.append(at)
    limit = offset = 0
    for name, default, high in (("limit", 100, MAX_LIMIT), ("offset", 0, 10**9)):
        raw = params.get(name, str(default))
        if not raw.isdigit() or int(raw) > high or (name == "limit" and int(raw) < 1):
            errors.append({"parameter": name, "error": f"Integer up to {high}", "value": raw})
        elif name == "limit":
            limit = int(raw)
        else:
            offset = int(raw)
    if errors:
        raise ApiError(400, "Invalid query parameters", errors)
    return " AND ".join(where), args, limit, offset


def transition_problem(state: str, target: str) -> str | None:
    """Why ``state`` cannot go to ``target`` (active -> acknowledged -> cleared), or None."""
    if state == "cleared":
        return "The alert is already cleared"
    if target == "acknowledged" and state == "acknowledged":
        return "The alert is already acknowledged"
    return None


def transition_sql(
    target: str, alert_id: int, username: str, note: str | None
) -> tuple[str, tuple[Any, ...]]:
    if target == "acknowledged":
        return (
            "UPDATE alerts SET state = 'acknowledged', acknowledged_at = now(),"
            " acknowledged_by = %s, ack_note = %s, updated_at = now() WHERE id = %s RETURNING *",
            (username, note, alert_id),
        )
    return (
        "UPDATE alerts SET state = 'cleared', cleared_at = now(), cleared_by = %s,"
        " ack_note = coalesce(%s, ack_note), updated_at = now() WHERE id = %s RETURNING *",
        (username, note, alert_id),
    )
