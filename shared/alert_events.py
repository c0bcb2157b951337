"""Alert changes on the ``telemetry`` exchange: one rule for the alerter (which opens and clears
alerts), the query API (acknowledge and clear by hand, and the live stream) and every notifier.

Routing key ``alert.<factory_id>.<machine_id>`` (the writer queue binds ``reading.#`` only, so
alerts never reach InfluxDB). Body: ``{"v": 1, "event": "opened"|"acknowledged"|"cleared",
"alert": {...}}`` where ``alert`` is an alert row as the alerts API returns it.
"""

from __future__ import annotations

from typing import Any

import aio_pika
import orjson
from aio_pika.abc import AbstractExchange

from shared.broker import routing_key

ROUTING_PREFIX = "alert"
BINDING = "alert.#"
EVENTS = ("opened", "acknowledged", "cleared")
SEVERITIES = ("critical", "major", "minor", "warning")


def alert_routing_key(factory_id: str, machine_id: str) -> str:
    return ROUTING_PREFIX + routing_key(factory_id or "_", machine_id).removeprefix("reading")


def encode(event: str, alert: dict[str, Any]) -> bytes:
    return orjson.dumps({"v": 1, "event": event, "alert": alert})


def decode(body: bytes) -> tuple[str, dict[str, Any]]:
    """(event, alert); ``ValueError`` for anything else."""
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError as e:
        raise ValueError(f"not JSON: {e}") from e
    if not isinstance(doc, dict) or doc.get("v") != 1 or doc.get("event") not in EVENTS:
        raise ValueError("not an alert event")
    alert = doc.get("alert")
    if not isinstance(alert, dict):
        raise ValueError("alert event without an alert")
    return str(doc["event"]), alert


async def publish(exchange: AbstractExchange, event: str, alert: dict[str, Any]) -> None:
    """Persistent, on a confirming channel when ``exchange``'s channel confirms."""
    await exchange.publish(
        aio_pika.Message(
            body=encode(event, alert),
            content_type="application/json",
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            type="alert." + event,
        ),
        alert_routing_key(str(alert.get("factory_id") or ""), str(alert["machine_id"])),
    )
