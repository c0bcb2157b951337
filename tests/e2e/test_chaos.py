"""The short chaos run: 20,000 readings over HTTP and MQTT while the writer and the bridge are
SIGKILLed, InfluxDB is stopped for 5 s, RabbitMQ is restarted, RabbitMQ is SIGKILLed with a
backlog of PUBACKed MQTT readings and the MQTT edge is full — nothing accepted is lost,
nothing is stored twice (``python -m tools.chaos --short``; docs/chaos.md), and no reading that
came again after a kill was stored with other values than the first time (the writers' logs).

The harness runs as a child process, exactly as ``make chaos`` runs it. On a timeout it gets
SIGTERM, which takes it through the ``finally`` that restarts whatever it had stopped.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from tests.paths import ROOT

pytestmark = [pytest.mark.e2e, pytest.mark.disruptive]
READINGS = 20_000
RUN_TIMEOUT_S = 330


@pytest.mark.timeout(RUN_TIMEOUT_S + 150)
def test_short_chaos_run_loses_nothing_and_stores_nothing_twice(
    urls: dict[str, str], tmp_path: Path
) -> None:
    report = tmp_path / "chaos.json"
    # Readings re-delivered after a kill are stored again; InfluxDB overwrites a point with
    # itself, so the count of stored points cannot see them. The writers can: one stored again
    # with other values than before is logged as a conflicting re-write (appended to their logs,
    # which survive the kills).
    logs = sorted((ROOT / ".run").glob("writer*.log"))
    offsets = {log: log.stat().st_size for log in logs}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tools.chaos",
            "--readings",
            str(READINGS),
            "--short",
            "--json",
            str(report),
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        output, _ = proc.communicate(timeout=RUN_TIMEOUT_S)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)  # repairs the pipeline on its way out
            proc.communicate(timeout=120)
    assert report.exists(), output[-5000:]
    doc = orjson.loads(report.read_bytes())
    table = doc["table"]
    assert doc["failure"] is None, output[-5000:]
    phases = [p["phase"] for p in doc["phases"]]
    assert [p.split(" ", 1)[0] for p in phases] == [str(i) for i in range(7)], phases
    assert any("RabbitMQ SIGKILLed with the edge backlog" in p for p in phases), phases
    assert any("edge queue full" in p for p in phases), phases
    total = doc["total"]
    assert total["sent"] == READINGS, table
    assert total["accepted"] + total["rejected"] == READINGS, table  # every reading answered
    assert total["lost"] == 0, table
    assert total["duplicated"] == 0, table
    assert total["stored"] == total["accepted"], table
    assert all(p["accepted"] > 0 for p in doc["phases"]), table
    conflicts = [
        line
        for log in sorted((ROOT / ".run").glob("writer*.log"))
        for line in log.read_bytes()[offsets.get(log, 0) :].decode(errors="replace").splitlines()
        if "conflicting re-write" in line
    ]
    assert not conflicts, conflicts[:5]
    assert proc.returncode == 0, output[-5000:]
