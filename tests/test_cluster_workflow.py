"""The nightly GitHub Actions workflow users get (.github/workflows/nightly-kind.yml): it parses,
it creates the kind cluster from the config the harness renders (the row's kind version and node
image), runs the suites with --profile kind, always uploads reports/ and deletes the cluster, and
every shell step is valid bash whose harness commands really work."""
from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from harness.cluster.render import render_kind_config
from harness.cluster.spec import cluster_spec
from harness.matrix import load_matrix

REPO = Path(__file__).resolve().parents[1]
WORKFLOW = REPO / ".github" / "workflows" / "nightly-kind.yml"


@pytest.fixture(scope="module")
def workflow() -> dict:
    data = yaml.safe_load(WORKFLOW.read_text())
    data["on"] = data.pop(True, data.get("on"))  # YAML 1.1 reads the key `on` as a boolean
    return data


def _steps(workflow: dict) -> list[dict]:
    (job,) = workflow["jobs"].values()
    return job["steps"]


def _step(workflow: dict, name: str) -> dict:
    return next(s for s in _steps(workflow) if s.get("name") == name)


def test_triggers_runner_and_limits(workflow: dict) -> None:
    assert workflow["on"]["schedule"][0]["cron"].count(" ") == 4
    dispatch = workflow["on"]["workflow_dispatch"]["inputs"]
    assert dispatch["profile"]["options"] == ["kind", "kind-gpu"] and dispatch["profile"]["default"] == "kind"
    assert workflow["permissions"] == {"contents": "read"}
    (job,) = workflow["jobs"].values()
    assert "ubuntu-latest" in job["runs-on"] and 60 <= job["timeout-minutes"] <= 360
    assert job["env"]["SEAMCHECK_PROFILE"] == "${{ inputs.profile || 'kind' }}"


def test_step_order_and_what_each_does(workflow: dict) -> None:
    names = [s["name"] for s in _steps(workflow)]
    assert names == ["Free disk space", "Check out", "Set up Python", "Install seamcheck",
                     "Install kind (the matrix row's version)", "Create the kind cluster", "Log in to Docker Hub",
                     "Pre-pull the stack's images into the nodes", "Run history (restore the last nightly's)",
                     "Conformance and canary suites", "Run history (save this one)", "Cluster state",
                     "Upload reports", "Delete the kind cluster"]
    restore, save = _step(workflow, "Run history (restore the last nightly's)"), _step(workflow, "Run history (save this one)")
    assert restore["uses"].startswith("actions/cache/restore@") and save["uses"].startswith("actions/cache/save@")
    assert restore["with"]["path"] == save["with"]["path"] == "reports/history.sqlite" and save["if"] == "always()"
    assert restore["with"]["restore-keys"] in save["with"]["key"]
    assert "/usr/share/dotnet" in _step(workflow, "Free disk space")["run"]
    login = _step(workflow, "Log in to Docker Hub")
    assert login["if"] == "env.DOCKERHUB_USERNAME != ''" and login["uses"].startswith("docker/login-action@")
    pull = _step(workflow, "Pre-pull the stack's images into the nodes")["run"]
    assert "python -m harness.cluster.kind_cluster images" in pull
    assert 'kind load docker-image "${image}" --name "${SEAMCHECK_KIND_CLUSTER}" --nodes "${workers}"' in pull
    state = _step(workflow, "Cluster state")["run"]
    assert "kind export logs reports/kind-logs" in state and "reports/harness-state" in state
    assert _step(workflow, "Conformance and canary suites")["env"]["SEAMCHECK_KEEP_STACK"] == "1"
    assert _step(workflow, "Check out")["uses"].startswith("actions/checkout@")
    python = _step(workflow, "Set up Python")
    assert python["uses"].startswith("actions/setup-python@") and python["with"]["python-version"] == "3.11"
    assert '-e ".[dev]"' in _step(workflow, "Install seamcheck")["run"]
    install = _step(workflow, "Install kind (the matrix row's version)")["run"]
    assert "python -m harness.cluster.kind_cluster kind-version" in install
    assert "kubernetes-sigs/kind/releases/download/${KIND_VERSION}/kind-linux-amd64" in install
    create = _step(workflow, "Create the kind cluster")["run"]
    assert "python -m harness.cluster.kind_cluster config --profile \"${SEAMCHECK_PROFILE}\"" in create
    assert re.search(r"kind create cluster --name \"\$\{SEAMCHECK_KIND_CLUSTER\}\" --config kind-config.yaml", create)
    suites = _step(workflow, "Conformance and canary suites")["run"]
    assert "--history reports/history.sqlite" in suites
    assert re.search(r"-m pytest --profile \"\$\{SEAMCHECK_PROFILE\}\" -m \"conformance or canary\"", suites)
    upload = _step(workflow, "Upload reports")
    assert upload["if"] == "always()" and upload["uses"].startswith("actions/upload-artifact@")
    assert upload["with"]["path"] == "reports/"
    delete = _step(workflow, "Delete the kind cluster")
    assert delete["if"] == "always()" and "kind delete cluster" in delete["run"]
    assert _step(workflow, "Cluster state")["if"] == "failure()"


def test_every_run_step_is_valid_bash(workflow: dict) -> None:
    bash = shutil.which("bash")
    assert bash
    for step in _steps(workflow):
        if "run" not in step:
            continue
        script = re.sub(r"\$\{\{[^}]*\}\}", "X", step["run"])  # GitHub expressions are not bash
        result = subprocess.run([bash, "-n"], input=script, capture_output=True, text=True, timeout=30)
        assert result.returncode == 0, (step["name"], result.stderr)


def test_the_harness_commands_the_workflow_runs(tmp_path: Path) -> None:
    """What the kind install and create steps compute, run here: the row's kind version, and the
    cluster config the harness itself would create (so the harness reuses the CI's cluster)."""
    row = load_matrix().row(None)
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO), "SEAMCHECK_KIND_CLUSTER": "ignored"}
    version = subprocess.run([sys.executable, "-m", "harness.cluster.kind_cluster", "kind-version"], cwd=REPO, env=env,
                             capture_output=True, text=True, timeout=60)
    assert version.returncode == 0 and version.stdout.strip() == row.cluster["kind_version"]
    for profile in ("kind", "kind-gpu"):
        config = subprocess.run([sys.executable, "-m", "harness.cluster.kind_cluster", "config", "--profile", profile,
                                 "--name", "seamcheck"], cwd=REPO, env=env, capture_output=True, text=True, timeout=60)
        assert config.returncode == 0, config.stderr
        assert config.stdout == render_kind_config(cluster_spec(row, profile, cluster_name="seamcheck"))
    bad = subprocess.run([sys.executable, "-m", "harness.cluster.kind_cluster", "config", "--row", "nope"], cwd=REPO, env=env,
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode != 0 and "unknown matrix row 'nope'" in bad.stderr


def test_the_workflows_pass_actionlint() -> None:
    """rhysd/actionlint, built from the Go module proxy: expressions, contexts, action inputs, and
    the shell of every run step (with shellcheck when it is installed)."""
    from tests.go_tools import ACTIONLINT, go_tool

    binary = go_tool(*ACTIONLINT)
    workflows = sorted(str(p) for p in (REPO / ".github" / "workflows").glob("*.yml"))
    done = subprocess.run([str(binary), "-no-color", *workflows], capture_output=True, text=True, timeout=120,
                          cwd=REPO)
    assert done.returncode == 0, done.stdout + done.stderr
