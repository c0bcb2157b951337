"""Login sessions: a family of rotating refresh tokens per login, in PostgreSQL.

Every refresh marks the presented token used and issues its successor. A used token presented
again means two parties hold the session (a stolen token, or a client bug): the whole family is
revoked, and so are the access tokens issued with it (their ``jti``s are kept with each refresh
token so that the caller can denylist them).
"""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any

from psycopg import AsyncConnection
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

from services.auth.tokens import MintedToken, TokenIssuer, new_refresh_token, refresh_token_hash
from services.auth.users import User
from shared.records import columns

log = logging.getLogger(__name__)

# A refresh token's user, read in the same query as the token (users joined as ``u``).
_USER_COLUMNS = columns(User, "u")

# (jti, exp) of an access token that must be denylisted.
AccessRef = tuple[str, int]

_PURGE_EVERY_S = 3600.0


@dataclass(frozen=True, slots=True)
class Session:
    access: MintedToken
    refresh_token: str
    refresh_expires_in: int
    family_id: str


class Outcome(StrEnum):
    ROTATED = "rotated"
    INVALID = "invalid"
    REUSED = "reused"


@dataclass(frozen=True, slots=True)
class Rotation:
    outcome: Outcome
    session: Session | None = None
    user: User | None = None
    revoked: list[AccessRef] = field(default_factory=list)


class SessionStore:
    def __init__(
        self, pool: AsyncConnectionPool, issuer: TokenIssuer, access_ttl_s: int, refresh_ttl_s: int
    ) -> None:
        self.pool = pool
        self.issuer = issuer
        self.access_ttl_s = access_ttl_s
        self.refresh_ttl_s = refresh_ttl_s
        self._last_purge = 0.0

    def _mint(self, user: User) -> MintedToken:
        return self.issuer.mint(
            sub=user.id,
            username=user.username,
            role=user.role,
            permissions=user.permissions,
            ttl_s=self.access_ttl_s,
            factories=user.factories,
        )

    async def _issue(self, conn: AsyncConnection[Any], user: User, family_id: str) -> Session:
        access = self._mint(user)
        refresh = new_refresh_token()
        await conn.execute(
            "INSERT INTO refresh_tokens"
            " (family_id, token_hash, expires_at, access_jti, access_expires_at)"
            " VALUES (%s, %s, now() + make_interval(secs => %s), %s, to_timestamp(%s))",
            (
                family_id,
                refresh_token_hash(refresh),
                self.refresh_ttl_s,
                access.jti,
                access.expires_at,
            ),
        )
        return Session(access, refresh, self.refresh_ttl_s, family_id)

    async def start(
        self, user: User, client_address: str | None, user_agent: str | None
    ) -> tuple[Session, User]:
        """A new family for a successful login; the user with the login time recorded."""
        await self._maybe_purge()
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                "INSERT INTO refresh_token_families (user_id, client_address, user_agent)"
                " VALUES (%s, %s, %s) RETURNING id",
                (uuid.UUID(user.id), client_address, (user_agent or "")[:512] or None),
            )
            row = await cur.fetchone()
            assert row is not None
            session = await self._issue(conn, user, str(row[0]))
            cur = await conn.execute(
                "UPDATE users SET last_login = now() WHERE id = %s RETURNING last_login",
                (uuid.UUID(user.id),),
            )
            stamped = await cur.fetchone()
        return session, replace(user, last_login=stamped[0] if stamped else user.last_login)

    async def rotate(self, refresh_token: str) -> Rotation:
        async with self.pool.connection() as conn:
            cur = conn.cursor(row_factory=dict_row)
            await cur.execute(
                "SELECT t.id AS token_id, t.family_id, t.used_at, t.expires_at <= now() AS expired,"
                f" f.revoked_at, {_USER_COLUMNS}"
                " FROM refresh_tokens t"
                " JOIN refresh_token_families f ON f.id = t.family_id"
                " JOIN users u ON u.id = f.user_id"
                " WHERE t.token_hash = %s FOR UPDATE OF t, f",
                (refresh_token_hash(refresh_token),),
            )
            row = await cur.fetchone()
            if row is None or row["revoked_at"] is not None:
                return Rotation(Outcome.INVALID)
            family_id = str(row["family_id"])
            if row["used_at"] is not None:
                revoked = await self._revoke_families(conn, [family_id], "reuse")
                log.warning(
                    "refresh token reuse: session %s of %s revoked (%d access tokens)",
                    family_id,
                    row["username"],
                    len(revoked),
                    extra={"event": "refresh_token_reuse", "user": row["username"]},
                )
                return Rotation(Outcome.REUSED, revoked=revoked)
            if row["expired"] or not row["active"]:
                return Rotation(Outcome.INVALID)
            await conn.execute(
                "UPDATE refresh_tokens SET used_at = now() WHERE id = %s", (row["token_id"],)
            )
            user = User.from_row(row)
            session = await self._issue(conn, user, family_id)
        return Rotation(Outcome.ROTATED, session=session, user=user)

    async def _revoke_families(
        self, conn: AsyncConnection[Any], family_ids: list[str], reason: str
    ) -> list[AccessRef]:
        """Revoke the families; the still-live access tokens issued in them, to denylist."""
        if not family_ids:
            return []
        ids = [uuid.UUID(f) for f in family_ids]
        await conn.execute(
            "UPDATE refresh_token_families SET revoked_at = now(), revoked_reason = %s"
            " WHERE id = ANY(%s) AND revoked_at IS NULL",
            (reason, ids),
        )
        return await self._live_access(conn, "t.family_id = ANY(%s)", ids)

    async def _live_access(
        self, conn: AsyncConnection[Any], condition: str, value: Any
    ) -> list[AccessRef]:
        cur = await conn.execute(
            "SELECT t.access_jti, extract(epoch FROM t.access_expires_at)::bigint"
            " FROM refresh_tokens t JOIN refresh_token_families f ON f.id = t.family_id"
            f" WHERE {condition} AND t.access_expires_at > now()",
            (value,),
        )
        return [(jti, int(exp)) for jti, exp in await cur.fetchall()]

    async def revoke_for_logout(
        self, user_id: str, access_jti: str, refresh_token: str | None
    ) -> list[AccessRef]:
        """Revoke the session the access token belongs to, and the one of ``refresh_token``
        if it is the same user's; returns the access tokens to denylist."""
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                "SELECT DISTINCT f.id FROM refresh_tokens t"
                " JOIN refresh_token_families f ON f.id = t.family_id"
                " WHERE f.user_id = %s AND (t.access_jti = %s OR t.token_hash = %s)",
                (
                    uuid.UUID(user_id),
                    access_jti,
                    refresh_token_hash(refresh_token) if refresh_token else b"",
                ),
            )
            families = [str(r[0]) for r in await cur.fetchall()]
            return await self._revoke_families(conn, families, "logout")

    async def revoke_user(self, user_id: str, reason: str) -> list[AccessRef]:
        """Revoke every session of a user (deactivation)."""
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                "SELECT id FROM refresh_token_families WHERE user_id = %s AND revoked_at IS NULL",
                (uuid.UUID(user_id),),
            )
            families = [str(r[0]) for r in await cur.fetchall()]
            return await self._revoke_families(conn, families, reason)

    async def live_access_tokens(self, user_id: str) -> list[AccessRef]:
        """Access tokens of a user still within their lifetime (to void them on a role change)."""
        async with self.pool.connection() as conn:
            return await self._live_access(conn, "f.user_id = %s", uuid.UUID(user_id))

    async def _maybe_purge(self) -> None:
        """Drop families whose every token expired: nothing in them can be used or reused."""
        now = time.monotonic()
        if now - self._last_purge < _PURGE_EVERY_S:
            return
        self._last_purge = now
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                "DELETE FROM refresh_token_families f"
                " WHERE f.created_at < now() - interval '1 hour'"
                " AND NOT EXISTS (SELECT 1 FROM refresh_tokens t"
                " WHERE t.family_id = f.id AND t.expires_at > now())"
            )
        if cur.rowcount:
            log.info("purged %d expired sessions", cur.rowcount)
