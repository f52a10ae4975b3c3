"""Submitting the pipeline to a cluster and reading its run back, without KFP:

* the task probe (the sitecustomize every task imports) run for real in a subprocess;
* the KFP REST client against a FAKE KFP API server (multipart upload, versions, runs, states,
  errors, the wait's deadline);
* the cluster profile's whole run_pipeline glue - data staged to S3, submission with the platform
  spec, upload, run, per-task results from pod logs, artifacts downloaded - against the FAKE KFP
  API, the host cluster's real Kubernetes (the task pods are real Pods whose containers print the
  probe's line: their logs come from the kubelet) and an in-process S3 (moto) playing MinIO. No KFP
  backend runs: the fake KFP API plays it, creating the pods a run's tasks would have.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import uuid
from email.parser import BytesParser
from email.policy import default as email_policy
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import boto3
import pytest
import yaml
from moto.server import ThreadedMotoServer

from harness.cluster.errors import WaitTimeout
from harness.cluster.kfp import KfpApi, KfpError, split_documents
from harness.cluster.render import BUCKETS, S3Credentials, probe_source
from harness.cluster.task_log_probe import MARKER, parse_marker_lines
from harness.cluster.tasks import collect_tasks, function_names, task_of_pod
from harness.matrix import load_matrix
from harness.pipeline.compile import inspect_compiled
from harness.settings import StackConfig
from tests.host_fixtures import running_pod

REPO = Path(__file__).resolve().parents[1]


# ------------------------------------------------------------------------------ the task probe
def test_the_task_probe_reports_the_executor_output_and_the_error(tmp_path: Path) -> None:
    site = tmp_path / "probe"
    site.mkdir()
    (site / "sitecustomize.py").write_text(probe_source())
    output_file = tmp_path / "kfp_outputs" / "output_metadata.json"
    output_file.parent.mkdir()
    executor_input = json.dumps({"outputs": {"outputFile": str(output_file)}})
    component = ("import json, sys; json.dump({'parameterValues': {'passed': 'true'}}, open(sys.argv[-3], 'w'))"
                 "\nif sys.argv[-1] == 'fail': raise ValueError('gate exploded')")
    env = {"PYTHONPATH": str(site), "PATH": os.environ["PATH"], "KFP_POD_NAME": "run-quality-gate-123"}
    ok = subprocess.run([sys.executable, "-c", component, "--executor_input", executor_input,
                         "--function_to_execute", "quality_gate", str(output_file), "x", "ok"],
                        env=env, capture_output=True, text=True, timeout=60)
    reports = parse_marker_lines(ok.stdout)
    assert ok.returncode == 0 and len(reports) == 1, ok.stderr
    assert reports[0]["function"] == "quality_gate" and reports[0]["pod"] == "run-quality-gate-123"
    assert reports[0]["executor_output"] == {"parameterValues": {"passed": "true"}} and reports[0]["error"] is None
    failed = subprocess.run([sys.executable, "-c", component, "--executor_input", executor_input,
                             "--function_to_execute", "quality_gate", str(output_file), "x", "fail"],
                            env=env, capture_output=True, text=True, timeout=60)
    report = parse_marker_lines(failed.stdout)[0]
    assert failed.returncode == 1 and report["error"] == "ValueError: gate exploded"
    plain = subprocess.run([sys.executable, "-c", "print('pip says hi')"], env=env, capture_output=True, text=True,
                           timeout=60)
    assert MARKER not in plain.stdout  # only the component interpreter reports


# ------------------------------------------------------------------------------ a fake KFP API
class FakeKfp:
    """A FAKE of KFP's REST API v2beta1 (only what the harness calls). When a run is created it
    plays the backend: `on_run(run_id, parameters, pipeline_yaml)` fills pods, logs and artifacts,
    and the run walks PENDING -> RUNNING -> the final state over a few polls."""

    def __init__(self, on_run=None, final_state: str = "SUCCEEDED", done=None) -> None:
        self.done = done  # the run stays RUNNING until done() (the backend's pods have finished)
        self.pipelines: dict[str, dict] = {}
        self.runs: dict[str, dict] = {}
        self.polls: dict[str, int] = {}
        self.uploads: list[dict] = []
        self.created_runs: list[dict] = []
        self.on_run, self.final_state = on_run, final_state
        self.deleted: list[str] = []
        handler = self._handler()
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def serve(self, method: str, path: str, query: str, headers: Any, body: bytes) -> tuple[int, dict]:
        if path == "/apis/v2beta1/healthz":
            return 200, {"commit_sha": "abc", "tag_name": "2.3.0", "multi_user": False}
        if method == "POST" and path == "/apis/v2beta1/pipelines/upload":
            message = BytesParser(policy=email_policy).parsebytes(
                f"Content-Type: {headers['Content-Type']}\r\n\r\n".encode() + body)
            parts = {p.get_param("name", header="content-disposition"): p for p in message.iter_parts()}
            if "uploadfile" not in parts:
                return 400, {"error": "Failed to create a pipeline due to error parsing pipeline spec filename"}
            text = parts["uploadfile"].get_payload(decode=True).decode()
            name = dict(p.split("=", 1) for p in query.split("&") if p)["name"]
            pid = str(uuid.uuid4())
            self.pipelines[pid] = {"pipeline_id": pid, "display_name": name, "yaml": text,
                                   "versions": [{"pipeline_version_id": str(uuid.uuid4()), "pipeline_id": pid}]}
            self.uploads.append({"name": name, "yaml": text})
            return 200, {"pipeline_id": pid, "display_name": name}
        if method == "GET" and path.startswith("/apis/v2beta1/pipelines/") and path.endswith("/versions"):
            pid = path.split("/")[4]
            return 200, {"pipeline_versions": self.pipelines[pid]["versions"], "total_size": 1}
        if method == "DELETE" and path.startswith("/apis/v2beta1/pipelines/"):
            parts = path.split("/")
            if len(parts) == 5 and self.pipelines[parts[4]]["versions"]:
                return 400, {"error": "pipeline has versions"}
            if len(parts) == 7:
                self.pipelines[parts[4]]["versions"] = []
            self.deleted.append(path)
            return 200, {}
        if method == "POST" and path == "/apis/v2beta1/runs":
            run = json.loads(body)
            self.created_runs.append(run)
            ref = run["pipeline_version_reference"]
            if ref["pipeline_id"] not in self.pipelines:
                return 404, {"error": "pipeline not found", "code": 5}
            run_id = str(uuid.uuid4())
            self.runs[run_id] = {"run_id": run_id, "display_name": run["display_name"], "state": "PENDING"}
            self.polls[run_id] = 0
            if self.on_run is not None:
                self.on_run(run_id, run["runtime_config"]["parameters"], self.pipelines[ref["pipeline_id"]]["yaml"])
            return 200, self.runs[run_id]
        if method == "GET" and path.startswith("/apis/v2beta1/runs/"):
            run_id = path.rsplit("/", 1)[1]
            if run_id not in self.runs:
                return 404, {"error": f"Run {run_id} not found", "code": 5}
            self.polls[run_id] += 1
            run = self.runs[run_id]
            run["state"] = ["PENDING", "RUNNING", self.final_state][min(self.polls[run_id] - 1, 2)]
            if run["state"] == self.final_state and self.done is not None and not self.done():
                run["state"], self.polls[run_id] = "RUNNING", 2
            if run["state"] == "FAILED":
                run["error"] = {"code": 2, "message": "task train-model failed"}
            run["run_details"] = {"task_details": [{"display_name": "deploy-to-kserve", "state": "SKIPPED"}]}
            return 200, run
        return 404, {"error": f"no route {method} {path}"}

    def _handler(self):
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                return

            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                path, _, query = self.path.partition("?")
                code, payload = fake.serve(self.command, path, query, self.headers,
                                           self.rfile.read(length) if length else b"")
                data = json.dumps(payload).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_DELETE = _serve

        return Handler


def test_kfp_client_upload_run_wait_and_errors() -> None:
    kfp = FakeKfp()
    try:
        api = KfpApi(kfp.url)
        assert api.healthz()["tag_name"] == "2.3.0"
        pipeline = api.upload_pipeline("seamcheck-x", "pipelineInfo: {name: p}\n")
        assert kfp.uploads == [{"name": "seamcheck-x", "yaml": "pipelineInfo: {name: p}\n"}]
        version = api.pipeline_versions(pipeline["pipeline_id"])[0]["pipeline_version_id"]
        run = api.create_run("r", pipeline["pipeline_id"], version, {"n_estimators": 50, "data_path": "s3://b/k"})
        assert kfp.created_runs[0]["runtime_config"] == {"parameters": {"n_estimators": 50, "data_path": "s3://b/k"}}
        states: list[str] = []
        final = api.wait_run(run["run_id"], deadline_s=10, interval_s=0.01, say=states.append)
        assert final["state"] == "SUCCEEDED" and len(states) == 3 and states[-1].endswith("SUCCEEDED")
        with pytest.raises(KfpError, match=r"HTTP 404 .*Run nope not found"):
            api.get_run("nope")
        with pytest.raises(KfpError, match="pipeline not found"):
            api.create_run("r", "missing", "v", {})
        api.delete_pipeline(pipeline["pipeline_id"])
        assert kfp.deleted[-1] == f"/apis/v2beta1/pipelines/{pipeline['pipeline_id']}"
        kfp.final_state = "RUNNING"  # a run that never finishes
        again = api.upload_pipeline("y", "pipelineInfo: {name: p}\n")
        run2 = api.create_run("r2", again["pipeline_id"], api.pipeline_versions(again["pipeline_id"])[0][
            "pipeline_version_id"], {})
        with pytest.raises(WaitTimeout, match=r"waiting for KFP run .* last state RUNNING; tasks: "
                                              r"\{'deploy-to-kserve': 'SKIPPED'\}"):
            api.wait_run(run2["run_id"], deadline_s=0.2, interval_s=0.05)
    finally:
        kfp.close()
    with pytest.raises(KfpError, match="no answer from"):
        KfpApi("http://127.0.0.1:9", timeout=2).healthz()


# ------------------------------------------------------------------------------ run_pipeline glue
@pytest.fixture(scope="module")
def s3_server():
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0)
    server.start()
    address, port = server.get_host_and_port()
    yield f"http://{address}:{port}"
    server.stop()


def _marker(function: str, pod_name: str, output: dict | None, error: str | None = None) -> str:
    return MARKER + json.dumps({"function": function, "pod": pod_name, "executor_output": output, "error": error,
                                "modules": {"kfp": {"version": "2.9.0"}}, "python_version": "3.11.9",
                                "seconds": 1.5})


BUSYBOX = "dev.local/seamcheck/busybox:1.35.0"


def task_pod(name: str, run_id: str, task: str, log: str, *, exit_code: int = 0) -> dict:
    """A task's executor pod as KFP's Argo backend makes it (the run's label, Argo's node-name
    annotation, the container `main`); its container prints ``log`` and exits with ``exit_code``."""
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "labels": {"pipeline/runid": run_id},
                         "annotations": {"workflows.argoproj.io/node-name": f"wf.root.{task}.executor"}},
            "spec": {"restartPolicy": "Never", "automountServiceAccountToken": False,
                     "terminationGracePeriodSeconds": 0,
                     "containers": [{"name": "main", "image": BUSYBOX, "imagePullPolicy": "Never",
                                     "command": ["/bin/busybox", "sh", "-c", f'printf "%s\\n" "$LOG"; exit {exit_code}'],
                                     "env": [{"name": "LOG", "value": log}]}]}}


class FakeBackend:
    """Plays KFP's backend for the fake KFP API: one real pod per executed task, whose log is the
    probe's line, and the artifacts in KFP's store (moto)."""

    def __init__(self, api: Any, namespace: str, s3: Any, *, deploy: bool) -> None:
        from kubernetes import client as k8s

        self.core, self.namespace, self.s3, self.deploy = k8s.CoreV1Api(api), namespace, s3, deploy
        self.parameters: dict = {}
        self.pods: list[str] = []

    def __call__(self, run_id: str, parameters: dict, pipeline_yaml: str) -> None:
        self.parameters = parameters
        spec, _ = split_documents(pipeline_yaml)
        functions = function_names(pipeline_yaml)
        root = f"minio://mlpipeline/v2/artifacts/{spec['pipelineInfo']['name']}/{run_id}"
        for task, info in inspect_compiled(pipeline_yaml)["tasks"].items():
            if task == "deploy-to-kserve" and not self.deploy:
                continue
            pod_name = f"{run_id[:8]}-{task}-exec"
            artifacts, params = {}, {}
            for out_name, schema in info["outputs"]["artifacts"].items():
                uri = f"{root}/{task}/{out_name}"
                metadata = {"cv_f1_mean": 0.91} if schema == "system.Metrics" else {"mlflow_run_id": "r-123"}
                if schema != "system.Metrics":
                    self.s3.put_object(Bucket="mlpipeline", Key=uri.split("mlpipeline/", 1)[1], Body=b"{}")
                artifacts[out_name] = {"artifacts": [{"name": out_name, "uri": uri, "metadata": metadata}]}
            if task == "train-model":
                params = {"mlflow_run_id": "r-123", "registered_model_version": "1"}
            output = {"parameterValues": params, "artifacts": artifacts}
            line = _marker(functions[info["executor"]], pod_name, output)
            self.core.create_namespaced_pod(self.namespace, task_pod(pod_name, run_id, task, f"pip install ...\n{line}"))
            self.pods.append(pod_name)

    def finished(self) -> bool:
        return bool(self.pods) and all(self.core.read_namespaced_pod(p, self.namespace).status.phase in
                                       ("Succeeded", "Failed") for p in self.pods)

    def remove(self) -> None:
        for name in self.pods:
            self.core.delete_namespaced_pod(name, self.namespace, grace_period_seconds=0)


def _profile(tmp_path: Path, api: Any, kfp: FakeKfp, s3_url: str, compiled: Path):
    from harness.profiles.kind import KindGpuProfile

    row = load_matrix().row(None)
    profile = KindGpuProfile(StackConfig(profile="kind-gpu"), row)
    profile.api = api
    profile.s3 = S3Credentials("k", "s")
    profile.endpoints = {"kfp": kfp.url, "minio": s3_url, "kfp_minio": s3_url, "mlflow": "http://127.0.0.1:1",
                         "prometheus": "http://127.0.0.1:2", "ingress": "http://127.0.0.1:3"}
    profile._compiled = compiled
    profile.kfp_poll_s = 0.05
    return profile


@pytest.fixture(scope="module")
def compiled(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from harness.envs import ensure_env

    row = load_matrix().row(None)
    env = ensure_env(row, "pipeline")
    out = tmp_path_factory.mktemp("compiled") / "compiled.yaml"
    proc = subprocess.run([str(env.python), "-m", "harness.pipeline.compile", "--out", str(out), "--packages-json",
                           json.dumps(list(row.role("pipeline").pins))], cwd=REPO, capture_output=True, text=True,
                          timeout=300, env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    return out


@pytest.mark.parametrize("deploy", [True, False], ids=["deployed", "gate-closed"])
def test_run_pipeline_glue(tmp_path: Path, s3_server: str, compiled: Path, deploy: bool, host) -> None:
    from kubernetes import client as k8s

    s3 = boto3.client("s3", endpoint_url=s3_server, aws_access_key_id="k", aws_secret_access_key="s",
                      region_name="us-east-1")
    for bucket in (BUCKETS["data"], "mlpipeline"):
        if bucket not in {b["Name"] for b in s3.list_buckets()["Buckets"]}:
            s3.create_bucket(Bucket=bucket)
    core = k8s.CoreV1Api(host.api)
    core.create_namespaced_secret("kubeflow", {"metadata": {"name": "mlpipeline-minio-artifact"},
                                               "data": {"accesskey": "aw==", "secretkey": "cw=="}})  # k / s
    backend = FakeBackend(host.api, "kubeflow", s3, deploy=deploy)
    kfp = FakeKfp(on_run=backend, done=backend.finished)
    profile = _profile(tmp_path, host.api, kfp, s3_server, compiled)
    try:
        data = tmp_path / "recommendation.parquet"
        data.write_bytes(b"PAR1 not really parquet")
        run = profile.run_pipeline({"data_path": str(data), "n_estimators": 50,
                                    "mlflow_tracking_uri": "http://mlflow.seamcheck-system.svc.cluster.local:5000"},
                                   name="conformance")
        model_text = Path(run.task("train-model")["artifacts"]["model_output"]["path"]).read_text()
        log_text = run.log_path.read_text()
    finally:
        profile.teardown()
        kfp.close()
        backend.remove()
        core.delete_namespaced_secret("mlpipeline-minio-artifact", "kubeflow")
    # data staged to the in-cluster store, and the run got the s3:// URI
    staged = backend.parameters["data_path"]
    assert staged.startswith(f"s3://{BUCKETS['data']}/conformance/") and staged.endswith("/recommendation.parquet")
    key = staged.split(f"{BUCKETS['data']}/", 1)[1]
    assert s3.get_object(Bucket=BUCKETS["data"], Key=key)["Body"].read() == b"PAR1 not really parquet"
    assert run.params["data_path"] == staged and run.params["n_estimators"] == 50
    # the uploaded pipeline is the submission (platform spec added), the compiled file unchanged
    uploaded = yaml.safe_load_all(kfp.uploads[0]["yaml"])
    platform = [d for d in uploaded if "platforms" in d][0]
    train = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]["exec-train-model"]
    assert train["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    assert "platforms" not in compiled.read_text()
    assert any("toleration" in change for change in run.details["submitted_changes"])
    # the run, mapped into PipelineRun
    assert run.state == "SUCCEEDED" and run.succeeded and run.error is None
    assert run.details["kfp_state"] == "SUCCEEDED" and run.details["pipeline_version_id"]
    train_task = run.task("train-model")
    assert train_task["state"] == "SUCCEEDED" and train_task["parameters"]["mlflow_run_id"] == "r-123"
    assert train_task["kfp_version"] == "2.9.0" and train_task["node"] == host.cluster.node  # the real pod's node
    assert train_task["artifacts"]["metrics_output"]["metadata"] == {"cv_f1_mean": 0.91}
    assert train_task["artifacts"]["metrics_output"]["path"] is None  # metrics live in metadata only
    model = train_task["artifacts"]["model_output"]
    assert model["uri"].startswith("minio://mlpipeline/") and model["path"] and model_text == "{}"
    assert "===== pod " in log_text and MARKER in log_text  # every task pod's log in the run's log
    assert model["type"] == "system.Model"
    deploy_task = run.task("deploy-to-kserve")
    assert deploy_task["state"] == ("SUCCEEDED" if deploy else "SKIPPED")
    assert set(run.tasks) == {"validate-data", "preprocess-data", "train-model", "quality-gate", "deploy-to-kserve"}
    assert not Path(profile.state).exists()  # teardown removed the state folder (no --keep-stack)
    assert kfp.deleted  # the uploaded pipeline was deleted at teardown


def test_collect_tasks_reports_a_pod_that_failed_before_python(tmp_path: Path, compiled: Path, host) -> None:
    from kubernetes import client as k8s

    text = compiled.read_text()
    spec_tasks = inspect_compiled(text)["tasks"]
    core = k8s.CoreV1Api(host.api)
    core.create_namespaced_pod("kubeflow", task_pod("v-exec", "r", "validate-data", _marker(
        "validate_data", "v-exec", {"parameterValues": {"row_count": 9}})))
    core.create_namespaced_pod("kubeflow", task_pod(
        "p-exec", "r", "preprocess-data", "ERROR: Could not find a version that satisfies the requirement x==9",
        exit_code=1))
    try:
        for name in ("v-exec", "p-exec"):
            running_pod(host.api, "kubeflow", name, phases=("Succeeded", "Failed"))
        pods = core.list_namespaced_pod("kubeflow", label_selector="pipeline/runid=r").items
        assert {p.metadata.name: p.status.phase for p in pods} == {"v-exec": "Succeeded", "p-exec": "Failed"}
        failed = next(p for p in pods if p.metadata.name == "p-exec")
        assert task_of_pod(failed, spec_tasks) == ("preprocess-data", "executor")
        tasks, logs = collect_tasks(spec_tasks=spec_tasks, functions=function_names(text), pods=pods, core=core,
                                    run={"state": "FAILED"}, fetch=None, artifacts_dir=tmp_path)
    finally:
        for name in ("v-exec", "p-exec"):
            core.delete_namespaced_pod(name, "kubeflow", grace_period_seconds=0)
    assert tasks["validate-data"]["state"] == "SUCCEEDED" and tasks["validate-data"]["parameters"] == {"row_count": 9}
    assert tasks["preprocess-data"]["state"] == "FAILED"
    assert "Could not find a version" in tasks["preprocess-data"]["error"]
    assert {tasks[t]["state"] for t in ("train-model", "quality-gate", "deploy-to-kserve")} == {"NOT_RUN"}
    assert set(logs) == {"v-exec", "p-exec"}
