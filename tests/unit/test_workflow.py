"""The CI workflow cannot run here: hold it to the schema GitHub uses (check-jsonschema's
vendored copy, offline) and to the project's own commands."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.paths import ROOT

WORKFLOW = ROOT / ".github" / "workflows" / "ci.yml"
ON_TAG = "startsWith(github.ref, 'refs/tags/v')"


def workflow() -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load(WORKFLOW.read_text())
    # YAML 1.1 reads the key `on` as True.
    doc["on"] = doc.pop(True, doc.get("on"))
    return doc


def steps(job: str) -> list[dict[str, Any]]:
    result: list[dict[str, Any]] = workflow()["jobs"][job]["steps"]
    return result


def check_jsonschema() -> str:
    tool = shutil.which("check-jsonschema") or str(ROOT / ".venv" / "bin" / "check-jsonschema")
    if not Path(tool).exists():
        pytest.skip("check-jsonschema is not installed (dev lock)")
    return tool


def test_the_workflow_matches_githubs_schema() -> None:
    done = subprocess.run(
        [check_jsonschema(), "--builtin-schema", "vendor.github-workflows", str(WORKFLOW)],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_schema_check_rejects_a_broken_workflow(tmp_path: Path) -> None:
    broken = WORKFLOW.read_text().replace("runs-on:", "runs_on:", 1)
    (tmp_path / "ci.yml").write_text(broken)
    done = subprocess.run(
        [
            check_jsonschema(),
            "--builtin-schema",
            "vendor.github-workflows",
            str(tmp_path / "ci.yml"),
        ],
        capture_output=True,
        text=True,
    )
    assert done.returncode != 0


def test_make_lint_checks_the_workflow() -> None:
    makefile = (ROOT / "Makefile").read_text()
    lint = makefile[makefile.index("\nlint:") :].split("\n\n")[0]
    assert "check-jsonschema --builtin-schema vendor.github-workflows .github/workflows/" in lint


def test_lint_and_the_whole_suite_run_as_the_readme_says() -> None:
    doc = workflow()
    assert set(doc["on"]) == {"push", "pull_request"}
    assert doc["on"]["push"]["tags"] == ["v*"]
    assert doc["permissions"] == {"contents": "read"}
    assert [s["run"] for s in steps("lint") if "run" in s] == ["make lint"]
    runs = [s["run"] for s in steps("test") if "run" in s]
    assert any(r.endswith("bash .ci/run") for r in runs)
    assert "make test" in (ROOT / ".ci" / "run").read_text()


def test_the_image_is_built_scanned_and_given_an_sbom_before_it_is_published() -> None:
    job = workflow()["jobs"]["image"]
    assert set(job["needs"]) == {"lint", "test"}
    uses = [s.get("uses", "") for s in job["steps"]]
    names = " ".join(uses)
    for action in ("docker/build-push-action", "aquasecurity/trivy-action", "anchore/sbom-action"):
        assert action in names, action
    builds = [s for s in job["steps"] if s.get("uses", "").startswith("docker/build-push-action")]
    for build in builds:
        assert (ROOT / build["with"]["file"]).exists()
        assert "VERSION=${{ steps.version.outputs.version }}" in build["with"]["build-args"]
    first_push = next(i for i, s in enumerate(job["steps"]) if s.get("with", {}).get("push"))
    scan = next(i for i, u in enumerate(uses) if u.startswith("aquasecurity/trivy-action"))
    sbom = next(i for i, u in enumerate(uses) if u.startswith("anchore/sbom-action"))
    assert scan < first_push and sbom < first_push
    trivy = job["steps"][scan]["with"]
    assert trivy["exit-code"] == "1" and "CRITICAL" in trivy["severity"]
    for step in job["steps"]:
        if step.get("with", {}).get("push") or step.get("uses", "").startswith(
            "docker/login-action"
        ):
            assert step["if"] == ON_TAG, "images are published from v* tags only"


def test_every_action_is_pinned_to_a_release() -> None:
    for name, job in workflow()["jobs"].items():
        for step in job["steps"]:
            if "uses" in step:
                assert re.fullmatch(r"[\w.-]+/[\w./-]+@v?\d+(\.\d+)*", step["uses"]), (
                    f"{name}: {step['uses']}"
                )
