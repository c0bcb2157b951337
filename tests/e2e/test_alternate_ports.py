"""``make up`` / ``make down`` of a copy of this checkout on other ports, beside the running stack.

Every dependency is pointed at a port where nothing answers, so ``make up`` must start its own
PostgreSQL cluster, Redis, RabbitMQ node, Mosquitto and InfluxDB (data under the copy's .run/)
and the services on their own ports; the end-to-end pipeline test then runs against that stack,
and after ``make down`` the machine listens on exactly the ports it listened on before.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.paths import ROOT

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]

ALTERNATE = {
    "POSTGRES_URL": "postgresql://millrace:alternate-stack-only@127.0.0.1:5433/millrace",
    "REDIS_URL": "redis://127.0.0.1:6380/0",
    "AMQP_URL": "amqp://guest:guest@127.0.0.1:5673/",
    "MQTT_HOST": "127.0.0.1",
    "MQTT_PORT": "1884",
    "INFLUX_URL": "http://127.0.0.1:8087",
    "INGEST_GATEWAY_PORT": "8101",
    "QUERY_API_PORT": "8102",
    "AUTH_PORT": "8103",
    "MQTT_BRIDGE_PORT": "8104",
    "WRITER_PORT": "8105",
    "ALERTER_PORT": "8106",
}
# What the running stack may have exported that would point the copy at it.
INHERITED = ("JWT_JWKS_URL", "INGEST_GATEWAY_URL", "QUERY_API_URL", "AUTH_URL", "WRITER_URL")
EPHEMERAL = 32768  # listeners above belong to short-lived clients, not to either stack


def listening() -> set[int]:
    out = subprocess.run(["ss", "-Hltn"], capture_output=True, text=True, check=True).stdout
    ports = {int(line.split()[3].rsplit(":", 1)[1]) for line in out.splitlines() if line.strip()}
    return {p for p in ports if p < EPHEMERAL}


def taken(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def copy_checkout(dest: Path) -> None:
    """The working tree as it is (tracked and new files), with this checkout's installs."""
    files = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout.split(b"\0")
    for name in filter(None, files):
        src = ROOT / os.fsdecode(name)
        if src.is_file():
            (dest / os.fsdecode(name)).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / os.fsdecode(name))
    (dest / ".venv").symlink_to(ROOT / ".venv")
    if (ROOT / "web" / "node_modules").is_dir():
        (dest / "web" / "node_modules").symlink_to(ROOT / "web" / "node_modules")


def make(copy: Path, env: dict[str, str], *args: str, timeout: float = 420) -> str:
    # The installs are this checkout's (linked): do not rebuild them in the copy.
    cmd = ["make", "-o", ".venv/.installed", "-o", "web/node_modules/.installed", *args]
    done = subprocess.run(cmd, cwd=copy, env=env, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, (
        f"make {' '.join(args)} failed:\n{done.stdout[-4000:]}\n{done.stderr[-4000:]}"
    )
    return done.stdout


@pytest.fixture
def scratch() -> Iterator[Path]:
    """A folder the database and broker users can reach (pytest's own temporary folders are
    private to the user running the tests, and the stack's data lives in the copy's .run/)."""
    path = Path(tempfile.mkdtemp(prefix="millrace-alternate-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_make_up_and_down_on_other_ports_next_to_the_running_stack(scratch: Path) -> None:
    ports = [
        int(v.rsplit(":", 1)[1].split("/")[0]) for k, v in ALTERNATE.items() if k.endswith("_URL")
    ]
    ports += [int(v) for k, v in ALTERNATE.items() if k.endswith("_PORT")]
    busy = [p for p in ports if taken(p)]
    assert not busy, f"ports {busy} are taken: this test needs them free"
    copy = scratch / "millrace"
    copy.mkdir()
    copy_checkout(copy)
    env = {k: v for k, v in os.environ.items() if k not in INHERITED} | ALTERNATE
    before = listening()
    try:
        up = make(copy, env, "up")
        for service in ("auth", "ingest_gateway", "query_api", "mqtt_bridge", "writer"):
            assert f"{service}: ready on http://127.0.0.1:" in up
        assert "private cluster in .run/postgres-5433" in up
        assert "node millrace-5673@localhost" in up
        assert listening() >= {5433, 6380, 5673, 1884, 8087, 8101, 8102, 8103, 8104, 8105}
        make(copy, env, "test", "PYTEST_ARGS=tests/e2e/test_pipeline.py -q -p no:randomly")
    finally:
        down = make(copy, env, "down")
    assert "rabbitmq: stopped" in down and "postgres: stopped" in down
    after = listening()
    # Nothing that listened before was stopped (the machine's services, the running stack) and
    # nothing of the copy still listens; a port another program opened meanwhile is its own.
    assert before <= after, f"make down of the copy stopped listeners on {sorted(before - after)}"
    assert not (after - before) & set(ports), (
        f"still listening: {sorted((after - before) & set(ports))}"
    )
    leftovers = subprocess.run(
        ["pgrep", "-af", str(copy)], capture_output=True, text=True
    ).stdout.strip()
    assert not leftovers, f"processes of the copy still run:\n{leftovers}"
