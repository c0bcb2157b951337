"""People who log in: validation, storage, and the changes Management makes to them."""

from __future__ import annotations

import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import psycopg
from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

from services.auth.errors import Conflict, InvalidInput, field_error
from services.auth.factories import Scope
from services.auth.security.passwords import Hasher, password_problem
from shared import audit
from shared.audit import Actor
from shared.auth.roles import PERMISSIONS, Role
from shared.auth.scope import covers, factories_claim
from shared.db import fetch_one, fetch_page
from shared.records import RowRecord, columns

# "Leave unchanged" for optional fields where None is a meaningful new value.
UNSET: Any = object()
USER_ROLES = (Role.OPERATOR, Role.SUPERVISOR, Role.MANAGEMENT)
USERNAME_RE = re.compile(r"^[a-z0-9][a-z0-9._@-]{1,63}$")
EMAIL_RE = re.compile(r"^[^@\s]{1,64}@[^@\s]+\.[^@\s]+$")


@dataclass(frozen=True, slots=True)
class User(RowRecord):
    LISTED = "factories"

    id: str
    username: str
    email: str | None
    role: str
    # The factories the user sees and works in; None = every factory.
    factories: list[str] | None
    active: bool
    created_at: datetime
    updated_at: datetime
    last_login: datetime | None
    deactivated_at: datetime | None
    password_hash: str = field(repr=False)

    @property
    def permissions(self) -> list[str]:
        return sorted(PERMISSIONS[Role(self.role)])

    def public(self) -> dict[str, Any]:
        # Not super(): slots=True makes the dataclass a new class, which zero-argument super()
        # does not know.
        shown = RowRecord.public(self)
        return {
            **shown,
            "factories": factories_claim(self.factories),
            "permissions": self.permissions,
        }


_COLUMNS = columns(User)


def normalize_username(username: str) -> str:
    return username.strip().lower()


def parse_role(value: Any, field_name: str = "role") -> Role:
    """A user role from any casing ("operator", "Operator"); never ``Gateway``."""
    if isinstance(value, str):
        for role in USER_ROLES:
            if value.strip().lower() == role.value.lower():
                return role
    raise InvalidInput([field_error(field_name, f"Must be one of: {', '.join(USER_ROLES)}", value)])


def validate_new_user(
    username: Any, password: Any, role: Any, email: Any, min_password_length: int
) -> tuple[str, str, Role, str | None]:
    errors = []
    name = normalize_username(username) if isinstance(username, str) else ""
    if not USERNAME_RE.fullmatch(name):
        errors.append(
            field_error(
                "username",
                "2-64 characters: letters, digits, '.', '_', '@', '-' (case-insensitive)",
                username,
            )
        )
    if not isinstance(password, str):
        errors.append(field_error("password", "Required"))
    elif problem := password_problem(password, min_password_length):
        errors.append(field_error("password", problem))
    try:
        parsed_role = parse_role(role)
    except InvalidInput as e:
        errors.extend(e.errors)
    clean_email = _validate_email(email, errors)
    if errors:
        raise InvalidInput(errors)
    assert isinstance(password, str)
    return name, password, parsed_role, clean_email


def _validate_email(email: Any, errors: list[dict[str, Any]]) -> str | None:
    if email is None or email == "":
        return None
    if not isinstance(email, str) or len(email) > 254 or not EMAIL_RE.fullmatch(email.strip()):
        errors.append(field_error("email", "Not a valid email address", email))
        return None
    return email.strip()


async def by_username(pool: AsyncConnectionPool, username: str) -> User | None:
    async with pool.connection() as conn:
        row = await fetch_one(
            conn,
            f"SELECT {_COLUMNS} FROM users WHERE username = %s",
            (normalize_username(username),),
        )
    return User.from_row(row) if row else None


def _uuid(value: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(value)
    except ValueError:
        return None


async def by_id(pool: AsyncConnectionPool, user_id: str) -> User | None:
    uid = _uuid(user_id)
    if uid is None:
        return None
    async with pool.connection() as conn:
        row = await fetch_one(conn, f"SELECT {_COLUMNS} FROM users WHERE id = %s", (uid,))
    return User.from_row(row) if row else None


async def _lock(conn: AsyncConnection[Any], user_id: str) -> User | None:
    uid = _uuid(user_id)
    if uid is None:
        return None
    row = await fetch_one(conn, f"SELECT {_COLUMNS} FROM users WHERE id = %s FOR UPDATE", (uid,))
    return User.from_row(row) if row else None


async def _written(conn: AsyncConnection[Any], query: str, params: Sequence[Any]) -> User:
    """The user an ``INSERT`` or ``UPDATE`` ... ``RETURNING`` its columns wrote."""
    row = await fetch_one(conn, query, params)
    assert row is not None
    return User.from_row(row)


async def list_users(
    pool: AsyncConnectionPool,
    *,
    limit: int,
    offset: int,
    role: Role | None = None,
    active: bool | None = None,
    scope: Scope = None,
) -> tuple[list[User], int]:
    """Users, by username; with ``scope``, only those wholly inside those factories."""
    where: list[str] = ["TRUE"]
    params: list[Any] = []
    if scope is not None:
        where.append("factories IS NOT NULL AND factories <@ %s::text[]")
        params.append(sorted(scope))
    if role is not None:
        where.append("role = %s")
        params.append(role.value)
    if active is not None:
        where.append("active = %s")
        params.append(active)
    async with pool.connection() as conn:
        rows, total = await fetch_page(
            conn,
            "users",
            " AND ".join(where),
            params,
            order_by="username",
            limit=limit,
            offset=offset,
            columns=_COLUMNS,
        )
    return [User.from_row(r) for r in rows], total


async def create(
    pool: AsyncConnectionPool,
    hasher: Hasher,
    actor: Actor,
    *,
    username: Any,
    password: Any,
    role: Any,
    email: Any = None,
    factories: list[str] | None = None,
    min_password_length: int,
) -> User:
    """Validate and insert a user (``factories`` None = every factory, already validated);
    raises :class:`InvalidInput` or :class:`Conflict`."""
    name, secret, parsed_role, clean_email = validate_new_user(
        username, password, role, email, min_password_length
    )
    password_hash = await hasher.hash(secret)
    try:
        async with pool.connection() as conn:
            user = await _written(
                conn,
                "INSERT INTO users (username, email, password_hash, role, factories)"
                f" VALUES (%s, %s, %s, %s, %s) RETURNING {_COLUMNS}",
                (name, clean_email, password_hash, parsed_role.value, factories),
            )
            await audit.record(
                conn,
                actor,
                "user.create",
                user.username,
                new_value={
                    "role": user.role,
                    "email": user.email,
                    "active": True,
                    "factories": factories_claim(user.factories),
                },
            )
    except psycopg.errors.UniqueViolation as e:
        what = "email" if "email" in str(e.diag.constraint_name or "") else "username"
        raise Conflict(f"A user with this {what} already exists") from e
    return user


async def update(
    pool: AsyncConnectionPool,
    actor: Actor,
    user_id: str,
    *,
    role: Role | None = None,
    email: Any = UNSET,
    factories: Any = UNSET,
    activate: bool = False,
    scope: Scope = None,
) -> tuple[User, User] | None:
    """Apply the given changes (``factories``: validated list, None = every factory); (before,
    after), or None if there is no such user inside ``scope``."""
    errors: list[dict[str, Any]] = []
    new_email = UNSET if email is UNSET else _validate_email(email, errors)
    if errors:
        raise InvalidInput(errors)
    try:
        async with pool.connection() as conn:
            before = await _lock(conn, user_id)
            if before is None or not covers(scope, before.factories):
                return None
            sets: dict[str, Any] = {}
            if factories is not UNSET and factories != before.factories:
                sets["factories"] = factories
            if role is not None and role.value != before.role:
                sets["role"] = role.value
            if new_email is not UNSET and new_email != before.email:
                sets["email"] = new_email
            if activate and not before.active:
                sets["active"] = True
                sets["deactivated_at"] = None
            if not sets:
                return before, before
            assignments = ", ".join(f"{column} = %s" for column in sets)
            after = await _written(
                conn,
                f"UPDATE users SET {assignments}, updated_at = now() WHERE id = %s"
                f" RETURNING {_COLUMNS}",
                (*sets.values(), before.id),
            )
            await audit.record(
                conn,
                actor,
                "user.update",
                after.username,
                old_value=_audited(before, sets),
                new_value=_audited(after, sets),
            )
    except psycopg.errors.UniqueViolation as e:
        raise Conflict("A user with this email already exists") from e
    return before, after


def _audited(user: User, changed: dict[str, Any]) -> dict[str, Any]:
    out = {k: getattr(user, k) for k in changed if k != "deactivated_at"}
    if "factories" in out:
        out["factories"] = factories_claim(user.factories)
    return out


async def deactivate(
    pool: AsyncConnectionPool, actor: Actor, user_id: str, scope: Scope = None
) -> User | None:
    """Deactivate the user; None if there is no such user inside ``scope``."""
    async with pool.connection() as conn:
        before = await _lock(conn, user_id)
        if before is None or not covers(scope, before.factories):
            return None
        if not before.active:
            return before
        after = await _written(
            conn,
            "UPDATE users SET active = false, deactivated_at = now(), updated_at = now()"
            f" WHERE id = %s RETURNING {_COLUMNS}",
            (before.id,),
        )
        await audit.record(
            conn,
            actor,
            "user.deactivate",
            before.username,
            old_value={"active": True},
            new_value={"active": False},
        )
    return after


async def set_password(
    pool: AsyncConnectionPool, actor: Actor | None, user_id: str, password_hash: str
) -> None:
    """Store a new hash; audited unless it is a silent re-hash on login (``actor`` None)."""
    async with pool.connection() as conn:
        cur = await conn.execute(
            "UPDATE users SET password_hash = %s, updated_at = now() WHERE id = %s"
            " RETURNING username",
            (password_hash, uuid.UUID(user_id)),
        )
        row = await cur.fetchone()
        if actor is not None and row is not None:
            await audit.record(conn, actor, "user.password", row[0])
