"""Login, refresh, logout, ``/me``, the gateway client-credentials grant, and the JWKS.

Errors carry an OAuth2 ``error`` code next to the contract's ``message`` so that OAuth2 client
libraries understand them too.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any, Protocol, TypeVar

from psycopg_pool import AsyncConnectionPool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from services.auth import gateways, users
from services.auth.api.bodies import basic_credentials, read_fields, string_field
from services.auth.api.schemas import (
    FORM_OR_JSON,
    ClientCredentialsIn,
    GatewayTokenOut,
    JwksOut,
    LoginIn,
    LogoutIn,
    MeOut,
    MessageOut,
    RefreshIn,
    TokenPairOut,
)
from services.auth.security.keys import KeySet
from services.auth.security.throttle import Subject, Throttle
from services.auth.sessions import Outcome, Session
from services.auth.state import state
from services.auth.users import User
from shared.audit import client_address
from shared.auth.roles import PERMISSIONS, Role
from shared.http import ApiError, JSONResponse, resource_routes
from shared.metrics import AUTH_SIGN_INS, AUTH_TOKENS
from shared.openapi import doc

log = logging.getLogger(__name__)

NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


def _token_response(body: dict[str, Any]) -> JSONResponse:
    return JSONResponse({"status": "success", **body}, headers=NO_STORE)


def _session_body(session: Session, user: User) -> dict[str, Any]:
    return {
        "access_token": session.access.token,
        "refresh_token": session.refresh_token,
        "token_type": "Bearer",
        "expires_in": session.access.expires_at - session.access.issued_at,
        "refresh_expires_in": session.refresh_expires_in,
        "user": user.public(),
    }


def _too_many(retry_after: int) -> ApiError:
    return ApiError(
        429,
        "Too many failed attempts; try again later",
        headers={"Retry-After": str(retry_after)},
        error="slow_down",
    )


async def _refuse_if_throttled(throttle: Throttle, grant: str, who: Subject, address: str) -> None:
    """429 + Retry-After while the account, or the address of this sign-in (unless the account
    is known there), is backing off."""
    if (wait := await throttle.retry_after_sign_in(who, address)) is not None:
        log.info("%s sign-in throttled for %s from %s", grant, who[1], address)
        AUTH_SIGN_INS.labels(grant, "throttled").inc()
        raise _too_many(wait)


class _Account(Protocol):
    @property
    def active(self) -> bool: ...


A = TypeVar("A", bound=_Account)


async def _authenticate(
    request: Request,
    throttle: Throttle,
    grant: str,
    who: Subject,
    find: Callable[[AsyncConnectionPool], Awaitable[A | None]],
    secret_hash: Callable[[A], str],
    secret: str,
) -> A | None:
    """The active account ``find`` returns if ``secret`` is its secret, else None (a failure
    the throttle counts); 429 while the account or the caller's address is backing off."""
    address = client_address(request) or "unknown"
    subjects = (who, ("addr", address))
    await _refuse_if_throttled(throttle, grant, who, address)
    account = await find(state(request)["pool"])
    # Unknown account: verify against a dummy hash anyway, so timing does not reveal names.
    ok = await state(request)["hasher"].verify(secret_hash(account) if account else None, secret)
    if account is None or not ok or not account.active:
        AUTH_SIGN_INS.labels(grant, "failure").inc()
        await throttle.failure(*subjects)
        return None
    await throttle.succeeded(who, address)
    return account


def _check_grant(fields: dict[str, Any], expected: str, *, required: bool) -> None:
    grant = string_field(fields, "grant_type")
    if grant is None and not required:
        return
    if grant != expected:
        raise ApiError(400, f"grant_type must be {expected}", error="unsupported_grant_type")


@doc(
    "Log in: JSON, or the OAuth2 password grant as a form",
    body=LoginIn,
    body_media_types=FORM_OR_JSON,
    responses={200: TokenPairOut, 401: "Wrong username or password", 429: "Throttled"},
    tags=["session"],
)
async def login(request: Request) -> Response:
    """OAuth2 password grant, JSON or form: ``{username, password}`` → token pair."""
    fields = await read_fields(request)
    _check_grant(fields, "password", required=False)
    raw_username, password = string_field(fields, "username"), string_field(fields, "password")
    if raw_username is None or password is None:
        raise ApiError(
            400,
            "Validation failed",
            [
                {"field": name, "error": "Required"}
                for name, value in (("username", raw_username), ("password", password))
                if value is None
            ],
            error="invalid_request",
        )
    username = users.normalize_username(raw_username)[:256]
    address = client_address(request) or "unknown"
    user = await _authenticate(
        request,
        state(request)["login_throttle"],
        "password",
        ("user", username),
        lambda pool: users.by_username(pool, username),
        lambda found: found.password_hash,
        password,
    )
    if user is None:
        log.info(
            "login failed for %s from %s",
            username,
            address,
            extra={"event": "login_failed", "user": username},
        )
        raise ApiError(401, "Invalid username or password", error="invalid_grant")
    hasher = state(request)["hasher"]
    if hasher.needs_rehash(user.password_hash):
        await users.set_password(state(request)["pool"], None, user.id, await hasher.hash(password))

    sessions = state(request)["sessions"]
    session, user = await sessions.start(user, address, request.headers.get("user-agent"))
    log.info("login of %s (%s) from %s", user.username, user.role, address)
    AUTH_SIGN_INS.labels("password", "success").inc()
    AUTH_TOKENS.labels("password").inc()
    return _token_response(_session_body(session, user))


@doc(
    "Rotate a refresh token; presenting a used one revokes its whole session",
    body=RefreshIn,
    body_media_types=FORM_OR_JSON,
    responses={200: TokenPairOut, 401: "Invalid, expired, revoked or reused refresh token"},
    tags=["session"],
)
async def refresh(request: Request) -> Response:
    """Rotate a refresh token: a new pair; a reused token revokes its whole session."""
    fields = await read_fields(request)
    _check_grant(fields, "refresh_token", required=False)
    token = string_field(fields, "refresh_token")
    if token is None:
        raise ApiError(
            400,
            "Validation failed",
            [{"field": "refresh_token", "error": "Required"}],
            error="invalid_request",
        )
    sessions = state(request)["sessions"]
    rotation = await sessions.rotate(token[:256])
    if rotation.outcome is Outcome.REUSED:
        AUTH_SIGN_INS.labels("refresh_token", "failure").inc()
        revoker = state(request)["revoker"]
        await revoker.deny(rotation.revoked)
        raise ApiError(
            401,
            "Refresh token already used: the session has been revoked, log in again",
            error="invalid_grant",
        )
    if rotation.outcome is Outcome.INVALID or rotation.session is None or rotation.user is None:
        AUTH_SIGN_INS.labels("refresh_token", "failure").inc()
        raise ApiError(401, "Invalid, expired or revoked refresh token", error="invalid_grant")
    AUTH_SIGN_INS.labels("refresh_token", "success").inc()
    AUTH_TOKENS.labels("refresh_token").inc()
    return _token_response(_session_body(rotation.session, rotation.user))


@doc(
    "Log out: revoke the access token and its session",
    body=LogoutIn,
    body_media_types=FORM_OR_JSON,
    responses={200: MessageOut, 401: "Missing or invalid token", 503: "Redis unavailable"},
    tags=["session"],
)
async def logout(request: Request) -> Response:
    """Revoke the presented access token and its session (and ``refresh_token`` if given)."""
    authorizer = state(request)["authorizer"]
    principal = await authorizer.authenticate(request)
    fields = await read_fields(request, optional=True)
    sessions = state(request)["sessions"]
    revoked: list[tuple[str, int]] = [(principal.jti, principal.exp)]
    if principal.role != Role.GATEWAY:
        revoked += await sessions.revoke_for_logout(
            principal.sub, principal.jti, string_field(fields, "refresh_token")
        )
    revoker = state(request)["revoker"]
    if not await revoker.deny(revoked):
        raise ApiError(
            503,
            "The session is closed but the access token could not be revoked yet; retry",
            headers={"Retry-After": "5"},
        )
    return JSONResponse({"status": "success", "message": "Logged out"}, headers=NO_STORE)


@doc(
    "The caller's account and token",
    responses={200: MeOut, 401: "Missing or invalid token"},
    tags=["session"],
)
async def me(request: Request) -> Response:
    authorizer = state(request)["authorizer"]
    principal = await authorizer.authenticate(request)
    token = {
        "sub": principal.sub,
        "username": principal.username,
        "role": principal.role,
        "permissions": sorted(principal.permissions),
        "jti": principal.jti,
        "expires_at": principal.exp,
        "factories": principal.claims["factories"],
    }
    if principal.gateway_id is not None:
        token["gateway_id"] = principal.gateway_id
    if principal.machines is not None:
        token["machines"] = sorted(principal.machines)
    if principal.role == Role.GATEWAY:
        return JSONResponse({"status": "success", "user": None, "token": token})
    user = await users.by_id(state(request)["pool"], principal.sub)
    if user is None or not user.active:
        # The denylist normally stops these first; this holds while Redis is unreachable.
        raise ApiError(401, "Invalid token: revoked", headers={"WWW-Authenticate": "Bearer"})
    return JSONResponse({"status": "success", "user": user.public(), "token": token})


@doc(
    "Gateway token: OAuth2 client-credentials grant (HTTP Basic or body)",
    body=ClientCredentialsIn,
    body_media_types=FORM_OR_JSON,
    responses={200: GatewayTokenOut, 401: "Invalid client credentials", 429: "Throttled"},
    tags=["gateways"],
)
async def client_credentials(request: Request) -> Response:
    """OAuth2 client-credentials grant for gateways: a token with only ``write:sensor_data``,
    for its factory (``factories``), naming the gateway (``gateway_id``) and, when it is limited
    to some machines, those (``machines``)."""
    fields = await read_fields(request, optional=True)
    _check_grant(fields, "client_credentials", required=True)
    basic = basic_credentials(request)
    in_body = (string_field(fields, "client_id"), string_field(fields, "client_secret"))
    if basic is not None and any(in_body):
        raise ApiError(400, "Send credentials once: Basic or body", error="invalid_request")
    client_id, secret = basic or in_body
    if not client_id or not secret:
        raise ApiError(400, "client_id and client_secret required", error="invalid_request")
    client_id = client_id[:64]
    gateway = await _authenticate(
        request,
        state(request)["client_throttle"],
        "client_credentials",
        ("client", client_id),
        lambda pool: gateways.by_client_id(pool, client_id),
        lambda found: found.secret_hash,
        secret,
    )
    if gateway is None:
        log.info(
            "client credentials refused for %s from %s",
            client_id,
            client_address(request) or "unknown",
        )
        raise ApiError(
            401,
            "Invalid client credentials",
            headers={"WWW-Authenticate": 'Basic realm="millrace"'},
            error="invalid_client",
        )
    settings = state(request)["settings"]
    issuer = state(request)["issuer"]
    permissions = sorted(PERMISSIONS[Role.GATEWAY])
    minted = issuer.mint(
        sub=gateway.id,
        username=gateway.gateway_id,
        role=Role.GATEWAY.value,
        permissions=permissions,
        ttl_s=settings.auth.gateway_ttl_s,
        factories=[gateway.factory_id],
        extra=gateway.scope_claims(),
    )
    await gateways.touch(state(request)["pool"], gateway)
    AUTH_SIGN_INS.labels("client_credentials", "success").inc()
    AUTH_TOKENS.labels("client_credentials").inc()
    return _token_response(
        {
            "access_token": minted.token,
            "token_type": "Bearer",
            "expires_in": minted.expires_at - minted.issued_at,
            "scope": " ".join(permissions),
        }
    )


def session_routes(keys: KeySet) -> list[Route]:
    @doc("Public keys that verify access tokens", responses={200: JwksOut}, tags=["keys"])
    async def jwks(request: Request) -> Response:
        # Verifiers cache it and refetch at once on an unknown kid: a short max-age is enough.
        return JSONResponse(keys.jwks(), headers={"Cache-Control": "public, max-age=300"})

    return resource_routes(
        "",
        {
            "/api/v1/auth/login": {"POST": login},
            "/api/v1/auth/refresh": {"POST": refresh},
            "/api/v1/auth/logout": {"POST": logout},
            "/api/v1/auth/me": {"GET": me},
            "/api/v1/auth/token": {"POST": client_credentials},
            "/.well-known/jwks.json": {"GET": jwks},
        },
    )
