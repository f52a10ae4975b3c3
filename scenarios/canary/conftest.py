"""Fixtures of the canary scenarios: a service of their own, deployed from the model the
conformance pipeline trained and registered, so canaries never disturb the conformance seams."""
from __future__ import annotations

import copy
from collections.abc import Iterator

import pytest

from harness.serving.client import IsvcClient
from harness.serving.storage import copy_storage

CANARY_ISVC = "rc-canary"


def service_manifest(template: dict, name: str, storage_uri: str, *, min_replicas: int = 1) -> dict:
    manifest = {
        "apiVersion": template["apiVersion"], "kind": template["kind"],
        "metadata": {"name": name, "namespace": template["metadata"]["namespace"],
                     "labels": dict(template["metadata"].get("labels") or {}),
                     "annotations": dict(template["metadata"].get("annotations") or {})},
        "spec": copy.deepcopy(template["spec"]),
    }
    predictor = manifest["spec"]["predictor"]
    predictor["model"]["storageUri"] = storage_uri
    predictor["minReplicas"] = min_replicas  # one replica per revision: two cores host everything
    predictor.pop("canaryTrafficPercent", None)
    return manifest


def _stand_up(stack, deployment, names: list[str]) -> None:
    client: IsvcClient = stack.isvc
    storage_uri = deployment.isvc["spec"]["predictor"]["model"]["storageUri"]
    for name in names:  # created together, so their replicas start side by side
        client.create_or_patch(service_manifest(deployment.isvc, name, storage_uri))
    for name in names:
        client.wait_ready(name, deadline_s=stack.config.isvc_deadline_s)


@pytest.fixture(scope="session")
def canary_services(stack, deployment) -> Iterator[dict[str, list[str]]]:
    """The canary scenarios' own services, stood up side by side once: two for the judgement
    (the next scenario's canary comes up on one while the current one is judged on the other) and
    a fresh one for the split test. Each module deletes its own when done; the session's end
    deletes whatever is left.

    The split test needs a service whose router backend has no history: after the judgement's
    dozens of runtime weight changes and server swaps, HAProxy's weighted round robin sent 39% of
    1000 requests to a canary weighted 30% (twice, every server UP, weights 175/75); a new
    backend splits 700/300 exactly."""
    services = {"judgement": [CANARY_ISVC, f"{CANARY_ISVC}-b"], "split": [f"{CANARY_ISVC}-split"]}
    names = [n for group in services.values() for n in group]
    try:
        _stand_up(stack, deployment, names)
        yield services
    finally:
        for name in names:
            stack.isvc.delete(name)


@pytest.fixture(scope="module")
def canary_service(stack, canary_services) -> Iterator[str]:
    """The split test's service, deleted when its module is done."""
    name = canary_services["split"][0]
    yield name
    stack.isvc.delete(name)


@pytest.fixture(scope="module")
def model_copies(stack, deployment):
    """make(tag) -> a storageUri holding the trained model under a new prefix (a 'new version')."""
    source = deployment.isvc["spec"]["predictor"]["model"]["storageUri"]

    def make(tag: str) -> str:
        target = f"{source.rsplit('/', 1)[0]}/{tag}/model"
        copy_storage(source, target, stack.client_env())
        return target

    return make
