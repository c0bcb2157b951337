"""The alerts API's decisions, pure: filters to SQL, which transitions are allowed, output."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from services.query_api.alerts.schemas import AlertParams
from shared.auth.verify import Principal

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


def alert_scope(p: Principal) -> tuple[str, list[Any]]:
    """Alerts of the caller's factories (an alert recorded without a factory: every factory's)."""
    factories = p.factory_list
    return ("true", []) if factories is None else ("factory_id = ANY(%s)", [factories])


def rule_scope(p: Principal) -> tuple[str, list[Any]]:
    """Rules the caller sees: its factories' and those of every factory (which apply to its
    machines too; changing them needs a token of every factory)."""
    factories = p.factory_list
    if factories is None:
        return "true", []
    return "(factory_id IS NULL OR factory_id = ANY(%s))", [factories]


def alert_filters(q: AlertParams, p: Principal) -> tuple[str, list[Any]]:
    """(WHERE clause, its arguments) of a list of alerts, within the caller's factories."""
    scope, args = alert_scope(p)
    where = [scope]
    if q.state == "open":
        where.append("state <> 'cleared'")
    elif q.state is not None:
        where.append("state = %s")
        args.append(q.state)
    if q.severity is not None:
        where.append("severity = ANY(%s)")
        args.append(q.severity.split(","))
    for column in ("machine_id", "rule_id", "factory_id"):
        value = getattr(q, column)
        if value is not None:
            where.append(f"{column} = %s")
            args.append(value)
    for value, op in ((q.since, ">="), (q.until, "<")):
        if value is not None:
            where.append(f"raised_at {op} %s")
            args.append(value)
    return " AND ".join(where), args


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
