"""Serving one port from several worker processes (uvicorn ``workers=N``).

One Python process tops out at one core; uvicorn's supervisor can fork-free *spawn* N workers
that share the listening socket, each building its own app (and its own connections) through an
import-string factory. Prometheus counters then live in N processes: in multiprocess mode each
worker writes its values to files in a private directory and ``/metrics`` (shared.http) adds
them up, whichever worker answers. Process-level metrics (``process_*``) are not reported in that
mode, and gauges are per worker.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import signal
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import uvicorn


@contextmanager
def _metrics_dir(service: str) -> Iterator[None]:
    path = tempfile.mkdtemp(prefix=f"millrace-{service}-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = path  # read by the workers' prometheus_client
    try:
        yield
    finally:
        os.environ.pop("PROMETHEUS_MULTIPROC_DIR", None)
        shutil.rmtree(path, ignore_errors=True)


def run(service: str, factory: str, workers: int, **options: Any) -> None:
    """``uvicorn.run`` of the app built by ``factory`` ("module:function") in ``workers``
    processes; SIGTERM to this supervisor drains every worker gracefully."""
    with _metrics_dir(service):
        uvicorn.run(factory, factory=True, workers=workers, **options)


def follow_parent() -> None:
    """In a worker: get SIGTERM (a graceful stop) when the supervisor dies, even by SIGKILL,
    instead of living on as an orphan holding the port. Linux only; elsewhere a no-op."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if os.getppid() == 1:  # the supervisor was already gone
        os.kill(os.getpid(), signal.SIGTERM)
