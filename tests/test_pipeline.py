"""The pipeline under test, run for real: compiled by the pipeline role's kfp, executed by KFP's
local runner (runner role, kfp >= 2.16) with every task in the pipeline role's interpreter,
against the session's real MLflow tracking server (the row's) and S3 artifact store.
"""
from __future__ import annotations

import json
import os
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from harness.pipeline.compile import inspect_compiled
from harness.seams import gate_blocked

REPO = Path(__file__).resolve().parents[1]
COMPILE_TIMEOUT = 120
RUN_TIMEOUT = 600  # a full local run takes about 40 s on 2 cores (train: about 20 s)

pytestmark = pytest.mark.stack


@pytest.fixture(scope="module")
def pl_pipeline_python(role_envs) -> str:
    return str(role_envs["pipeline"].python)


@pytest.fixture(scope="module")
def pl_runner_python(role_envs) -> str:
    return str(role_envs["runner"].python)


@pytest.fixture(scope="module")
def pins(role_envs) -> list[str]:
    return list(role_envs["pipeline"].pins)


@pytest.fixture(scope="module")
def pl_tracking_uri(stack) -> str:
    return stack.tracking_uri


@pytest.fixture(scope="module")
def stack_env(stack) -> dict[str, str]:
    return stack.client_env()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _role_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO)
    env.update(extra or {})
    return env


def _http_json(url: str, body: dict | None = None, timeout: float = 10) -> dict:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        return json.loads(resp.read() or b"{}")


@pytest.fixture(scope="module")
def pl_dataset(tmp_path_factory: pytest.TempPathFactory, pl_pipeline_python: str) -> str:
    """The training parquet, written by the pipeline role (the env that reads it)."""
    path = tmp_path_factory.mktemp("data") / "train.parquet"
    subprocess.run([pl_pipeline_python, "-c",
                    f"from harness.pipeline.dataset import write_dataset; write_dataset({str(path)!r})"],
                   env=_role_env(), check=True, timeout=120)
    return str(path)


@pytest.fixture
def pl_dead_kubeconfig(tmp_path: Path) -> str:
    """A kubeconfig whose API server port has nothing listening: connection refused."""
    path = tmp_path / "kubeconfig"
    path.write_text(
        "apiVersion: v1\nkind: Config\n"
        f"clusters: [{{name: dead, cluster: {{server: 'http://127.0.0.1:{_free_port()}'}}}}]\n"
        "users: [{name: u, user: {token: unused}}]\n"
        "contexts: [{name: c, context: {cluster: dead, user: u}}]\ncurrent-context: c\n"
    )
    return str(path)


def _run_local(runner_python: str, pipeline_python: str, tmp_path: Path, params: dict,
               kubeconfig: str, stack_env: dict[str, str]) -> dict:
    (tmp_path / "params.json").write_text(json.dumps(params))
    env = _role_env(stack_env)
    env["KUBECONFIG"] = kubeconfig
    # kfp's lightweight components `mktemp -d` a folder per task and leave it: keep them in ours.
    (tmp_path / "tmp").mkdir(exist_ok=True)
    env["TMPDIR"] = str(tmp_path / "tmp")
    proc = subprocess.run(
        [runner_python, "-m", "harness.pipeline.run_local", "--component-python", pipeline_python,
         "--pipeline-root", str(tmp_path / "root"), "--params", str(tmp_path / "params.json"),
         "--result", str(tmp_path / "result.json")],
        env=env, cwd=REPO, capture_output=True, text=True, timeout=RUN_TIMEOUT, check=False,
    )
    (tmp_path / "run.log").write_text(proc.stdout + proc.stderr)
    assert proc.returncode == 0, f"run_local harness error ({proc.returncode}): {proc.stderr[-3000:]}"
    return json.loads((tmp_path / "result.json").read_text())


def _params(data: str, tracking: str, name: str, **overrides) -> dict:
    return {"data_path": data, "mlflow_tracking_uri": tracking, "mlflow_experiment": name,
            "model_name": name, "isvc_name": name, "serving_namespace": "model-serving", **overrides}


def _compile(pipeline_python: str, out: Path, packages: list[str] | None) -> dict:
    proc = subprocess.run(
        [pipeline_python, "-m", "harness.pipeline.compile", "--out", str(out),
         "--packages-json", json.dumps(packages)],
        env=_role_env(), cwd=REPO, capture_output=True, text=True, timeout=COMPILE_TIMEOUT, check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_compiled_yaml_carries_the_seed_resources_parameters_and_condition(
        pl_pipeline_python: str, pins: list[str], tmp_path: Path) -> None:
    printed = _compile(pl_pipeline_python, tmp_path / "pipeline.yaml", pins)
    spec = inspect_compiled((tmp_path / "pipeline.yaml").read_text())

    assert printed["sdkVersion"] == spec["sdkVersion"] == f"kfp-{printed['kfp']}"
    assert spec["pipeline_name"] == "recommendation-training-pipeline"
    train = spec["tasks"]["train-model"]["resources"]
    assert (train["accelerator_type"], train["accelerator_count"]) == ("nvidia.com/gpu", 1)
    assert train["cpu_limit"] == 4
    assert train["memory_limit_bytes"] == 16 * 2**30
    assert "mlflow_tracking_uri" in spec["parameters"]
    assert spec["parameters"]["f1_threshold"]["default"] == 0.8
    assert spec["parameters"]["canary_traffic_percent"]["default"] == 20
    # Every task container installs exactly the row's pins on the seed's image.
    for name, task in spec["tasks"].items():
        assert task["image"] == "python:3.11-slim", name
        assert task["packages"] == pins, name
    # deploy is guarded by the gate's "passed" output, and runs after it.
    deploy = spec["tasks"]["deploy-to-kserve"]
    assert deploy["condition"] == "inputs.parameter_values['pipelinechannel--quality-gate-passed'] == 'true'"
    assert "quality-gate" in deploy["depends_on"]


def test_local_variant_compiles_without_pip(pl_pipeline_python: str, tmp_path: Path) -> None:
    _compile(pl_pipeline_python, tmp_path / "local.yaml", None)
    spec = inspect_compiled((tmp_path / "local.yaml").read_text())
    assert all(task["packages"] == [] for task in spec["tasks"].values())


def test_dataset_is_deterministic_and_learnable(pl_pipeline_python: str) -> None:
    code = (
        "import json\n"
        "from harness.pipeline.dataset import make_dataset, holdout_rows, frame_digest, FEATURES\n"
        "from sklearn.ensemble import GradientBoostingClassifier\n"
        "from sklearn.model_selection import cross_val_score\n"
        "a, b, c = make_dataset(seed=7), make_dataset(seed=7), make_dataset(seed=8)\n"
        "h = holdout_rows(50, seed=7)\n"
        "train_keys = set(map(tuple, a[FEATURES].to_numpy().round(9)))\n"
        "clf = GradientBoostingClassifier(n_estimators=50, max_depth=3, learning_rate=0.1, random_state=42)\n"
        "f1 = cross_val_score(clf, a[FEATURES], a['label'], cv=5, scoring='f1_weighted').mean()\n"
        "print(json.dumps({'a': frame_digest(a), 'b': frame_digest(b), 'c': frame_digest(c),\n"
        "  'rows': len(a), 'dtypes': sorted(set(map(str, a.dtypes))),\n"
        "  'label': sorted(a.label.unique().tolist()),\n"
        "  'positive': float(a.label.mean()), 'holdout_cols': list(h.columns), 'features': FEATURES,\n"
        "  'holdout_overlap': sum(tuple(r) in train_keys for r in h.to_numpy().round(9)), 'f1': f1}))\n"
    )
    out = subprocess.run([pl_pipeline_python, "-c", code], env=_role_env(), cwd=REPO,
                         capture_output=True, text=True, timeout=180, check=False)
    assert out.returncode == 0, out.stderr[-3000:]
    r = json.loads(out.stdout.strip().splitlines()[-1])
    assert r["a"] == r["b"] != r["c"]
    assert r["rows"] == 2000 and r["dtypes"] == ["float64", "int64"] and r["label"] == [0, 1]
    assert 0.35 < r["positive"] < 0.65
    assert r["holdout_cols"] == r["features"] and r["holdout_overlap"] == 0
    assert 0.83 < r["f1"] < 0.97

    # The harness process reads the same rows (pandas is one of its dependencies).
    pytest.importorskip("pandas")
    from harness.pipeline.dataset import frame_digest, make_dataset

    assert frame_digest(make_dataset(seed=7)) == r["a"]


def _assert_tasks_ran_in_pipeline_role(result: dict, pipeline_python: str) -> None:
    """Every task that ran imported kfp from the pipeline role, not the runner's kfp."""
    prefix = str(Path(pipeline_python).parent.parent)
    ran = {n: t for n, t in result["tasks"].items() if t["state"] in ("SUCCEEDED", "FAILED")}
    assert ran
    for name, task in ran.items():
        kfp = (task["imports"] or {}).get("kfp")
        assert kfp and kfp["version"] == result["component_kfp"], (name, kfp)
        assert kfp["file"].startswith(prefix), (name, kfp["file"])


def test_deploy_runs_after_the_gate_and_fails_when_the_kube_api_is_unreachable(
        pl_runner_python: str, pl_pipeline_python: str, pl_tracking_uri: str, pl_dataset: str,
        pl_dead_kubeconfig: str, stack_env: dict, tmp_path: Path) -> None:
    name = "seam-deploy-unreachable"
    result = _run_local(pl_runner_python, pl_pipeline_python, tmp_path,
                        _params(pl_dataset, pl_tracking_uri, name), pl_dead_kubeconfig, stack_env)
    tasks = result["tasks"]

    assert result["state"] == "FAILED", result["error"]
    assert "deploy-to-kserve" in result["error"]
    assert tasks["quality-gate"]["parameters"]["passed"] == "true"
    assert tasks["deploy-to-kserve"]["state"] == "FAILED"
    deploy_error = tasks["deploy-to-kserve"]["error"]
    assert "Connection refused" in deploy_error or "MaxRetryError" in deploy_error
    _assert_tasks_ran_in_pipeline_role(result, pl_pipeline_python)

    # Seam: the MLflow run the model artifact points at holds the metrics KFP shows.
    model = tasks["train-model"]["artifacts"]["model_output"]
    metrics = tasks["train-model"]["artifacts"]["metrics_output"]["metadata"]
    assert model["type"] == "system.Model" and model["path"] and os.path.isfile(model["path"])
    run_id = model["metadata"]["mlflow_run_id"]
    assert model["metadata"]["model_uri"] == f"runs:/{run_id}/model"
    assert not model["uri"].startswith("runs:/")  # KFP keeps its own artifact URI
    run = _http_json(f"{pl_tracking_uri}/api/2.0/mlflow/runs/get?run_id={run_id}")["run"]
    logged = {m["key"]: m["value"] for m in run["data"]["metrics"]}
    assert logged["cv_f1_mean"] == pytest.approx(metrics["cv_f1_mean"])
    assert tasks["train-model"]["parameters"]["artifact_uri"] == run["info"]["artifact_uri"]
    version = _http_json(f"{pl_tracking_uri}/api/2.0/mlflow/model-versions/get?name={name}"
                         f"&version={model['metadata']['registered_model_version']}")["model_version"]
    assert version["run_id"] == run_id


def test_gate_false_skips_deploy_and_the_run_succeeds(
        pl_runner_python: str, pl_pipeline_python: str, pl_tracking_uri: str, pl_dataset: str,
        pl_dead_kubeconfig: str, stack_env: dict, tmp_path: Path) -> None:
    # The kube API is unreachable: had deploy run, the pipeline would have FAILED.
    result = _run_local(pl_runner_python, pl_pipeline_python, tmp_path,
                        _params(pl_dataset, pl_tracking_uri, "seam-gate-false", f1_threshold=0.999),
                        pl_dead_kubeconfig, stack_env)
    tasks = result["tasks"]

    assert result["state"] == "SUCCEEDED", result["error"]
    assert tasks["quality-gate"]["parameters"]["passed"] == "false"
    assert "< threshold 0.999" in tasks["quality-gate"]["parameters"]["reason"]
    assert tasks["deploy-to-kserve"]["state"] == "SKIPPED"
    assert tasks["train-model"]["state"] == "SUCCEEDED"
    # What the deployment fixture (and the report's outcome line) says of this real run.
    blocked = gate_blocked(tasks)
    assert blocked is not None and "quality gate blocked the deploy" in blocked, blocked
    assert "< threshold 0.999" in blocked and "candidate_f1=0." in blocked and "no production baseline" in blocked


def test_gate_refuses_a_regression_against_the_production_alias(
        pl_runner_python: str, pl_pipeline_python: str, pl_tracking_uri: str, pl_dataset: str,
        pl_dead_kubeconfig: str, stack_env: dict, tmp_path: Path) -> None:
    """A candidate above the absolute threshold is still refused when it is worse than the
    version holding the alias minus regression_delta (the document's own gate advice)."""
    name = "seam-gate-regression"
    api = f"{pl_tracking_uri}/api/2.0/mlflow"
    exp = _http_json(f"{api}/experiments/create", {"name": f"{name}-baseline"})["experiment_id"]
    now_ms = int(time.time() * 1000)
    run = _http_json(f"{api}/runs/create", {"experiment_id": exp, "start_time": now_ms})["run"]
    run_id = run["info"]["run_id"]
    _http_json(f"{api}/runs/log-metric", {"run_id": run_id, "key": "cv_f1_mean", "value": 0.95,
                                         "timestamp": now_ms, "step": 0})
    _http_json(f"{api}/registered-models/create", {"name": name})
    version = _http_json(f"{api}/model-versions/create",
                         {"name": name, "source": run["info"]["artifact_uri"] + "/model", "run_id": run_id})
    _http_json(f"{api}/registered-models/alias",
               {"name": name, "alias": "production", "version": version["model_version"]["version"]})

    result = _run_local(pl_runner_python, pl_pipeline_python, tmp_path,
                        _params(pl_dataset, pl_tracking_uri, name), pl_dead_kubeconfig, stack_env)
    gate = result["tasks"]["quality-gate"]["parameters"]

    assert result["state"] == "SUCCEEDED", result["error"]
    assert gate["passed"] == "false"
    assert 0.80 <= gate["candidate_f1"] < 0.93 and gate["baseline_f1"] == pytest.approx(0.95)
    assert "regression" in gate["reason"] and "threshold" not in gate["reason"].split(";")[0]
    assert result["tasks"]["deploy-to-kserve"]["state"] == "SKIPPED"
