"""Gateway credentials for Management: register (client id + secret, shown once), list,
disable. Gateways are credentials like users, so the user permissions guard them:
``read:users`` to list, ``write:users`` to register, ``delete:users`` to disable."""

from __future__ import annotations

import logging

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from services.auth import gateways
from services.auth.api.bodies import query_bool, read_fields
from services.auth.api.schemas import (
    GatewayCreatedOut,
    GatewayCreateIn,
    GatewayEnvelope,
    GatewayListParams,
    GatewaysOut,
)
from services.auth.api.session_api import NO_STORE
from services.auth.errors import Conflict, InvalidInput
from services.auth.state import state
from shared.audit import Actor
from shared.auth.verify import Principal
from shared.http import ApiError, JSONResponse, requires
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
    principal: Principal = request.state.principal
    hasher = state(request)["hasher"]
    try:
        gateway, secret = await gateways.register(
            state(request)["pool"], hasher, Actor.of(request, principal), fields.get("gateway_id")
        )
    except InvalidInput as e:
        raise ApiError(400, "Validation failed", e.errors) from None
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
    found = await gateways.list_gateways(
        state(request)["pool"], include_disabled=bool(query_bool(request, "include_disabled"))
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
        state(request)["pool"], Actor.of(request, principal), gateway_id
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
    return [
        Route("/api/v1/auth/gateways", list_gateways, methods=["GET"]),
        Route("/api/v1/auth/gateways", register_gateway, methods=["POST"]),
        Route("/api/v1/auth/gateways/{gateway_id}/disable", disable_gateway, methods=["POST"]),
    ]
