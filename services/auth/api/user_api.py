"""User management for Management: list, read, create, change role/email, reactivate,
deactivate. Permissions: ``read:users`` to read, ``write:users`` to create and change,
``delete:users`` to deactivate (users are never erased: the audit log refers to them).

Tokens follow the changes: deactivation voids every token of the user at once (Redis subject
marker) and revokes their sessions; a role or factories change denylists their live access
tokens, so the next refresh carries the new permissions and scope.

Factory scope: a manager of some factories sees and changes only the users wholly inside them,
and grants only those factories (a new user without ``factories`` gets the manager's own).
"""

from __future__ import annotations

import logging
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from services.auth import factories, users
from services.auth.api.bodies import query_bool, query_int, read_fields
from services.auth.api.schemas import (
    UserCreateIn,
    UserEnvelope,
    UserListParams,
    UsersOut,
    UserUpdateIn,
)
from services.auth.errors import Conflict, InvalidInput, OutOfScope
from services.auth.state import state
from shared.audit import Actor
from shared.auth.scope import covers
from shared.auth.verify import Principal
from shared.http import ApiError, JSONResponse, requires, resource_routes
from shared.openapi import doc
from shared.schemas import page

log = logging.getLogger(__name__)


def invalid(e: InvalidInput) -> ApiError:
    return ApiError(400, "Validation failed", e.errors)


def _principal(request: Request) -> Principal:
    principal: Principal = request.state.principal
    return principal


def _not_found(user_id: str) -> ApiError:
    return ApiError(404, f"User {user_id} not found")


@doc("List users", query=UserListParams, responses={200: UsersOut}, tags=["users"])
@requires("read:users")
async def list_users(request: Request) -> Response:
    limit = query_int(request, "limit", 100, 1, 500)
    offset = query_int(request, "offset", 0, 0, 10_000_000)
    role_param = request.query_params.get("role")
    try:
        role = users.parse_role(role_param) if role_param else None
    except InvalidInput as e:
        raise ApiError(
            400,
            "Invalid query parameters",
            [{"parameter": "role", "error": e.errors[0]["error"], "value": role_param}],
        ) from e
    found, total = await users.list_users(
        state(request)["pool"],
        limit=limit,
        offset=offset,
        role=role,
        active=query_bool(request, "active"),
        scope=_principal(request).factories,
    )
    return JSONResponse(
        {
            "status": "success",
            "users": [u.public() for u in found],
            "pagination": page(limit, offset, len(found), total),
        }
    )


@doc("Read a user", responses={200: UserEnvelope, 404: "No such user"}, tags=["users"])
@requires("read:users")
async def get_user(request: Request) -> Response:
    user_id = request.path_params["user_id"]
    user = await users.by_id(state(request)["pool"], user_id)
    if user is None or not covers(_principal(request).factories, user.factories):
        raise _not_found(user_id)
    return JSONResponse({"status": "success", "user": user.public()})


def _granted(request: Request, fields: dict[str, Any], default: list[str] | None) -> Any:
    """The ``factories`` field validated and within the caller's scope (403 beyond it)."""
    principal = _principal(request)
    wanted = factories.parse_factories(fields["factories"]) if "factories" in fields else default
    factories.require_grant(
        principal.factories, Actor.of(request, principal), wanted, "grant access"
    )
    return wanted


@doc(
    "Create a user",
    body=UserCreateIn,
    responses={201: UserEnvelope, 409: "Username or email taken"},
    tags=["users"],
)
@requires("write:users")
async def create_user(request: Request) -> Response:
    fields = await read_fields(request)
    settings = state(request)["settings"]
    hasher = state(request)["hasher"]
    try:
        granted = _granted(request, fields, factories.default_grant(_principal(request).factories))
        user = await users.create(
            state(request)["pool"],
            hasher,
            Actor.of(request, _principal(request)),
            username=fields.get("username"),
            password=fields.get("password"),
            role=fields.get("role"),
            email=fields.get("email"),
            factories=granted,
            min_password_length=settings.auth.min_password_length,
        )
    except InvalidInput as e:
        raise invalid(e) from None
    except OutOfScope as e:
        raise ApiError(403, str(e)) from None
    except Conflict as e:
        raise ApiError(409, str(e)) from None
    log.info("user %s (%s) created by %s", user.username, user.role, _principal(request).username)
    return JSONResponse({"status": "success", "user": user.public()}, status_code=201)


def _refuse_self(request: Request, user_id: str, what: str) -> None:
    if _principal(request).sub == user_id:
        raise ApiError(409, f"You cannot {what} your own account; ask another manager")


@doc(
    "Change a user's role or email, or reactivate them; a role change voids their live tokens",
    body=UserUpdateIn,
    responses={200: UserEnvelope, 404: "No such user", 409: "Your own role"},
    tags=["users"],
)
@requires("write:users")
async def update_user(request: Request) -> Response:
    """``{role?, email?, factories?, active?: true}``; deactivation is ``DELETE``
    (``delete:users``)."""
    user_id = request.path_params["user_id"]
    fields = await read_fields(request)
    unknown = sorted(set(fields) - {"role", "email", "factories", "active"})
    if unknown:
        raise ApiError(
            400,
            "Validation failed",
            [{"field": name, "error": "Unknown field"} for name in unknown],
        )
    if "active" in fields and fields["active"] is not True:
        raise ApiError(
            400,
            "Validation failed",
            [{"field": "active", "error": "Only true (reactivate); deactivate with DELETE"}],
        )
    changes: dict[str, Any] = {}
    try:
        if "role" in fields:
            changes["role"] = users.parse_role(fields["role"])
            _refuse_self(request, user_id, "change the role of")
        if "factories" in fields:
            changes["factories"] = _granted(request, fields, None)
            _refuse_self(request, user_id, "change the factories of")
    except InvalidInput as e:
        raise invalid(e) from None
    except OutOfScope as e:
        raise ApiError(403, str(e)) from None
    if "email" in fields:
        changes["email"] = fields["email"]
    try:
        result = await users.update(
            state(request)["pool"],
            Actor.of(request, _principal(request)),
            user_id,
            activate=fields.get("active") is True,
            scope=_principal(request).factories,
            **changes,
        )
    except InvalidInput as e:
        raise invalid(e) from None
    except Conflict as e:
        raise ApiError(409, str(e)) from None
    if result is None:
        raise _not_found(user_id)
    before, after = result
    if before.role != after.role or before.factories != after.factories:
        # Live tokens carry the old permissions and scope: void them; refreshing yields the
        # new ones.
        sessions = state(request)["sessions"]
        revoker = state(request)["revoker"]
        await revoker.deny(await sessions.live_access_tokens(after.id))
        log.info(
            "%s changed: role %s -> %s, factories %s -> %s",
            after.username,
            before.role,
            after.role,
            before.factories,
            after.factories,
        )
    return JSONResponse({"status": "success", "user": after.public()})


@doc(
    "Deactivate a user: every token of theirs stops working at once",
    responses={200: UserEnvelope, 404: "No such user", 409: "Your own account"},
    tags=["users"],
)
@requires("delete:users")
async def deactivate_user(request: Request) -> Response:
    user_id = request.path_params["user_id"]
    _refuse_self(request, user_id, "deactivate")
    user = await users.deactivate(
        state(request)["pool"],
        Actor.of(request, _principal(request)),
        user_id,
        scope=_principal(request).factories,
    )
    if user is None:
        raise _not_found(user_id)
    sessions = state(request)["sessions"]
    revoker = state(request)["revoker"]
    revoked = await sessions.revoke_user(user.id, "deactivated")
    voided = await revoker.void_subject(user.id) and await revoker.deny(revoked)
    log.info("user %s deactivated by %s", user.username, _principal(request).username)
    body: dict[str, Any] = {"status": "success", "user": user.public()}
    if not voided:
        body["warning"] = (
            "Deactivated, but Redis could not be updated: access tokens already issued stay "
            "valid until they expire (at most the access token lifetime)"
        )
    return JSONResponse(body)


def user_routes() -> list[Route]:
    return resource_routes(
        "/api/v1/auth/users",
        {
            "": {"GET": list_users, "POST": create_user},
            "/{user_id}": {"GET": get_user, "PATCH": update_user, "DELETE": deactivate_user},
        },
    )
