"""Hands on the running pipeline: stop and start dependencies, SIGKILL and restart services.

Everything goes through the repository's own scripts (``infra/local/deps.sh`` and
``infra/local/services.sh``), so the harness breaks and repairs the pipeline exactly as an
operator's tools would. :meth:`Pipeline.restore` brings back whatever the harness took down.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

from shared.edge import EdgeSettings
from shared.errors import MillraceError
from shared.ports import PORTS
from shared.rabbitctl import rabbitmqctl_command
from shared.settings import AmqpSettings

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[2]
RUN = ROOT / ".run"
DEPS = ROOT / "infra" / "local" / "deps.sh"
SERVICES = ROOT / "infra" / "local" / "services.sh"
POLL_S = 0.25

# The pipeline's services in start order (ports from shared.ports); writer-<i> listens on
# WRITER_PORT + 10 * i.
SERVICE_PORTS = {
    name: PORTS[name] for name in ("auth", "writer", "ingest_gateway", "mqtt_bridge", "query_api")
}


class PipelineError(MillraceError, RuntimeError):
    """A script failed, or the pipeline did not come back in time."""


def _port(service: str) -> int:
    var, default = SERVICE_PORTS[service]
    return int(os.environ.get(var, default))


class Pipeline:
    def __init__(self, ready_timeout_s: float = 180.0) -> None:
        self.ready_timeout_s = ready_timeout_s
        self.writer_count = max(1, len(self.instances("writer")))
        self._stopped_deps: set[str] = set()

    # ------------------------------------------------------------------ scripts
    def _script(self, *argv: str | Path) -> None:
        env = {**os.environ, "WRITER_COUNT": str(self.writer_count)}
        result = subprocess.run(
            [str(a) for a in argv],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        output = (result.stdout + result.stderr).strip()
        if result.returncode != 0:
            raise PipelineError(
                f"{' '.join(map(str, argv[1:]))} failed ({result.returncode}): {output[-2000:]}"
            )
        for line in output.splitlines():
            log.debug("  %s", line)

    def stop_dependency(self, name: str) -> None:
        self._stopped_deps.add(name)
        self._script(DEPS, "stop", name)

    def start_dependency(self, name: str) -> None:
        self._script(DEPS, "start", name)
        self._stopped_deps.discard(name)

    def start_services(self) -> None:
        """``services.sh up``: starts whatever is not running (here: what was SIGKILLed).

        Deliberately without service names: ``services.sh up writer`` exits 1 silently for
        every name but the last one of its start order (``select_services`` returns the status
        of its last ``[[ ]]`` under ``set -e``).
        """
        self._script(SERVICES, "up")

    # ------------------------------------------------------------------ processes
    def instances(self, service: str) -> list[str]:
        """Instance names with a pid file: ``writer``, ``writer-1``, ..."""
        names = []
        for f in sorted(RUN.glob(f"{service}*.pid")):
            inst = f.stem
            if inst == service or (
                service == "writer" and inst.startswith("writer-") and inst[7:].isdigit()
            ):
                names.append(inst)
        return names

    def _live_pid(self, instance: str, service: str) -> int | None:
        try:
            pid = int((RUN / f"{instance}.pid").read_text().strip())
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
        except (OSError, ValueError):
            return None
        return pid if f"-m services.{service}".encode() in cmdline else None

    def sigkill(self, service: str) -> list[str]:
        """SIGKILL every running instance of ``service``; returns the instances killed."""
        killed = []
        for inst in self.instances(service):
            pid = self._live_pid(inst, service)
            if pid is None:
                continue
            os.kill(pid, signal.SIGKILL)
            killed.append(f"{inst} (pid {pid})")
            deadline = time.monotonic() + 10
            while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
                time.sleep(POLL_S)  # a killed process is reaped by init; nothing to wait on
        log.info("SIGKILL %s: %s", service, ", ".join(killed) or "nothing running")
        return killed

    # ------------------------------------------------------------------ the broker
    def _rabbitmqctl(self, *args: str) -> str:
        command = rabbitmqctl_command(AmqpSettings().url.get_secret_value(), *args)
        result = subprocess.run(command, capture_output=True, text=True, timeout=120)
        if result.returncode != 0:
            raise PipelineError(f"{' '.join(command)}: {(result.stdout + result.stderr)[-500:]}")
        return result.stdout.strip()

    def sigkill_rabbitmq(self) -> None:
        """SIGKILL the broker's Erlang VM: no shutdown, no flush of anything not yet on disk."""
        pid = int(self._rabbitmqctl("eval", "os:getpid().").strip('"'))
        self._stopped_deps.add("rabbitmq")
        os.kill(pid, signal.SIGKILL)
        log.info("SIGKILL RabbitMQ (pid %d)", pid)

    def stop_service(self, service: str) -> None:
        """``services.sh down SERVICE``: SIGTERM, drained as an operator would stop it."""
        self._script(SERVICES, "down", service)

    def shrink_edge(self, max_bytes: int) -> None:
        """A policy that makes the edge queue hold at most ``max_bytes`` (the smaller limit of
        policy and queue argument applies): it fills, and refuses publishes."""
        pattern = f"^{EdgeSettings().queue.replace('.', '[.]')}$"
        definition = f'{{"max-length-bytes": {max_bytes}, "overflow": "reject-publish"}}'
        self._rabbitmqctl(
            "set_policy", "--apply-to", "queues", "--priority", "100",
            "millrace-chaos-edge-full", pattern, definition,
        )  # fmt: skip
        self._edge_shrunk = True

    def restore_edge(self) -> None:
        self._rabbitmqctl("clear_policy", "millrace-chaos-edge-full")
        self._edge_shrunk = False

    _edge_shrunk = False

    # ------------------------------------------------------------------ readiness
    def endpoints(self) -> Iterator[tuple[str, int]]:
        for service in SERVICE_PORTS:
            if service == "writer":
                for i in range(self.writer_count):
                    yield ("writer" if i == 0 else f"writer-{i}"), _port("writer") + 10 * i
            else:
                yield service, _port(service)

    def not_ready(self) -> list[str]:
        out = []
        with httpx.Client(timeout=2.0) as client:
            for name, port in self.endpoints():
                try:
                    ok = client.get(f"http://127.0.0.1:{port}/ready").status_code == 200
                except httpx.HTTPError:
                    ok = False
                if not ok:
                    out.append(name)
        return out

    def wait_ready(self) -> float:
        """Poll every service's ``/ready`` until all answer 200; returns the seconds it took."""
        started = time.monotonic()
        deadline = started + self.ready_timeout_s
        while waiting := self.not_ready():
            if time.monotonic() > deadline:
                raise PipelineError(f"not ready after {self.ready_timeout_s:.0f} s: {waiting}")
            time.sleep(1.0)
        return time.monotonic() - started

    # ------------------------------------------------------------------ repair
    def restore(self) -> None:
        """Start every dependency this harness stopped and every service it killed."""
        problems = []
        if self._edge_shrunk:
            try:
                self.restore_edge()
            except (PipelineError, subprocess.TimeoutExpired) as e:
                problems.append(f"edge policy: {e}")
        for name in sorted(self._stopped_deps):
            try:
                self.start_dependency(name)
            except (PipelineError, subprocess.TimeoutExpired) as e:
                problems.append(f"{name}: {e}")
        try:
            self.start_services()
        except (PipelineError, subprocess.TimeoutExpired) as e:
            problems.append(f"services: {e}")
        if problems:
            raise PipelineError("could not restore: " + "; ".join(problems))
