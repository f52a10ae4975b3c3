"""Canary rollouts through the InferenceService API, the way KServe documents them:
start (new storageUri + canaryTrafficPercent), promote (remove canaryTrafficPercent), roll back
(canaryTrafficPercent: 0), each followed by a wait on the status KServe reports."""
from __future__ import annotations

from dataclasses import dataclass

from harness.serving.client import IsvcClient, condition, failed_revision, predictor_status

__all__ = ["CanaryState", "promote", "rollback", "split_of", "start_canary", "wait_for_split"]


@dataclass(frozen=True)
class CanaryState:
    canary: str  # the latest ready revision (latestRevision: true)
    stable: str  # the rolled-out revision taking the rest (tag prev)
    canary_percent: int
    isvc: dict


def split_of(isvc: dict) -> dict[str, int]:
    """Traffic percent per revision from status.components.predictor.traffic."""
    split: dict[str, int] = {}
    for target in predictor_status(isvc).get("traffic", []):
        split[target["revisionName"]] = split.get(target["revisionName"], 0) + int(target.get("percent") or 0)
    return split


def wait_for_split(client: IsvcClient, name: str, want: dict[str, int], *, deadline_s: float) -> dict:
    return client.wait_for(name, lambda isvc: split_of(isvc) == want and _ready(isvc),
                           what=f"traffic split {want}", deadline_s=deadline_s)


def _ready(isvc: dict) -> bool:
    cond = condition(isvc, "Ready")
    return bool(cond and cond["status"] == "True")


def start_canary(client: IsvcClient, name: str, storage_uri: str, percent: int, *, deadline_s: float,
                 labels: dict[str, str] | None = None) -> CanaryState:
    before = client.get(name)
    stable = predictor_status(before).get("latestRolledoutRevision") or predictor_status(before)["latestReadyRevision"]
    patch: dict = {"spec": {"predictor": {"canaryTrafficPercent": percent, "model": {"storageUri": storage_uri}}}}
    if labels:
        patch["metadata"] = {"labels": labels}
    client.patch(name, patch)

    def canary_ready(isvc: dict) -> bool:
        comp = predictor_status(isvc)
        latest = comp.get("latestReadyRevision")
        return bool(latest and latest != stable and comp.get("latestCreatedRevision") == latest
                    and split_of(isvc).get(latest) == percent)

    isvc = client.wait_for(name, canary_ready, what=f"a new revision ready with {percent}% of traffic",
                           deadline_s=deadline_s, give_up=failed_revision)
    comp = predictor_status(isvc)
    return CanaryState(canary=comp["latestReadyRevision"], stable=stable, canary_percent=percent, isvc=isvc)


def promote(client: IsvcClient, name: str, state: CanaryState, *, deadline_s: float) -> dict:
    client.patch(name, {"spec": {"predictor": {"canaryTrafficPercent": None}}})  # merge patch: remove it
    return wait_for_split(client, name, {state.canary: 100}, deadline_s=deadline_s)


def rollback(client: IsvcClient, name: str, state: CanaryState, *, deadline_s: float) -> dict:
    client.patch(name, {"spec": {"predictor": {"canaryTrafficPercent": 0}}})
    return client.wait_for(name, lambda isvc: split_of(isvc).get(state.stable) == 100 and
                           split_of(isvc).get(state.canary, 0) == 0,
                           what=f"100% of traffic back on {state.stable}", deadline_s=deadline_s)
