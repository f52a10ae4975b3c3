"""The pipeline's arguments for a harness run: one place for the names every suite relies on."""
from __future__ import annotations

from typing import Any

__all__ = ["EXPERIMENT_PREFIX", "ISVC_NAME", "MODEL_NAME", "experiment_name", "pipeline_params", "trained_version"]

MODEL_NAME = "recommendation-classifier"
ISVC_NAME = "recommendation-classifier"
EXPERIMENT_PREFIX = "seamcheck-conformance"


def experiment_name(run_id: str) -> str:
    """The MLflow experiment of one run's pipeline: its own, so a second run against an MLflow that
    stays (a cloud cluster's) finds exactly its own runs there."""
    return f"{EXPERIMENT_PREFIX}-{run_id}"


def pipeline_params(profile: Any, data_path: str, *, run_id: str, **overrides: Any) -> dict[str, Any]:
    params = {
        **profile.default_pipeline_params(),
        "data_path": data_path,
        "mlflow_experiment": experiment_name(run_id),
        "model_name": MODEL_NAME,
        "isvc_name": ISVC_NAME,
        "canary_traffic_percent": 20,
        "f1_threshold": 0.80,
        "regression_delta": 0.02,
        "production_alias": "production",
    }
    params.update(overrides)
    return params


def trained_version(run: Any) -> str:
    """The registered model version a pipeline run's training task reports (its output parameter,
    else its model artifact's metadata), as MLflow spells it ("3")."""
    train = run.tasks["train-model"]
    raw = (train["parameters"].get("model_version")
           or train["artifacts"]["model_output"]["metadata"]["registered_model_version"])
    return str(int(float(raw)))
