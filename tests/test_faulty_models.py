"""Faulty canary models (harness/faults/models.py): logged by the pipeline role's mlflow (2.17),
served by the serving role's real MLServer 1.5.0 / mlflow 2.10.2 (KServe 0.14's MLflow runtime),
configured with the environment variables harness/local/replica.py sets.

Bounds are loose on purpose: everything shares two busy cores.
"""
from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pandas as pd
import pytest
import requests

from harness.envs import RoleEnv, ensure_env
from harness.faults.models import FaultSpec, log_faulty_model, save_base_model, save_faulty_models
from harness.local.replica import MLFLOW_RUNTIME
from harness.matrix import load_matrix
from harness.pipeline.dataset import holdout_rows
from harness.ports import LOOPBACK, free_port
from harness.procs import ManagedProcess, run_checked
from harness.serving.v2 import v2_outputs, v2_request

# The canary's faulty models are checked nightly, where the live canary judgements that use them run.
pytestmark = [pytest.mark.stack, pytest.mark.slow]

MODEL = "rc"
READY_DEADLINE_S = 90.0


@pytest.fixture(scope="module")
def envs() -> dict[str, RoleEnv]:
    row = load_matrix().row(None)
    return {role: ensure_env(row, role) for role in ("pipeline", "serving")}


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("faulty")


@pytest.fixture(scope="module")
def base_model(envs: dict[str, RoleEnv], work: Path) -> Path:
    return Path(save_base_model(envs["pipeline"].python, work / "base")["path"])


#: The faulty models of these tests, saved in one subprocess (mlflow imports once).
SPECS = {
    "error": FaultSpec.error(0.2),
    "wrong": FaultSpec.wrong(),
    "tail": FaultSpec.tail_latency(q=0.1, delay_s=0.25),
    "slow": FaultSpec.slow_load(10.0),
    "proba": FaultSpec.proba(),
    "proba-shifted": FaultSpec.proba(0.02),
}


@pytest.fixture(scope="module")
def faulty(envs: dict[str, RoleEnv], base_model: Path, work: Path) -> dict[str, Path]:
    infos = save_faulty_models(envs["pipeline"].python, SPECS, base_model_uri=str(base_model),
                               out_root=work / "faulty")
    assert {i.mlflow_version for i in infos.values()} == {"2.17.2"}
    assert {name: info.spec for name, info in infos.items()} == SPECS
    return {name: Path(info.local_path) for name, info in infos.items()}


@contextmanager
def _mlserver(env: RoleEnv, model_dir: Path, home: Path) -> Iterator[ManagedProcess]:
    """MLServer on `model_dir`, configured as harness/local/replica.py configures a replica."""
    home.mkdir(parents=True, exist_ok=True)
    (home / "metrics").mkdir(exist_ok=True)
    http = free_port()
    proc_env = {
        **os.environ,
        "PATH": f"{env.path / 'bin'}:{os.environ.get('PATH', '')}",
        "MLSERVER_MODEL_IMPLEMENTATION": MLFLOW_RUNTIME,
        "MLSERVER_MODEL_NAME": MODEL,
        "MLSERVER_MODEL_URI": str(model_dir),
        "MLSERVER_HTTP_PORT": str(http),
        "MLSERVER_GRPC_PORT": str(free_port()),
        "MLSERVER_HOST": LOOPBACK,
        "MLSERVER_METRICS_PORT": str(free_port()),
        "MLSERVER_METRICS_DIR": str(home / "metrics"),
    }
    proc = ManagedProcess(f"mlserver {model_dir.name}", [str(env.bin("mlserver")), "start", str(model_dir)],
                          home / "mlserver.log", env=proc_env, cwd=home)
    proc.base_url = f"http://{LOOPBACK}:{http}"  # type: ignore[attr-defined]
    proc.start()
    try:
        yield proc
    finally:
        proc.kill()  # SIGKILL the group at once (a graceful MLServer stop takes ~3 s), then reap
        proc.stop(timeout=5)


def _ready(proc: ManagedProcess) -> float:
    base = proc.base_url  # type: ignore[attr-defined]
    return proc.wait_until(
        lambda: requests.get(f"{base}/v2/health/ready", timeout=1).status_code == 200
        and requests.get(f"{base}/v2/models/{MODEL}/ready", timeout=1).status_code == 200,
        what=f"model {MODEL} ready", deadline_s=READY_DEADLINE_S)


def _post(proc: ManagedProcess, frame: pd.DataFrame) -> tuple[requests.Response, float]:
    started = time.perf_counter()
    resp = requests.post(f"{proc.base_url}/v2/models/{MODEL}/infer",  # type: ignore[attr-defined]
                         json=v2_request(frame), timeout=30)
    return resp, (time.perf_counter() - started) * 1000


def _quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[max(1, math.ceil(q * len(ordered))) - 1]


def test_error_canary_fails_at_its_rate(envs, faulty, work) -> None:
    p, n = SPECS["error"].p, 200
    model_dir = faulty["error"]
    rows = holdout_rows(n)
    with _mlserver(envs["serving"], model_dir, work / "srv-error") as proc:
        _ready(proc)
        statuses, bodies = [], set()
        for i in range(n):
            resp, _ms = _post(proc, rows.iloc[[i]])
            statuses.append(resp.status_code)
            if resp.status_code != 200:
                bodies.add(resp.text[:200])
    assert set(statuses) <= {200, 500}, statuses
    errors = statuses.count(500)
    print(f"error canary p={p}: {errors}/{n} HTTP 500")
    # Binomial(200, 0.2): mean 40, sd 5.7; +-4.5 sd keeps a false alarm below 1e-5.
    sd = math.sqrt(n * p * (1 - p))
    assert abs(errors - n * p) <= 4.5 * sd, f"{errors} errors in {n} requests at p={p}"
    assert all("InjectedFault" in body for body in bodies), bodies


def test_wrong_canary_differs_from_its_base(envs, base_model, faulty, work) -> None:
    model_dir = faulty["wrong"]
    rows = holdout_rows(40)
    rows_file = work / "wrong-rows.parquet"
    rows.to_parquet(rows_file)
    out = work / "base-predictions.json"
    # The base model's own predictions, with the pipeline role's mlflow.
    run_checked([str(envs["pipeline"].python), "-m", "harness.pipeline.reference_predictions", "--model-uri", str(base_model),
                 "--input", str(rows_file), "--output", str(out)], what="base predictions", timeout=120,
                env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])},
                cwd=work)  # mlflow 2.17 may open a default ./mlruns store: not in the repo
    base = json.loads(out.read_text())["predictions"]
    assert set(base) == {0, 1}, "the base must predict both classes for this check to mean anything"
    with _mlserver(envs["serving"], model_dir, work / "srv-wrong") as proc:
        _ready(proc)
        served = []
        for start in range(0, len(rows), 4):
            resp, _ms = _post(proc, rows.iloc[start:start + 4])
            assert resp.status_code == 200, resp.text
            served += v2_outputs(resp.json())
    assert len(served) == len(base)
    assert served == [1 - b for b in base]  # every label flipped (p=1.0)


def test_proba_answers_the_base_probabilities_shifted(envs, faulty, work) -> None:
    """kind proba: the positive class' probability as a double (the stable of the probability
    scenario at shift 0, its canary shifted), each the base's own predict_proba plus the shift."""
    rows = holdout_rows(40)
    answers = {}
    for name in ("proba", "proba-shifted"):
        with _mlserver(envs["serving"], faulty[name], work / f"srv-{name}") as proc:
            _ready(proc)
            resp, _ms = _post(proc, rows)
            assert resp.status_code == 200, resp.text
            answers[name] = resp.json()["outputs"][0]
    assert {a["datatype"] for a in answers.values()} == {"FP64"}, answers
    base, shifted = (answers[n]["data"] for n in ("proba", "proba-shifted"))
    assert len(base) == len(rows) and all(0.0 <= v <= 1.0 for v in base + shifted)
    assert len({round(v, 3) for v in base}) > 5, "probabilities, not labels"
    assert shifted == pytest.approx([min(v + 0.02, 1.0) for v in base], abs=1e-9)


def test_tail_latency_raises_p99_not_median(envs, faulty, work) -> None:
    q, delay_s, n = SPECS["tail"].q, SPECS["tail"].delay_s, 150
    model_dir = faulty["tail"]
    rows = holdout_rows(n)
    with _mlserver(envs["serving"], model_dir, work / "srv-tail") as proc:
        _ready(proc)
        latencies = []
        for i in range(n):
            resp, ms = _post(proc, rows.iloc[[i]])
            assert resp.status_code == 200, resp.text
            latencies.append(ms)
    p50, p99 = _quantile(latencies, 0.50), _quantile(latencies, 0.99)
    slowed = sum(ms >= delay_s * 1000 for ms in latencies)
    print(f"tail_latency q={q} +{delay_s}s: p50 {p50:.1f} ms, p99 {p99:.1f} ms, {slowed}/{n} slowed")
    # Binomial(150, 0.1): p99 (rank 149 of 150) needs >= 2 slowed requests; fewer has p ~ 2.5e-6.
    assert p99 >= delay_s * 1000, (p50, p99, slowed)
    assert p50 < delay_s * 1000 / 2, (p50, p99, slowed)
    assert 2 <= slowed <= 40, slowed


@pytest.mark.slow  # nightly: the chaos suite's scaled-to-zero cases serve this model in CI
def test_slow_load_delays_readiness(envs, faulty, work) -> None:
    load_delay_s = SPECS["slow"].load_delay_s
    slow, fast = faulty["slow"], faulty["wrong"]  # the same wrapper, one without a load delay
    # Both start together on the same cores, so what differs is the model's own load time.
    started = time.monotonic()
    with _mlserver(envs["serving"], slow, work / "srv-slow") as slow_proc, \
            _mlserver(envs["serving"], fast, work / "srv-fast") as fast_proc:
        _ready(fast_proc)
        fast_ready = time.monotonic() - started
        _ready(slow_proc)
        slow_ready = time.monotonic() - started
        resp, _ms = _post(slow_proc, holdout_rows(2))
        assert resp.status_code == 200, resp.text
    print(f"slow_load {load_delay_s}s: ready after {slow_ready:.1f} s vs {fast_ready:.1f} s")
    assert slow_ready - fast_ready >= 0.6 * load_delay_s, (slow_ready, fast_ready)


@pytest.mark.slow  # nightly: the canary and chaos suites log and register faulty models this way in CI
def test_log_and_register_with_a_tracking_server(envs, base_model, work) -> None:
    """The production path: `log` against a real tracking server, over a registered base model
    (models:/ URI), then the serving role's mlflow 2.10.2 loads the downloaded model version."""
    row = load_matrix().row(None)
    tracking = ensure_env(row, "tracking")
    port = free_port()
    state = work / "tracking"
    state.mkdir()
    server = ManagedProcess("mlflow server", [str(tracking.bin("mlflow")), "server", "--backend-store-uri",
                                              f"sqlite:///{state / 'mlflow.db'}", "--default-artifact-root",
                                              str(state / "artifacts"), "--host", LOOPBACK, "--port", str(port),
                                              "--workers", "1"], state / "mlflow.log", cwd=state)
    uri = f"http://{LOOPBACK}:{port}"
    repo = str(Path(__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": repo, "MLFLOW_TRACKING_URI": uri}
    server.start()
    try:
        server.wait_http(f"{uri}/health", deadline_s=90)
        register = ("import mlflow, mlflow.sklearn, sys; from mlflow.models import Model\n"
                    "m = mlflow.sklearn.load_model(sys.argv[1]); sig = Model.load(sys.argv[1]).signature\n"
                    "mlflow.set_experiment('base')\n"
                    "with mlflow.start_run():\n"
                    "    mlflow.sklearn.log_model(m, 'model', registered_model_name='rc-base', signature=sig,\n"
                    "                             pip_requirements=sys.argv[1] + '/requirements.txt')\n")
        run_checked([str(envs["pipeline"].python), "-c", register, str(base_model)], cwd=work,
                    what="registering the base model", timeout=120, env=env)
        info = log_faulty_model(envs["pipeline"].python, FaultSpec.error(0.5), base_model_uri="models:/rc-base/1",
                                registered_model_name="rc-faulty", tracking_uri=uri, env=env)
        assert (info.registered_model_name, info.registered_model_version) == ("rc-faulty", "1")
        assert info.model_uri.startswith("runs:/") and info.artifact_uri.endswith("/canary")
        # The serving role's mlflow loads the registered version and predicts (or fails on purpose).
        probe = ("import mlflow, sys, pandas as pd\n"
                 "p = mlflow.artifacts.download_artifacts('models:/rc-faulty/1', dst_path=sys.argv[1])\n"
                 "m = mlflow.pyfunc.load_model(p)\n"
                 "assert m.metadata.metadata['seamcheck_fault']['kind'] == 'error'\n"
                 "ok = bad = 0\n"
                 "for _ in range(40):\n"
                 "    try:\n"
                 "        m.predict(pd.read_parquet(sys.argv[2])); ok += 1\n"
                 "    except Exception as e:\n"
                 "        assert 'InjectedFault' in type(e).__name__, repr(e); bad += 1\n"
                 "print('RESULT', mlflow.__version__, ok, bad)\n")
        holdout_rows(3).to_parquet(work / "probe.parquet")
        proc = run_checked([str(envs["serving"].python), "-c", probe, str(work / "download"),
                            str(work / "probe.parquet")], what="loading the faulty model with the serving mlflow",
                           timeout=180, env={**os.environ, "MLFLOW_TRACKING_URI": uri}, cwd=work)
        _tag, version, ok, bad = proc.stdout.strip().splitlines()[-1].split()
        assert version == "2.10.2" and int(ok) > 0 and int(bad) > 0, proc.stdout
    finally:
        server.kill()
        server.stop(timeout=5)
