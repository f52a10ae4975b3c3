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


@pytest.fixture(scope="module")
def canary_service(stack, deployment) -> Iterator[str]:
    client: IsvcClient = stack.isvc
    storage_uri = deployment.isvc["spec"]["predictor"]["model"]["storageUri"]
    client.create_or_patch(service_manifest(deployment.isvc, CANARY_ISVC, storage_uri))
    client.wait_ready(CANARY_ISVC, deadline_s=stack.config.isvc_deadline_s)
    yield CANARY_ISVC
    client.delete(CANARY_ISVC)


@pytest.fixture(scope="module")
def model_copies(stack, deployment):
    """make(tag) -> a storageUri holding the trained model under a new prefix (a 'new version')."""
    source = deployment.isvc["spec"]["predictor"]["model"]["storageUri"]

    def make(tag: str) -> str:
        target = f"{source.rsplit('/', 1)[0]}/{tag}/model"
        copy_storage(source, target, stack.client_env())
        return target

    return make
