"""OpenAPI 3.1 documents generated from the route table and pydantic models.

An endpoint describes itself with :func:`doc` (summary, body model, query model, response
models); the permission comes from :func:`shared.http.requires`, so the document can never
disagree with what the code enforces. ``/openapi.json`` and a Swagger UI at ``/docs`` are added
by :func:`openapi_routes`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, Field
from pydantic.json_schema import models_json_schema
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from shared.http import JSONResponse
from shared.webassets import asset_dir

REF = "#/components/schemas/{model}"


class FieldErrorOut(BaseModel):
    field: str = Field(description="Exact path in the request, e.g. batch[1].readings[0].timestamp")
    error: str
    value: Any = None


class ParameterErrorOut(BaseModel):
    parameter: str
    error: str
    value: Any = None


class ErrorOut(BaseModel):
    """Every error answer has this shape."""

    status: str = Field(default="error", examples=["error"])
    message: str
    errors: list[FieldErrorOut | ParameterErrorOut] | None = None


@dataclass(slots=True)
class Doc:
    summary: str
    body: type[BaseModel] | None = None
    query: type[BaseModel] | None = None
    responses: dict[int, type[BaseModel] | str] = field(default_factory=dict)
    tags: list[str] = field(default_factory=list)
    body_media_types: tuple[str, ...] = ("application/json",)


def doc(summary: str, **kw: Any) -> Callable[[Any], Any]:
    def decorate(endpoint: Any) -> Any:
        endpoint.__openapi__ = Doc(summary=summary, **kw)
        return endpoint

    return decorate


_STANDARD = {
    400: "Invalid request (field or parameter errors)",
    401: "Missing, malformed, expired or revoked token",
    403: "The token lacks the required permission",
    404: "Not found",
    413: "Body too large",
    415: "Unsupported media type or encoding",
    429: "Too many attempts",
    503: "A dependency cannot serve the request now; see Retry-After",
}


Operation = tuple[str, str, Doc | None, str | None]  # path, method, doc, permission


def _ref(model: type[BaseModel]) -> dict[str, Any]:
    return {"$ref": REF.format(model=model.__name__)}


def _operations(routes: list[BaseRoute]) -> tuple[list[Operation], set[type[BaseModel]]]:
    """Every documented (path, method) and the models their documents name."""
    models: set[type[BaseModel]] = {ErrorOut}
    ops: list[Operation] = []
    for route in routes:
        if not isinstance(route, Route) or not route.include_in_schema:
            continue
        endpoint = route.endpoint
        d: Doc | None = getattr(endpoint, "__openapi__", None)
        perm: str | None = getattr(endpoint, "required_permission", None)
        for method in sorted((route.methods or set()) - {"HEAD"}):
            ops.append((route.path, method.lower(), d, perm))
            if d is not None:
                for m in (d.body, d.query, *d.responses.values()):
                    if isinstance(m, type) and issubclass(m, BaseModel):
                        models.add(m)
    return ops, models


def _parameters(path: str, d: Doc | None) -> list[dict[str, Any]]:
    params = [
        {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
        for name in _path_params(path)
    ]
    if d and d.query is not None:
        qs = d.query.model_json_schema(ref_template=REF)
        required = set(qs.get("required", []))
        for name, prop in qs.get("properties", {}).items():
            params.append(
                {
                    "name": name,
                    "in": "query",
                    "required": name in required,
                    "schema": {k: v for k, v in prop.items() if k != "description"},
                    **({"description": prop["description"]} if "description" in prop else {}),
                }
            )
    return params


def _responses(d: Doc | None, perm: str | None) -> dict[str, Any]:
    """The documented answers, plus the standard errors this endpoint can give."""
    responses: dict[str, Any] = {}
    for status, out in (d.responses if d else {}).items():
        if isinstance(out, str):
            responses[str(status)] = {"description": out}
            if status >= 400:
                responses[str(status)]["content"] = {"application/json": {"schema": _ref(ErrorOut)}}
        else:
            responses[str(status)] = {
                "description": (out.__doc__ or out.__name__).strip().splitlines()[0],
                "content": {"application/json": {"schema": _ref(out)}},
            }
    errors = set(_STANDARD) & {int(s) for s in responses} | ({401, 403} if perm else set())
    if d and (d.body is not None or d.query is not None):
        errors.add(400)
    if d and d.body is not None:
        errors |= {413, 415}
    for status in sorted(errors):
        responses.setdefault(
            str(status),
            {
                "description": _STANDARD[status],
                "content": {"application/json": {"schema": _ref(ErrorOut)}},
            },
        )
    if not responses:
        responses["200"] = {"description": "Success"}
    return responses


def _operation(path: str, d: Doc | None, perm: str | None) -> dict[str, Any]:
    op: dict[str, Any] = {"summary": d.summary if d else path, "responses": {}}
    if d and d.tags:
        op["tags"] = d.tags
    if params := _parameters(path, d):
        op["parameters"] = params
    if d and d.body is not None:
        op["requestBody"] = {
            "required": True,
            "content": {mt: {"schema": _ref(d.body)} for mt in d.body_media_types},
        }
    op["responses"] = _responses(d, perm)
    if perm:
        op["security"] = [{"bearerAuth": []}]
        op["description"] = f"Requires permission `{perm}`."
        op["x-required-permission"] = perm
    return op


def build_document(title: str, version: str, routes: list[BaseRoute]) -> dict[str, Any]:
    ops, models = _operations(routes)
    ordered = sorted(models, key=lambda m: m.__name__)
    _, schema = models_json_schema([(m, "serialization") for m in ordered], ref_template=REF)
    paths: dict[str, dict[str, Any]] = {}
    for path, method, d, perm in ops:
        paths.setdefault(path, {})[method] = _operation(path, d, perm)
    return {
        "openapi": "3.1.0",
        "info": {"title": title, "version": version},
        "paths": paths,
        "components": {
            "schemas": schema.get("$defs", {}),
            "securitySchemes": {
                "bearerAuth": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}
            },
        },
    }


def _path_params(path: str) -> list[str]:
    out = []
    for part in path.split("/"):
        if part.startswith("{") and part.endswith("}"):
            out.append(part[1:-1].split(":")[0])
    return out


# Swagger UI 5 (the first to render OpenAPI 3.1) from npm's swagger-ui-dist, served by the
# service itself: no CDN, works on a closed network.
_SWAGGER = """<!doctype html><html><head><meta charset="utf-8"><title>{title}</title>
<link rel="stylesheet" href="/docs/static/swagger-ui.css"></head>
<body><div id="ui"></div><script src="/docs/static/swagger-ui-bundle.js"></script>
<script>SwaggerUIBundle({{url: "/openapi.json", dom_id: "#ui"}});</script></body></html>"""


def openapi_routes(title: str, version: str = "1.0.0") -> list[BaseRoute]:
    """``/openapi.json`` (built once from the app's own routes) and ``/docs``."""
    cache: dict[str, Any] = {}

    async def openapi(request: Request) -> Response:
        if "doc" not in cache:
            cache["doc"] = build_document(title, version, request.app.routes)
        return JSONResponse(cache["doc"])

    async def docs(request: Request) -> Response:
        return HTMLResponse(_SWAGGER.format(title=title))

    return [
        Route("/openapi.json", openapi, methods=["GET"], include_in_schema=False),
        Route("/docs", docs, methods=["GET"], include_in_schema=False),
        Mount(
            "/docs/static",
            StaticFiles(directory=str(asset_dir("swagger-ui-dist")), check_dir=False),
            name="swagger-ui",
        ),
    ]
