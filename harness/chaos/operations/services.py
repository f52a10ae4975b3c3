"""Operations on the InferenceServices experiments make: deploy, canary split, status and
waits, answers through the router, storage, logs, rollback (by traffic or by storageUri swap) and
the scaled-to-zero waits. Every service is made from the deployed one's pattern; only the ones
the control made may be deleted."""

from __future__ import annotations

import functools
import time
from typing import Any

from harness.chaos.control import ChaosControl, ControlError, Fault
from harness.faults.models import FaultSpec, log_faulty_model
from harness.serving.isvc import (
    failed_revision,
    predictor_status,
    revision_template,
    service_from_template,
    storage_uri_of,
    summarize,
)
from harness.serving.lint import LintError, lint_isvc
from harness.serving.rollout import split_of, swap_storage_uri
from harness.serving.storage import copy_storage

__all__ = [
    "answers",
    "delete_service",
    "deploy_service",
    "describe",
    "revision_logs",
    "roll_back",
    "scale_to_zero_after",
    "service_status",
    "set_canary",
    "storage_listing",
    "wait_for_failure",
    "wait_for_split",
    "wait_rollback_settled",
    "wait_scaled_to_zero",
]


def describe(control: ChaosControl) -> dict[str, Any]:
    profile = control.profile
    return {
        "profile": profile.name,
        "row": profile.row.name,
        "namespace": profile.namespace,
        "tracking_uri": profile.tracking_uri,
        "prometheus_url": profile.prometheus_url,
        "inference_url": profile.inference_base_url(""),
        "kubeconfig": str(profile.kubeconfig),
        "base_storage_uri": control.context.base_storage_uri,
        "model_name": control.context.model_name,
        "model_version": control.context.model_version,
        "faults_in_place": control.faults_in_place(),
        "harness_pids": profile.registry.pids(),
    }


def storage_for(control: ChaosControl, model: str) -> str:
    """base | run-root (the seed's bug: no "/model") | copy:<tag> | slow-load:<seconds>."""
    base = control.context.base_storage_uri
    if model == "base":
        return base
    if model == "run-root":
        return base.rsplit("/", 1)[0]
    kind, _, arg = model.partition(":")
    if kind == "copy" and arg:
        target = f"{base.rsplit('/', 1)[0]}/{arg}/model"
        copy_storage(base, target, control.profile.client_env())
        return target
    if kind == "slow-load" and arg:
        info = log_faulty_model(
            control.profile.envs["pipeline"].python,
            FaultSpec.slow_load(float(arg)),
            base_model_uri=f"models:/{control.context.model_name}/{control.context.model_version}",
            registered_model_name=f"seamcheck-chaos-slow-load-{next(control.ids)}",
            tracking_uri=control.profile.tracking_uri,
            env=control.profile.client_env(),
        )
        assert info.artifact_uri, "the faulty model has no artifact location"
        return info.artifact_uri
    raise ValueError(f"model {model!r}: use base, run-root, copy:<tag> or slow-load:<seconds>")


def deploy_service(
    control: ChaosControl,
    name: str,
    model: str = "base",
    min_replicas: int = 1,
    canary_percent: int | None = None,
    readiness_budget_s: float | None = None,
    lint: bool = True,
    wait_ready: bool = True,
    deadline_s: float = 180,
) -> dict[str, Any]:
    """Create or change service ``name`` (from the deployed service's pattern) to serve ``model``.

    With ``lint`` the manifest goes through the pre-apply lint first and is refused, not
    applied, when it would fail (harness/serving/lint.py)."""
    template = control.context.template
    storage_uri = storage_for(control, model)
    manifest = service_from_template(
        template,
        name,
        storage_uri,
        min_replicas=min_replicas,
        canary_percent=canary_percent,
        labels={"app.kubernetes.io/managed-by": "seamcheck-chaos"},
    )
    manifest["metadata"]["namespace"] = control.profile.namespace
    predictor = manifest["spec"]["predictor"]
    predictor["model"].pop("readinessProbe", None)
    if readiness_budget_s is not None:
        # The container's readiness probe: how long a cold-starting replica may take.
        predictor["model"]["readinessProbe"] = {
            "httpGet": {"path": "/v2/health/ready", "port": 8080},
            "periodSeconds": 1,
            "failureThreshold": max(1, int(readiness_budget_s)),
        }
    if lint:
        problems = lint_isvc(manifest, control.profile.client_env())
        if problems:
            raise LintError(name, problems)
    client = control.profile.isvc
    before = client.get(name) if client.exists(name) else None
    # A changed predictor makes a new revision, which must replace the one serving now.
    newer_than = (
        predictor_status(before).get("latestReadyRevision")
        if before is not None and revision_template(before) != revision_template(manifest)
        else None
    )
    verb, obj = client.create_or_patch(manifest)
    control.services.add(name)
    generation = obj["metadata"].get("generation")
    if wait_ready:
        obj = client.wait_ready(name, deadline_s=deadline_s, newer_than=newer_than)
    return {"verb": verb, "storage_uri": storage_uri, "generation": generation, **status_of(obj)}


def set_canary(control: ChaosControl, name: str, percent: int | None) -> dict[str, Any]:
    """Set (or, with None, remove = promote) canaryTrafficPercent; 0 is KServe's rollback."""
    obj = control.profile.isvc.patch(name, {"spec": {"predictor": {"canaryTrafficPercent": percent}}})
    return status_of(obj)


def service_status(control: ChaosControl, name: str) -> dict[str, Any]:
    return status_of(control.profile.isvc.get(name))


def wait_for_split(
    control: ChaosControl,
    name: str,
    split: dict[str, int] | None = None,
    ready: bool = True,
    deadline_s: float = 60,
) -> dict[str, Any]:
    """Wait until the status routes ``split`` (revision -> percent) and, with ``ready``, is Ready."""

    def done(obj: dict) -> bool:
        status = status_of(obj)
        return (split is None or status["split"] == split) and (not ready or status["ready"])

    obj = control.profile.isvc.wait_for(
        name, done, what=f"split {split} ready={ready}", deadline_s=deadline_s
    )
    return status_of(obj)


def status_of(obj: dict) -> dict[str, Any]:
    pred = predictor_status(obj)
    conditions = {
        c["type"]: {k: c.get(k, "") for k in ("status", "reason", "message")}
        for c in (obj.get("status") or {}).get("conditions", [])
    }
    return {
        "summary": summarize(obj),
        "ready": conditions.get("Ready", {}).get("status") == "True",
        "split": split_of(obj),
        "latest_created": pred.get("latestCreatedRevision", ""),
        "latest_ready": pred.get("latestReadyRevision", ""),
        "rolled_out": pred.get("latestRolledoutRevision", ""),
        "previous_rolled_out": pred.get("previousRolledoutRevision", ""),
        "conditions": conditions,
        "model_status": (obj.get("status") or {}).get("modelStatus") or {},
        "failure": failed_revision(obj) or "",
    }


def wait_for_failure(control: ChaosControl, name: str, deadline_s: float = 120) -> dict[str, Any]:
    """Wait until the latest revision of ``name`` has failed; its status and its pods' logs."""
    obj = control.profile.isvc.wait_for(
        name, lambda o: bool(failed_revision(o)), what="the latest revision to fail", deadline_s=deadline_s
    )
    status = status_of(obj)
    logs = control.profile.revision_logs(name, status["latest_created"])
    status["failed_revision"] = status["latest_created"]
    status["pod_log_lines"] = [
        line.strip()[:500]
        for text in logs.values()
        for line in text.splitlines()
        if "MLmodel" in line or "Error" in line
    ][-12:]
    return status


def answers(control: ChaosControl, name: str, requests_count: int = 10) -> dict[str, Any]:
    """A few V2 requests through the router, as a client sends them: statuses and who answered."""
    import pandas as pd
    import requests

    from harness.local.haproxy import SERVED_BY_HEADER
    from harness.serving.v2 import v2_request

    rows = pd.read_parquet(control.context.rows_path).head(2)
    url = f"{control.profile.inference_base_url(name)}/v2/models/{name}/infer"
    statuses, served_by = [], []
    for _ in range(requests_count):
        try:
            response = requests.post(url, json=v2_request(rows), timeout=10)
            statuses.append(response.status_code)
            served_by.append(response.headers.get(SERVED_BY_HEADER, ""))
        except requests.RequestException as exc:
            statuses.append(0)
            served_by.append(type(exc).__name__)
    return {
        "statuses": statuses,
        "served_by": sorted(set(served_by)),
        "ok": all(code == 200 for code in statuses),
    }


def storage_listing(control: ChaosControl, name: str) -> dict[str, Any]:
    """What the storage of ``name``'s serving (latest ready) revision holds, as the harness sees it."""
    from harness.serving.storage import list_storage

    assert control.profile.emulation is not None
    revision = service_status(control, name)["latest_ready"]
    uri = control.profile.emulation.revision(control.profile.namespace, name, revision).storage_uri
    files = list_storage(uri, control.profile.client_env())
    return {"revision": revision, "storage_uri": uri, "files": files, "has_mlmodel": "MLmodel" in files}


def revision_logs(control: ChaosControl, name: str, revision: str) -> dict[str, str]:
    return {k: v[-6000:] for k, v in control.profile.revision_logs(name, revision).items()}


def scale_to_zero_after(control: ChaosControl, seconds: float | None = None) -> dict[str, Any]:
    """Shorten the emulation's scale-to-zero grace period (EmulationConfig.scale_to_zero_after_s,
    30 s by default; Knative's stable window + grace period on a cluster) so that a chaos
    scenario sees an unreferenced revision scaled to zero within seconds. Written down like a
    fault, once per caller: experiments running side by side each set it and each lift it
    (``seconds=None``), and the original value comes back with the last lift (or the
    control's close), never under another experiment still relying on it."""
    assert control.profile.emulation is not None, "the local profile's emulation is not running"
    config = control.profile.emulation.config
    kind, target = "emulation-setting", "scale_to_zero_after_s"
    if seconds is None:
        with control.lock:
            held = [f for f in control.faults if f.kind == kind and f.target == target]
            if held:
                control.faults.remove(held[-1])
        if len(held) == 1:
            held[0].undo()
        return {
            "scale_to_zero_after_s": config.scale_to_zero_after_s,
            "restored": len(held) == 1,
            "still_held": max(0, len(held) - 1),
        }
    with control.lock:
        first = next((f for f in control.faults if f.kind == kind and f.target == target), None)
        control.faults.append(
            Fault(
                kind,
                target,
                first.undo
                if first
                else functools.partial(setattr, config, target, config.scale_to_zero_after_s),
            )
        )
        config.scale_to_zero_after_s = float(seconds)
    return {"scale_to_zero_after_s": config.scale_to_zero_after_s, "restored": False}


def revision_named(control: ChaosControl, name: str, revision: str) -> str:
    status = service_status(control, name)
    aliases = {
        "previous-rolled-out": status["previous_rolled_out"],
        "rolled-out": status["rolled_out"],
        "latest-ready": status["latest_ready"],
    }
    resolved = aliases.get(revision, revision)
    if not resolved:
        raise ControlError(f"{name} has no {revision} revision (status: {status['summary']})")
    return resolved


def service_events(control: ChaosControl, name: str) -> list[dict[str, Any]]:
    assert control.profile.emulation is not None
    return [
        e
        for e in control.profile.emulation.events()
        if e["namespace"] == control.profile.namespace and e["name"] == name
    ]


def wait_scaled_to_zero(
    control: ChaosControl, name: str, revision: str = "previous-rolled-out", deadline_s: float = 60
) -> dict[str, Any]:
    """Wait until ``revision`` of ``name`` (or previous-rolled-out / rolled-out / latest-ready)
    has no replica left: Knative scaled it to zero."""
    assert control.profile.emulation is not None
    resolved = revision_named(control, name, revision)
    rev = control.profile.emulation.revision(control.profile.namespace, name, resolved)
    start = time.monotonic()
    while not (rev.scaled_to_zero and not rev.replicas):
        if time.monotonic() - start > deadline_s:
            raise ControlError(
                f"{resolved} of {name} still has {len(rev.replicas)} replica(s) after "
                f"{deadline_s:.0f}s (waiting for it to be scaled to zero)"
            )
        time.sleep(0.25)
    return {
        "revision": resolved,
        "waited_s": round(time.monotonic() - start, 1),
        "at": time.time(),
        "events": [
            e
            for e in service_events(control, name)
            if e["reason"] == "ScaleToZero" and e["message"] == resolved
        ],
    }


def roll_back(
    control: ChaosControl, name: str, by: str = "traffic", deadline_s: float = 180
) -> dict[str, Any]:
    """Roll ``name`` back to its previous rolled-out revision, ``by``:
    traffic: canaryTrafficPercent 0 (KServe routes 100% to previousRolledoutRevision);
    storage-uri: a new revision whose storageUri is the previous revision's (the previous
    stable model, read from that revision's template as `kubectl get revision` shows it),
    waited for until it is Ready."""
    assert control.profile.emulation is not None
    before = service_status(control, name)
    previous = revision_named(control, name, "previous-rolled-out")
    client = control.profile.isvc
    at = time.time()
    if by == "traffic":
        obj = client.patch(name, {"spec": {"predictor": {"canaryTrafficPercent": 0}}})
        storage_uri = control.profile.emulation.revision(
            control.profile.namespace, name, previous
        ).storage_uri
        target = previous
    elif by == "storage-uri":  # the one rollback-by-swap every profile uses
        storage_uri = control.profile.emulation.revision(
            control.profile.namespace, name, previous
        ).storage_uri
        current = storage_uri_of(client.get(name))
        obj = swap_storage_uri(
            client, name, expected_current=current, new_uri=storage_uri, deadline_s=deadline_s
        )
        target = predictor_status(obj)["latestReadyRevision"]
    else:
        raise ValueError(f"by={by!r}: use traffic or storage-uri")
    with control.lock:
        control.rollback_targets[name] = target  # what wait_rollback_settled waits for
    return {
        "by": by,
        "from_revision": before["rolled_out"],
        "previous_revision": previous,
        "storage_uri": storage_uri,
        "at": at,
        "patched_s": round(time.time() - at, 1),
        **status_of(obj),
    }


def wait_rollback_settled(control: ChaosControl, name: str, deadline_s: float = 90) -> dict[str, Any]:
    """Wait until a rollback has settled one way or the other: all traffic on the rolled-out
    revision and a ready pod of it serving, or the route reporting a revision with no ready
    pods. The status, the pods ready per revision and the service's emulation events."""
    assert control.profile.emulation is not None
    emulation, namespace = control.profile.emulation, control.profile.namespace

    def ready_pods() -> dict[str, int]:
        return {r.name: len(r.ready_replicas()) for r in emulation.revisions(namespace, name)}

    with control.lock:
        target = control.rollback_targets.get(name)
    if target is None:
        raise ControlError(f"no rollback of {name} to wait for: call roll_back first")

    def settled(obj: dict) -> bool:
        # Not by generation (KServe reports the Knative Service's): by the traffic the rollback
        # asked for, so a status from before the rollback never counts as settled.
        status = status_of(obj)
        if status["split"].get(target, 0) != 100:
            return False
        route = status["conditions"].get("PredictorRouteReady", {})
        if route.get("status") == "False" and "has no ready pods" in route.get("message", ""):
            return True
        routed = {rev for rev, pct in status["split"].items() if pct > 0}
        pods = ready_pods()
        return status["ready"] and routed == {status["rolled_out"]} and all(pods.get(r) for r in routed)

    start = time.monotonic()
    obj = control.profile.isvc.wait_for(
        name,
        settled,
        what="the rollback to settle (all traffic on a ready "
        "rolled-out revision, or a route with no ready pods)",
        deadline_s=deadline_s,
    )
    status = status_of(obj)
    route = status["conditions"].get("PredictorRouteReady", {})
    outcome = "no-ready-pods" if route.get("status") == "False" else "serving"
    return {
        **status,
        "outcome": outcome,
        "route_message": route.get("message", ""),
        "ready_pods": ready_pods(),
        "waited_s": round(time.monotonic() - start, 1),
        "at": time.time(),
        "events": service_events(control, name),
    }


def delete_service(control: ChaosControl, name: str) -> dict[str, Any]:
    """Delete one of the services the experiments made (frees its replicas)."""
    if name not in control.services:
        raise PermissionError(f"service {name!r} was not created by the chaos control; refusing to delete it")
    control.profile.isvc.delete(name)
    control.services.discard(name)
    return {"deleted": name, "at": time.time()}
