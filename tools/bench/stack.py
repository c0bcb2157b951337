"""The running pipeline as the benchmark sees it: ports, readiness, a token, its processes, and
whether the machine is quiet enough to measure.

Nothing here starts or stops anything: ``make bench`` runs ``make up`` first.
"""

from __future__ import annotations

import os
import re
import secrets
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from shared import ports
from tools.common.auth import access_token, login

ROOT = Path(__file__).resolve().parents[2]
RUN = ROOT / ".run"
SERVICES = ("ingest_gateway", "query_api", "auth", "mqtt_bridge", "writer", "alerter")
# Other engineers' heavy jobs share this machine: measure only while none of them runs.
BUSY = re.compile(r"pytest|tools\.chaos|tools\.simulator")


def port(service: str) -> int:
    return ports.port(service)


def url(service: str) -> str:
    return f"http://127.0.0.1:{port(service)}"


@dataclass(slots=True)
class Instance:
    name: str  # e.g. "writer-1"
    service: str
    pid: int
    port: int


def instances() -> list[Instance]:
    """Service instances started by ``infra/local/services.sh`` (pid files in .run)."""
    out = []
    for service in SERVICES:
        for pid_file in sorted(RUN.glob(f"{service}*.pid")):
            name = pid_file.stem
            if name != service and not re.fullmatch(rf"{service}-\d+", name):
                continue
            try:
                pid = int(pid_file.read_text().strip())
            except (OSError, ValueError):
                continue
            if not Path(f"/proc/{pid}").exists():
                continue
            base = port(service)
            index = int(name.rsplit("-", 1)[1]) if name != service else 0
            out.append(Instance(name, service, pid, base + 10 * index))
    return out


def not_ready() -> list[str]:
    """Instances whose ``/ready`` does not answer 200 (empty when all are ready)."""
    bad = []
    found = instances()
    for service in SERVICES:
        if not any(i.service == service for i in found):
            bad.append(f"{service} (not running)")
    for inst in found:
        try:
            resp = httpx.get(f"http://127.0.0.1:{inst.port}/ready", timeout=5)
            if resp.status_code != 200:
                bad.append(f"{inst.name} ({resp.status_code})")
        except httpx.HTTPError as e:
            bad.append(f"{inst.name} ({type(e).__name__})")
    return bad


def login_token() -> str:
    """An Operator access token (``write:sensor_data`` and ``read:sensor_data``).

    The benchmark has a user of its own (``.run/bench-user.txt``), created with the auth CLI
    the first time, so that nothing another engineer does to the development users (a changed
    password, a throttled login) stops it.
    """
    path = RUN / "bench-user.txt"
    if path.exists():
        username, password = path.read_text().split()
        token = _login(username, password)
        if token is not None:
            return token
    username = f"bench-{secrets.token_hex(4)}"
    password = secrets.token_urlsafe(18)
    subprocess.run(
        [sys.executable, "-m", "services.auth", "create-user", username, "--role", "Operator"],
        input=password.encode(),
        check=True,
        capture_output=True,
        cwd=ROOT,
    )
    path.write_text(f"{username} {password}\n")
    path.chmod(0o600)
    token = _login(username, password)
    if token is None:
        raise RuntimeError(f"cannot log in as the benchmark user {username} just created")
    return token


def _login(username: str, password: str) -> str | None:
    resp = login(url("auth"), username, password, timeout=30)
    return access_token(resp) if resp.status_code == 200 else None


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def _all_pids() -> list[int]:
    return [int(p) for p in os.listdir("/proc") if p.isdigit()]


def parent_map() -> dict[int, int]:
    parents: dict[int, int] = {}
    for pid in _all_pids():
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
            parents[pid] = int(stat.rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
    return parents


def tree(roots: set[int], parents: dict[int, int] | None = None) -> set[int]:
    """``roots`` and all their descendants (e.g. a service and its uvicorn workers)."""
    parents = parents if parents is not None else parent_map()
    out = set(roots)
    changed = True
    while changed:
        changed = False
        for pid, ppid in parents.items():
            if ppid in out and pid not in out:
                out.add(pid)
                changed = True
    return out


def _own_tree() -> set[int]:
    return tree({os.getpid()})


def busy_jobs() -> list[str]:
    """Heavy jobs of other engineers running now (tests, chaos, simulators), not ours."""
    own = _own_tree()
    jobs = []
    for pid in _all_pids():
        if pid in own:
            continue
        cmd = _cmdline(pid)
        # A job queued behind the suite lock (``flock ... pytest``) waits for us: not busy.
        waiting = cmd.split(" ", 1)[0].rsplit("/", 1)[-1] == "flock"
        if BUSY.search(cmd) and "pgrep" not in cmd and not waiting:
            jobs.append(f"{pid} {cmd[:100]}")
    return jobs


def wait_quiet(max_wait_s: float, log: object = print) -> tuple[bool, float]:
    """Poll until no foreign heavy job runs (and a few seconds more); (quiet, waited_s)."""
    started = time.monotonic()
    quiet_since: float | None = None
    announced = False
    while True:
        jobs = busy_jobs()
        now = time.monotonic()
        if jobs:
            quiet_since = None
            if not announced:
                log(f"waiting for a quiet machine: {len(jobs)} job(s) running, e.g. {jobs[0]}")  # type: ignore[operator]
                announced = True
        elif quiet_since is None:
            quiet_since = now
        elif now - quiet_since >= 3.0:
            return True, now - started
        if now - started > max_wait_s:
            return False, now - started
        time.sleep(1.0)  # polling other engineers' processes: nothing to wait on


CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """CPU seconds ``pid`` has used (user + system, its children not counted); OSError once
    it is gone."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


@dataclass(slots=True)
class CpuCensus:
    """CPU seconds used so far by the pipeline, by the benchmark and by everything else, and
    who is who (a replaced pid means a restart: another engineer's chaos run)."""

    at: float = field(default_factory=time.monotonic)
    pipeline: float = 0.0
    bench: float = 0.0
    other: float = 0.0
    pids: dict[str, int] = field(default_factory=dict)
    by_owner: dict[str, float] = field(default_factory=dict)  # instance/dependency → CPU s

    @classmethod
    def take(cls) -> CpuCensus:
        parents = parent_map()
        own = tree({os.getpid()}, parents)
        census = cls()
        owner: dict[int, str] = {}  # pid → the instance or dependency it belongs to
        for inst in instances():
            census.pids[inst.name] = inst.pid
            for pid in tree({inst.pid}, parents):
                owner[pid] = inst.name
        deps: dict[str, set[int]] = {}
        for pid in parents:
            name = _dependency(_cmdline(pid))
            if name is not None and pid not in owner:
                deps.setdefault(name, set()).add(pid)
        for name, pids in deps.items():
            # The lowest pid is the main process (workers and connections come and go).
            census.pids[name] = min(pids)
            for pid in tree(pids, parents):
                owner.setdefault(pid, name)
        for pid in parents:
            try:
                cpu = cpu_seconds(pid)
            except OSError:
                continue
            if pid in own:
                census.bench += cpu
            elif pid in owner:
                census.pipeline += cpu
                census.by_owner[owner[pid]] = census.by_owner.get(owner[pid], 0.0) + cpu
            else:
                census.other += cpu
        return census

    def since(self, earlier: CpuCensus) -> dict[str, float]:
        """Cores used per category between two censuses (processes that exited are missed)."""
        span = max(self.at - earlier.at, 1e-9)
        return {
            "pipeline": max(0.0, self.pipeline - earlier.pipeline) / span,
            "bench": max(0.0, self.bench - earlier.bench) / span,
            "other": max(0.0, self.other - earlier.other) / span,
        }

    def breakdown(self, earlier: CpuCensus) -> dict[str, float]:
        """Cores used by each service instance and dependency between two censuses."""
        span = max(self.at - earlier.at, 1e-9)
        return {
            k: max(0.0, v - earlier.by_owner.get(k, 0.0)) / span
            for k, v in sorted(self.by_owner.items())
        }

    def restarted(self, earlier: CpuCensus) -> list[str]:
        """Pipeline processes replaced or gone since ``earlier``."""
        return sorted(k for k, pid in earlier.pids.items() if self.pids.get(k) != pid)


DEPENDENCIES = ("influxd", "beam.smp", "mosquitto", "redis-server", "postgres")


def _dependency(cmd: str) -> str | None:
    """The dependency a command line belongs to (its first word), or None."""
    first = cmd.split(" ", 1)[0].rsplit("/", 1)[-1]
    for name in DEPENDENCIES:
        if first.startswith(name):
            return name
    return None


def load_average() -> float:
    return os.getloadavg()[0]
