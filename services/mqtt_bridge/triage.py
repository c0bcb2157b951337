"""What becomes of each MQTT message of a group: readings to publish, or a dead letter and why.

Pure functions: the topic and payload decide validity; the machine registry decides the rest.
"""

from __future__ import annotations

import logging
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from services.mqtt_bridge.link import Inbound
from shared.envelope import Envelope, dead_letter
from shared.ingest import pack
from shared.machines import Machine, valid_uuid
from shared.mqtt_payload import DeadReason, Payload, PayloadError, parse_payload
from shared.mqtt_topics import BadTopic, TopicIds, TopicTemplate, is_status_topic
from shared.readings import ValidationContext

SOURCE = "mqtt"
log = logging.getLogger(__name__)


@dataclass(slots=True)
class Dead:
    message: Inbound
    reason: DeadReason
    error: str
    errors: list[dict[str, Any]] = field(default_factory=list)
    ids: TopicIds | None = None


@dataclass(slots=True)
class Valid:
    message: Inbound
    ids: TopicIds
    batch: Payload


@dataclass(slots=True)
class Triage:
    valid: list[Valid] = field(default_factory=list)
    dead: list[Dead] = field(default_factory=list)
    ignored: list[Inbound] = field(default_factory=list)

    def machine_ids(self) -> list[str]:
        """Machine ids to look up: only well-formed ones (anything else is unknown anyway)."""
        return sorted({v.ids.machine_id for v in self.valid if valid_uuid(v.ids.machine_id)})


def classify(messages: list[Inbound], template: TopicTemplate, ctx: ValidationContext) -> Triage:
    """Sort messages by what their topic and payload say, before any machine lookup."""
    out = Triage()
    for m in messages:
        if m.topic is None:
            out.dead.append(Dead(m, DeadReason.BAD_TOPIC, "Topic is not valid UTF-8"))
            continue
        if is_status_topic(m.topic):
            out.ignored.append(m)  # a bridge's online/offline, caught by a wide filter
            continue
        try:
            ids = template.parse(m.topic)
        except BadTopic as e:
            out.dead.append(Dead(m, DeadReason.BAD_TOPIC, str(e)))
            continue
        try:
            batch = parse_payload(m.payload, ctx)
        except PayloadError as e:
            errors = [fe.as_dict() for fe in e.errors]
            out.dead.append(Dead(m, e.reason, e.error, errors, ids))
            continue
        except Exception as e:  # a payload that trips a bug is a poison message: dead-letter it
            log.exception("unexpected error validating a payload on %s", m.topic)
            out.dead.append(Dead(m, DeadReason.SCHEMA, f"Payload could not be validated: {e}"))
            continue
        out.valid.append(Valid(m, ids, batch))
    return out


def resolve(
    triage: Triage, known: dict[str, Machine | None]
) -> tuple[list[dict[str, Any]], list[Inbound], list[Dead]]:
    """Readings ready to publish, the messages they came from, and the unknown-machine dead."""
    readings: list[dict[str, Any]] = []
    published: list[Inbound] = []
    dead: list[Dead] = []
    for v in triage.valid:
        machine = known.get(v.ids.machine_id)
        if machine is None:
            why = (
                "Unknown machine"
                if valid_uuid(v.ids.machine_id)
                else "Machine id is not a UUID, no such machine"
            )
            dead.append(
                Dead(v.message, DeadReason.UNKNOWN_MACHINE, f"{why}: {v.ids.machine_id}", ids=v.ids)
            )
            continue
        if machine.factory_id != v.ids.factory_id:
            # Gateways cannot publish such a topic (the edge refuses it); a service user can.
            dead.append(
                Dead(
                    v.message,
                    DeadReason.WRONG_FACTORY,
                    f"Machine {v.ids.machine_id} belongs to factory {machine.factory_id!r},"
                    f" not {v.ids.factory_id!r}",
                    ids=v.ids,
                )
            )
            continue
        readings.extend(v.batch.stored(machine, machine.factory_id))
        published.append(v.message)
    return readings, published, dead


def envelopes(
    readings: list[dict[str, Any]], *, gateway_id: str, request_id: str, per_message: int
) -> list[Envelope]:
    """Pack readings into envelopes of at most ``per_message``, never mixing factories.

    A machine's readings are kept together and envelopes are cut at machine boundaries where
    possible, so most envelopes carry one machine and its routing key
    ``reading.<factory>.<machine>``; small leftovers of several machines share
    ``reading.<factory>.mixed``.
    """
    by_factory: dict[str, dict[str, list[dict[str, Any]]]] = defaultdict(lambda: defaultdict(list))
    for r in readings:
        by_factory[r["factory_id"]][r["machine_id"]].append(r)
    chunks: list[list[dict[str, Any]]] = []
    for machines in by_factory.values():
        chunk: list[dict[str, Any]] = []
        for machine_id in sorted(machines):
            ours = machines[machine_id]
            if chunk and len(chunk) + len(ours) > per_message:
                chunks.append(chunk)
                chunk = []
            chunk.extend(ours)
            while len(chunk) >= per_message:
                chunks.append(chunk[:per_message])
                chunk = chunk[per_message:]
        if chunk:
            chunks.append(chunk)
    out: list[Envelope] = []
    for c in chunks:
        out.extend(
            pack(c, source=SOURCE, gateway_id=gateway_id, request_id=request_id, per_message=len(c))
        )
    return out


def dead_letters(dead: list[Dead], *, gateway_id: str, request_id: str) -> list[Envelope]:
    out = []
    for d in dead:
        extra: dict[str, Any] = {"topic": d.message.topic, "qos": d.message.qos}
        if d.ids is not None:
            extra["factory_id"] = d.ids.factory_id
            extra["machine_id"] = d.ids.machine_id
        if d.errors:
            extra["errors"] = d.errors
        out.append(
            dead_letter(
                source=SOURCE,
                reason=d.reason.value,
                error=d.error,
                raw=d.message.payload,
                gateway_id=gateway_id,
                request_id=request_id,
                extra=extra,
            )
        )
    return out


def new_request_id() -> str:
    return uuid.uuid4().hex
