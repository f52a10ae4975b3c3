"""The NetworkPolicy case on the local profile: the pipeline's tasks run in a network
namespace of the harness's own, and a rule there (REJECT or DROP) cuts their path to MLflow
while the harness keeps its own."""

from __future__ import annotations

from typing import Any

from harness.chaos.control import ChaosControl

__all__ = ["cut_pipeline_to_mlflow", "restore_pipeline_to_mlflow"]


def cut_pipeline_to_mlflow(control: ChaosControl, mode: str = "REJECT") -> dict[str, Any]:
    """The NetworkPolicy case: the pipeline's namespace loses its path to the MLflow server."""
    assert control.profile.tracking is not None
    netns = control.pipeline_netns()
    port = control.profile.tracking.port
    netns.forward(port)
    rule = netns.block(port, mode)
    control.record_fault("netns-cut", f"mlflow:{mode}", netns.unblock)
    return {
        "namespace": netns.name,
        "host_link": netns.host_if,
        "rule": " ".join(rule),
        "rules": netns.rules(),
    }


def restore_pipeline_to_mlflow(control: ChaosControl) -> dict[str, Any]:
    lifted = control.lift_fault("netns-cut")
    rules = control.netns.rules() if control.netns is not None else []
    return {"lifted": lifted, "rules": rules}
