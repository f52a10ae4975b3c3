"""Waits on cluster state, each with a deadline, and a timeout that says what it waited for and
what it saw last (the objects' own conditions), so a stuck install names the stuck piece."""
from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

import requests
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from harness.cluster.errors import ClusterError, WaitTimeout

__all__ = [
    "delete_pod_now",
    "deployment_problems",
    "pod_problems",
    "wait_crds_established",
    "wait_deployments_available",
    "wait_http",
    "wait_job_complete",
    "wait_until",
]

T = TypeVar("T")


def wait_until(check: Callable[[], T | None], *, what: str, deadline_s: float, interval_s: float = 2.0,
               last_seen: Callable[[], str] | None = None, clock: Callable[[], float] = time.monotonic,
               sleep: Callable[[float], None] = time.sleep) -> T:
    """Call `check` until it returns something truthy; return that. At the deadline raise
    WaitTimeout naming `what` and, if given, `last_seen()` (the state it last observed).
    `check` may raise ClusterError to stop early on a terminal failure."""
    end = clock() + deadline_s
    while True:
        result = check()
        if result:
            return result
        if clock() >= end:
            seen = ""
            if last_seen is not None:
                try:
                    seen = f"; last seen: {last_seen()}"
                except Exception as exc:  # noqa: BLE001 - the description must not hide the timeout
                    seen = f"; (could not describe the last state: {exc})"
            raise WaitTimeout(f"gave up after {deadline_s:.0f}s waiting for {what}{seen}")
        sleep(max(0.05, min(interval_s, end - clock())))  # never oversleep the deadline


def _conditions(obj: Any) -> dict[str, Any]:
    conds = getattr(getattr(obj, "status", None), "conditions", None) or []
    return {c.type: c for c in conds}


def deployment_problems(deployments: Iterable[k8s.V1Deployment]) -> list[str]:
    """Why each deployment is not yet available (empty when all are)."""
    problems = []
    for dep in deployments:
        name = dep.metadata.name
        want = dep.spec.replicas if dep.spec.replicas is not None else 1
        status = dep.status
        available = _conditions(dep).get("Available")
        updated = status.updated_replicas or 0
        ready = status.available_replicas or 0
        generation_seen = (status.observed_generation or 0) >= (dep.metadata.generation or 0)
        if want == 0:
            continue
        if not (available is not None and available.status == "True" and updated >= want and ready >= want
                and generation_seen):
            why = f"{ready}/{want} available"
            progressing = _conditions(dep).get("Progressing")
            for cond in (available, progressing):
                if cond is not None and cond.status != "True":
                    why += f", {cond.type}={cond.status} ({cond.reason}: {(cond.message or '')[:200]})"
            problems.append(f"{name}: {why}")
    return problems


def wait_deployments_available(api: k8s.ApiClient, namespace: str, *, deadline_s: float,
                               names: Iterable[str] | None = None, what: str | None = None,
                               interval_s: float = 3.0) -> list[str]:
    """Every deployment in `namespace` (or only `names`) Available with all replicas updated.
    Returns the names. A namespace with no deployments yet keeps waiting (they are being created)."""
    apps = k8s.AppsV1Api(api)
    wanted = set(names or [])
    last: list[str] = []

    def check() -> list[str] | None:
        nonlocal last
        deps = apps.list_namespaced_deployment(namespace).items
        if wanted:
            found = {d.metadata.name for d in deps}
            missing = sorted(wanted - found)
            deps = [d for d in deps if d.metadata.name in wanted]
            last = [f"{m}: not created yet" for m in missing] + deployment_problems(deps)
            return None if last else sorted(wanted)
        if not deps:
            last = ["no deployments yet"]
            return None
        last = deployment_problems(deps)
        return None if last else sorted(d.metadata.name for d in deps)

    def seen() -> str:
        # At the deadline only: what the pods of each unavailable deployment say, and their last log lines.
        stuck = [d for d in apps.list_namespaced_deployment(namespace).items
                 if (not wanted or d.metadata.name in wanted) and deployment_problems([d])]
        pods = [line for d in stuck for line in pod_problems(api, namespace, d.spec.selector.match_labels or {})]
        return "; ".join(last) + ("".join(f"\n  {line}" for line in pods) if pods else "") if last else "nothing"

    return wait_until(check, what=what or f"deployments in {namespace} to be available", deadline_s=deadline_s,
                      interval_s=interval_s, last_seen=seen)


def pod_problems(api: k8s.ApiClient, namespace: str, labels: dict[str, str], *, log_lines: int = 8) -> list[str]:
    """Each not-ready pod with ``labels``: phase, every unready container's state and restarts, and the
    last lines of its log (the previous run's when it restarted): what a timed-out wait shows."""
    core = k8s.CoreV1Api(api)
    selector = ",".join(f"{k}={v}" for k, v in sorted(labels.items()))
    out = []
    for pod in core.list_namespaced_pod(namespace, label_selector=selector).items:
        statuses = (pod.status.container_statuses or []) if pod.status else []
        unready = [c for c in statuses if not c.ready]
        if statuses and not unready:
            continue
        out.append(f"pod {pod.metadata.name}: {pod.status.phase if pod.status else '?'}"
                   + (f" on {pod.spec.node_name}" if pod.spec.node_name else " (not scheduled)"))
        for c in unready:
            state = c.state.waiting or c.state.terminated if c.state else None
            what = f"{getattr(state, 'reason', None) or ('running, not ready' if c.state and c.state.running else '?')}"
            if getattr(state, "message", None):
                what += f": {state.message[:200]}"
            if c.last_state and c.last_state.terminated:
                what += f"; last exit {c.last_state.terminated.exit_code} ({c.last_state.terminated.reason})"
            out.append(f"  container {c.name}: {what}; restarts {c.restart_count}")
            try:
                log = core.read_namespaced_pod_log(pod.metadata.name, namespace, container=c.name,
                                                   tail_lines=log_lines, previous=c.restart_count > 0) or ""
            except ApiException:
                log = ""
            out += [f"    | {line}" for line in log.splitlines()[-log_lines:]]
    return out


def wait_crds_established(api: k8s.ApiClient, names: Iterable[str], *, deadline_s: float,
                          interval_s: float = 2.0) -> None:
    ext = k8s.ApiextensionsV1Api(api)
    names = list(names)
    last: dict[str, str] = {}

    def check() -> bool:
        for name in names:
            try:
                crd = ext.read_custom_resource_definition(name)
            except ApiException as exc:
                if exc.status != 404:
                    raise
                last[name] = "not created yet"
                continue
            cond = _conditions(crd).get("Established")
            last[name] = f"Established={cond.status}" if cond is not None else "no Established condition yet"
        return all(v == "Established=True" for v in (last.get(n) for n in names))

    wait_until(check, what=f"CRD(s) {', '.join(names)} to be established", deadline_s=deadline_s,
               interval_s=interval_s, last_seen=lambda: ", ".join(f"{k}: {v}" for k, v in last.items()))


def wait_job_complete(api: k8s.ApiClient, namespace: str, name: str, *, deadline_s: float,
                      interval_s: float = 2.0) -> None:
    batch = k8s.BatchV1Api(api)
    last = {"state": "not created yet"}

    def check() -> bool:
        try:
            job = batch.read_namespaced_job(name, namespace)
        except ApiException as exc:
            if exc.status == 404:
                return False
            raise
        conds = _conditions(job)
        failed = conds.get("Failed")
        if failed is not None and failed.status == "True":
            raise ClusterError(f"job {namespace}/{name} failed: {failed.reason}: {failed.message}")
        last["state"] = f"succeeded={job.status.succeeded or 0} failed={job.status.failed or 0}"
        return bool(job.status.succeeded)

    wait_until(check, what=f"job {namespace}/{name} to complete", deadline_s=deadline_s, interval_s=interval_s,
               last_seen=lambda: last["state"])


def wait_http(url: str, *, what: str, deadline_s: float, expect: int = 200, interval_s: float = 2.0) -> None:
    last = {"seen": "no answer yet"}

    def check() -> bool:
        try:
            resp = requests.get(url, timeout=5)
        except requests.RequestException as exc:
            last["seen"] = f"{type(exc).__name__}"
            return False
        last["seen"] = f"HTTP {resp.status_code}"
        return resp.status_code == expect

    wait_until(check, what=f"{what} (HTTP {expect} from {url})", deadline_s=deadline_s, interval_s=interval_s,
               last_seen=lambda: last["seen"])


def delete_pod_now(core: k8s.CoreV1Api, namespace: str, name: str) -> None:
    """Delete a Pod the harness made for one look (a probe), without grace; one already gone is fine."""
    try:
        core.delete_namespaced_pod(name, namespace, grace_period_seconds=0)
    except ApiException as exc:
        if exc.status != 404:
            raise
