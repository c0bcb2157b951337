"""Gateway credentials for Management: register (client id + secret, shown once), list,
disable. Gateways are credentials like users, so the user permissions guard them:
``read:users`` to list, ``write:users`` to register, ``delete:users`` to disable.

A gateway belongs to one factory (``factory_id``; without it, the caller's only factory, else
``INGEST_DEFAULT_FACTORY_ID``) and optionally to some machines of it (``machine_ids``). A manager
of some factories registers, lists and disables only the gateways of those factories."""

from __future__ import annotations

import logging

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from services.auth import factories, gateways
from services.auth.api.bodies import query_bool, read_fields
from services.auth.api.schemas import (
    GatewayCreatedOut,
    GatewayCreateIn,
    GatewayEnvelope,
    GatewayListParams,
    GatewaysOut,
)
from services.auth.api.session_api import NO_STORE
from services.auth.errors import Conflict, InvalidInput, OutOfScope
from services.auth.state import state
from shared.audit import Actor
from shared.auth.verify import Principal
from shared.http import ApiError, JSONResponse, requires, resource_routes
from shared.openapi import doc

log = logging.getLogger(__name__)


@doc(
    "Register a gateway: client id and secret, shown once",
    body=GatewayCreateIn,
    responses={201: GatewayCreatedOut, 409: "The gateway has active credentials"},
    tags=["gateways"],
)
@requires("write:users")
async def register_gateway(request: Request) -> Response:
    fields = await read_fields(request)
    unknown = sorted(set(fields) - {"gateway_id", "factory_id", "machine_ids"})
    if unknown:
        raise ApiError(
            400, "Validation failed", [{"field": n, "error": "Unknown field"} for n in unknown]
        )
    principal: Principal = request.state.principal
    actor = Actor.of(request, principal)
    hasher = state(request)["hasher"]
    own = principal.factories
    fallback = (
        next(iter(own))
        if own and len(own) == 1
        else state(request)["settings"].auth.default_factory_id
    )
    try:
        given = fields.get("factory_id")
        factory_id = factories.parse_factory(fallback if given is None else given)
        machine_ids = factories.parse_machine_ids(fields.get("machine_ids"))
        factories.require_grant(own, actor, [factory_id], "register a gateway")
        gateway, secret = await gateways.register(
            state(request)["pool"],
            hasher,
            actor,
            fields.get("gateway_id"),
            factory_id=factory_id,
            machine_ids=machine_ids,
        )
    except InvalidInput as e:
        raise ApiError(400, "Validation failed", e.errors) from None
    except OutOfScope as e:
        raise ApiError(403, str(e)) from None
    except Conflict as e:
        raise ApiError(409, str(e)) from None
    log.info("gateway %s registered by %s", gateway.gateway_id, principal.username)
    return JSONResponse(
        {
            "status": "success",
            "gateway": gateway.public(),
            "client_id": gateway.client_id,
            "client_secret": secret,
            "message": "Store the secret now: it is not shown again",
        },
        status_code=201,
        headers=NO_STORE,
    )


@doc(
    "List gateway credentials",
    query=GatewayListParams,
    responses={200: GatewaysOut},
    tags=["gateways"],
)
@requires("read:users")
async def list_gateways(request: Request) -> Response:
    principal: Principal = request.state.principal
    found = await gateways.list_gateways(
        state(request)["pool"],
        include_disabled=bool(query_bool(request, "include_disabled")),
        scope=principal.factories,
    )
    return JSONResponse({"status": "success", "gateways": [g.public() for g in found]})


@doc(
    "Disable a gateway's credentials: its tokens stop working at once",
    responses={200: GatewayEnvelope, 404: "No active credentials"},
    tags=["gateways"],
)
@requires("delete:users")
async def disable_gateway(request: Request) -> Response:
    gateway_id = request.path_params["gateway_id"]
    principal: Principal = request.state.principal
    gateway = await gateways.disable(
        state(request)["pool"], Actor.of(request, principal), gateway_id, principal.factories
    )
    if gateway is None:
        raise ApiError(404, f"Gateway {gateway_id} has no active credentials")
    revoker = state(request)["revoker"]
    voided = await revoker.void_subject(gateway.id)
    log.info("gateway %s disabled by %s", gateway_id, principal.username)
    body = {"status": "success", "gateway": gateway.public()}
    if not voided:
        body["warning"] = "Disabled, but tokens already issued stay valid until they expire"
    return JSONResponse(body)


def gateway_routes() -> list[Route]:
    return resource_routes(
        "/api/v1/auth/gateways",
        {
            "": {"GET": list_gateways, "POST": register_gateway},
            "/{gateway_id}/disable": {"POST": disable_gateway},
        },
    )
