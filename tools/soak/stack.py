"""A private auth + ingest_gateway + query_api, beside the running pipeline.

The soak needs to rotate a signing key, restart auth and issue tokens of a few seconds' life;
doing that to the pipeline ``make up`` started would change what every other client trusts. The
private stack shares PostgreSQL, Redis, RabbitMQ and InfluxDB with it (readings it accepts flow
through the real writers) but has its own signing key directory and ports, and its services log
to ``.run/soak-<service>.log`` like every other service.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from services.auth.security.keys import KeySet, load_keyset
from services.auth.tokens import TokenIssuer
from shared.settings import JwtSettings

ROOT = Path(__file__).resolve().parents[2]
RUN = ROOT / ".run"
SERVICES = ("auth", "ingest_gateway", "query_api")
PORT_VARIABLES = {
    "auth": "AUTH_PORT",
    "ingest_gateway": "INGEST_GATEWAY_PORT",
    "query_api": "QUERY_API_PORT",
}


class StackError(RuntimeError):
    """The private stack could not start; the message says which service and where its log is."""


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        # As uvicorn binds: connections of an earlier process in TIME_WAIT do not count.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


@dataclass
class PrivateStack:
    """Three services on ``base_port``, ``base_port + 1``, ``base_port + 2``."""

    base_port: int
    access_ttl_s: int = 30
    jwks_cache_s: int = 5
    leeway_s: int = 1
    key_dir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="millrace-soak-")))
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    @property
    def ports(self) -> dict[str, int]:
        return {svc: self.base_port + i for i, svc in enumerate(SERVICES)}

    def url(self, service: str) -> str:
        return f"http://127.0.0.1:{self.ports[service]}"

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update({var: str(self.ports[svc]) for svc, var in PORT_VARIABLES.items()})
        env.update(
            {
                "AUTH_KEY_DIR": str(self.key_dir),
                "AUTH_DEV_USERS_FILE": str(self.key_dir / "dev-users.txt"),
                "AUTH_ACCESS_TTL_S": str(self.access_ttl_s),
                "JWT_JWKS_URL": f"{self.url('auth')}/.well-known/jwks.json",
                "JWT_JWKS_CACHE_S": str(self.jwks_cache_s),
                "JWT_LEEWAY_S": str(self.leeway_s),
                "INGEST_GATEWAY_WORKERS": "1",
                "PYTHONUNBUFFERED": "1",
            }
        )
        return env

    def jwt_settings(self) -> JwtSettings:
        return JwtSettings(leeway_s=self.leeway_s)

    def start(self, service: str) -> None:
        port = self.ports[service]
        if not _port_free(port):
            raise StackError(
                f"port {port} for the soak's {service} is taken; pass another --base-port"
            )
        log = open(RUN / f"soak-{service}.log", "ab")  # noqa: SIM115 (owned by the child)
        self.procs[service] = subprocess.Popen(
            [sys.executable, "-m", f"services.{service}"],
            cwd=ROOT,
            env=self.env(),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()

    def wait_ready(self, service: str, timeout_s: float = 60.0) -> None:
        deadline = time.monotonic() + timeout_s
        proc = self.procs[service]
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise StackError(
                    f"soak {service} exited ({proc.returncode}); see .run/soak-{service}.log"
                )
            try:
                if httpx.get(f"{self.url(service)}/ready", timeout=2.0).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)  # polling a child's readiness, with a deadline
        raise StackError(
            f"soak {service} not ready after {timeout_s:.0f} s; see .run/soak-{service}.log"
        )

    def stop(self, service: str, timeout_s: float = 30.0) -> None:
        proc = self.procs.pop(service, None)
        if proc is None or proc.poll() is not None:
            return
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()

    def keys(self) -> KeySet:
        """The key set auth signs with now (its development key directory)."""
        return load_keyset(
            private_key=None,
            private_key_file=None,
            previous_keys_dir=None,
            key_dir=self.key_dir,
            production=False,
        )

    def issuer(self) -> TokenIssuer:
        settings = self.jwt_settings()
        return TokenIssuer(self.keys(), settings.issuer, settings.audience)

    def auth_command(self, *args: str) -> None:
        """``python -m services.auth <args>`` on this stack's settings; fails unless it succeeds."""
        subprocess.run(
            [sys.executable, "-m", "services.auth", *args],
            cwd=ROOT,
            env=self.env(),
            check=True,
            capture_output=True,
        )

    def rotate_key(self) -> None:
        """``python -m services.auth rotate-key``, then restart auth to sign with the new key."""
        self.auth_command("rotate-key")
        self.stop("auth")
        self.start("auth")
        self.wait_ready("auth")


@contextmanager
def private_stack(base_port: int, access_ttl_s: int = 30) -> Iterator[PrivateStack]:
    stack = PrivateStack(base_port, access_ttl_s=access_ttl_s)
    try:
        for service in SERVICES:  # auth first: the others fetch its JWKS
            stack.start(service)
            stack.wait_ready(service)
        yield stack
    finally:
        for service in reversed(SERVICES):
            stack.stop(service)
