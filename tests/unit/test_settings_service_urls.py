"""A URL that names another service follows that service's port setting."""

from __future__ import annotations

import pytest

from shared.settings import JwtSettings


def test_the_jwks_url_follows_auth_port(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("JWT_JWKS_URL", raising=False)
    monkeypatch.setenv("AUTH_PORT", "8103")
    assert JwtSettings().jwks_url == "http://127.0.0.1:8103/.well-known/jwks.json"


def test_an_explicit_jwks_url_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AUTH_PORT", "8103")
    monkeypatch.setenv("JWT_JWKS_URL", "https://auth.plant.example/.well-known/jwks.json")
    assert JwtSettings().jwks_url == "https://auth.plant.example/.well-known/jwks.json"


def test_a_bad_auth_port_names_both_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("JWT_JWKS_URL", raising=False)
    monkeypatch.setenv("AUTH_PORT", "eighty")
    with pytest.raises(ValueError, match=r"AUTH_PORT.*JWT_JWKS_URL"):
        JwtSettings()
