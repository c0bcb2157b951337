"""Read what services logged during a run: secrets that escaped redaction, and ERROR lines.

Used by the soak and by the test suite (after the whole run). A secret is found by its shape
(a JWT, a refresh token or gateway secret prefix, a PEM private key) or, for values with no
shape such as passwords, by its exact text. ERROR lines count unless they fall inside a window
in which a fault was injected on purpose.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from datetime import datetime
from pathlib import Path

from shared.redact import GATEWAY_SECRET_PREFIX, REFRESH_TOKEN_PREFIX

_SHAPES = re.compile(
    r"eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{8,}"
    rf"|\b(?:{REFRESH_TOKEN_PREFIX}|{GATEWAY_SECRET_PREFIX})[A-Za-z0-9_-]{{8,}}"
    r"|-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----"
)
_ERROR_LEVELS = {"ERROR", "CRITICAL"}


def log_offsets(run_dir: Path) -> dict[Path, int]:
    """Where each log ends now: scan from here to see only what a run adds."""
    return {p: p.stat().st_size for p in run_dir.glob("*.log")}


def _moment(value: object) -> float | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def scan_logs(
    run_dir: Path,
    since: Mapping[Path, int],
    secrets: Iterable[str] = (),
    *,
    error_files: tuple[str, ...] | None = None,
    fault_windows: Iterable[tuple[float, float]] = (),
) -> list[str]:
    """Problems in what ``run_dir/*.log`` gained after ``since``: one line each, secrets never
    quoted. ``error_files`` limits the ERROR check to files whose names start so (all: None)."""
    plain = [s for s in secrets if s and not _SHAPES.search(s) and len(s) >= 6]
    windows = list(fault_windows)
    problems: list[str] = []
    for path in sorted(run_dir.glob("*.log")):
        with path.open("rb") as f:
            f.seek(since.get(path, 0))
            data = f.read().decode("utf-8", "replace")
        check_errors = error_files is None or path.name.startswith(error_files)
        for n, line in enumerate(data.splitlines(), 1):
            where = f"{path.name} (+{n})"
            if _SHAPES.search(line) or any(s in line for s in plain):
                problems.append(f"{where}: a token, secret or key in clear")
            if not check_errors:
                continue
            level, moment = _level(line)
            if level in _ERROR_LEVELS and not any(a <= (moment or 0) <= b for a, b in windows):
                problems.append(f"{where}: {level} {line[:300]}")
    return problems


def _level(line: str) -> tuple[str | None, float | None]:
    if not line.startswith("{"):
        return ("ERROR" if line.startswith("Traceback") else None), None
    try:
        record = json.loads(line)
    except ValueError:
        return None, None
    if not isinstance(record, dict):
        return None, None
    return record.get("level"), _moment(record.get("time"))
