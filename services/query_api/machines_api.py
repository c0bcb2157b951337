"""The machine registry over HTTP: list with filters, create, read, update, delete."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from services.query_api.params import one_of
from services.query_api.state import state
from shared.db import persist
from shared.http import ApiError, JSONResponse, requires
from shared.machines import STATUSES, MachineCache, MachineRepository, valid_uuid
from shared.openapi import doc
from shared.params import parse_body
from shared.schemas import Pagination, page

Text = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=255)]
# The column is varchar(100): longer values were refused by PostgreSQL with a 500.
SensorType = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]
MAX_OFFSET = 10**9  # PostgreSQL's OFFSET is a bigint; larger values answered 500
Status = Annotated[str, Field(pattern="^(" + "|".join(STATUSES) + ")$")]


class MachineOut(BaseModel):
    id: str
    name: str
    location: str
    sensor_type: str
    status: Literal["active", "inactive", "maintenance", "error"]
    created_at: str
    updated_at: str


class MachineListParams(BaseModel):
    location: str | None = None
    status: Literal["active", "inactive", "maintenance", "error"] | None = None
    sensor_type: str | None = None
    limit: int = Field(100, ge=1, le=1000)
    offset: int = Field(0, ge=0, le=1_000_000_000)


class MachineListOut(BaseModel):
    """Machines sorted by name."""

    status: str = "success"
    machines: list[MachineOut]
    pagination: Pagination


class MachineEnvelope(BaseModel):
    """One machine."""

    status: str = "success"
    machine: MachineOut


class MachineIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Text
    location: Text
    sensor_type: SensorType
    status: Status = "active"


class MachinePatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Text | None = None
    location: Text | None = None
    sensor_type: SensorType | None = None
    status: Status | None = None


MAX_BODY_BYTES = 64 * 1024


def _machine_id(request: Request) -> str:
    mid = str(request.path_params["machine_id"])
    if not valid_uuid(mid):
        raise ApiError(
            400,
            "Invalid path parameter",
            [{"parameter": "machine_id", "error": "Must be a UUID", "value": mid}],
        )
    return mid


def _repo(request: Request) -> MachineRepository:
    return MachineRepository(state(request)["pool"])


@doc(
    "List machines, filtered",
    query=MachineListParams,
    responses={200: MachineListOut},
    tags=["machines"],
)
@requires("read:machines")
async def list_machines(request: Request) -> Response:
    params = request.query_params
    errors: list[dict[str, Any]] = []
    filters = {k: params[k] for k in ("location", "status", "sensor_type") if params.get(k)}
    if "status" in filters:
        one_of("status", filters["status"], STATUSES, errors)
    try:
        limit = int(params.get("limit", "100"))
        offset = int(params.get("offset", "0"))
        if not (1 <= limit <= 1000 and 0 <= offset <= MAX_OFFSET):
            raise ValueError
    except ValueError:
        errors.append(
            {
                "parameter": "limit/offset",
                "error": f"limit must be 1-1000, offset 0-{MAX_OFFSET}",
                "value": f"{params.get('limit')}/{params.get('offset')}",
            }
        )
    if errors:
        raise ApiError(400, "Invalid query parameters", errors)
    machines, total = await _repo(request).list(filters, limit, offset)
    return JSONResponse(
        {
            "status": "success",
            "machines": [m.as_dict() for m in machines],
            "pagination": page(limit, offset, len(machines), total),
        }
    )


@doc("Register a machine", body=MachineIn, responses={201: MachineEnvelope}, tags=["machines"])
@requires("write:machines")
async def create_machine(request: Request) -> Response:
    data: MachineIn = await parse_body(request, MachineIn, MAX_BODY_BYTES)
    repo = _repo(request)
    machine = await persist(
        "machine", lambda: repo.create(data.name, data.location, data.sensor_type, data.status)
    )
    await _cache(request).invalidate(machine.id)
    return JSONResponse(
        {"status": "success", "machine": machine.as_dict()},
        status_code=201,
        headers={"Location": f"/api/v1/machines/{machine.id}"},
    )


def _cache(request: Request) -> MachineCache:
    cache = state(request)["machines"]
    return cache


@doc("One machine", responses={200: MachineEnvelope, 404: "Unknown machine"}, tags=["machines"])
@requires("read:machines")
async def get_machine(request: Request) -> Response:
    mid = _machine_id(request)
    machine = await _cache(request).get(mid)
    if machine is None:
        raise ApiError(404, "Machine not found", machine_id=mid)
    return JSONResponse({"status": "success", "machine": machine.as_dict()})


@doc(
    "Change a machine",
    body=MachinePatch,
    responses={200: MachineEnvelope, 404: "Unknown machine"},
    tags=["machines"],
)
@requires("write:machines")
async def update_machine(request: Request) -> Response:
    mid = _machine_id(request)
    patch: MachinePatch = await parse_body(request, MachinePatch, MAX_BODY_BYTES)
    changes = patch.model_dump(exclude_none=True)
    repo = _repo(request)
    machine = await persist("machine update", lambda: repo.update(mid, changes))
    await _cache(request).invalidate(mid)
    if machine is None:
        raise ApiError(404, "Machine not found", machine_id=mid)
    return JSONResponse({"status": "success", "machine": machine.as_dict()})


@doc("Delete a machine", responses={204: "Deleted", 404: "Unknown machine"}, tags=["machines"])
@requires("delete:machines")
async def delete_machine(request: Request) -> Response:
    mid = _machine_id(request)
    repo = _repo(request)
    deleted = await persist("machine deletion", lambda: repo.delete(mid))
    await _cache(request).invalidate(mid)
    if not deleted:
        raise ApiError(404, "Machine not found", machine_id=mid)
    return Response(status_code=204)


def machine_routes() -> list[Route]:
    return [
        Route("/api/v1/machines", list_machines, methods=["GET"]),
        Route("/api/v1/machines", create_machine, methods=["POST"]),
        Route("/api/v1/machines/{machine_id}", get_machine, methods=["GET"]),
        Route("/api/v1/machines/{machine_id}", update_machine, methods=["PATCH"]),
        Route("/api/v1/machines/{machine_id}", delete_machine, methods=["DELETE"]),
    ]
