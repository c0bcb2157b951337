"""Argon2id password and secret hashing, off the event loop.

Verification always costs one full hash, whether or not the account exists (the caller passes
:attr:`Hasher.dummy_hash` for unknown names), so response times do not reveal usernames.
"""

from __future__ import annotations

import asyncio
import os

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from starlette.concurrency import run_in_threadpool

from services.auth.settings import AuthSettings

MAX_PASSWORD_LENGTH = 1024


class Hasher:
    def __init__(self, settings: AuthSettings) -> None:
        self._argon = PasswordHasher(
            time_cost=settings.argon2_time_cost,
            memory_cost=settings.argon2_memory_kib,
            parallelism=settings.argon2_parallelism,
        )
        # Each hash holds ``memory_kib`` of RAM: bound how many run at once.
        self._slots = asyncio.Semaphore(max(2, os.cpu_count() or 2))
        self.dummy_hash = self._argon.hash(os.urandom(16).hex())

    def hash_sync(self, secret: str) -> str:
        return self._argon.hash(secret)

    def verify_sync(self, stored_hash: str, secret: str) -> bool:
        try:
            return self._argon.verify(stored_hash, secret)
        except (VerificationError, InvalidHashError):
            return False

    def needs_rehash(self, stored_hash: str) -> bool:
        try:
            return self._argon.check_needs_rehash(stored_hash)
        except InvalidHashError:
            return True

    async def hash(self, secret: str) -> str:
        async with self._slots:
            return await run_in_threadpool(self.hash_sync, secret)

    async def verify(self, stored_hash: str | None, secret: str) -> bool:
        """True when ``secret`` matches; ``None`` (no such account) still costs one hash."""
        # Hash at most MAX_PASSWORD_LENGTH characters: a megabyte "password" must not cost more.
        too_long = len(secret) > MAX_PASSWORD_LENGTH
        async with self._slots:
            ok = await run_in_threadpool(
                self.verify_sync, stored_hash or self.dummy_hash, secret[:MAX_PASSWORD_LENGTH]
            )
        return ok and stored_hash is not None and not too_long


def password_problem(password: str, min_length: int) -> str | None:
    """Why ``password`` is refused, or None. Length is what matters (NIST SP 800-63B)."""
    if len(password) < min_length:
        return f"Must be at least {min_length} characters"
    if len(password) > MAX_PASSWORD_LENGTH:
        return f"Must be at most {MAX_PASSWORD_LENGTH} characters"
    if not password.strip():
        return "Must not be blank"
    return None
