"""Gateway credentials: a client id and a secret (shown once, stored as an argon2 hash),
exchanged through the client-credentials grant for a short-lived ``write:sensor_data`` token.

A gateway belongs to one factory and may be limited to some machines of it: its token carries
``factories: [its factory]`` and, when limited, ``machines``; ingest refuses any other machine.
"""

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
from services.auth.factories import Scope
from services.auth.security.passwords import Hasher
from shared import audit
from shared.audit import Actor
from shared.db import fetch_all, fetch_one
from shared.records import RowRecord, columns
from shared.redact import GATEWAY_SECRET_PREFIX

GATEWAY_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,99}$")


@dataclass(frozen=True, slots=True)
class Gateway(RowRecord):
    LISTED = "machine_ids"

    id: str
    gateway_id: str
    client_id: str
    factory_id: str
    # The machines of its factory it may write for; None = every machine of the factory.
    machine_ids: list[str] | None
    active: bool
    created_at: datetime
    created_by: str
    disabled_at: datetime | None
    last_token_at: datetime | None
    secret_hash: str = field(repr=False)

    def scope_claims(self) -> dict[str, Any]:
        """What its access token says about it besides the factory (``gateway_id``, ...)."""
        claims: dict[str, Any] = {"gateway_id": self.gateway_id, "client_id": self.client_id}
        if self.machine_ids is not None:
            claims["machines"] = self.machine_ids
        return claims


_COLUMNS = columns(Gateway)


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


async def _foreign_machines(
    conn: Any, factory_id: str, machine_ids: list[str]
) -> list[dict[str, Any]]:
    """Field errors for the machines that are not registered in ``factory_id``."""
    rows = await fetch_all(
        conn,
        "SELECT id::text AS id FROM machine_metadata"
        " WHERE id = ANY(%s::uuid[]) AND factory_id = %s",
        (machine_ids, factory_id),
    )
    found = {r["id"] for r in rows}
    return [
        field_error("machine_ids", f"Machine {m} is not registered in factory {factory_id}", m)
        for m in machine_ids
        if m not in found
    ]


async def register(
    pool: AsyncConnectionPool,
    hasher: Hasher,
    actor: Actor,
    gateway_id: Any,
    *,
    factory_id: str,
    machine_ids: list[str] | None = None,
) -> tuple[Gateway, str]:
    """A new credential pair for a gateway of ``factory_id`` (limited to ``machine_ids`` when
    given; both already validated); returns the gateway and its secret (the only time it
    exists)."""
    gid = validate_gateway_id(gateway_id)
    client_id = f"gw_{secrets.token_hex(10)}"
    # The prefix lets log redaction and secret scanners recognise the secret (shared.redact).
    secret = GATEWAY_SECRET_PREFIX + secrets.token_urlsafe(32)
    secret_hash = await hasher.hash(secret)
    try:
        async with pool.connection() as conn:
            if machine_ids and (errors := await _foreign_machines(conn, factory_id, machine_ids)):
                raise InvalidInput(errors)
            row = await fetch_one(
                conn,
                "INSERT INTO gateway_clients"
                " (gateway_id, client_id, secret_hash, created_by, factory_id, machine_ids)"
                f" VALUES (%s, %s, %s, %s, %s, %s::uuid[]) RETURNING {_COLUMNS}",
                (gid, client_id, secret_hash, actor.username, factory_id, machine_ids),
            )
            assert row is not None
            await audit.record(
                conn,
                actor,
                "gateway.create",
                gid,
                new_value={
                    "client_id": client_id,
                    "factory_id": factory_id,
                    "machine_ids": machine_ids,
                },
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


async def list_gateways(
    pool: AsyncConnectionPool, include_disabled: bool, scope: Scope = None
) -> list[Gateway]:
    """Gateways by id; with ``scope``, only those of these factories."""
    async with pool.connection() as conn:
        rows = await fetch_all(
            conn,
            f"SELECT {_COLUMNS} FROM gateway_clients WHERE (active OR %s)"
            " AND (%s::text[] IS NULL OR factory_id = ANY(%s::text[]))"
            " ORDER BY gateway_id, created_at DESC",
            (include_disabled, *[None if scope is None else sorted(scope)] * 2),
        )
    return [Gateway.from_row(r) for r in rows]


async def disable(
    pool: AsyncConnectionPool, actor: Actor, gateway_id: str, scope: Scope = None
) -> Gateway | None:
    """Disable the gateway's active credentials; None if it has none (in ``scope``)."""
    async with pool.connection() as conn:
        row = await fetch_one(
            conn,
            "UPDATE gateway_clients SET active = false, disabled_at = now()"
            " WHERE gateway_id = %s AND active"
            " AND (%s::text[] IS NULL OR factory_id = ANY(%s::text[]))"
            f" RETURNING {_COLUMNS}",
            (gateway_id, *[None if scope is None else sorted(scope)] * 2),
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
