"""Auth settings: environment names, defaults, and what production refuses."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from services.auth.settings import Settings

AUTH_ENV = [
    "MILLRACE_ENV",
    "AUTH_PORT",
    "AUTH_PRIVATE_KEY",
    "AUTH_PRIVATE_KEY_FILE",
    "AUTH_ACCESS_TTL_S",
    "AUTH_ARGON2_MEMORY_KIB",
    "CORS_ORIGINS",
    "POSTGRES_URL",
]


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in AUTH_ENV:
        monkeypatch.delenv(name, raising=False)


def test_defaults() -> None:
    settings = Settings()
    assert settings.port == 8003
    assert settings.auth.access_ttl_s == 900
    assert settings.auth.refresh_ttl_s == 7 * 24 * 3600
    assert settings.auth.gateway_ttl_s == 900
    assert (settings.auth.throttle_max_failures, settings.auth.throttle_window_s) == (5, 900)
    assert settings.auth.key_dir.parts[-2:] == (".run", "auth")
    assert settings.security.cors_origins == []


def test_environment_names(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AUTH_PORT", "9003")
    monkeypatch.setenv("AUTH_ACCESS_TTL_S", "300")
    monkeypatch.setenv("AUTH_PRIVATE_KEY_FILE", "/keys/auth.pem")
    monkeypatch.setenv("CORS_ORIGINS", "https://dash.example")
    settings = Settings()
    assert settings.port == 9003
    assert settings.auth.access_ttl_s == 300
    assert str(settings.auth.private_key_file) == "/keys/auth.pem"
    assert settings.security.cors_origins == ["https://dash.example"]


def test_production_needs_a_key_strong_hashing_and_listed_origins(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MILLRACE_ENV", "production")
    monkeypatch.setenv("POSTGRES_URL", "postgresql://millrace:s3cret@db:5432/millrace")
    with pytest.raises(ValidationError, match="AUTH_PRIVATE_KEY"):
        Settings()
    monkeypatch.setenv("AUTH_PRIVATE_KEY_FILE", "/keys/auth.pem")
    assert Settings().production
    monkeypatch.setenv("AUTH_ARGON2_MEMORY_KIB", "1024")
    with pytest.raises(ValidationError, match="AUTH_ARGON2_MEMORY_KIB"):
        Settings()
    monkeypatch.delenv("AUTH_ARGON2_MEMORY_KIB")
    monkeypatch.setenv("CORS_ORIGINS", "*")
    with pytest.raises(ValidationError, match="CORS_ORIGINS"):
        Settings()
