"""Request and response shapes of the auth endpoints, for the OpenAPI document only
(handlers validate bodies themselves, field by field, in the contract's error format)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from shared.schemas import Pagination, Success

Role = Literal["Operator", "Supervisor", "Management"]


class LoginIn(BaseModel):
    username: str
    password: str
    grant_type: Literal["password"] | None = Field(None, description="OAuth2 password grant")


class RefreshIn(BaseModel):
    refresh_token: str
    grant_type: Literal["refresh_token"] | None = None


class LogoutIn(BaseModel):
    refresh_token: str | None = Field(None, description="Also revoke this session (optional)")


class ClientCredentialsIn(BaseModel):
    grant_type: Literal["client_credentials"]
    client_id: str | None = Field(None, description="Or HTTP Basic authentication")
    client_secret: str | None = None


class UserOut(BaseModel):
    id: str
    username: str
    email: str | None
    role: Role
    permissions: list[str]
    factories: list[str] | Literal["*"] = Field(
        description='The factories the user sees and works in; "*" = every factory'
    )
    active: bool
    created_at: str
    updated_at: str
    last_login: str | None
    deactivated_at: str | None


class TokenPairOut(Success):
    """Access token (JWT, Bearer) and rotating refresh token (opaque)."""

    access_token: str
    refresh_token: str
    token_type: Literal["Bearer"] = "Bearer"
    expires_in: int = Field(description="Seconds the access token lives")
    refresh_expires_in: int
    user: UserOut


class GatewayTokenOut(Success):
    """Short-lived access token whose only permission is write:sensor_data."""

    access_token: str
    token_type: Literal["Bearer"] = "Bearer"
    expires_in: int
    scope: Literal["write:sensor_data"] = "write:sensor_data"


class TokenInfo(BaseModel):
    sub: str
    username: str
    role: str
    permissions: list[str]
    jti: str
    expires_at: int
    factories: list[str] | Literal["*"]
    gateway_id: str | None = Field(None, description="Gateway tokens only")
    machines: list[str] | None = Field(
        None, description="Gateway tokens limited to some machines of their factory"
    )


class MeOut(Success):
    """The caller: account (null for a gateway) and the token presented."""

    user: UserOut | None
    token: TokenInfo


class MessageOut(Success):
    """Done."""

    message: str


class JwksOut(BaseModel):
    """Public keys (current first, then retired ones still valid) as a JWK set."""

    keys: list[dict[str, str]]


class UserListParams(BaseModel):
    limit: int = Field(100, ge=1, le=500)
    offset: int = Field(0, ge=0)
    role: Role | None = None
    active: bool | None = None


class UsersOut(Success):
    """Users, ordered by username."""

    users: list[UserOut]
    pagination: Pagination


class UserEnvelope(Success):
    """One user."""

    user: UserOut
    warning: str | None = None


class UserCreateIn(BaseModel):
    username: str = Field(description="2-64 of a-z 0-9 . _ @ - (case-insensitive)")
    password: str = Field(description="At least AUTH_MIN_PASSWORD_LENGTH (12) characters")
    role: Role
    email: str | None = None
    factories: list[str] | Literal["*"] | None = Field(
        None,
        description='Factory ids, or "*" for every factory; without it, the creator\'s own',
    )


class UserUpdateIn(BaseModel):
    role: Role | None = None
    email: str | None = None
    factories: list[str] | Literal["*"] | None = Field(
        None, description='Factory ids, or "*" for every factory (within your own)'
    )
    active: Literal[True] | None = Field(None, description="true reactivates; DELETE deactivates")


class GatewayCreateIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    gateway_id: str = Field(description="1-100 of A-Z a-z 0-9 . _ : -")
    factory_id: str | None = Field(
        None,
        description="Its factory; without it, your only factory, else INGEST_DEFAULT_FACTORY_ID",
    )
    machine_ids: list[str] | None = Field(
        None, description="Limit it to these machines of its factory; null = every machine"
    )


class GatewayOut(BaseModel):
    id: str
    gateway_id: str
    client_id: str
    factory_id: str
    machine_ids: list[str] | None
    active: bool
    created_at: str
    created_by: str
    disabled_at: str | None
    last_token_at: str | None


class GatewayCreatedOut(Success):
    """Credentials of the new gateway: the secret is shown this once."""

    gateway: GatewayOut
    client_id: str
    client_secret: str
    message: str


class GatewayListParams(BaseModel):
    include_disabled: bool = False


class GatewaysOut(Success):
    """Gateway credentials (never their secrets)."""

    gateways: list[GatewayOut]


class GatewayEnvelope(Success):
    """One gateway's credentials."""

    gateway: GatewayOut
    warning: str | None = None


FORM_OR_JSON = ("application/json", "application/x-www-form-urlencoded")
