"""``POST /api/v1/data/ingest``: validate, check machines, publish confirmed, answer.

202 only after RabbitMQ confirmed every accepted reading; 207 when some machines were rejected;
400 when nothing is valid; 403 when nothing is accepted and some machine is outside the
credential's scope; 413/415 for bodies; 503 + Retry-After when the broker (or the machine
registry) cannot take the data right now — and then nothing was accepted.

Scope: the gateway and the factories come from the credential, never from the body (its
``gateway_id`` and ``factory_id`` are not used). A machine of a factory outside the credential's,
or not among a restricted gateway's machines, is refused by name; each reading is tagged with
its machine's registered factory.
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
from shared.auth.verify import Principal
from shared.db import DB_UNAVAILABLE
from shared.errors import BrokerUnavailable
from shared.http import ApiError, JSONResponse, requires
from shared.ingest import Rejection, pack
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
        headers={"Retry-After": str(st["settings"].gateway.retry_after_s)},
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


def out_of_scope(index: int, machine_id: str, principal: Principal) -> Rejection:
    where = "this gateway's machines" if principal.machines is not None else "its factories"
    error = {
        "field": f"batch[{index}].machine_id",
        "error": f"Machine {machine_id} is not in {where}: this credential may not write for it",
        "value": machine_id,
    }
    return Rejection(index, machine_id, "out of scope", [error])


def refuse_out_of_scope(
    checked: Accepted, known: dict[str, Machine | None], principal: Principal
) -> list[Rejection]:
    """Take the items whose registered machine the credential may not write for out of
    ``checked``; their rejections (unknown machines stay, to be refused as unknown)."""
    kept = []
    refused = []
    for index, item in checked.items:
        machine = known.get(item.machine_id)
        if machine is None or principal.sees_machine(machine.id, machine.factory_id):
            kept.append((index, item))
        else:
            refused.append(out_of_scope(index, item.machine_id, principal))
    checked.items = kept
    checked.rejected.extend(refused)
    return refused


def recorded_gateway(principal: Principal) -> str:
    """The gateway the readings are recorded as coming from: the credential's own; a person
    writing with their account is recorded as ``user:<username>``."""
    return principal.gateway_id or f"user:{principal.username}"


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
        403: "No machine accepted: some are outside the credential's factories or machines",
        413: "Body too large",
        415: "Not JSON",
        503: "Broker cannot take data; nothing accepted; see Retry-After",
    },
    tags=["ingest"],
)
@requires("write:sensor_data")
async def ingest(request: Request) -> Response:
    st = state(request)
    principal: Principal = request.state.principal
    limits = st["settings"].limits
    checked = await _checked(request, st)
    known = await _known(st, checked)
    foreign = refuse_out_of_scope(checked, known, principal)
    assembled = assemble(checked, known)
    if not assembled.readings:
        READINGS.labels("http", "rejected").inc()
        rejected = assembled.rejected
        if foreign:
            names = ", ".join(r.machine_id for r in foreign)
            raise ApiError(
                403,
                f"Nothing accepted: this credential may not write for machine(s) {names}",
                as_error_list(rejected),
                rejected=[r.as_dict() for r in rejected],
            )
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
        gateway_id=recorded_gateway(principal),
        request_id=rid,
        per_message=limits.readings_per_message,
        lines=assembled.lines,
    )
    try:
        await st["publisher"].publish(envelopes, merge_up_to=limits.readings_per_message)
    except BrokerUnavailable as e:
        log.warning("publish failed: %s", e, extra={"dependency": "rabbitmq"})
        raise unavailable(st, "The message broker") from e
    READINGS.labels("http", "accepted").inc(len(assembled.readings))
    body, status = answer(assembled, len(envelopes), rid)
    return JSONResponse(body, status_code=status)


ROUTES = [Route("/api/v1/data/ingest", ingest, methods=["POST"])]
