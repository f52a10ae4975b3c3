"""CustomResourceDefinitions from the upstream modules' own files, for the host cluster's API server.

The machines this runs on reach the Go module proxy but not GitHub's release pages, and a module's zip
holds the repository's files at the tag: KServe v0.14.1's ``config/crd/full/*.yaml`` are the CRDs its
release manifest installs. ``upstream_crd`` reads one from the module cache (``go mod download``,
checked against the checksum database), ``install_crd`` creates it through the API (KServe's
InferenceService CRD is about 1 MB: too large for client-side apply's annotation) and waits until
the API server has established it.
"""
from __future__ import annotations

import time
from typing import Any

import yaml
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from harness.cluster.errors import WaitTimeout
from harness.host.cache import cache_root
from harness.host.toolchain import go_binary, go_env, module_dir

__all__ = ["KSERVE_INFERENCESERVICE", "install_crd", "upstream_crd"]

#: (module@version, file in the module): the row's KServe.
KSERVE_INFERENCESERVICE = ("github.com/kserve/kserve@v0.14.1", "config/crd/full/serving.kserve.io_inferenceservices.yaml")


def upstream_crd(module_at_version: str, path: str) -> dict[str, Any]:
    folder = module_dir(go_binary(), module_at_version, go_env(cache_root() / "go-build"))
    return yaml.safe_load((folder / path).read_text())


def install_crd(api: k8s.ApiClient, crd: dict[str, Any], *, deadline_s: float = 60.0) -> dict[str, Any]:
    """Create (or keep) the CRD and wait for Established=True; returns the stored object."""
    ext = k8s.ApiextensionsV1Api(api)
    name = crd["metadata"]["name"]
    try:
        ext.create_custom_resource_definition(crd)
    except ApiException as exc:
        if exc.status != 409:
            raise
    end = time.monotonic() + deadline_s
    while True:
        stored = ext.read_custom_resource_definition(name)
        conds = {c.type: c.status for c in (stored.status.conditions or [])} if stored.status else {}
        if conds.get("Established") == "True":
            return api.sanitize_for_serialization(stored)
        if time.monotonic() > end:
            raise WaitTimeout(f"CRD {name} not established after {deadline_s:.0f}s (conditions {conds}); see the "
                              "API server's log (kube-apiserver.log in the cluster's folder)")
        time.sleep(0.2)

