"""Getting an access token from the auth service, as the tools do it."""

from __future__ import annotations

from pathlib import Path

import httpx

LOGIN_PATH = "/api/v1/auth/login"
TOKEN_PATH = "/api/v1/auth/token"
DEV_USERS = Path(__file__).resolve().parents[2] / ".run" / "dev-users.txt"


def login(auth_url: str, username: str, password: str, timeout: float = 15.0) -> httpx.Response:
    """``POST /api/v1/auth/login``; the caller judges the answer (see :func:`access_token`)."""
    return httpx.post(
        f"{auth_url.rstrip('/')}{LOGIN_PATH}",
        json={"username": username, "password": password},
        timeout=timeout,
    )


def access_token(resp: httpx.Response) -> str:
    return str(resp.json()["access_token"])


def dev_password(username: str, users: Path = DEV_USERS) -> str | None:
    """The generated password of a development user (``make up`` writes them), if any."""
    if not users.exists():
        return None
    for line in users.read_text().splitlines():
        parts = line.split()
        if parts and parts[0] == username:
            return parts[2]
    return None
