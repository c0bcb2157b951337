"""Alerts and rules in PostgreSQL. Opening is idempotent per episode: whoever asks (a replica
after a fail-over, a reading delivered twice), one (rule, machine) has at most one open alert, and
a reading inside an episode already recorded opens nothing."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

from services.alerter.rules import Action, Rule

DEFAULT_RULE = "max_temperature_threshold"
SYSTEM = "alerter"


def ns_to_dt(ns: int) -> datetime:
    return datetime.fromtimestamp(ns / 1e9, UTC)


def alert_out(row: dict[str, Any]) -> dict[str, Any]:
    """An alert as the API, the live stream, MQTT and webhooks show it."""
    out: dict[str, Any] = {}
    for k, v in row.items():
        if isinstance(v, datetime):
            out[k] = v.isoformat().replace("+00:00", "Z")
        elif k in ("rule_id", "machine_id") and v is not None:
            out[k] = str(v)
        else:
            out[k] = v
    return out


class AlertStore:
    def __init__(self, pool: AsyncConnectionPool) -> None:
        self.pool = pool

    async def sync_default_rule(self, hysteresis: float, severity: str) -> None:
        """The ``max_temperature_threshold`` setting as a rule: created, updated or disabled."""
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                "SELECT value FROM config_settings WHERE name = %s", (DEFAULT_RULE,)
            )
            row = await cur.fetchone()
            value = row[0] if row else None
            if isinstance(value, int | float) and not isinstance(value, bool):
                await conn.execute(
                    "INSERT INTO alert_rules (name, kind, field, comparison, threshold,"
                    " clear_threshold, severity, scope_type, managed_by, created_by)"
                    " VALUES ('Temperature above max_temperature_threshold', 'threshold',"
                    " 'temperature', '>', %s, %s, %s, 'all', %s, 'config')"
                    " ON CONFLICT (managed_by) DO UPDATE SET threshold = EXCLUDED.threshold,"
                    " clear_threshold = EXCLUDED.clear_threshold, enabled = true,"
                    " updated_at = now()"
                    " WHERE alert_rules.threshold IS DISTINCT FROM EXCLUDED.threshold"
                    " OR alert_rules.clear_threshold IS DISTINCT FROM EXCLUDED.clear_threshold"
                    " OR NOT alert_rules.enabled",
                    (float(value), float(value) - hysteresis, severity, DEFAULT_RULE),
                )
            else:
                await conn.execute(
                    "UPDATE alert_rules SET enabled = false, updated_at = now()"
                    " WHERE managed_by = %s AND enabled",
                    (DEFAULT_RULE,),
                )

    async def rules_version(self) -> tuple[Any, ...]:
        async with self.pool.connection() as conn:
            cur = await conn.execute("SELECT max(updated_at), count(*) FROM alert_rules")
            row = await cur.fetchone()
        return tuple(row or ())

    async def rules(self) -> list[Rule]:
        async with self.pool.connection() as conn:
            cur = conn.cursor(row_factory=dict_row)
            await cur.execute("SELECT * FROM alert_rules WHERE enabled ORDER BY created_at")
            return [Rule.from_row(r) for r in await cur.fetchall()]

    async def open_alerts(self, kind: str | None = None) -> list[dict[str, Any]]:
        async with self.pool.connection() as conn:
            cur = conn.cursor(row_factory=dict_row)
            await cur.execute(
                "SELECT * FROM alerts WHERE state <> 'cleared'"
                + (" AND kind = %s" if kind else ""),
                (kind,) if kind else (),
            )
            return list(await cur.fetchall())

    async def open(self, action: Action) -> dict[str, Any] | None:
        """The new alert, or None when this episode already has one."""
        rule, r = action.rule, action.reading
        started, raised = ns_to_dt(action.started_ns), ns_to_dt(int(r["ts"]))
        async with self.pool.connection() as conn:
            cur = conn.cursor(row_factory=dict_row)
            await cur.execute(
                "INSERT INTO alerts (rule_id, rule_name, kind, severity, machine_id, factory_id,"
                " location, field, comparison, threshold, value, started_at, raised_at)"
                " SELECT %(rule)s, %(name)s, %(kind)s, %(severity)s, %(machine)s, %(factory)s,"
                " %(location)s, %(field)s, %(comparison)s, %(threshold)s, %(value)s,"
                " %(started)s, %(raised)s"
                " WHERE NOT EXISTS (SELECT 1 FROM alerts WHERE rule_id = %(rule)s"
                "   AND machine_id = %(machine)s AND started_at <= %(raised)s"
                "   AND (state <> 'cleared' OR ended_at >= %(started)s))"
                " ON CONFLICT (rule_id, machine_id) WHERE state <> 'cleared' DO NOTHING"
                " RETURNING *",
                {
                    "rule": rule.id,
                    "name": rule.name,
                    "kind": rule.kind,
                    "severity": rule.severity,
                    "machine": str(r["machine_id"]),
                    "factory": r.get("factory_id"),
                    "location": r.get("location"),
                    "field": rule.field,
                    "comparison": rule.comparison,
                    "threshold": rule.threshold
                    if rule.kind == "threshold"
                    else rule.offline_after_s,
                    "value": action.value,
                    "started": started,
                    "raised": raised,
                },
            )
            row = await cur.fetchone()
        return alert_out(row) if row else None

    async def clear(self, action: Action) -> dict[str, Any] | None:
        """The cleared alert, or None when nothing was open (cleared by hand meanwhile)."""
        async with self.pool.connection() as conn:
            cur = conn.cursor(row_factory=dict_row)
            await cur.execute(
                "UPDATE alerts SET state = 'cleared', cleared_at = now(), cleared_by = %s,"
                " cleared_value = %s, ended_at = %s, updated_at = now()"
                " WHERE rule_id = %s AND machine_id = %s AND state <> 'cleared' RETURNING *",
                (
                    SYSTEM,
                    action.value,
                    ns_to_dt(action.started_ns),
                    action.rule.id,
                    str(action.reading["machine_id"]),
                ),
            )
            row = await cur.fetchone()
        return alert_out(row) if row else None

    async def machines(self) -> list[dict[str, Any]]:
        async with self.pool.connection() as conn:
            cur = conn.cursor(row_factory=dict_row)
            await cur.execute(
                "SELECT id, name, location, sensor_type, factory_id FROM machine_metadata"
            )
            return [{**m, "machine_id": str(m["id"])} for m in await cur.fetchall()]

    async def log_delivery(
        self,
        alert_id: int,
        event: str,
        channel: str,
        target: str,
        attempt: int,
        ok: bool,
        status_code: int | None = None,
        error: str | None = None,
    ) -> None:
        async with self.pool.connection() as conn:
            await conn.execute(
                "INSERT INTO alert_deliveries (alert_id, event, channel, target, attempt, ok,"
                " status_code, error) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
                (
                    alert_id,
                    event,
                    channel,
                    target[:500],
                    attempt,
                    ok,
                    status_code,
                    (error or "")[:500] or None,
                ),
            )

    async def machine_open_alerts(self, machine_id: str) -> list[dict[str, Any]]:
        async with self.pool.connection() as conn:
            cur = conn.cursor(row_factory=dict_row)
            await cur.execute(
                "SELECT * FROM alerts WHERE machine_id = %s AND state <> 'cleared'"
                " ORDER BY raised_at",
                (machine_id,),
            )
            return [alert_out(r) for r in await cur.fetchall()]
