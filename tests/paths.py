"""Where the tests find the repository's own files."""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
INFRA = ROOT / "infra"
# Starts, stops and freezes the local dependencies (tests of outages call it).
DEPS = str(INFRA / "local" / "deps.sh")
RUN = ROOT / ".run"
