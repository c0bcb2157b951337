"""Gateway credentials: a client id and a secret (shown once, stored as an argon2 hash),
exchanged through the client-credentials grant for a short-lived ``write:sensor_data`` token."""

from __future__ import annotations

import re
import secrets
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import psycopg
from psycopg_pool import AsyncConnectionPool

from services.auth.errors import Conflict, InvalidInput, field_error
from services.auth.security.passwords import Hasher
from shared import audit
from shared.audit import Actor
from shared.db import fetch_all, fetch_one
from shared.redact import GATEWAY_SECRET_PREFIX
from shared.timefmt import row_iso

GATEWAY_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,99}$")
_COLUMNS = (
    "id, gateway_id, client_id, secret_hash, active, created_at, created_by, disabled_at,"
    " last_token_at"
)


@dataclass(frozen=True, slots=True)
class Gateway:
    id: str
    gateway_id: str
    client_id: str
    active: bool
    created_at: datetime
    created_by: str
    disabled_at: datetime | None
    last_token_at: datetime | None
    secret_hash: str = field(repr=False)

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Gateway:
        return cls(**{**row, "id": str(row["id"])})

    def public(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "gateway_id": self.gateway_id,
            "client_id": self.client_id,
            "active": self.active,
            "created_at": row_iso(self.created_at),
            "created_by": self.created_by,
            "disabled_at": row_iso(self.disabled_at),
            "last_token_at": row_iso(self.last_token_at),
        }


def validate_gateway_id(value: Any) -> str:
    if not isinstance(value, str) or not GATEWAY_ID_RE.fullmatch(value.strip()):
        raise InvalidInput(
            [
                field_error(
                    "gateway_id",
                    "1-100 characters: letters, digits, '.', '_', ':', '-'",
                    value,
                )
            ]
        )
    return value.strip()


async def register(
    pool: AsyncConnectionPool, hasher: Hasher, actor: Actor, gateway_id: Any
) -> tuple[Gateway, str]:
    """A new credential pair; returns the gateway and its secret (the only time it exists)."""
    gid = validate_gateway_id(gateway_id)
    client_id = f"gw_{secrets.token_hex(10)}"
    # The prefix lets log redaction and secret scanners recognise the secret (shared.redact).
    secret = GATEWAY_SECRET_PREFIX + secrets.token_urlsafe(32)
    secret_hash = await hasher.hash(secret)
    try:
        async with pool.connection() as conn:
            row = await fetch_one(
                conn,
                "INSERT INTO gateway_clients (gateway_id, client_id, secret_hash, created_by)"
                f" VALUES (%s, %s, %s, %s) RETURNING {_COLUMNS}",
                (gid, client_id, secret_hash, actor.username),
            )
            assert row is not None
            await audit.record(
                conn, actor, "gateway.create", gid, new_value={"client_id": client_id}
            )
    except psycopg.errors.UniqueViolation as e:
        raise Conflict(
            f"Gateway {gid} already has active credentials; disable them first to replace them"
        ) from e
    return Gateway.from_row(row), secret


async def by_client_id(pool: AsyncConnectionPool, client_id: str) -> Gateway | None:
    async with pool.connection() as conn:
        row = await fetch_one(
            conn, f"SELECT {_COLUMNS} FROM gateway_clients WHERE client_id = %s", (client_id,)
        )
    return Gateway.from_row(row) if row else None


async def list_gateways(pool: AsyncConnectionPool, include_disabled: bool) -> list[Gateway]:
    async with pool.connection() as conn:
        rows = await fetch_all(
            conn,
            f"SELECT {_COLUMNS} FROM gateway_clients WHERE active OR %s"
            " ORDER BY gateway_id, created_at DESC",
            (include_disabled,),
        )
    return [Gateway.from_row(r) for r in rows]


async def disable(pool: AsyncConnectionPool, actor: Actor, gateway_id: str) -> Gateway | None:
    """Disable the gateway's active credentials; None if it has none."""
    async with pool.connection() as conn:
        row = await fetch_one(
            conn,
            "UPDATE gateway_clients SET active = false, disabled_at = now()"
            f" WHERE gateway_id = %s AND active RETURNING {_COLUMNS}",
            (gateway_id,),
        )
        if row is None:
            return None
        await audit.record(
            conn,
            actor,
            "gateway.disable",
            gateway_id,
            old_value={"client_id": row["client_id"], "active": True},
            new_value={"client_id": row["client_id"], "active": False},
        )
    return Gateway.from_row(row)


async def touch(pool: AsyncConnectionPool, gateway: Gateway) -> None:
    async with pool.connection() as conn:
        await conn.execute(
            "UPDATE gateway_clients SET last_token_at = now() WHERE id = %s",
            (uuid.UUID(gateway.id),),
        )
