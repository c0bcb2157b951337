"""``POST /api/v1/data/ingest``: validate, check machines, publish confirmed, answer.

202 only after RabbitMQ confirmed every accepted reading; 207 when some machines were rejected;
400 when nothing is valid; 413/415 for bodies; 503 + Retry-After when the broker (or the machine
registry) cannot take the data right now — and then nothing was accepted.
"""

from __future__ import annotations

import logging

from prometheus_client import Counter
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from services.ingest_gateway import body as bodies
from services.ingest_gateway.assemble import answer, assemble
from services.ingest_gateway.schemas import IngestAccepted, IngestPartial
from services.ingest_gateway.state import State, state
from services.ingest_gateway.validate import Accepted, Invalid, accept, as_error_list
from shared.db import DB_UNAVAILABLE
from shared.errors import BrokerUnavailable
from shared.http import ApiError, JSONResponse, requires
from shared.ingest import pack
from shared.log import request_id
from shared.machines import Machine
from shared.openapi import doc
from shared.readings import IngestRequest

log = logging.getLogger(__name__)

BACKPRESSURE = Counter(
    "millrace_ingest_backpressure_total", "Requests refused up front because of broker pressure"
)
READINGS = Counter("millrace_ingest_readings_total", "Readings by outcome", ["source", "outcome"])


def unavailable(st: State, what: str) -> ApiError:
    return ApiError(
        503,
        f"{what} cannot take data right now; nothing was accepted, retry later",
        headers={"Retry-After": str(st["settings"].retry_after_s)},
    )


async def _checked(request: Request, st: State) -> Accepted:
    """The validated body, once the broker has room for it (refused before reading if not)."""
    pressure = st["publisher"].pressure()
    if pressure is not None:
        # Refuse before reading the body: the gateway keeps its data and retries.
        BACKPRESSURE.inc()
        raise unavailable(st, f"The message broker ({pressure})")
    raw = await bodies.read_body(request, st["settings"].limits.max_body_bytes)
    try:
        checked = accept(raw, st["validation"].with_now())
    except Invalid as e:
        READINGS.labels("http", "invalid").inc()
        raise ApiError(400, e.message, [fe.as_dict() for fe in e.errors]) from None
    log.debug("payload validated: gateway %s, %d machines", checked.gateway_id, len(checked.items))
    return checked


async def _known(st: State, checked: Accepted) -> dict[str, Machine | None]:
    ids = list({item.machine_id for _, item in checked.items})
    try:
        return await st["machines"].get_many(ids)
    except DB_UNAVAILABLE as e:
        log.warning("machine registry unreachable: %s", e, extra={"dependency": "postgres"})
        raise unavailable(st, "The machine registry") from e


@doc(
    "Ingest a gateway batch (JSON, optionally gzip-encoded)",
    body=IngestRequest,
    responses={
        202: IngestAccepted,
        207: IngestPartial,
        413: "Body too large",
        415: "Not JSON",
        503: "Broker cannot take data; nothing accepted; see Retry-After",
    },
    tags=["ingest"],
)
@requires("write:sensor_data")
async def ingest(request: Request) -> Response:
    st = state(request)
    limits = st["settings"].limits
    checked = await _checked(request, st)
    assembled = assemble(checked, await _known(st, checked), limits.default_factory_id)
    if not assembled.readings:
        READINGS.labels("http", "rejected").inc()
        rejected = assembled.rejected
        raise ApiError(
            400,
            "Validation failed",
            as_error_list(rejected),
            rejected=[r.as_dict() for r in rejected],
        )
    rid = request_id.get() or ""
    envelopes = pack(
        assembled.readings,
        source="http",
        gateway_id=checked.gateway_id,
        request_id=rid,
        per_message=limits.readings_per_message,
    )
    try:
        await st["publisher"].publish(envelopes)
    except BrokerUnavailable as e:
        log.warning("publish failed: %s", e, extra={"dependency": "rabbitmq"})
        raise unavailable(st, "The message broker") from e
    READINGS.labels("http", "accepted").inc(len(assembled.readings))
    body, status = answer(assembled, len(envelopes), rid)
    return JSONResponse(body, status_code=status)


ROUTES = [Route("/api/v1/data/ingest", ingest, methods=["POST"])]
