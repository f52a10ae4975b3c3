"""Chaos Toolkit actions on a seamcheck stack. Each acts only on what the harness created (see
control.py); the keyword arguments are what an experiment file passes."""
from __future__ import annotations

from typing import Any

from harness.chaos.control_client import call

__all__ = [
    "cut_pipeline_to_mlflow",
    "delete_service",
    "deploy_service",
    "finish_load",
    "kill_replicas",
    "restore_all",
    "restore_component",
    "restore_pipeline_to_mlflow",
    "roll_back",
    "run_pipeline",
    "scale_to_zero_after",
    "set_canary",
    "start_load",
    "stop_component",
]


def deploy_service(name: str, model: str = "base", min_replicas: int = 1, canary_percent: int | None = None,
                   readiness_budget_s: float | None = None, lint: bool = True, wait_ready: bool = True,
                   deadline_s: float = 180, configuration: dict[str, Any] | None = None) -> dict[str, Any]:
    """Create or change service ``name`` from the deployed one's pattern to serve ``model`` (lint first)."""
    return call(configuration, "deploy_service", name=name, model=model, min_replicas=min_replicas,
                canary_percent=canary_percent, readiness_budget_s=readiness_budget_s, lint=lint,
                wait_ready=wait_ready, deadline_s=deadline_s)


def set_canary(name: str, percent: int | None, configuration: dict[str, Any] | None = None) -> dict[str, Any]:
    """Set canaryTrafficPercent (None removes it: a promotion; 0 is KServe's rollback)."""
    return call(configuration, "set_canary", name=name, percent=percent)


def kill_replicas(name: str, revision: str, count: int = 1,
                  configuration: dict[str, Any] | None = None) -> dict[str, Any]:
    """SIGKILL ``count`` replicas of one revision of one of the harness's services."""
    return call(configuration, "kill_replicas", name=name, revision=revision, count=count)


def stop_component(component: str, configuration: dict[str, Any] | None = None) -> dict[str, Any]:
    """Stop one of the stack's components (mlflow, s3 or prometheus)."""
    return call(configuration, "stop_component", component=component)


def restore_component(component: str, configuration: dict[str, Any] | None = None) -> dict[str, Any]:
    """Start a stopped component again on its port, with its state."""
    return call(configuration, "restore_component", component=component)


def cut_pipeline_to_mlflow(mode: str = "REJECT", configuration: dict[str, Any] | None = None) -> dict[str, Any]:
    """Cut the pipeline's network namespace from MLflow (REJECT: refused at once; DROP: timeouts)."""
    return call(configuration, "cut_pipeline_to_mlflow", mode=mode)


def restore_pipeline_to_mlflow(configuration: dict[str, Any] | None = None) -> dict[str, Any]:
    """Lift the pipeline's cut from MLflow."""
    return call(configuration, "restore_pipeline_to_mlflow")


def restore_all(configuration: dict[str, Any] | None = None) -> dict[str, Any]:
    """Undo every fault still in place (the experiments' last rollback)."""
    return call(configuration, "restore_all")


def run_pipeline(name: str, stages: str = "all", mlflow_failure_policy: str = "raise",
                 in_pipeline_netns: bool = False, experiment: str | None = None, model_name: str | None = None,
                 isvc_name: str | None = None, configuration: dict[str, Any] | None = None) -> dict[str, Any]:
    """Run the pipeline (or its training stages) under whatever fault is in place."""
    return call(configuration, "run_pipeline", name=name, stages=stages,
                mlflow_failure_policy=mlflow_failure_policy, in_pipeline_netns=in_pipeline_netns,
                experiment=experiment, model_name=model_name, isvc_name=isvc_name)


def start_load(service: str, seconds: float, rate: float = 30.0, users: int = 6, load_id: str | None = None,
               configuration: dict[str, Any] | None = None) -> dict[str, Any]:
    """Start Locust against ``service``; returns once its first request is logged."""
    return call(configuration, "start_load", service=service, seconds=seconds, rate=rate, users=users,
                load_id=load_id)


def finish_load(load_id: str, stop: bool = False, configuration: dict[str, Any] | None = None) -> dict[str, Any]:
    """Wait for (or with ``stop`` end) a load; what its requests met, per revision."""
    return call(configuration, "finish_load", load_id=load_id, stop=stop)


def scale_to_zero_after(seconds: float | None = None, configuration: dict[str, Any] | None = None) -> dict[str, Any]:
    """Shorten the emulation's scale-to-zero grace period (None puts the original back)."""
    return call(configuration, "scale_to_zero_after", seconds=seconds)


def roll_back(name: str, by: str = "traffic", deadline_s: float = 180,
              configuration: dict[str, Any] | None = None) -> dict[str, Any]:
    """Roll back to the previous rolled-out revision: by "traffic" (canaryTrafficPercent 0) or by
    "storage-uri" (a new revision serving the previous revision's storageUri)."""
    return call(configuration, "roll_back", name=name, by=by, deadline_s=deadline_s)


def delete_service(name: str, configuration: dict[str, Any] | None = None) -> dict[str, Any]:
    """Delete a service this control made (a service it did not make is refused)."""
    return call(configuration, "delete_service", name=name)
