"""The KFP REST API (v2beta1) with `requests` - the harness process never imports kfp - and the
changes the harness makes to a compiled pipeline before submitting it to a cluster.

API: upload a pipeline (multipart `uploadfile`), find its version, create a run with runtime
parameters, poll the run until a terminal state (with a deadline), delete what was uploaded.

Submission changes (the compiled YAML is kept as compiled; the submitted copy is saved next to
it, and every change is listed in the run's details):
 * every task gets the harness's Secrets through the Kubernetes platform spec, the document
   kfp-kubernetes writes for `use_secret_as_env` / `use_secret_as_volume`: S3 and MLflow
   endpoints for boto3/MLflow, and the task probe on PYTHONPATH (harness/cluster/task_log_probe.py);
 * the GPU task gets a toleration for the taint GPU pools carry (`nvidia.com/gpu:NoSchedule`),
   the document kfp-kubernetes writes for `add_toleration`: a KFP 2.3 backend adds none by
   itself for an accelerator request, and a tainted pool would never take the pod;
 * result caching is off for every task: a cached task runs no pod and would leave no evidence;
 * on kind only, resources are fitted to a laptop-sized node: the train task's 4 CPU / 16Gi
   limits (which KFP also turns into requests) cannot be scheduled on a node whose capacity is
   the CI runner's; without a GPU pool (profile kind) the accelerator request is dropped.
"""
from __future__ import annotations

import copy
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import requests
import yaml

from harness.cluster.errors import ClusterError, WaitTimeout

__all__ = [
    "GPU_TOLERATION",
    "TERMINAL_STATES",
    "KfpApi",
    "KfpError",
    "Submission",
    "prepare_submission",
    "split_documents",
]

TERMINAL_STATES = ("SUCCEEDED", "FAILED", "SKIPPED", "CANCELED")
GPU_TOLERATION = {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
_GB = 10**9


class KfpError(ClusterError):
    """The KFP API answered with an error (or not at all)."""


def split_documents(yaml_text: str) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """(PipelineSpec document, platform spec document or None) of a compiled pipeline file."""
    pipeline, platform = None, None
    for doc in yaml.safe_load_all(yaml_text):
        if isinstance(doc, dict) and "pipelineInfo" in doc:
            pipeline = doc
        elif isinstance(doc, dict) and "platforms" in doc:
            platform = doc
    if pipeline is None:
        raise KfpError("the compiled pipeline has no PipelineSpec document (with pipelineInfo)")
    return pipeline, platform


@dataclass(frozen=True)
class Submission:
    yaml_text: str
    changes: tuple[str, ...]


def _fit_resources(resources: dict[str, Any], cpu: str, memory_gib: float) -> list[str]:
    changes = []
    if "cpuLimit" in resources or "resourceCpuLimit" in resources:
        before = resources.get("resourceCpuLimit", resources.get("cpuLimit"))
        resources["cpuLimit"] = float(cpu)
        if "resourceCpuLimit" in resources:
            resources["resourceCpuLimit"] = cpu
        changes.append(f"cpu limit {before} -> {cpu}")
    if "memoryLimit" in resources or "resourceMemoryLimit" in resources:
        before = resources.get("resourceMemoryLimit", resources.get("memoryLimit"))
        # kfp 2.9 writes memoryLimit in decimal GB (16Gi -> 17.179869184); newer SDKs add the raw string.
        resources["memoryLimit"] = round(memory_gib * 2**30 / _GB, 9)
        if "resourceMemoryLimit" in resources:
            resources["resourceMemoryLimit"] = f"{memory_gib:g}Gi"
        changes.append(f"memory limit {before} -> {memory_gib:g}Gi")
    return changes


def _disable_caching(pipeline: dict[str, Any]) -> list[str]:
    """Turn KFP's result caching off for every task (root DAG and condition sub-DAGs); returns
    the tasks that had it on. A cached task runs no pod, so it would leave no evidence."""
    dags = [pipeline.get("root", {}).get("dag", {})]
    dags += [c["dag"] for c in pipeline.get("components", {}).values() if "dag" in c]
    changed = []
    for dag in dags:
        for name, task in (dag.get("tasks") or {}).items():
            options = task.setdefault("cachingOptions", {})
            if options.get("enableCache", False):
                changed.append(name)
            options["enableCache"] = False
    return sorted(changed)


def prepare_submission(compiled_yaml: str, *, env_secret: str, env_keys: list[str], probe_secret: str,
                       probe_mount: str, gpu_toleration: bool, drop_accelerator: bool = False,
                       fit: Mapping[str, Any] | None = None) -> Submission:
    """The pipeline a cluster receives: `compiled_yaml` plus the platform spec entries described
    in the module docstring. `fit`: {"cpu": "1", "memory_gib": 2} to fit limits (kind)."""
    pipeline, platform = split_documents(compiled_yaml)
    pipeline = copy.deepcopy(pipeline)
    empty = {"platforms": {"kubernetes": {"deploymentSpec": {"executors": {}}}}}
    platform = copy.deepcopy(platform) if platform else empty
    k8s_executors = (platform.setdefault("platforms", {}).setdefault("kubernetes", {})
                     .setdefault("deploymentSpec", {}).setdefault("executors", {}))
    changes: list[str] = []
    executors = pipeline.get("deploymentSpec", {}).get("executors", {})
    for label in sorted(executors):
        container = executors[label].get("container")
        if container is None:
            continue  # an importer or a resolver: no pod of its own
        cfg = k8s_executors.setdefault(label, {})
        cfg.setdefault("secretAsEnv", []).append(
            {"secretName": env_secret, "keyToEnv": [{"secretKey": key, "envVar": key} for key in env_keys]})
        cfg.setdefault("secretAsVolume", []).append(
            {"secretName": probe_secret, "mountPath": probe_mount, "optional": False})
        resources = container.get("resources") or {}
        accelerator = resources.get("accelerator")
        if accelerator and drop_accelerator:
            resources.pop("accelerator")
            changes.append(f"{label}: accelerator request {accelerator} dropped (cluster without a GPU pool)")
        elif accelerator and gpu_toleration:
            tolerations = cfg.setdefault("tolerations", [])
            if GPU_TOLERATION not in tolerations:
                tolerations.append(dict(GPU_TOLERATION))
                changes.append(f"{label}: toleration nvidia.com/gpu:NoSchedule (Exists) for its accelerator request")
        if fit and resources:
            changes += [f"{label}: {c}" for c in _fit_resources(resources, str(fit["cpu"]), float(fit["memory_gib"]))]
    cached = _disable_caching(pipeline)
    changes.insert(0, f"every task: env from Secret {env_secret} ({', '.join(env_keys)}); Secret {probe_secret} "
                      f"mounted at {probe_mount} (the task probe)")
    if cached:
        changes.insert(1, f"caching off for {', '.join(cached)} (every run executes, so its evidence is fresh)")
    text = yaml.safe_dump_all([pipeline, platform], sort_keys=False)
    return Submission(text, tuple(changes))


class KfpApi:
    """KFP's REST API v2beta1 at `base_url` (e.g. http://127.0.0.1:30081)."""

    def __init__(self, base_url: str, *, timeout: float = 30.0, session: requests.Session | None = None) -> None:
        self.base = base_url.rstrip("/")
        self.timeout = timeout
        self.session = session or requests.Session()

    def _call(self, method: str, path: str, what: str, **kwargs: Any) -> dict[str, Any]:
        url = f"{self.base}/apis/v2beta1/{path.lstrip('/')}"
        try:
            resp = self.session.request(method, url, timeout=self.timeout, **kwargs)
        except requests.RequestException as exc:
            raise KfpError(f"KFP API: {what}: no answer from {url} ({type(exc).__name__}: {exc})") from None
        if resp.status_code >= 400:
            try:
                body = resp.json()
                message = body.get("error") or body.get("message") or resp.text
            except ValueError:
                message = resp.text
            raise KfpError(f"KFP API: {what}: HTTP {resp.status_code} from {method} {url}: {str(message)[:500]}")
        return resp.json() if resp.content else {}

    def healthz(self) -> dict[str, Any]:
        """{"commit_sha", "tag_name" (the backend version), "multi_user"}."""
        return self._call("GET", "healthz", "health check")

    def upload_pipeline(self, name: str, yaml_text: str, description: str = "") -> dict[str, Any]:
        return self._call("POST", "pipelines/upload", f"uploading pipeline {name!r}",
                          params={"name": name, "display_name": name, "description": description},
                          files={"uploadfile": (f"{name}.yaml", yaml_text.encode(), "application/x-yaml")})

    def pipeline_versions(self, pipeline_id: str) -> list[dict[str, Any]]:
        body = self._call("GET", f"pipelines/{pipeline_id}/versions", "listing pipeline versions",
                          params={"page_size": 100, "sort_by": "created_at desc"})
        return list(body.get("pipeline_versions") or [])

    def create_run(self, display_name: str, pipeline_id: str, version_id: str, parameters: Mapping[str, Any],
                   experiment_id: str | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {
            "display_name": display_name,
            "pipeline_version_reference": {"pipeline_id": pipeline_id, "pipeline_version_id": version_id},
            "runtime_config": {"parameters": dict(parameters)},
        }
        if experiment_id:
            body["experiment_id"] = experiment_id
        return self._call("POST", "runs", f"creating run {display_name!r}", json=body)

    def get_run(self, run_id: str) -> dict[str, Any]:
        return self._call("GET", f"runs/{run_id}", f"reading run {run_id}")

    def wait_run(self, run_id: str, *, deadline_s: float, interval_s: float = 5.0,
                 say: Callable[[str], None] = lambda _m: None, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> dict[str, Any]:
        """Poll until the run reaches a terminal state; say() each state change."""
        end = clock() + deadline_s
        last_state, run = None, {}
        while True:
            run = self.get_run(run_id)
            state = run.get("state") or "RUNTIME_STATE_UNSPECIFIED"
            if state != last_state:
                say(f"KFP run {run_id}: {state}")
                last_state = state
            if state in TERMINAL_STATES:
                return run
            if clock() >= end:
                tasks = {t.get("display_name"): t.get("state")
                         for t in (run.get("run_details") or {}).get("task_details") or []}
                raise WaitTimeout(f"gave up after {deadline_s:.0f}s waiting for KFP run {run_id} to finish; "
                                  f"last state {state}; tasks: {tasks or 'none reported'}")
            sleep(interval_s)

    def delete_pipeline(self, pipeline_id: str) -> None:
        """Delete an uploaded pipeline and its versions (KFP refuses a pipeline that has versions)."""
        for version in self.pipeline_versions(pipeline_id):
            self._call("DELETE", f"pipelines/{pipeline_id}/versions/{version['pipeline_version_id']}",
                       "deleting a pipeline version")
        self._call("DELETE", f"pipelines/{pipeline_id}", "deleting a pipeline")
