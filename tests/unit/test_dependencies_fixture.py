"""Where the tests' dependencies come from (tests/dependencies.py): testcontainers only where
``docker info`` succeeds, the environment's URLs (`make up`) otherwise."""

from __future__ import annotations

import os
from contextlib import ExitStack
from pathlib import Path

import docker.errors
import pytest

from tests.dependencies import (
    TEST_DATABASE,
    TEST_REDIS_DB,
    DependencyControl,
    docker_engine,
    environment_dependencies,
    select_dependencies,
)


def fake_docker(folder: Path, monkeypatch: pytest.MonkeyPatch, info_exit: int) -> None:
    """A ``docker`` client first on PATH whose ``docker info`` exits with ``info_exit``."""
    script = folder / "docker"
    script.write_text(f'#!/bin/sh\n[ "$1" = info ] && exit {info_exit}\nexit 64\n')
    script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{folder}{os.pathsep}{os.environ['PATH']}")


@pytest.fixture
def environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POSTGRES_URL", "postgresql://u:p@db.example:5433/millrace")
    monkeypatch.setenv("REDIS_URL", "redis://cache.example:6380/0")
    monkeypatch.setenv("AMQP_URL", "amqp://u:p@broker.example:5673/")
    monkeypatch.setenv("INFLUX_URL", "http://tsdb.example:8087")


@pytest.mark.parametrize("info_exit", [1, 125])
def test_a_client_without_an_engine_is_not_docker(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, info_exit: int
) -> None:
    fake_docker(tmp_path, monkeypatch, info_exit)
    assert docker_engine() is False


def test_no_client_is_no_docker(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    assert docker_engine() is False


def test_an_engine_answering_docker_info_is_docker(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_docker(tmp_path, monkeypatch, 0)
    assert docker_engine() is True


@pytest.mark.usefixtures("environment")
def test_without_an_engine_the_environment_urls_serve_the_tests(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_docker(tmp_path, monkeypatch, 1)
    with ExitStack() as stack:
        deps = select_dependencies(stack)
    assert deps == environment_dependencies()
    assert not deps.containers
    # The test database and the tests' Redis database, on the environment's servers.
    assert deps.postgres == f"postgresql://u:p@db.example:5433/{TEST_DATABASE}"
    assert deps.redis == f"redis://cache.example:6380/{TEST_REDIS_DB}"
    assert deps.amqp == "amqp://u:p@broker.example:5673/"
    assert deps.influx == "http://tsdb.example:8087"
    assert deps.environ() == {
        "POSTGRES_URL": deps.postgres,
        "REDIS_URL": deps.redis,
        "AMQP_URL": deps.amqp,
        "INFLUX_URL": deps.influx,
    }


@pytest.mark.usefixtures("environment")
def test_with_an_engine_testcontainers_starts_the_dependencies(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, refused_port: int
) -> None:
    """``docker info`` succeeds, so testcontainers asks the engine (here one that refuses every
    connection) for a container instead of falling back to the environment's URLs."""
    fake_docker(tmp_path, monkeypatch, 0)
    monkeypatch.setenv("DOCKER_HOST", f"tcp://127.0.0.1:{refused_port}")
    with pytest.raises(docker.errors.DockerException), ExitStack() as stack:
        select_dependencies(stack)


@pytest.mark.usefixtures("environment")
def test_only_a_local_redis_can_be_frozen() -> None:
    """A local dependency is frozen by its process id, which only Redis tells its clients."""
    control = DependencyControl(environment_dependencies())
    with pytest.raises(ValueError, match="only redis"), control.frozen("postgres"):
        pass
