"""Argon2 hashing: verification, unknown accounts, length limits, parameter upgrades."""

from __future__ import annotations

from services.auth.security.passwords import MAX_PASSWORD_LENGTH, Hasher, password_problem
from services.auth.settings import AuthSettings

CHEAP = AuthSettings(argon2_time_cost=1, argon2_memory_kib=8, argon2_parallelism=1)


async def test_hash_and_verify() -> None:
    hasher = Hasher(CHEAP)
    stored = await hasher.hash("correct horse battery")
    assert stored.startswith("$argon2id$")
    assert await hasher.verify(stored, "correct horse battery")
    assert not await hasher.verify(stored, "correct horse batterz")
    assert not await hasher.verify("not-a-hash", "anything")


async def test_unknown_account_never_verifies() -> None:
    hasher = Hasher(CHEAP)
    # The dummy hash is of a random secret; even its own input could not be guessed.
    assert not await hasher.verify(None, "")
    assert not await hasher.verify(None, "correct horse battery")


async def test_overlong_secret_is_refused_without_hashing_all_of_it() -> None:
    hasher = Hasher(CHEAP)
    password = "p" * MAX_PASSWORD_LENGTH
    stored = await hasher.hash(password)
    assert await hasher.verify(stored, password)
    assert not await hasher.verify(stored, password + "extra")


def test_needs_rehash_after_a_parameter_upgrade() -> None:
    old = Hasher(CHEAP).hash_sync("secret password")
    stronger = Hasher(CHEAP.model_copy(update={"argon2_time_cost": 2}))
    assert stronger.needs_rehash(old)
    assert not stronger.needs_rehash(stronger.hash_sync("secret password"))


def test_password_policy() -> None:
    assert password_problem("short", 12) == "Must be at least 12 characters"
    assert password_problem(" " * 12, 12) == "Must not be blank"
    assert password_problem("x" * (MAX_PASSWORD_LENGTH + 1), 12) is not None
    assert password_problem("a perfectly fine passphrase", 12) is None
