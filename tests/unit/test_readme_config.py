"""The README's configuration tables name every environment variable the services read, and
name nothing they no longer read."""

from __future__ import annotations

import importlib
import re

import pytest
from pydantic_settings import BaseSettings

from tests.paths import ROOT
from tests.unit.test_compose import read_outside_settings

SERVICES = ["ingest_gateway", "query_api", "auth", "mqtt_bridge", "writer", "alerter"]


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


def read_by(service: str) -> set[str]:
    settings = importlib.import_module(f"services.{service}.settings").Settings
    return env_names(settings) | read_outside_settings(service)


@pytest.mark.parametrize("service", SERVICES)
def test_every_setting_is_documented(service: str) -> None:
    readme = (ROOT / "README.md").read_text()
    documented = set(re.findall(r"`([A-Z][A-Z0-9_]+)`", readme))
    missing = sorted(read_by(service) - documented)
    assert not missing, f"README configuration table lacks: {missing}"


def configuration_rows() -> set[str]:
    """Variables named in the first column of the README's "Configuration" tables."""
    readme = (ROOT / "README.md").read_text()
    section = readme.split("\n## Configuration\n", 1)[1].split("\n## ", 1)[0]
    names: set[str] = set()
    for line in section.splitlines():
        if line.startswith("| `"):
            names |= set(re.findall(r"`([A-Z][A-Z0-9_]+)`", line.split("|")[1]))
    return names


def test_the_configuration_tables_name_only_what_is_read() -> None:
    rows = configuration_rows()
    assert {"AMQP_URL", "MQTT_HOST", "MQTT_EDGE_QUEUE"} <= rows
    read = set().union(*(read_by(s) for s in SERVICES))
    # make up's own knobs (WRITER_COUNT...): variables the local scripts expand.
    for script in sorted((ROOT / "infra" / "local").glob("*.sh")):
        read |= set(re.findall(r"\$\{?([A-Z][A-Z0-9_]+)", script.read_text()))
    stale = sorted(rows - read)
    assert not stale, f"the README documents variables no service reads: {stale}"
