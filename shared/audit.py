"""The audit record of every privileged change: who (user id, username, role), what (action,
target, old and new value), from where (client address, user agent, request id).

One table (``audit_log``) and one INSERT for configuration changes (query API) and user and
gateway administration (auth), written in the transaction of the change itself so that no
change exists without its entry.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from psycopg import AsyncConnection
from psycopg.types.json import Jsonb
from starlette.requests import Request

from shared.auth.verify import Principal
from shared.log import request_id


@dataclass(frozen=True, slots=True)
class Actor:
    id: str
    username: str
    role: str
    client_address: str | None = None
    user_agent: str | None = None
    request_id: str | None = None

    @classmethod
    def of(cls, request: Request, principal: Principal) -> Actor:
        return cls(
            id=principal.sub,
            username=principal.username,
            role=principal.role,
            client_address=client_address(request),
            user_agent=(request.headers.get("user-agent") or "")[:512] or None,
            request_id=request_id.get(),
        )


# Changes made on the server itself with the admin CLI.
CLI_ACTOR = Actor(id="cli", username="cli", role="system")


def client_address(request: Request) -> str | None:
    # Behind a proxy, uvicorn's --proxy-headers / FORWARDED_ALLOW_IPS rewrite this from
    # X-Forwarded-For only for trusted proxies; never read the header here.
    return request.client.host[:64] if request.client else None


async def record(
    conn: AsyncConnection[Any],
    actor: Actor,
    action: str,
    target: str,
    old_value: Any = None,
    new_value: Any = None,
) -> None:
    await conn.execute(
        "INSERT INTO audit_log (actor_id, actor_username, actor_role, action, target,"
        " old_value, new_value, client_address, user_agent, request_id)"
        " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
        (
            actor.id,
            actor.username,
            actor.role,
            action,
            target[:200],
            None if old_value is None else Jsonb(old_value),
            None if new_value is None else Jsonb(new_value),
            actor.client_address,
            actor.user_agent,
            actor.request_id,
        ),
    )
