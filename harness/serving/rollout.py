"""Canary rollouts through the InferenceService API, the way KServe documents them, on every
profile: start (new storageUri + canaryTrafficPercent), promote (remove canaryTrafficPercent),
roll back (canaryTrafficPercent: 0), each followed by a wait on the status KServe reports; and
rollback by storageUri swap.

Rollback by swap points the predictor back at the previous model: a new revision serving the old
model, at 100% (canaryTrafficPercent removed), the seed's "redeploy the last good version". It is
one JSON patch whose `test` op makes it conditional on the storageUri still being the one the
caller saw, so a deploy that happened meanwhile is not silently overwritten: the API server
answers 422 and nothing changes."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from kubernetes.client.exceptions import ApiException

from harness.errors import StackError
from harness.serving.isvc import (
    GROUP,
    PLURAL,
    VERSION,
    IsvcClient,
    condition,
    failed_revision,
    predictor_status,
)

__all__ = ["CanaryState", "StaleStorageUri", "promote", "rollback", "send_json_patch", "split_of", "start_canary",
           "swap_storage_uri", "wait_for_split"]


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


_URI_PATH = "/spec/predictor/model/storageUri"


class StaleStorageUri(StackError):
    """The storageUri changed since the caller read it; the swap was not applied."""


def send_json_patch(client: IsvcClient, name: str, ops: list[dict[str, Any]]) -> dict:
    """RFC 6902 patch. The kubernetes client sends merge-patch for custom objects unless told."""
    api = client.api
    try:
        return api.patch_namespaced_custom_object(GROUP, VERSION, client.namespace, PLURAL, name, ops,
                                                  _content_type="application/json-patch+json")
    except TypeError:  # clients older than the `_content_type` keyword pick json-patch for a list body
        return api.patch_namespaced_custom_object(GROUP, VERSION, client.namespace, PLURAL, name, ops)


def swap_storage_uri(client: IsvcClient, name: str, *, expected_current: str, new_uri: str,
                     deadline_s: float) -> dict:
    """Point `name` at `new_uri` if it still serves `expected_current`; wait until a new revision
    is ready with 100% of the traffic. Raises StaleStorageUri (nothing changed) on a mismatch."""
    before = client.get(name)
    old_ready = predictor_status(before).get("latestReadyRevision")
    ops: list[dict[str, Any]] = [{"op": "test", "path": _URI_PATH, "value": expected_current},
                                 {"op": "replace", "path": _URI_PATH, "value": new_uri}]
    if "canaryTrafficPercent" in (before.get("spec", {}).get("predictor") or {}):
        ops.append({"op": "remove", "path": "/spec/predictor/canaryTrafficPercent"})
    try:
        send_json_patch(client, name, ops)
    except ApiException as exc:
        if exc.status in (409, 422):
            current = (client.get(name)["spec"]["predictor"].get("model") or {}).get("storageUri")
            raise StaleStorageUri(f"InferenceService {client.namespace}/{name}: storageUri is {current!r}, not "
                                  f"{expected_current!r}; the swap to {new_uri!r} was not applied") from None
        raise
    def rolled(isvc: dict) -> bool:
        comp = predictor_status(isvc)
        latest = comp.get("latestReadyRevision")
        ready = condition(isvc, "Ready")
        # No generation comparison: KServe reports the Knative Service's (see isvc.is_ready).
        return bool(ready and ready["status"] == "True" and latest and latest != old_ready
                    and comp.get("latestCreatedRevision") == latest and split_of(isvc) == {latest: 100})

    return client.wait_for(name, rolled, what=f"a new revision serving {new_uri} with 100% of the traffic",
                           deadline_s=deadline_s, give_up=failed_revision)
