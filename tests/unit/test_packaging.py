"""`pip install .` (README "Production", packaging): the packages it finds, the data it ships and
the console scripts it installs, read from pyproject.toml the way setuptools reads them."""

from __future__ import annotations

import importlib
import tomllib

from setuptools import find_packages

from tests.paths import ROOT

PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def packages() -> set[str]:
    find = PYPROJECT["tool"]["setuptools"]["packages"]["find"]
    return set(find_packages(str(ROOT), include=find["include"]))


def test_every_package_the_services_and_tools_import_is_installed() -> None:
    found = packages()
    for folder in ("shared", "services", "tools"):
        for init in (ROOT / folder).rglob("__init__.py"):
            if "__pycache__" in init.parts:
                continue
            name = ".".join(init.parent.relative_to(ROOT).parts)
            assert name in found, f"{name} would be missing from the wheel"
    assert "infra.influxdb" in found  # the InfluxDB 2.x provisioning job
    assert not {p for p in found if p.startswith("tests")}, "tests are not shipped"


def test_the_sql_migrations_ship_with_the_package() -> None:
    data = PYPROJECT["tool"]["setuptools"]["package-data"]
    assert data["shared.migrations"] == ["*.sql"]
    assert list((ROOT / "shared" / "migrations").glob("*.sql"))


def test_every_console_script_points_at_a_callable() -> None:
    scripts = PYPROJECT["project"]["scripts"]
    for name in ("millrace-auth", "millrace-deadletters", "millrace-backup"):
        assert name in scripts
    for name, target in scripts.items():
        module, _, attr = target.partition(":")
        assert module.split(".")[0] in {p.split(".")[0] for p in packages()}, name
        assert callable(getattr(importlib.import_module(module), attr)), name
