"""What the conformance suite's seam checks compare, as pure functions over what was observed, so
each seam can be broken on purpose in a test and its check seen to fail, naming which side is which.

- ``metric_mismatches``: KFP's Metrics artifact against the MLflow run (the metric, both values).
- ``gate_blocked``: the quality gate's own decision and figures, when it stopped the deploy.
- ``served_run_problems``: the InferenceService's label, the revision actually serving traffic,
  the storageUri that revision loads, the registered version's source and the run id the loaded
  model itself records (MLflow's MLmodel ``run_id``): every way the served model can differ from
  the run the pipeline trained, each naming both runs.
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import yaml

__all__ = ["ServedRevision", "gate_blocked", "metric_mismatches", "mlmodel_run_id", "served_run_problems"]


def metric_mismatches(kfp: Mapping[str, Any], mlflow: Mapping[str, float], keys: Iterable[str], *,
                      run_id: str, abs_tol: float = 1e-12) -> list[str]:
    """One line per metric whose value differs between KFP's Metrics artifact and the MLflow run
    (or is missing on one side), naming the metric and which value is whose."""
    problems = []
    for key in keys:
        in_kfp, in_mlflow = key in kfp, key in mlflow
        if not in_kfp or not in_mlflow:
            where = ("KFP's Metrics artifact" if not in_kfp else "") + \
                (" and " if not in_kfp and not in_mlflow else "") + \
                (f"MLflow run {run_id}" if not in_mlflow else "")
            problems.append(f"metric {key}: missing from {where}")
            continue
        ours, theirs = float(kfp[key]), float(mlflow[key])
        if not math.isclose(ours, theirs, rel_tol=0.0, abs_tol=abs_tol):
            problems.append(f"metric {key}: KFP's Metrics artifact has {ours!r}, MLflow run {run_id} has "
                            f"{theirs!r} (they must be the same number)")
    return problems


def gate_blocked(tasks: Mapping[str, Mapping[str, Any]]) -> str | None:
    """The gate's decision in words when it stopped the deploy (its ``passed`` output is "false"),
    with its figures; None when it passed or the run has no gate task."""
    gate = next((v for k, v in tasks.items() if k.replace("_", "-") == "quality-gate"), None)
    if gate is None:
        return None
    params = gate.get("parameters") or {}
    if str(params.get("passed", "")).lower() != "false":
        return None
    baseline = params.get("baseline_f1")
    baseline_text = "no production baseline" if baseline in (None, -1, -1.0) else f"baseline_f1={float(baseline):.4f}"
    candidate = params.get("candidate_f1")
    candidate_text = f"candidate_f1={float(candidate):.4f}" if candidate is not None else "candidate_f1=?"
    return (f"the quality gate blocked the deploy (passed=false: {params.get('reason') or 'no reason given'}; "
            f"{candidate_text}, {baseline_text}), so no model was served")


def mlmodel_run_id(mlmodel_text: str) -> str | None:
    """The run id MLflow wrote into a model's MLmodel file (absent for a model saved outside a run)."""
    try:
        data = yaml.safe_load(mlmodel_text) or {}
    except yaml.YAMLError:
        return None
    value = data.get("run_id") if isinstance(data, dict) else None
    return str(value) if value else None


@dataclass(frozen=True)
class ServedRevision:
    """What the stack says about the revision that serves traffic, each from its own source."""

    isvc_label_run_id: str | None  # metadata.labels["mlflow-run-id"] of the InferenceService
    serving: frozenset[str]  # revisions with traffic > 0 in the status
    latest_ready: str | None
    storage_uri: str  # what that revision loads (its own record, not the InferenceService's spec)
    loaded_run_id: str | None  # the MLmodel run_id of the model that revision holds
    where: str  # where loaded_run_id was read ("the replica's /mnt/models", "the storageUri")


def served_run_problems(run_id: str, artifact_uri: str, registered_source: str | None,
                        served: ServedRevision) -> list[str]:
    """Every way the served model differs from the pipeline's run ``run_id``; each line names both
    sides. Empty when the label, the serving revision and the model it loaded all agree."""
    problems = []
    if served.isvc_label_run_id != run_id:
        problems.append(f"the InferenceService's mlflow-run-id label says run {served.isvc_label_run_id}, but the "
                        f"pipeline trained run {run_id}")
    if served.serving != {served.latest_ready}:
        problems.append(f"the revisions serving traffic are {sorted(served.serving)}, not the latest ready "
                        f"revision {served.latest_ready}")
    revision = served.latest_ready
    root = artifact_uri.rstrip("/") + "/"
    if not served.storage_uri.startswith(root):
        problems.append(f"revision {revision} loads {served.storage_uri}, which is not under run {run_id}'s "
                        f"artifact URI {artifact_uri}")
    if registered_source is not None and served.storage_uri.rstrip("/") != registered_source.rstrip("/"):
        problems.append(f"revision {revision} loads {served.storage_uri}, but the version registered from run "
                        f"{run_id} points at {registered_source}")
    if served.loaded_run_id != run_id:
        problems.append(f"the model revision {revision} holds ({served.where}) was logged by run "
                        f"{served.loaded_run_id}, not by run {run_id}")
    return problems
