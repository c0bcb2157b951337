"""Configuration of the auth service (env prefix ``AUTH_``), composed with the shared pieces."""

from __future__ import annotations

import ipaddress
from pathlib import Path

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings

from shared.auth.scope import factory_id_error
from shared.security import UsesSecurity
from shared.settings import ServiceSettings, UsesJwt, UsesPostgres, UsesRedis, env_config

# Development state lives under the repository's git-ignored ``.run/`` (computed, never written).
_RUN_DIR = Path(__file__).resolve().parents[2] / ".run"

# OWASP's floor for argon2id; production refuses anything cheaper (tests lower it freely).
_MIN_PRODUCTION_MEMORY_KIB = 19 * 1024


class AuthSettings(BaseSettings):
    """``AUTH_*``: the auth service's own options (``settings.auth``)."""

    model_config = env_config("AUTH_")

    # Signing key: PEM in the environment (``\n`` escapes accepted) or a file. RSA (RS256,
    # >= 2048 bits) or Ed25519 (EdDSA); the algorithm follows the key.
    private_key: SecretStr | None = None
    private_key_file: Path | None = None
    # Public (or private) PEM files of retired keys, still published in the JWKS so that tokens
    # they signed keep verifying until they expire. Development defaults to ``<key_dir>/previous``.
    previous_keys_dir: Path | None = None
    # Development only: where a generated signing key is kept so restarts keep tokens valid.
    key_dir: Path = _RUN_DIR / "auth"
    dev_users_file: Path = _RUN_DIR / "dev-users.txt"

    access_ttl_s: int = Field(default=900, ge=30)
    refresh_ttl_s: int = Field(default=7 * 24 * 3600, ge=60)
    gateway_ttl_s: int = Field(default=900, ge=30)

    # Failed sign-ins an account may make within the window before it backs off: then
    # backoff_s, doubling with each further failure, at most max_backoff_s between attempts.
    throttle_max_failures: int = Field(default=5, ge=1)
    throttle_window_s: int = Field(default=900, ge=1)
    throttle_backoff_s: int = Field(default=15, ge=1)
    throttle_max_backoff_s: int = Field(default=900, ge=1)
    # Failed sign-ins from one address within the window (a plant behind one NAT shares it;
    # correct sign-ins do not count) before the address waits for the window to end.
    throttle_address_max_failures: int = Field(default=100, ge=1)
    # An account that signed in correctly from an address is known there this long: when that
    # address is past its limit (someone behind the same NAT is guessing), the account still
    # signs in from it, held only by its own backoff. 0: no account is known anywhere.
    throttle_known_s: int = Field(default=30 * 86400, ge=0)
    # Peers (addresses, networks, or "*") whose X-Forwarded-For names the client: a sign-in the
    # console (or an ingress) passes on counts against the browser's address, not the proxy's.
    # Comma-separated; anyone else's X-Forwarded-For is ignored.
    trusted_proxies: str = "127.0.0.1,::1"

    @field_validator("trusted_proxies")
    @classmethod
    def _proxies(cls, value: str) -> str:
        for entry in (e.strip() for e in value.split(",")):
            if entry == "*":
                continue
            try:
                ipaddress.ip_network(entry, strict=False)
            except ValueError:
                raise ValueError(
                    f"AUTH_TRUSTED_PROXIES: {entry!r} is not an address, a network or '*'"
                ) from None
        return value

    min_password_length: int = Field(default=12, ge=8)
    argon2_time_cost: int = Field(default=3, ge=1)
    argon2_memory_kib: int = Field(default=64 * 1024, ge=8)
    argon2_parallelism: int = Field(default=4, ge=1)

    # The factory a gateway registered without one joins: the same variable ingest reads.
    default_factory_id: str = Field(default="default", validation_alias="INGEST_DEFAULT_FACTORY_ID")

    @field_validator("default_factory_id")
    @classmethod
    def _plain_factory_id(cls, value: str) -> str:
        if (problem := factory_id_error(value)) is not None:
            raise ValueError(f"INGEST_DEFAULT_FACTORY_ID: {problem}")
        return value


class Settings(ServiceSettings, UsesPostgres, UsesRedis, UsesJwt, UsesSecurity):
    port: int = Field(default=8003, validation_alias="AUTH_PORT")
    auth: AuthSettings = Field(default_factory=AuthSettings)

    @model_validator(mode="after")
    def _production_needs_real_keys(self) -> Settings:
        if not self.production:
            return self
        problems = []
        if self.auth.private_key is None and self.auth.private_key_file is None:
            problems.append(
                "AUTH_PRIVATE_KEY or AUTH_PRIVATE_KEY_FILE is required in production "
                "(no key is generated outside development)"
            )
        if self.auth.argon2_memory_kib < _MIN_PRODUCTION_MEMORY_KIB:
            problems.append(f"AUTH_ARGON2_MEMORY_KIB must be >= {_MIN_PRODUCTION_MEMORY_KIB}")
        if "*" in self.security.cors_origins:
            problems.append("CORS_ORIGINS must list origins, not '*', in production")
        if problems:
            raise ValueError("; ".join(problems))
        return self
