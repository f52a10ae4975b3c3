"""What the kind, kind-gpu and cloud profiles share: the Profile interface on a real cluster.

The stack is the row's (harness/cluster/install.py); the harness reaches MLflow, MinIO,
Prometheus, the KFP API and the ingress from this machine (NodePorts on kind, port-forwards on
an existing cluster; see the subclasses); the pipeline is compiled with the row's SDK here and
submitted to the KFP API; InferenceServices are read and written with the kubernetes client
(IsvcClient), exactly as on the local profile; the metric dialect is Knative's.
"""
from __future__ import annotations

import base64
import json
import os
import secrets
import signal
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import replace
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import urlparse

import boto3
from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes.client.exceptions import ApiException

from harness.cluster.capacity import (
    Demand,
    NodeRoom,
    check_fits,
    session_demand,
    stack_requests,
)
from harness.cluster.commands import Kubectl
from harness.cluster.errors import ChaosRefused, ClusterError
from harness.cluster.faults import ClusterFaults
from harness.cluster.gpu import placement_evidence, unschedulable_when_cordoned
from harness.cluster.guard import ChaosGuard
from harness.cluster.images import RegistryClient
from harness.cluster.ingress import HostRoutingProxy
from harness.cluster.install import install_images, install_plan, kfp_target, run_plan
from harness.cluster.kfp import KfpApi, prepare_submission
from harness.cluster.path_probe import pod_path_probe
from harness.cluster.render import (
    BUCKETS,
    PROBE_MOUNT,
    TASK_SECRETS,
    S3Credentials,
    render_manifests,
    task_env,
)
from harness.cluster.spec import ClusterSpec
from harness.cluster.tasks import collect_tasks, function_names, run_pods, s3_fetcher
from harness.cluster.waits import wait_deployments_available, wait_http, wait_until
from harness.envs import RoleEnv, ensure_envs
from harness.ledger import ledger
from harness.matrix import Row
from harness.paths import role_pythonpath
from harness.pipeline.compile import inspect_compiled
from harness.procs import ProcessRegistry
from harness.profiles.base import PipelineRun, Profile, RevisionModel
from harness.serving.isvc import IsvcClient, predictor_status
from harness.serving.storage import read_storage_file
from harness.settings import StackConfig

__all__ = ["COMPILED_TRAIN_REQUESTS", "SEED_PREDICTOR_REQUESTS", "ClusterProfile", "api_client"]

#: What the seed's deploy step asks for each predictor (harness/pipeline/components.py deploy_to_kserve)
SEED_PREDICTOR_REQUESTS = {"cpu": "1", "memory": "2Gi"}
#: The train task as compiled: KFP makes its limits (4 CPU, 16Gi) its requests too
COMPILED_TRAIN_REQUESTS = {"cpu": "4", "memory": "16Gi"}

MLFLOW_SELECTOR = {"app.kubernetes.io/name": "mlflow"}
REVISION_LABEL = "serving.knative.dev/revision"
STORAGE_URI_ANNOTATION = "internal.serving.kserve.io/storage-initializer-sourceuri"
# A cluster is slower than local processes: image pulls, pip in every task container, cold starts.
CLUSTER_DEADLINES = {"component_deadline_s": 600.0, "isvc_deadline_s": 900.0, "pipeline_deadline_s": 2700.0}


def api_client(kubeconfig: Path | None, context: str | None) -> k8s.ApiClient:
    try:
        return k8s_config.new_client_from_config(config_file=str(kubeconfig) if kubeconfig else None,
                                                 context=context)
    except (k8s_config.ConfigException, OSError, TypeError) as exc:
        where = f"{kubeconfig or 'the default kubeconfig'}" + (f", context {context!r}" if context else "")
        raise ClusterError(f"cannot load {where}: {exc}") from None


class ClusterProfile(Profile):
    """Subclasses set name and implement _connect, _components, _endpoints, _chaos_namespaces."""

    metric_dialect_name = "knative"
    #: train task resources for the cluster's nodes (kind: a CI runner), None to keep them
    fit: dict[str, Any] | None = None
    #: The predictors' requests when --predictor-requests is not given (None: the seed's).
    default_predictor_requests: ClassVar[dict[str, str] | None] = None
    drop_accelerator = False
    gpu_toleration = True
    kfp_poll_s = 5.0  # how often a run's state is read

    def __init__(self, config: StackConfig, row: Row, spec: ClusterSpec, *,
                 progress: Callable[[str], None] | None = None) -> None:
        raised = {k: max(getattr(config, k), v) for k, v in CLUSTER_DEADLINES.items()}
        self.config = replace(config, **raised)
        self.row = row
        self.spec = spec
        self.namespace = config.namespace
        self.say = progress or (lambda _m: None)
        self.state = ledger.active().make_dir(f"seamcheck-{self.name}-")
        self.registry = ProcessRegistry()
        self.kubeconfig: Path | None = None
        self.context: str | None = None
        self.kubectl = Kubectl()
        self.api: k8s.ApiClient | None = None
        self.envs: dict[str, RoleEnv] = {}
        self.s3: S3Credentials | None = None
        self.endpoints: dict[str, str] = {}
        self.proxy: HostRoutingProxy | None = None
        self.guard: ChaosGuard | None = None
        self.faults: ClusterFaults | None = None
        self.kfp_namespace = spec.kfp_namespace
        self.cluster_versions: dict[str, Any] = {}
        self.mismatches: list[dict[str, Any]] = []
        self._isvc: IsvcClient | None = None
        self._compiled: Path | None = None
        self._uploaded: list[str] = []
        self._services: list[str] = []  # InferenceServices this session made or had its pipelines deploy
        self._timings: dict[str, float] = {}
        self._torn_down = False

    # ------------------------------------------------------------ subclass hooks
    def _connect(self) -> None:
        """Tools, the cluster itself, self.kubeconfig / self.context / self.kubectl."""
        raise NotImplementedError

    def _after_connect(self) -> None:
        """Look at the cluster before installing (discovery, node preparation)."""

    def _components(self) -> list[str]:
        raise NotImplementedError

    def _namespaces(self, components: list[str]) -> list[str]:
        return list(self.spec.harness_namespaces)

    def _endpoints(self) -> dict[str, str]:
        raise NotImplementedError

    def _chaos_namespaces(self) -> Iterable[str]:
        raise NotImplementedError

    def _cluster_teardown(self) -> None:
        pass

    # ------------------------------------------------------------ lifecycle
    def start(self) -> None:
        started = time.monotonic()
        self._connect()
        self.api = api_client(self.kubeconfig, self.context)
        self._check_reachable()
        self._after_connect()
        self.say(f"role environment for compiling and checking models ({self.row.name}/pipeline) ...")
        self.envs = ensure_envs(self.row, ("pipeline",), cache=self.config.env_cache, progress=self.say)
        self.s3 = self._s3_credentials()
        components = self._components()
        manifests = render_manifests(self.spec, self.s3, knative_owned="knative" in components,
                                     namespaces=self._namespaces(components))
        (self.state / "manifests").mkdir(exist_ok=True)
        for stem in manifests.files:
            (self.state / "manifests" / f"{stem}.yaml").write_text(manifests.text(stem))
        kfp = kfp_target(self.spec, self.row.image_replacements, self.row.hidden_images, self.state / "kfp-overlay")
        registry = RegistryClient()
        steps = install_plan(self.spec, self.kubectl, self.api, manifests, components=components, kfp=kfp,
                             images=lambda: install_images(self.spec, self.kubectl, components, kfp=kfp,
                                                           replacements=self.row.image_replacements,
                                                           hidden_images=self.row.hidden_images, timeout_s=120),
                             check_image=registry.problem, row_name=self.row.name)
        t_install = time.monotonic()
        self._timings.update({f"install_s[{k}]": v for k, v in run_plan(steps, self.say).items()})
        self._timings["install_s"] = time.monotonic() - t_install
        self.endpoints = self._endpoints()
        self._wait_services()
        self.proxy = HostRoutingProxy(lambda: self.endpoints["ingress"])
        self.guard = ChaosGuard.of(self.api, self._chaos_namespaces(), cluster=self._cluster_label())
        self.faults = ClusterFaults(self.api, self.guard, self.say, kubectl=self.kubectl.argv,
                                    path_probe=pod_path_probe(self.api, self.spec.mlflow_image, say=self.say))
        self._isvc = IsvcClient(self.api, self.namespace, on_write=self._own_service)
        self._timings["stack_start_s"] = time.monotonic() - started
        self.say(f"{self.name} stack ready in {self._timings['stack_start_s']:.0f}s (state in {self.state})")

    def _cluster_label(self) -> str:
        return f"context {self.context}" if self.context else f"the {self.name} cluster"

    def _check_reachable(self) -> None:
        try:
            version = k8s.VersionApi(self.api).get_code(_request_timeout=15)
        except Exception as exc:  # noqa: BLE001 - any failure here means "cannot talk to the cluster"
            raise ClusterError(f"the Kubernetes API of {self._cluster_label()} does not answer: "
                               f"{type(exc).__name__}: {str(exc).splitlines()[0][:300]}") from None
        self.cluster_versions["kubernetes_server"] = version.git_version
        self.say(f"connected to {self._cluster_label()} (Kubernetes {version.git_version})")

    def _s3_credentials(self) -> S3Credentials:
        """The in-cluster MinIO's keys: read back from a previous install, else new ones."""
        try:
            secret = k8s.CoreV1Api(self.api).read_namespaced_secret("minio-root", self.spec.system_namespace)
            data = {k: base64.b64decode(v).decode() for k, v in (secret.data or {}).items()}
            return S3Credentials(data["MINIO_ROOT_USER"], data["MINIO_ROOT_PASSWORD"])
        except ApiException as exc:
            if exc.status != 404:
                raise
        except KeyError:
            pass
        return S3Credentials(f"seamcheck-{secrets.token_hex(4)}", secrets.token_urlsafe(24))

    def _wait_services(self) -> None:
        deadline = self.config.component_deadline_s
        wait_http(f"{self.endpoints['mlflow']}/health", what=f"MLflow {self.row.mlflow}", deadline_s=deadline)
        wait_http(f"{self.endpoints['prometheus']}/-/ready", what="Prometheus", deadline_s=deadline)
        wait_http(f"{self.endpoints['minio']}/minio/health/ready", what="MinIO", deadline_s=deadline)
        health = KfpApi(self.endpoints["kfp"])
        info = wait_until(lambda: self._kfp_health(health), what="the KFP API's healthz", deadline_s=deadline,
                          interval_s=3)
        self.cluster_versions["kfp_api_tag"] = info.get("tag_name")

    @staticmethod
    def _kfp_health(api: KfpApi) -> dict | None:
        try:
            return api.healthz() or {"tag_name": None}
        except ClusterError:
            return None

    def teardown(self) -> None:
        """Idempotent (fixture teardown and the atexit fallback may both call it); best effort:
        one failing cleanup does not skip the others."""
        if self._torn_down:
            return
        self._torn_down = True
        for what, action in (("fault cleanup", lambda: self.faults and self.faults.cleanup()),
                             ("uploaded pipelines", self._delete_uploaded),
                             ("InferenceServices", self._delete_services),
                             ("ingress proxy", lambda: self.proxy and self.proxy.close()),
                             ("port-forwards and processes", self._stop_processes),
                             ("cluster", self._cluster_teardown)):
            try:
                action()
            except Exception as exc:  # noqa: BLE001 - report and go on: teardown must finish
                self.say(f"teardown: {what} failed: {type(exc).__name__}: {str(exc)[:300]}")
        ledger.active().remove_dir(self.state, keep=self.config.keep_stack)

    def _stop_processes(self) -> None:
        self.registry.stop_all()

    def _own_service(self, name: str) -> None:
        """Note an InferenceService this session makes (itself, or through a pipeline's deploy step),
        with its deletion in the run ledger first: a killed session's reaper deletes it too."""
        if name in self._services:
            return
        self._services.append(name)
        ledger.active().intend("command", key=f"isvc:{self.namespace}/{name}", timeout_s=60,
                               argv=self.kubectl.argv("delete", "inferenceservice", name, "-n", self.namespace,
                                                      "--ignore-not-found", "--wait=false"))

    def _delete_services(self) -> None:
        """Delete them (unless --keep-stack): a second run on the same cluster starts from none, and
        a predictor's pods do not keep costing after the run."""
        record = ledger.active()
        for name in self._services:
            key = f"isvc:{self.namespace}/{name}"
            if self.config.keep_stack:
                record.keep_key("command", key)
                continue
            if self._isvc is not None:
                self._isvc.delete(name)
            record.release_key("command", key)
        self._services.clear()

    def _delete_uploaded(self) -> None:
        if not self._uploaded or "kfp" not in self.endpoints:
            return
        api = KfpApi(self.endpoints["kfp"])
        for pipeline_id in self._uploaded:
            api.delete_pipeline(pipeline_id)
        self._uploaded.clear()

    # ------------------------------------------------------------ MLflow
    @property
    def tracking_uri(self) -> str:
        assert self.endpoints, "stack not started"
        return self.endpoints["mlflow"]

    def client_env(self) -> dict[str, str]:
        if not self.endpoints or self.s3 is None:
            return {}
        minio = self.endpoints["minio"]
        return {"MLFLOW_S3_ENDPOINT_URL": minio, "AWS_ENDPOINT_URL": minio, "AWS_ACCESS_KEY_ID": self.s3.access_key,
                "AWS_SECRET_ACCESS_KEY": self.s3.secret_key, "AWS_DEFAULT_REGION": "us-east-1",
                "AWS_REGION": "us-east-1", "S3_USE_HTTPS": "0", "S3_VERIFY_SSL": "0",
                "MLFLOW_TRACKING_URI": self.endpoints["mlflow"]}

    def _s3_client(self, endpoint: str, access: str, secret: str):
        return boto3.client("s3", endpoint_url=endpoint, aws_access_key_id=access, aws_secret_access_key=secret,
                            region_name="us-east-1")

    # ------------------------------------------------------------ KFP
    def _role_env(self) -> dict[str, str]:
        tmp = self.state / "tmp"
        tmp.mkdir(exist_ok=True)
        return {**os.environ, **self.client_env(), "PYTHONPATH": role_pythonpath(), "TMPDIR": str(tmp)}

    def compile_pipeline(self, out: Path) -> Path:
        self._compiled = super().compile_pipeline(out)  # run_pipeline submits this YAML
        return self._compiled

    def default_pipeline_params(self) -> dict[str, Any]:
        # Tasks run in the cluster: they reach MLflow by its Service, not by this machine's port.
        params = {"mlflow_tracking_uri": self.spec.in_cluster()["mlflow"], "serving_namespace": self.namespace}
        requests = self.config.predictor_requests or self.default_predictor_requests
        if requests:  # the deploy step writes them instead of the seed's (the canary services copy them)
            params["predictor_requests"] = json.dumps(requests, sort_keys=True)
        return params

    @classmethod
    def check_capacity(cls, config: StackConfig, row: Row, suites: frozenset[str]) -> None:
        demand = cls._demand(config, row, suites)
        rooms, where, remedy = cls._rooms(config, row, demand)
        check_fits(demand, rooms, where=where, remedy=remedy)

    @classmethod
    def _demand(cls, config: StackConfig, row: Row, suites: frozenset[str]) -> Demand:
        stack_cpu_m, stack_memory_mi = stack_requests(row.cluster)
        if not cls._installs_upstream(config):
            stack_cpu_m = stack_memory_mi = 0  # already running: in the nodes' requests, not added again
        fit = cls.train_fit(config)
        train = ({"cpu": str(fit["cpu"]), "memory": f"{fit['memory_gib']}Gi"} if fit else dict(COMPILED_TRAIN_REQUESTS))
        return session_demand(suites, predictor_requests=config.predictor_requests or cls.default_predictor_requests
                              or SEED_PREDICTOR_REQUESTS, train_requests=train, stack_cpu_m=stack_cpu_m,
                              stack_memory_mi=stack_memory_mi)

    @classmethod
    def train_fit(cls, config: StackConfig) -> dict[str, Any] | None:
        """The train task's limits as submitted ({"cpu", "memory_gib"}): --train-requests, else the
        profile's fit (None: as compiled). KFP makes a task's limits its requests too, so this is
        what the scheduler must find on one node of the pool the task targets."""
        if not config.train_requests:
            return cls.fit
        from kubernetes.utils import parse_quantity

        cpu = config.train_requests.get("cpu")
        memory = config.train_requests.get("memory")
        base = dict(cls.fit or {"cpu": "4", "memory_gib": 16})
        if cpu:
            base["cpu"] = f"{float(parse_quantity(cpu)):g}"
        if memory:
            base["memory_gib"] = float(parse_quantity(memory)) / 2**30
        return base

    @classmethod
    def _installs_upstream(cls, config: StackConfig) -> bool:
        return True

    @classmethod
    def _rooms(cls, config: StackConfig, row: Row, demand: Demand) -> tuple[list[NodeRoom], str, str]:
        """The nodes' room, where it is, and the fix to name when the demand does not fit."""
        raise NotImplementedError

    def stage_data(self, data_path: str, run_name: str) -> str:
        """A local file or folder of parquet is copied to the in-cluster MinIO (tasks cannot read
        this machine's disk); returns the s3:// URI the tasks read. Other URIs are kept."""
        local = Path(data_path.removeprefix("file://"))
        if "://" in data_path and not data_path.startswith("file://"):
            return data_path
        if not local.exists():
            raise ClusterError(f"data_path {data_path!r} does not exist on this machine")
        assert self.s3 is not None
        s3 = self._s3_client(self.endpoints["minio"], self.s3.access_key, self.s3.secret_key)
        prefix = f"{run_name}/{uuid.uuid4().hex[:8]}"
        files = [local] if local.is_file() else sorted(local.rglob("*.parquet"))
        for path in files:
            s3.upload_file(str(path), BUCKETS["data"], f"{prefix}/{path.name}")
        return f"s3://{BUCKETS['data']}/{prefix}/" + (local.name if local.is_file() else "")

    def run_pipeline(self, params: dict[str, Any], *, name: str) -> PipelineRun:
        assert self.api is not None and self.s3 is not None, "stack not started"
        started = time.monotonic()
        run_dir = self.state / "pipeline-runs" / name
        run_dir.mkdir(parents=True, exist_ok=True)
        params = dict(params)
        if params.get("isvc_name"):
            self._own_service(str(params["isvc_name"]))
        if "data_path" in params:
            params["data_path"] = self.stage_data(str(params["data_path"]), name)
        (run_dir / "params.json").write_text(json.dumps(params, indent=2))
        compiled = self._compiled or self.compile_pipeline(run_dir / "compiled.yaml")
        compiled_text = compiled.read_text()
        submission = prepare_submission(
            compiled_text, env_secret=TASK_SECRETS["env"], env_keys=list(task_env(self.spec, self.s3)),
            probe_secret=TASK_SECRETS["probe"], probe_mount=PROBE_MOUNT, gpu_toleration=self.gpu_toleration,
            drop_accelerator=self.drop_accelerator, fit=self.train_fit(self.config))
        submitted = run_dir / "submitted.yaml"
        submitted.write_text(submission.yaml_text)
        for change in submission.changes:
            self.say(f"pipeline {name}: submitted with {change}")
        kfp = KfpApi(self.endpoints["kfp"])
        pipeline = kfp.upload_pipeline(f"seamcheck-{name}-{uuid.uuid4().hex[:8]}", submission.yaml_text,
                                       description=f"seamcheck {self.name} run {name} (row {self.row.name})")
        pipeline_id = pipeline["pipeline_id"]
        self._uploaded.append(pipeline_id)
        versions = kfp.pipeline_versions(pipeline_id)
        if not versions:
            raise ClusterError(f"KFP created pipeline {pipeline_id} without a version")
        version_id = versions[0]["pipeline_version_id"]
        run = kfp.create_run(f"seamcheck-{name}", pipeline_id, version_id, params)
        run_id = run["run_id"]
        self.say(f"pipeline {name}: KFP run {run_id} created; waiting up to {self.config.pipeline_deadline_s:.0f}s")
        final = kfp.wait_run(run_id, deadline_s=self.config.pipeline_deadline_s, interval_s=self.kfp_poll_s,
                             say=self.say)
        tasks, logs = self._collect(compiled_text, submission.yaml_text, run_id, final, run_dir)
        log_path = run_dir / "runner.log"
        log_path.write_text("".join(f"===== pod {pod} =====\n{text}\n" for pod, text in logs.items()))
        kfp_state = final.get("state")
        error = (final.get("error") or {}).get("message")
        failed = [f"{t}: {v['error']}" for t, v in tasks.items() if v["state"] == "FAILED"]
        if kfp_state != "SUCCEEDED":
            error = " | ".join([e for e in [error or f"KFP run state {kfp_state}", *failed] if e])
        return PipelineRun(
            state="SUCCEEDED" if kfp_state == "SUCCEEDED" else "FAILED", error=error, tasks=tasks, params=params,
            compiled_yaml=submitted, log_path=log_path, seconds=time.monotonic() - started,
            details={"run_id": run_id, "pipeline_id": pipeline_id, "pipeline_version_id": version_id,
                     "kfp_state": kfp_state, "submitted_changes": list(submission.changes),
                     "compiled_yaml": str(compiled), "submitted_yaml": str(submitted),
                     "task_pods": {t: v.get("pod") for t, v in tasks.items()},
                     "task_nodes": {t: v.get("node") for t, v in tasks.items()}})

    def _collect(self, compiled_text: str, submitted_text: str, run_id: str, run: dict,
                 run_dir: Path) -> tuple[dict[str, dict], dict[str, str]]:
        core, custom = k8s.CoreV1Api(self.api), k8s.CustomObjectsApi(self.api)
        spec_tasks = inspect_compiled(compiled_text)["tasks"]
        pods = run_pods(core, custom, self.kfp_namespace, run_id)
        fetch = s3_fetcher(self._kfp_store_client) if "kfp_minio" in self.endpoints else None
        return collect_tasks(spec_tasks=spec_tasks, functions=function_names(submitted_text), pods=pods, core=core,
                             run=run, fetch=fetch, artifacts_dir=run_dir / "artifacts")

    def _kfp_store_client(self):
        secret = k8s.CoreV1Api(self.api).read_namespaced_secret("mlpipeline-minio-artifact", self.kfp_namespace)
        data = {k: base64.b64decode(v).decode() for k, v in (secret.data or {}).items()}
        return self._s3_client(self.endpoints["kfp_minio"], data["accesskey"], data["secretkey"])

    # ------------------------------------------------------------ KServe
    def revision_logs(self, name: str, revision: str) -> dict[str, str]:
        """`kubectl logs` of each pod of the revision's model server; a restarted container's
        previous log too (a model that fails to load exits, and its message is in that one)."""
        core = k8s.CoreV1Api(self.api)
        logs: dict[str, str] = {}
        for pod in core.list_namespaced_pod(self.namespace, label_selector=f"{REVISION_LABEL}={revision}").items:
            texts = []
            statuses = {s.name: s for s in (pod.status.container_statuses or [])} if pod.status else {}
            status = statuses.get("kserve-container")
            if status is not None and (status.restart_count or 0) > 0:
                texts.append(self._pod_log(core, pod.metadata.name, previous=True))
            texts.append(self._pod_log(core, pod.metadata.name, previous=False))
            logs[pod.metadata.name] = "\n".join(t for t in texts if t)
        return logs

    def revision_model(self, name: str, revision: str) -> RevisionModel:
        """The storageUri KServe wrote onto the Knative revision (the annotation its pod webhook
        reads to inject the storage initializer: `internal.serving.kserve.io/storage-initializer-
        sourceuri`, pkg/constants/constants.go at v0.14.1), and the MLmodel file under it."""
        rev = k8s.CustomObjectsApi(self.api).get_namespaced_custom_object(
            "serving.knative.dev", "v1", self.namespace, "revisions", revision)
        uri = ((rev.get("metadata") or {}).get("annotations") or {}).get(STORAGE_URI_ANNOTATION, "")
        if not uri:
            raise ClusterError(f"revision {revision} has no {STORAGE_URI_ANNOTATION} annotation: not created by KServe?")
        return RevisionModel(uri, read_storage_file(uri, "MLmodel", self.client_env()), "its storageUri")

    def _pod_log(self, core: k8s.CoreV1Api, pod: str, *, previous: bool) -> str:
        try:
            return core.read_namespaced_pod_log(pod, self.namespace, container="kserve-container",
                                                previous=previous, tail_lines=400)
        except ApiException as exc:
            return f"(no {'previous ' if previous else ''}log: {exc.status} {exc.reason})"

    def inference_base_url(self, name: str) -> str:
        assert self.proxy is not None, "stack not started"
        host = f"{name}-predictor.{self.namespace}.{self.spec.ingress_domain}"
        try:
            url = predictor_status(self.isvc.get(name)).get("url") or ""
            host = urlparse(url).hostname or host
        except ApiException as exc:
            if exc.status != 404:
                raise
        return self.proxy.base_url(host)

    # ------------------------------------------------------------ Prometheus
    @property
    def prometheus_url(self) -> str:
        assert self.endpoints, "stack not started"
        return self.endpoints["prometheus"]

    @property
    def metric_dialect(self) -> str:
        return self.metric_dialect_name

    # ------------------------------------------------------------ faults (guarded)
    def fault_refusal(self, fault: str) -> str | None:
        """The guard's answer for the namespace the fault acts in, read now (labels can change)."""
        assert self.guard is not None, "stack not started"
        where = {"kill-canary": (self.namespace, "delete the canary revision's pods"),
                 "stop-prometheus": (self.spec.system_namespace, "scale seamcheck's Prometheus to 0")}
        if fault not in where:
            return None
        try:
            self.guard.check(*where[fault])
        except ChaosRefused as exc:
            return str(exc)
        return None

    def fault_stop_prometheus(self) -> None:
        assert self.faults is not None, "stack not started"
        self.faults.scale(self.spec.system_namespace, "prometheus", 0)
        core = k8s.CoreV1Api(self.api)
        wait_until(lambda: not core.list_namespaced_pod(self.spec.system_namespace,
                                                        label_selector="app.kubernetes.io/name=prometheus").items,
                   what="Prometheus's pod to be gone", deadline_s=self.config.component_deadline_s)

    def fault_restore_prometheus(self) -> None:
        """Never refused (undoing is not chaos); nothing to do when the stop never happened."""
        assert self.faults is not None, "stack not started"
        if not self.faults.restore_scale(self.spec.system_namespace, "prometheus"):
            return
        wait_deployments_available(self.api, self.spec.system_namespace, names=["prometheus"],
                                   deadline_s=self.config.component_deadline_s)
        wait_http(f"{self.endpoints['prometheus']}/-/ready", what="Prometheus back",
                  deadline_s=self.config.component_deadline_s)

    def fault_kill_revision(self, name: str, revision: str, sig: int = 9) -> list:
        """Delete the revision's pods (grace 0 for SIGKILL, a normal termination otherwise).
        On a cluster there are no pids to return: the deleted pods' names are returned."""
        assert self.faults is not None, "stack not started"
        grace = 0 if sig == signal.SIGKILL else None
        return self.faults.delete_pods(self.namespace, f"{REVISION_LABEL}={revision}", grace_period_s=grace)

    def fault_cut_pipeline_from_mlflow(self) -> dict:
        assert self.faults is not None, "stack not started"
        return self.faults.cut_pipeline_from_mlflow(self.kfp_namespace, self.spec.system_namespace, MLFLOW_SELECTOR)

    def fault_restore_pipeline_to_mlflow(self) -> bool:
        assert self.faults is not None, "stack not started"
        return self.faults.restore_pipeline_to_mlflow(self.kfp_namespace)

    def fault_delete_pods(self, namespace: str, label_selector: str, *, grace_period_s: int | None = 0) -> list[str]:
        assert self.faults is not None, "stack not started"
        return self.faults.delete_pods(namespace, label_selector, grace_period_s=grace_period_s)

    def fault_scale(self, namespace: str, deployment: str, replicas: int) -> int:
        assert self.faults is not None, "stack not started"
        return self.faults.scale(namespace, deployment, replicas)

    # ------------------------------------------------------------ GPU evidence
    def gpu_placement(self, run: PipelineRun, task: str = "train-model") -> dict[str, Any]:
        """Where the task's pod ran and what that node offers (see harness/cluster/gpu.py)."""
        pod = run.task(task).get("pod")
        if not pod:
            raise ClusterError(f"no pod recorded for task {task} of run {run.details.get('run_id')}")
        return placement_evidence(self.api, self.kfp_namespace, pod)

    def gpu_cordon_check(self, run: PipelineRun, task: str = "train-model") -> dict[str, Any]:
        raise ClusterError(f"the cordon check runs on kind-gpu only (it cordons a node); not on {self.name}")

    # ------------------------------------------------------------ report
    def versions(self) -> dict[str, Any]:
        return {**self.row.versions(), "cluster": {"profile": self.name, **self.spec.versions(),
                                                   **self.cluster_versions},
                "mismatches": list(self.mismatches)}

    def timings(self) -> dict[str, float]:
        return dict(self._timings)

    def component_logs(self) -> dict[str, str]:
        return {}

    def _pod(self, namespace: str, name: str) -> k8s.V1Pod:
        return k8s.CoreV1Api(self.api).read_namespaced_pod(name, namespace)

    def _cordon_check(self, run: PipelineRun, task: str) -> dict[str, Any]:
        pod_name = run.task(task).get("pod")
        if not pod_name:
            raise ClusterError(f"no pod recorded for task {task}")
        assert self.guard is not None, "stack not started"
        self.guard.check(self.kfp_namespace, "cordon the training pod's node and create a probe pod")
        pod = self._pod(self.kfp_namespace, pod_name)
        return unschedulable_when_cordoned(self.api, pod.spec.node_name, pod, self.kfp_namespace,
                                           deadline_s=120, say=self.say)

