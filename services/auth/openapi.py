"""``GET /openapi.json``: the OpenAPI 3.1 description of every auth endpoint.

Paths and methods come from the routes themselves (so none can be missing), the required
permission from :func:`shared.http.requires`, and bodies and answers from the table below.
"""

from __future__ import annotations

import copy
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from shared.http import JSONResponse

_STR = {"type": "string"}
_ERROR = {
    "description": "Error",
    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
}
_PUBLIC = {
    ("/api/v1/auth/login", "post"),
    ("/api/v1/auth/refresh", "post"),
    ("/api/v1/auth/token", "post"),
    ("/.well-known/jwks.json", "get"),
    ("/openapi.json", "get"),
}


def _obj(required: list[str], **props: Any) -> dict[str, Any]:
    return {"type": "object", "required": required, "properties": props}


def _json_or_form(schema: dict[str, Any]) -> dict[str, Any]:
    return {
        "required": True,
        "content": {
            "application/json": {"schema": schema},
            "application/x-www-form-urlencoded": {"schema": schema},
        },
    }


def _ok(ref: str, status: str = "200") -> dict[str, Any]:
    return {
        status: {
            "description": "Success",
            "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{ref}"}}},
        }
    }


_LOGIN = _obj(["username", "password"], username=_STR, password=_STR, grant_type=_STR)
_OPERATIONS: dict[tuple[str, str], dict[str, Any]] = {
    ("/api/v1/auth/login", "post"): {
        "summary": "Log in (JSON, or the OAuth2 password grant as a form)",
        "requestBody": _json_or_form(_LOGIN),
        "responses": {**_ok("TokenPair"), "401": _ERROR, "429": _ERROR},
    },
    ("/api/v1/auth/refresh", "post"): {
        "summary": "Rotate a refresh token; a reused one revokes its session",
        "requestBody": _json_or_form(_obj(["refresh_token"], refresh_token=_STR)),
        "responses": {**_ok("TokenPair"), "401": _ERROR},
    },
    ("/api/v1/auth/logout", "post"): {
        "summary": "Revoke the access token and its session",
        "responses": {"200": {"description": "Logged out"}, "401": _ERROR, "503": _ERROR},
    },
    ("/api/v1/auth/me", "get"): {
        "summary": "The caller's account and token",
        "responses": {"200": {"description": "The caller"}, "401": _ERROR},
    },
    ("/api/v1/auth/token", "post"): {
        "summary": "Client-credentials grant for gateways (Basic auth or body)",
        "requestBody": _json_or_form(
            _obj(
                ["grant_type"],
                grant_type={"const": "client_credentials"},
                client_id=_STR,
                client_secret=_STR,
            )
        ),
        "responses": {**_ok("GatewayToken"), "401": _ERROR, "429": _ERROR},
    },
    ("/.well-known/jwks.json", "get"): {
        "summary": "Public keys (current and previous) that verify access tokens",
        "responses": {"200": {"description": "JWK set"}},
    },
    ("/api/v1/auth/users", "get"): {
        "summary": "List users",
        "parameters": [
            {"name": n, "in": "query", "schema": s}
            for n, s in (
                ("limit", {"type": "integer", "minimum": 1, "maximum": 500}),
                ("offset", {"type": "integer", "minimum": 0}),
                ("role", _STR),
                ("active", {"type": "boolean"}),
            )
        ],
    },
    ("/api/v1/auth/users", "post"): {
        "summary": "Create a user",
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    "schema": _obj(
                        ["username", "password", "role"],
                        username=_STR,
                        password=_STR,
                        email=_STR,
                        role={"enum": ["Operator", "Supervisor", "Management"]},
                    )
                }
            },
        },
        "responses": {"201": {"description": "Created"}, "400": _ERROR, "409": _ERROR},
    },
    ("/api/v1/auth/users/{user_id}", "get"): {"summary": "Read a user"},
    ("/api/v1/auth/users/{user_id}", "patch"): {
        "summary": "Change role or email, or reactivate (active: true)",
        "requestBody": {
            "content": {
                "application/json": {
                    "schema": _obj(
                        [],
                        role={"enum": ["Operator", "Supervisor", "Management"]},
                        email=_STR,
                        active={"const": True},
                    )
                }
            }
        },
    },
    ("/api/v1/auth/users/{user_id}", "delete"): {
        "summary": "Deactivate a user; their tokens stop working at once"
    },
    ("/api/v1/auth/gateways", "get"): {"summary": "List gateway credentials"},
    ("/api/v1/auth/gateways", "post"): {
        "summary": "Register a gateway: client id and secret, shown once",
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": _obj(["gateway_id"], gateway_id=_STR)}},
        },
        "responses": {"201": {"description": "Created"}, "409": _ERROR},
    },
    ("/api/v1/auth/gateways/{gateway_id}/disable", "post"): {
        "summary": "Disable a gateway's credentials; its tokens stop working at once"
    },
    ("/openapi.json", "get"): {"summary": "This document"},
}

_COMPONENTS = {
    "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}},
    "schemas": {
        "Error": _obj(
            ["status", "message"],
            status={"const": "error"},
            message=_STR,
            errors={"type": "array", "items": {"type": "object"}},
            error={"type": "string", "description": "OAuth2 error code"},
        ),
        "TokenPair": _obj(
            ["access_token", "refresh_token", "token_type", "expires_in", "user"],
            access_token=_STR,
            refresh_token=_STR,
            token_type={"const": "Bearer"},
            expires_in={"type": "integer"},
            refresh_expires_in={"type": "integer"},
            user={"type": "object"},
        ),
        "GatewayToken": _obj(
            ["access_token", "token_type", "expires_in"],
            access_token=_STR,
            token_type={"const": "Bearer"},
            expires_in={"type": "integer"},
            scope=_STR,
        ),
    },
}


def build_openapi(routes: list[Route]) -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    for route in routes:
        if not route.include_in_schema:
            continue
        for method in sorted((route.methods or set()) - {"HEAD"}):
            key = (route.path, method.lower())
            operation: dict[str, Any] = {"responses": {"200": {"description": "Success"}}}
            operation.update(copy.deepcopy(_OPERATIONS.get(key, {})))
            permission = getattr(route.endpoint, "required_permission", None)
            if key not in _PUBLIC:
                operation["security"] = [{"bearer": []}]
                operation["responses"].setdefault("401", _ERROR)
            if permission:
                operation["description"] = f"Requires the permission `{permission}`."
                operation["responses"].setdefault("403", _ERROR)
            paths.setdefault(route.path, {})[method.lower()] = operation
    return {
        "openapi": "3.1.0",
        "info": {"title": "Millrace auth", "version": "1"},
        "paths": paths,
        "components": _COMPONENTS,
    }


def openapi_route(routes: list[Route]) -> Route:
    async def openapi(request: Request) -> Response:
        return JSONResponse(
            build_openapi([*routes, this]), headers={"Cache-Control": "public, max-age=300"}
        )

    this = Route("/openapi.json", openapi, methods=["GET"])
    return this
