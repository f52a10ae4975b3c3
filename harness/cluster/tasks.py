"""A KFP run's per-task results on a cluster, in the shape the local runner gives
(harness/pipeline/run_local.py): {task: {"state", "parameters", "artifacts": {name: {"type",
"uri", "path", "metadata"}}, "imports", "kfp_version", "python", "seconds", "error", "pod", "node"}}.

Sources, best first:
 * the task probe's line in each task pod's log (harness/cluster/task_log_probe.py): the executor
   output (output parameters, artifact URIs and metadata) and what the task imported;
 * the pod itself: node, phase, and the log tail when it failed before Python ran (pip, image);
 * the run's task details from the KFP API (states of tasks that never got a pod: skipped).
Artifacts are downloaded from the store the run wrote them to (KFP's MinIO: minio://...) into a
local folder, so `path` is a local file or folder as on the local profile.
"""
from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from harness.cluster.task_log_probe import parse_marker_lines

__all__ = ["ArtifactFetcher", "collect_tasks", "function_names", "run_pods", "s3_fetcher", "task_of_pod"]

ArtifactFetcher = Callable[[str, Path], "str | None"]
RUN_ID_LABEL = "pipeline/runid"
WORKFLOW_LABEL = "workflows.argoproj.io/workflow"
NODE_NAME_ANNOTATION = "workflows.argoproj.io/node-name"
LOG_TAIL = 30


def function_names(compiled_yaml: str) -> dict[str, str]:
    """executor label -> the Python function it runs (`--function_to_execute` in its args)."""
    out = {}
    for doc in yaml.safe_load_all(compiled_yaml):
        if not isinstance(doc, dict) or "deploymentSpec" not in doc:
            continue
        for label, executor in doc["deploymentSpec"].get("executors", {}).items():
            args = list((executor.get("container") or {}).get("args") or [])
            for i, arg in enumerate(args[:-1]):
                if arg == "--function_to_execute":
                    out[label] = args[i + 1]
    return out


def run_pods(core: k8s.CoreV1Api, custom: k8s.CustomObjectsApi, namespace: str, run_id: str) -> list[k8s.V1Pod]:
    """The run's pods: KFP labels every pod of a run with pipeline/runid; if a backend does not,
    the run's Argo Workflow carries the label and its pods the workflow's name."""
    pods = core.list_namespaced_pod(namespace, label_selector=f"{RUN_ID_LABEL}={run_id}").items
    if pods:
        return pods
    try:
        workflows = custom.list_namespaced_custom_object("argoproj.io", "v1alpha1", namespace, "workflows",
                                                         label_selector=f"{RUN_ID_LABEL}={run_id}")["items"]
    except ApiException as exc:
        if exc.status == 404:
            return []
        raise
    found: list[k8s.V1Pod] = []
    for wf in workflows:
        found += core.list_namespaced_pod(namespace,
                                          label_selector=f"{WORKFLOW_LABEL}={wf['metadata']['name']}").items
    return found


def task_of_pod(pod: k8s.V1Pod, task_names: Iterable[str]) -> tuple[str | None, str]:
    """(task, role) from Argo's node-name annotation, e.g. `wf.root.train-model.executor` ->
    ("train-model", "executor"); role is the last segment (driver | executor | ...)."""
    node_name = (pod.metadata.annotations or {}).get(NODE_NAME_ANNOTATION, "")
    segments = [s for s in re.split(r"[.()\[\]]", node_name) if s]
    names = set(task_names)
    task = next((s for s in reversed(segments) if s in names), None)
    return task, (segments[-1] if segments else "")


def _log(core: k8s.CoreV1Api, pod: k8s.V1Pod) -> str:
    containers = [c.name for c in pod.spec.containers]
    container = "main" if "main" in containers else containers[0]
    try:
        return core.read_namespaced_pod_log(pod.metadata.name, pod.metadata.namespace, container=container)
    except ApiException as exc:
        return f"(no log: {exc.status} {exc.reason})"


def _tail(text: str, lines: int = LOG_TAIL) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


def collect_tasks(*, spec_tasks: Mapping[str, Mapping[str, Any]], functions: Mapping[str, str],
                  pods: list[k8s.V1Pod], core: k8s.CoreV1Api, run: Mapping[str, Any],
                  fetch: ArtifactFetcher | None, artifacts_dir: Path) -> tuple[dict[str, dict], dict[str, str]]:
    """(tasks, logs by pod). `spec_tasks` is inspect_compiled(...)["tasks"]; `functions` maps an
    executor label to its function (function_names)."""
    fn_to_task = {functions[t["executor"]]: name for name, t in spec_tasks.items() if t.get("executor") in functions}
    reports: dict[str, dict] = {}
    pod_of: dict[str, k8s.V1Pod] = {}
    logs: dict[str, str] = {}
    def created(pod: k8s.V1Pod) -> float:
        stamp = pod.metadata.creation_timestamp
        return stamp.timestamp() if hasattr(stamp, "timestamp") else 0.0

    for pod in sorted(pods, key=created):
        text = _log(core, pod)
        logs[pod.metadata.name] = text
        task, role = task_of_pod(pod, spec_tasks)
        for report in parse_marker_lines(text):
            task = fn_to_task.get(report.get("function") or "", task)
            if task:
                reports[task] = report  # the latest pod of a task wins (retries)
        if task and role not in ("driver",):
            pod_of[task] = pod
    api_states = {t.get("display_name"): t.get("state")
                  for t in (run.get("run_details") or {}).get("task_details") or []}

    tasks: dict[str, dict] = {}
    pending = dict(spec_tasks)
    while pending:
        ready = [n for n, t in pending.items() if all(d in tasks or d not in spec_tasks for d in t["depends_on"])]
        if not ready:
            raise ValueError(f"dependency cycle among {sorted(pending)}")
        for name in sorted(ready):
            task_spec = pending.pop(name)
            pod = pod_of.get(name)
            entry: dict[str, Any] = {"state": None, "parameters": {}, "artifacts": {}, "imports": None,
                                     "kfp_version": None, "python": None, "seconds": None, "error": None,
                                     "pod": pod.metadata.name if pod else None,
                                     "node": pod.spec.node_name if pod else None}
            report = reports.get(name)
            if report is not None:
                output = report.get("executor_output")
                entry.update(imports=report.get("modules"), python=report.get("python_version"),
                             seconds=report.get("seconds"), error=report.get("error"),
                             kfp_version=((report.get("modules") or {}).get("kfp") or {}).get("version"),
                             pod=report.get("pod") or entry["pod"])
                entry["state"] = "SUCCEEDED" if output is not None and not report.get("error") else "FAILED"
                if entry["state"] == "SUCCEEDED":
                    entry["parameters"] = dict(output.get("parameterValues") or {})
                    types = task_spec["outputs"]["artifacts"]
                    for out_name, holder in (output.get("artifacts") or {}).items():
                        for art in (holder.get("artifacts") or [])[:1]:
                            uri = art.get("uri")
                            path = fetch(uri, artifacts_dir / name / out_name) if (fetch and uri) else None
                            entry["artifacts"][out_name] = {"type": types.get(out_name), "uri": uri, "path": path,
                                                            "metadata": art.get("metadata") or {}}
            elif pod is not None and pod.status is not None and pod.status.phase == "Failed":
                entry["state"] = "FAILED"
                entry["error"] = f"pod {pod.metadata.name} failed before the task reported: " \
                                 f"{_tail(logs.get(pod.metadata.name, ''), 5)}"
            elif api_states.get(name) in ("SUCCEEDED", "FAILED", "SKIPPED", "CACHED"):
                entry["state"] = "SUCCEEDED" if api_states[name] == "CACHED" else api_states[name]
                if entry["state"] == "SUCCEEDED":
                    entry["error"] = "KFP reports the task succeeded, but its pod log has no probe line"
            else:
                upstream_ok = all(tasks.get(d, {}).get("state") == "SUCCEEDED" for d in task_spec["depends_on"])
                entry["state"] = "SKIPPED" if upstream_ok and run.get("state") == "SUCCEEDED" else "NOT_RUN"
            if entry["state"] == "FAILED" and entry["error"] is None:
                entry["error"] = "task failed; no exception recorded (see the task log)"
            tasks[name] = entry
    return tasks, logs


def s3_fetcher(client_factory: Callable[[], Any]) -> ArtifactFetcher:
    """Downloads `minio://bucket/key` or `s3://bucket/key` (a file, or every object under it as a
    folder) into `dest`; returns the local path, or None when nothing is stored there."""

    def fetch(uri: str, dest: Path) -> str | None:
        match = re.match(r"^(minio|s3)://([^/]+)/(.*)$", uri or "")
        if not match:
            return None
        bucket, key = match.group(2), match.group(3).rstrip("/")
        s3 = client_factory()
        keys = []
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=key):
            keys += [obj["Key"] for obj in page.get("Contents", [])
                     if obj["Key"] == key or obj["Key"].startswith(key + "/")]
        if not keys:
            return None
        if keys == [key]:
            dest.mkdir(parents=True, exist_ok=True)
            target = dest / Path(key).name
            s3.download_file(bucket, key, str(target))
            return str(target)
        for obj_key in keys:
            target = dest / obj_key[len(key) + 1:]
            target.parent.mkdir(parents=True, exist_ok=True)
            s3.download_file(bucket, obj_key, str(target))
        return str(dest)

    return fetch
