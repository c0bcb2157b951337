"""``/api/v1/machines``: the registry (list with filters, create, read, update, delete) and
``/api/v1/machines/status``, limited to the caller's factories: a machine of another factory
answers 404 as an unknown one; naming a factory outside the scope answers 403."""

from __future__ import annotations

from functools import partial

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from services.query_api.machines.schemas import (
    MachineEnvelope,
    MachineIn,
    MachineListOut,
    MachinePatch,
    StatusOut,
)
from services.query_api.machines.status import status_answer
from services.query_api.params import MachineListParams, StatusParams, path_uuid
from services.query_api.scope import OUTSIDE, UNKNOWN, machine_or_404, principal, require_factory
from services.query_api.state import state
from shared.db import persist
from shared.http import JSONResponse, requires, resource_routes
from shared.machines import Machine, MachineRepository
from shared.openapi import doc
from shared.params import parse_body, parse_query
from shared.schemas import page

api_doc = partial(doc, tags=["machines"])  # this module's OpenAPI tag

MAX_BODY_BYTES = 64 * 1024
MAX_STATUS_MACHINES = 100_000


def _repo(request: Request) -> MachineRepository:
    return MachineRepository(state(request)["pool"])


async def _scoped(
    request: Request, q: StatusParams, limit: int, offset: int
) -> tuple[list[Machine], int]:
    """The caller's machines matching ``q`` (403 for a ``factory_id`` outside its scope)."""
    p = principal(request)
    if q.factory_id is not None:
        require_factory(p, q.factory_id)
    return await _repo(request).list(q.filters(), limit, offset, p.factory_list)


async def _own(request: Request, machine_id: str) -> Machine:
    """The machine, read from PostgreSQL, when the caller may act on it; 404 otherwise."""
    found = await _repo(request).get_many([machine_id])
    return machine_or_404(principal(request), found.get(machine_id), machine_id)


@api_doc("Live status of your machines", query=StatusParams, responses={200: StatusOut})
@requires("read:machines")
async def machines_status(request: Request) -> Response:
    q = parse_query(StatusParams, request.query_params)
    machines, _ = await _scoped(request, q, MAX_STATUS_MACHINES, 0)
    return JSONResponse(await status_answer(state(request), machines))


@api_doc("Machines of your factories", query=MachineListParams, responses={200: MachineListOut})
@requires("read:machines")
async def list_machines(request: Request) -> Response:
    q = parse_query(MachineListParams, request.query_params)
    machines, total = await _scoped(request, q, q.limit, q.offset)
    return JSONResponse(
        {
            "status": "success",
            "machines": [m.as_dict() for m in machines],
            "pagination": page(q.limit, q.offset, len(machines), total),
        }
    )


@api_doc("Register a machine", body=MachineIn, responses={201: MachineEnvelope, 403: OUTSIDE})
@requires("write:machines")
async def create_machine(request: Request) -> Response:
    data = await parse_body(request, MachineIn, MAX_BODY_BYTES)
    st = state(request)
    factory = data.factory_id or st["settings"].limits.default_factory_id
    require_factory(principal(request), factory)
    repo = _repo(request)
    machine = await persist(
        "machine",
        lambda: repo.create(data.name, data.location, data.sensor_type, data.status, factory),
    )
    await st["machines"].invalidate(machine.id)
    return JSONResponse(
        {"status": "success", "machine": machine.as_dict()},
        status_code=201,
        headers={"Location": f"/api/v1/machines/{machine.id}"},
    )


@api_doc("One machine", responses={200: MachineEnvelope, 404: UNKNOWN})
@requires("read:machines")
async def get_machine(request: Request) -> Response:
    mid = path_uuid(request, "machine_id")
    machine = machine_or_404(principal(request), await state(request)["machines"].get(mid), mid)
    return JSONResponse({"status": "success", "machine": machine.as_dict()})


@api_doc(
    "Change or move a machine", body=MachinePatch, responses={200: MachineEnvelope, 404: UNKNOWN}
)
@requires("write:machines")
async def update_machine(request: Request) -> Response:
    mid = path_uuid(request, "machine_id")
    patch = await parse_body(request, MachinePatch, MAX_BODY_BYTES)
    await _own(request, mid)
    if patch.factory_id is not None:
        require_factory(principal(request), patch.factory_id)
    changes = patch.model_dump(exclude_none=True)
    repo = _repo(request)
    machine = await persist("machine update", lambda: repo.update(mid, changes))
    await state(request)["machines"].invalidate(mid)
    return JSONResponse(
        {"status": "success", "machine": machine_or_404(principal(request), machine, mid).as_dict()}
    )


@api_doc("Delete a machine", responses={204: "Deleted", 404: UNKNOWN})
@requires("delete:machines")
async def delete_machine(request: Request) -> Response:
    mid = path_uuid(request, "machine_id")
    await _own(request, mid)
    repo = _repo(request)
    deleted = await persist("machine deletion", lambda: repo.delete(mid))
    await state(request)["machines"].invalidate(mid)
    if not deleted:
        machine_or_404(principal(request), None, mid)
    return Response(status_code=204)


def machine_routes() -> list[Route]:
    return resource_routes(
        "/api/v1/machines",
        {
            # Before /{machine_id}: "status" is no machine id.
            "/status": {"GET": machines_status},
            "": {"GET": list_machines, "POST": create_machine},
            "/{machine_id}": {
                "GET": get_machine,
                "PATCH": update_machine,
                "DELETE": delete_machine,
            },
        },
    )
