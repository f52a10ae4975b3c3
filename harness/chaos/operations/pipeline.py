"""Pipeline runs under a fault (optionally inside the pipeline's network namespace), and what
MLflow holds afterwards, as the harness's own MLflow client sees it."""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

from harness.chaos.control import ChaosControl

#: Lines of a pipeline run's log worth carrying into the journal: MLflow's failure and retries.
_LOG_MARKERS = (
    "could not log to MLflow",
    "Retrying (",
    "Max retries exceeded",
    "ConnectionError",
    "Connection refused",
    "timed out",
)


def _excerpt(path: Path | None, markers: tuple[str, ...], limit: int = 30) -> list[str]:
    if path is None or not path.exists():
        return []
    lines = [
        line.strip()[:400]
        for line in path.read_text(errors="replace").splitlines()
        if any(m in line for m in markers)
    ]
    return lines[-limit:]


__all__ = ["mlflow_health", "mlflow_inventory", "run_pipeline"]


def run_pipeline(
    control: ChaosControl,
    name: str,
    stages: str = "all",
    mlflow_failure_policy: str = "raise",
    in_pipeline_netns: bool = False,
    experiment: str | None = None,
    model_name: str | None = None,
    isvc_name: str | None = None,
) -> dict[str, Any]:
    params = {
        **control.profile.default_pipeline_params(),
        "data_path": control.context.dataset_path,
        "mlflow_experiment": experiment or f"seamcheck-chaos-{name}",
        "model_name": model_name or f"seamcheck-chaos-{name}",
    }
    if stages == "train":
        params.pop("serving_namespace", None)  # no deploy step in the training-only pipeline
        params["mlflow_failure_policy"] = mlflow_failure_policy
    else:
        params.update(
            isvc_name=isvc_name or f"chaos-{name}",
            canary_traffic_percent=20,
            f1_threshold=0.80,
            regression_delta=0.02,
            production_alias="production",
        )
        if isvc_name:
            control.services.add(isvc_name)
    netns = control.pipeline_netns() if in_pipeline_netns else None
    started = time.time()
    run = control.profile.run_pipeline(
        params, name=f"chaos-{name}-{uuid.uuid4().hex[:6]}", stages=stages, netns=netns
    )
    train = run.tasks.get("train-model", {})
    return {
        "state": run.state,
        "error": run.error or "",
        "seconds": round(run.seconds, 1),
        "started": started,
        "ended": time.time(),
        "train_outputs": train.get("parameters", {}),
        "train_error": train.get("error") or "",
        "train_started_at": train.get("started_at"),
        "train_ended_at": train.get("ended_at"),
        "log_excerpt": _excerpt(run.log_path, _LOG_MARKERS),
        "tasks": {k: v.get("state") for k, v in run.tasks.items()},
        "params": params,
        "log_path": str(run.log_path),
    }


def mlflow_health(control: ChaosControl) -> dict[str, Any]:
    import requests

    try:
        response = requests.get(f"{control.profile.tracking_uri}/health", timeout=5)
        return {"ok": response.status_code == 200, "status": response.status_code}
    except requests.RequestException as exc:
        return {"ok": False, "error": f"{type(exc).__name__}: {exc}"}


def mlflow_inventory(control: ChaosControl, experiment: str, model_name: str) -> dict[str, Any]:
    """Runs in the experiment and versions of the registered model, as the harness sees them."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=control.profile.tracking_uri)
    exp = client.get_experiment_by_name(experiment)
    runs = client.search_runs([exp.experiment_id]) if exp is not None else []
    try:
        versions = client.search_model_versions(f"name='{model_name}'")
    except Exception:  # noqa: BLE001  no such model: no versions
        versions = []
    return {
        "experiment_exists": exp is not None,
        "runs": [r.info.run_id for r in runs],
        "run_states": [r.info.status for r in runs],
        "versions": sorted(str(v.version) for v in versions),
    }
