"""The ingest decision, without I/O: which checked items belong to known machines, the stored
readings they become, and the answer's body. The handler (``routes.py``) only does the I/O."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from services.ingest_gateway.validate import Accepted, as_error_list
from shared.ingest import Rejection, stored_readings
from shared.machines import Machine


@dataclass
class Assembled:
    """Readings to publish with their InfluxDB lines (rendered once, here), and the items
    refused (validation or unknown machine), by index."""

    readings: list[dict[str, Any]] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)
    rejected: list[Rejection] = field(default_factory=list)
    machines: int = 0


def unknown_machine(index: int, machine_id: str) -> Rejection:
    error = {"field": f"batch[{index}].machine_id", "error": "Unknown machine", "value": machine_id}
    return Rejection(index, machine_id, "unknown machine", [error])


def assemble(checked: Accepted, known: dict[str, Machine | None]) -> Assembled:
    """Stored readings (tagged with their machine's factory) for the items whose machine is
    registered; the others rejected."""
    out = Assembled(rejected=list(checked.rejected))
    for index, item in checked.items:
        machine = known.get(item.machine_id)
        if machine is None:
            out.rejected.append(unknown_machine(index, item.machine_id))
            continue
        out.machines += 1
        out.readings.extend(
            stored_readings(
                machine=machine,
                factory_id=machine.factory_id,
                sensor_type=item.sensor_type,
                location=item.location,
                readings=item.points,
                lines=out.lines,
            )
        )
    out.rejected.sort(key=lambda r: r.index if r.index is not None else -1)
    return out


def answer(assembled: Assembled, messages: int, request_id: str) -> tuple[dict[str, Any], int]:
    """The body and status once every accepted reading was confirmed: 202, or 207 if some
    machines were rejected."""
    rejected = assembled.rejected
    accepted = {
        "machines": assembled.machines,
        "readings": len(assembled.readings),
        "messages": messages,
    }
    if not rejected:
        return {"status": "accepted", "request_id": request_id, "accepted": accepted}, 202
    body = {
        "status": "partial",
        "message": f"{len(rejected)} machine(s) rejected, the rest accepted",
        "request_id": request_id,
        "accepted": accepted,
        "rejected": [r.as_dict() for r in rejected],
        "errors": as_error_list(rejected),
    }
    return body, 207
