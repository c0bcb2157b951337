"""Every role x every protected endpoint of every HTTP service, against the running pipeline.

The endpoints and the permission each needs are read from the services' own OpenAPI documents
(``x-required-permission``, set by the same decorator that enforces it), so a new endpoint is
covered the day it is added. A role lacking the permission gets 403 naming it; a role holding it
gets past authorization and an answer of the handler (2xx, 400 for an empty body, 404 for an
unknown id; never 401/403 and never a 5xx); no token at all gets 401.
"""

from __future__ import annotations

import re
import subprocess
import sys
import uuid
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from shared.auth.roles import PERMISSIONS, Role

pytestmark = pytest.mark.e2e
PUBLIC = {
    ("POST", "/api/v1/auth/login"),
    ("POST", "/api/v1/auth/refresh"),
    ("POST", "/api/v1/auth/token"),
    ("GET", "/.well-known/jwks.json"),
}
# What a role holding the permission may get for these requests (an empty body, a random id):
# past authorization, and never a server error.
PAST_AUTHORIZATION = {200, 201, 202, 204, 400, 404, 406, 409, 415, 422}
# Any valid token, no permission: they concern the caller's own session.
SELF = {("GET", "/api/v1/auth/me"), ("POST", "/api/v1/auth/logout")}


def operations(urls: dict[str, str]) -> list[tuple[str, str, str, str | None]]:
    out = []
    for service in ("ingest_gateway", "query_api", "auth"):
        doc = httpx.get(f"{urls[service]}/openapi.json", timeout=10).json()
        for path, ops in doc["paths"].items():
            for method, op in ops.items():
                out.append((service, method.upper(), path, op.get("x-required-permission")))
    return out


def concrete(path: str) -> str:
    return re.sub(r"\{[^}]+\}", lambda _: str(uuid.uuid4()), path)


def call(url: str, method: str, headers: dict[str, str]) -> httpx.Response:
    body: Any = {} if method in ("POST", "PATCH", "PUT") else None
    with httpx.stream(method, url, json=body, headers=headers, timeout=15) as resp:
        # The live stream (server-sent events) never ends: its status is the answer.
        if not resp.headers.get("content-type", "").startswith("text/event-stream"):
            resp.read()
    return resp


@pytest.fixture
def gateway_token(urls: dict[str, str]) -> str:
    out = subprocess.run(
        [sys.executable, "-m", "services.auth", "create-gateway", f"GW-{uuid.uuid4().hex[:6]}"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    fields = dict(re.findall(r"^(client_id|client_secret):\s+(\S+)$", out, re.MULTILINE))
    resp = httpx.post(
        f"{urls['auth']}/api/v1/auth/token",
        data={"grant_type": "client_credentials", **fields},
        timeout=10,
    )
    assert resp.status_code == 200, resp.text
    return str(resp.json()["access_token"])


def test_matrix(urls: dict[str, str], token_for: Callable[[str], str], gateway_token: str) -> None:
    ops = operations(urls)
    protected = [op for op in ops if (op[1], op[2]) not in PUBLIC]
    assert len(protected) >= 25, "the OpenAPI documents list fewer endpoints than expected"
    tokens = {
        role.value: token_for(role.value)
        for role in (Role.OPERATOR, Role.SUPERVISOR, Role.MANAGEMENT)
    }
    tokens[Role.GATEWAY.value] = gateway_token
    failures = []
    for service, method, path, permission in protected:
        if (method, path) == ("POST", "/api/v1/auth/logout"):
            continue  # would revoke the shared tokens; covered by the auth tests
        url = urls[service] + concrete(path)
        resp = call(url, method, {})
        if resp.status_code != 401:
            failures.append(f"{method} {path} without token → {resp.status_code}")
        for role, token in tokens.items():
            resp = call(url, method, {"Authorization": f"Bearer {token}"})
            allowed = permission is None or permission in PERMISSIONS[Role(role)]
            if allowed and resp.status_code not in PAST_AUTHORIZATION:
                failures.append(f"{role} {method} {path} → {resp.status_code} (allowed)")
            if not allowed and (resp.status_code != 403 or permission not in resp.text):
                failures.append(f"{role} {method} {path} → {resp.status_code} (needs {permission})")
    assert not failures, "\n".join(failures)


def test_public_surface(urls: dict[str, str]) -> None:
    for service in ("ingest_gateway", "query_api", "auth"):
        for path in ("/health", "/ready", "/metrics", "/openapi.json"):
            assert httpx.get(urls[service] + path, timeout=10).status_code == 200, (service, path)
    assert httpx.get(urls["auth"] + "/.well-known/jwks.json", timeout=10).json()["keys"]
