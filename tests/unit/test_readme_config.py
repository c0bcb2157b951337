"""The README's configuration table names every environment variable the services read."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest
from pydantic_settings import BaseSettings

ROOT = Path(__file__).resolve().parents[2]
SERVICES = ["ingest_gateway", "query_api", "auth", "mqtt_bridge", "writer"]


def env_names(model: type[BaseSettings], seen: set[type] | None = None) -> set[str]:
    seen = seen or set()
    if model in seen:
        return set()
    seen.add(model)
    prefix = str(model.model_config.get("env_prefix", "")).upper()
    names: set[str] = set()
    for name, info in model.model_fields.items():
        ann = info.annotation
        if isinstance(ann, type) and issubclass(ann, BaseSettings):
            names |= env_names(ann, seen)
        elif isinstance(info.validation_alias, str):
            names.add(info.validation_alias.upper())
        else:
            names.add(prefix + name.upper())
    return names


@pytest.mark.parametrize("service", SERVICES)
def test_every_setting_is_documented(service: str) -> None:
    settings = importlib.import_module(f"services.{service}.settings").Settings
    readme = (ROOT / "README.md").read_text()
    documented = set(re.findall(r"`([A-Z][A-Z0-9_]+)`", readme))
    missing = sorted(env_names(settings) - documented)
    assert not missing, f"README configuration table lacks: {missing}"
