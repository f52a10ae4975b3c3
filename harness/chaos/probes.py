"""Chaos Toolkit probes on a seamcheck stack: what the experiments observe and tolerate."""
from __future__ import annotations

from typing import Any

from harness.chaos.control_client import call

__all__ = [
    "load_error_rate_at_most",
    "mlflow_inventory",
    "mlflow_reachable",
    "pipeline_run_outcome",
    "revision_logs",
    "service_answers",
    "service_serves",
    "service_status",
    "stack_facts",
    "storage_listing",
    "wait_for_failure",
    "wait_for_split",
    "wait_rollback_settled",
    "wait_scaled_to_zero",
]


def stack_facts(configuration: dict[str, Any] | None = None) -> dict[str, Any]:
    """What the stack is: profile, row, endpoints, the deployed model, faults in place, its pids."""
    return call(configuration, "describe")


def service_status(name: str, configuration: dict[str, Any] | None = None) -> dict[str, Any]:
    """The service's status: ready, split, revisions, conditions, model status."""
    return call(configuration, "service_status", name=name)


def service_serves(name: str, seconds: float = 4, rate: float = 20, max_error_rate: float = 0.0,
                   configuration: dict[str, Any] | None = None) -> bool:
    """A short load window against ``name``: True when it is Ready and at most ``max_error_rate``
    of the window's requests failed (the steady state of the serving scenarios)."""
    if not call(configuration, "service_status", name=name)["ready"]:
        return False
    load = call(configuration, "start_load", service=name, seconds=seconds, rate=rate, users=2,
                load_id=f"steady-state-{name}")
    report = call(configuration, "finish_load", load_id=load["load_id"])
    return bool(report["requests"]) and report["failures"] / report["requests"] <= max_error_rate


def load_error_rate_at_most(load_id: str, max_error_rate: float,
                            configuration: dict[str, Any] | None = None) -> dict[str, Any]:
    """Whether a finished load's error rate stayed at or under ``max_error_rate``."""
    report = call(configuration, "finish_load", load_id=load_id)
    report["within_threshold"] = bool(report["requests"]) and report["error_rate"] <= float(max_error_rate)
    return report


def mlflow_inventory(experiment: str, model_name: str, configuration: dict[str, Any] | None = None) -> dict[str, Any]:
    """Runs in ``experiment`` and versions of ``model_name``, as the harness's MLflow client sees them."""
    return call(configuration, "mlflow_inventory", experiment=experiment, model_name=model_name)


def pipeline_run_outcome(name: str, stages: str = "train", mlflow_failure_policy: str = "raise",
                         in_pipeline_netns: bool = True, experiment: str | None = None,
                         model_name: str | None = None, configuration: dict[str, Any] | None = None) -> dict[str, Any]:
    """Run the pipeline and report its state together with what MLflow holds afterwards: the
    harness's cross-system check ("pipeline green, MLflow run missing" when they disagree)."""
    run = call(configuration, "run_pipeline", name=name, stages=stages, mlflow_failure_policy=mlflow_failure_policy,
               in_pipeline_netns=in_pipeline_netns, experiment=experiment, model_name=model_name)
    inventory = call(configuration, "mlflow_inventory", experiment=run["params"]["mlflow_experiment"],
                     model_name=run["params"]["model_name"])
    green = run["state"] == "SUCCEEDED"
    if green and not inventory["runs"]:
        verdict = "pipeline green, MLflow run missing"
    elif green:
        verdict = "pipeline green, MLflow run present"
    else:
        verdict = "pipeline red"
    return {**run, "mlflow": inventory, "cross_system": verdict}


def mlflow_reachable(configuration: dict[str, Any] | None = None) -> bool:
    """The harness's own path to the MLflow server (loopback, outside the pipeline's namespace)."""
    return bool(call(configuration, "mlflow_health")["ok"])


def service_answers(name: str, requests_count: int = 10, configuration: dict[str, Any] | None = None) -> bool:
    """True when ``requests_count`` V2 requests to ``name`` all get 200 (the serving steady state)."""
    return bool(call(configuration, "answers", name=name, requests_count=requests_count)["ok"])


def wait_for_failure(name: str, deadline_s: float = 120, configuration: dict[str, Any] | None = None) -> dict[str, Any]:
    """Wait for the latest revision of ``name`` to fail; its status and the cause in its pods' logs."""
    return call(configuration, "wait_for_failure", name=name, deadline_s=deadline_s)


def wait_for_split(name: str, split: dict[str, int] | None = None, ready: bool = True, deadline_s: float = 60,
                   configuration: dict[str, Any] | None = None) -> dict[str, Any]:
    """Wait until the status routes ``split`` (revision -> percent) and, with ``ready``, is Ready."""
    return call(configuration, "wait_for_split", name=name, split=split, ready=ready, deadline_s=deadline_s)


def storage_listing(name: str, configuration: dict[str, Any] | None = None) -> dict[str, Any]:
    """The objects under the storageUri of ``name``'s serving revision (is the model still there?)."""
    return call(configuration, "storage_listing", name=name)


def wait_scaled_to_zero(name: str, revision: str = "previous-rolled-out", deadline_s: float = 60,
                        configuration: dict[str, Any] | None = None) -> dict[str, Any]:
    """Wait until a revision of ``name`` has no replica left (scaled to zero)."""
    return call(configuration, "wait_scaled_to_zero", name=name, revision=revision, deadline_s=deadline_s)


def wait_rollback_settled(name: str, deadline_s: float = 90,
                          configuration: dict[str, Any] | None = None) -> dict[str, Any]:
    """Wait until a rollback serves from a ready rolled-out revision or the route says a revision
    has no ready pods; the outcome, the status, ready pods per revision and the emulation's events."""
    return call(configuration, "wait_rollback_settled", name=name, deadline_s=deadline_s)


def revision_logs(name: str, revision: str, configuration: dict[str, Any] | None = None) -> dict[str, str]:
    """Each replica's log of one revision of a service (its last lines)."""
    return call(configuration, "revision_logs", name=name, revision=revision)
