"""InferenceService operations the cluster profiles add to harness/serving/client.py: rollback by
storageUri swap, and reading the traffic split the way scenarios do.

Rollback by swap points the predictor back at the previous model: a new revision serving the old
model, at 100% (canaryTrafficPercent removed), the seed's "redeploy the last good version". It is
one JSON patch whose `test` op makes it conditional on the storageUri still being the one the
caller saw, so a deploy that happened meanwhile is not silently overwritten: the API server
answers 422 and nothing changes.
"""
from __future__ import annotations

from typing import Any

from kubernetes.client.exceptions import ApiException

from harness.serving.client import (
    GROUP,
    PLURAL,
    VERSION,
    IsvcClient,
    condition,
    failed_revision,
    predictor_status,
)
from harness.traffic.rollout import split_of

__all__ = ["StaleStorageUri", "json_patch", "swap_storage_uri", "traffic"]

_URI_PATH = "/spec/predictor/model/storageUri"


class StaleStorageUri(RuntimeError):
    """The storageUri changed since the caller read it; the swap was not applied."""


def json_patch(client: IsvcClient, name: str, ops: list[dict[str, Any]]) -> dict:
    """RFC 6902 patch. The kubernetes client sends merge-patch for custom objects unless told."""
    api = client.api
    try:
        return api.patch_namespaced_custom_object(GROUP, VERSION, client.namespace, PLURAL, name, ops,
                                                  _content_type="application/json-patch+json")
    except TypeError:  # clients older than the `_content_type` keyword pick json-patch for a list body
        return api.patch_namespaced_custom_object(GROUP, VERSION, client.namespace, PLURAL, name, ops)


def traffic(isvc: dict) -> dict[str, int]:
    """Percent per revision from status.components.predictor.traffic (as scenarios read it)."""
    return split_of(isvc)


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
        patched = json_patch(client, name, ops)
    except ApiException as exc:
        if exc.status in (409, 422):
            current = (client.get(name)["spec"]["predictor"].get("model") or {}).get("storageUri")
            raise StaleStorageUri(f"InferenceService {client.namespace}/{name}: storageUri is {current!r}, not "
                                  f"{expected_current!r}; the swap to {new_uri!r} was not applied") from None
        raise
    generation = patched["metadata"].get("generation")

    def rolled(isvc: dict) -> bool:
        comp = predictor_status(isvc)
        latest = comp.get("latestReadyRevision")
        ready = condition(isvc, "Ready")
        return bool(ready and ready["status"] == "True" and latest and latest != old_ready
                    and (isvc.get("status") or {}).get("observedGeneration") == generation
                    and split_of(isvc) == {latest: 100})

    return client.wait_for(name, rolled, what=f"a new revision serving {new_uri} with 100% of the traffic",
                           deadline_s=deadline_s, give_up=failed_revision)
