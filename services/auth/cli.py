"""``python -m services.auth [COMMAND]``: the server, and the administration commands.

    serve (default)                 run the HTTP server
    create-user NAME --role ROLE [--factory F ...]
                                    password read from standard input (prompted on a terminal);
                                    without --factory the user sees every factory
    create-gateway GATEWAY_ID [--factory F] [--machine ID ...]
                                    prints the client id and secret, once; without --factory the
                                    gateway joins INGEST_DEFAULT_FACTORY_ID, without --machine it
                                    may write for every machine of its factory
    dev-users                       development only: one user per role, passwords generated
    rotate-key                      development only: retire the generated signing key

Commands talk to PostgreSQL directly (same settings as the server) and are audited as ``cli``.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import logging
import os
import secrets
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from psycopg_pool import AsyncConnectionPool

from services.auth import factories, gateways, users
from services.auth.app import create_app
from services.auth.errors import Conflict, InvalidInput
from services.auth.security.keys import KeyConfigError, rotate_dev_key
from services.auth.security.passwords import Hasher
from services.auth.settings import Settings
from shared.audit import CLI_ACTOR
from shared.db import DB_ERRORS, create_pool, migrate
from shared.errors import MillraceError
from shared.log import configure_logging
from shared.service.entry import load_settings, serve
from shared.startup import wait_for

log = logging.getLogger(__name__)

DEV_USERS = (("operator", "Operator"), ("supervisor", "Supervisor"), ("manager", "Management"))


class CliError(MillraceError):
    """A message for the operator; exit status 1 (2 for a refused command)."""

    def __init__(self, message: str, status: int = 1) -> None:
        super().__init__(message)
        self.status = status


def _out(text: str) -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


@asynccontextmanager
async def _database(settings: Settings) -> AsyncIterator[AsyncConnectionPool]:
    pool = create_pool(settings.postgres, "auth-cli")
    await wait_for(
        "postgres", lambda: pool.open(wait=True), (*DB_ERRORS, TimeoutError), timeout_s=30
    )
    try:
        await migrate(pool)
        yield pool
    finally:
        await pool.close()


def _read_password() -> str:
    if sys.stdin.isatty():
        first = getpass.getpass("Password: ")
        if getpass.getpass("Repeat password: ") != first:
            raise CliError("passwords differ")
        return first
    # Piped: the first line is the password (a trailing newline is not part of it).
    return sys.stdin.readline().rstrip("\r\n")


async def create_user(
    settings: Settings, name: str, role: str, email: str | None, factory: list[str] | None
) -> None:
    try:
        granted = factories.parse_factories(factory, "--factory")
    except InvalidInput as e:
        raise CliError(f"refused: {e}") from None
    password = _read_password()
    async with _database(settings) as pool:
        try:
            user = await users.create(
                pool,
                Hasher(settings.auth),
                CLI_ACTOR,
                username=name,
                password=password,
                role=role,
                email=email,
                factories=granted,
                min_password_length=settings.auth.min_password_length,
            )
        except InvalidInput as e:
            raise CliError(f"refused: {e}") from None
        except Conflict as e:
            raise CliError(str(e)) from None
    scope = ", ".join(user.factories) if user.factories is not None else "every factory"
    _out(f"created user {user.username} ({user.role}) id={user.id} factories: {scope}")


async def create_gateway(
    settings: Settings, gateway_id: str, factory: str | None, machines: list[str] | None
) -> None:
    try:
        factory_id = factories.parse_factory(
            factory or settings.auth.default_factory_id, "--factory"
        )
        machine_ids = factories.parse_machine_ids(machines, "--machine")
    except InvalidInput as e:
        raise CliError(f"refused: {e}") from None
    async with _database(settings) as pool:
        try:
            gateway, secret = await gateways.register(
                pool,
                Hasher(settings.auth),
                CLI_ACTOR,
                gateway_id,
                factory_id=factory_id,
                machine_ids=machine_ids,
            )
        except InvalidInput as e:
            raise CliError(f"refused: {e}") from None
        except Conflict as e:
            raise CliError(str(e)) from None
    _out(f"gateway:       {gateway.gateway_id}")
    _out(f"factory:       {gateway.factory_id}")
    machines_line = ", ".join(gateway.machine_ids) if gateway.machine_ids else "every machine"
    _out(f"machines:      {machines_line}")
    _out(f"client_id:     {gateway.client_id}")
    _out(f"client_secret: {secret}")
    _out("Store the secret now: it is stored hashed and cannot be shown again.")


def _read_dev_file(path: Path) -> dict[str, str]:
    if not path.exists():
        return {}
    known = {}
    for line in path.read_text().splitlines():
        parts = line.split()
        if len(parts) >= 3 and not line.startswith("#"):
            known[parts[0]] = parts[2]
    return known


async def dev_users(settings: Settings) -> None:
    """One user per role; existing ones keep the password on file if it still works."""
    if settings.production:
        raise CliError("dev-users is for development only (MILLRACE_ENV=production)", 2)
    path = settings.auth.dev_users_file
    on_file = _read_dev_file(path)
    hasher = Hasher(settings.auth)
    lines = []
    async with _database(settings) as pool:
        for username, role in DEV_USERS:
            user = await users.by_username(pool, username)
            password = on_file.get(username)
            if user is not None and password and await hasher.verify(user.password_hash, password):
                lines.append((username, role, password))
                continue
            password = secrets.token_urlsafe(12)
            if user is None:
                await users.create(
                    pool,
                    hasher,
                    CLI_ACTOR,
                    username=username,
                    password=password,
                    role=role,
                    min_password_length=settings.auth.min_password_length,
                )
            else:
                await users.set_password(pool, CLI_ACTOR, user.id, await hasher.hash(password))
            lines.append((username, role, password))
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write("# username role password  (development users; generated by dev-users)\n")
        f.writelines(f"{u} {r} {p}\n" for u, r, p in lines)
    os.chmod(path, 0o600)
    _out(f"Development users (also in {path}):")
    for username, role, password in lines:
        _out(f"  {username:<11} {role:<11} {password}")
    username, _, password = lines[0]
    _out("Log in, e.g.:")
    _out(
        f"  curl -s -X POST http://127.0.0.1:{settings.port}/api/v1/auth/login"
        " -H 'Content-Type: application/json'"
        f' -d \'{{"username": "{username}", "password": "{password}"}}\''
    )


def rotate_key(settings: Settings) -> None:
    if settings.production or settings.auth.private_key or settings.auth.private_key_file:
        raise CliError(
            "rotate-key only rotates the generated development key; in production set "
            "AUTH_PRIVATE_KEY_FILE to the new key and put the old one in AUTH_PREVIOUS_KEYS_DIR",
            2,
        )
    try:
        old, new = rotate_dev_key(settings.auth.key_dir)
    except KeyConfigError as e:
        raise CliError(str(e)) from None
    _out(f"retired key {old}; new signing key {new}. Restart auth to sign with it.")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m services.auth", description="Millrace auth: server and administration"
    )
    sub = parser.add_subparsers(dest="command")
    sub.add_parser("serve", help="run the HTTP server (the default)")
    user = sub.add_parser("create-user", help="create a user; password from standard input")
    user.add_argument("name")
    user.add_argument("--role", required=True, help="Operator, Supervisor or Management")
    user.add_argument("--email")
    user.add_argument(
        "--factory",
        action="append",
        metavar="F",
        help="a factory the user sees (repeat for several); without it, every factory",
    )
    gateway = sub.add_parser("create-gateway", help="register a gateway; prints its credentials")
    gateway.add_argument("gateway_id")
    gateway.add_argument(
        "--factory", metavar="F", help="its factory (default: INGEST_DEFAULT_FACTORY_ID)"
    )
    gateway.add_argument(
        "--machine",
        action="append",
        metavar="ID",
        help="a machine of its factory it may write for (repeat); without it, every machine",
    )
    sub.add_parser("dev-users", help="development: one user per role, generated passwords")
    sub.add_parser("rotate-key", help="development: retire the generated signing key")
    return parser


def main(argv: list[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    settings = load_settings(Settings)
    command = args.command or "serve"
    configure_logging("auth", settings.log_level if command == "serve" else "WARNING")
    try:
        if command == "serve":
            serve("auth", settings, create_app)
        elif command == "create-user":
            asyncio.run(create_user(settings, args.name, args.role, args.email, args.factory))
        elif command == "create-gateway":
            asyncio.run(create_gateway(settings, args.gateway_id, args.factory, args.machine))
        elif command == "dev-users":
            asyncio.run(dev_users(settings))
        elif command == "rotate-key":
            rotate_key(settings)
    except CliError as e:
        sys.stderr.write(f"error: {e}\n")
        raise SystemExit(e.status) from None
    except KeyConfigError as e:
        sys.stderr.write(f"error: {e}\n")
        raise SystemExit(2) from None
