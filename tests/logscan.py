"""After a run that used the services, read what they logged during it (``.run/*.log``).

The run fails when a line carries a token, a refresh token, a gateway secret, a private key or a
development password in clear, or when a service logged ERROR while no test was injecting a fault
on purpose. Tests that inject faults are marked ``disruptive`` (or ``log_errors`` for a test that
provokes an ERROR without disrupting anything); their ERROR lines are expected while they run and
for :data:`GRACE_S` after, while the services recover.
"""

from __future__ import annotations

import time
from collections.abc import Generator
from pathlib import Path

import pytest

from tests.paths import RUN
from tools.soak.logscan import log_offsets, scan_logs

GRACE_S = 30.0
_SERVICE_MARKERS = ("integration", "e2e")
# Secrets with no recognisable shape (passwords) that tests handed to the running services.
_REMEMBERED: set[str] = set()


def remember(secret: str) -> str:
    """Have the scan look for ``secret`` in the logs (a password a test gave a service)."""
    _REMEMBERED.add(secret)
    return secret


_FAULT_MARKERS = ("disruptive", "log_errors")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "log_errors: the test makes a service log ERROR on purpose (no fault injected)"
    )
    config.pluginmanager.register(LogScan(), "millrace-logscan")


def _dev_passwords() -> list[str]:
    path = RUN / "dev-users.txt"
    if not path.is_file():
        return []
    rows = (line.split() for line in path.read_text().splitlines() if not line.startswith("#"))
    return [row[2] for row in rows if len(row) >= 3]


class LogScan:
    def __init__(self) -> None:
        self.offsets: dict[Path, int] = {}
        self.windows: list[tuple[float, float]] = []
        self.used_services = False

    def pytest_sessionstart(self, session: pytest.Session) -> None:
        if RUN.is_dir():
            self.offsets = log_offsets(RUN)

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_protocol(self, item: pytest.Item) -> Generator[None, None, None]:
        start = time.time()
        yield
        if any(item.get_closest_marker(m) for m in _SERVICE_MARKERS):
            self.used_services = True
        if any(item.get_closest_marker(m) for m in _FAULT_MARKERS):
            self.windows.append((start, time.time() + GRACE_S))

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        if not self.used_services or not RUN.is_dir():
            return
        secrets = [*_dev_passwords(), *_REMEMBERED]
        problems = scan_logs(RUN, self.offsets, secrets, fault_windows=self.windows)
        if not problems:
            return
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        lines = [f"service logs of this run: {len(problems)} problem(s)", *problems[:40]]
        if reporter is not None:
            reporter.write_sep("=", "log scan", red=True)
            for line in lines:
                reporter.write_line(line)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
