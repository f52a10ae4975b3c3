"""What an existing cluster lets seamcheck do, checked at session start before anything is installed.

Two refusals a cloud run would otherwise meet half-way through, each as one line naming the fix:

* **Namespace-scoped rights.** The cloud profile discovers the stack across the cluster (the KServe,
  Knative and KFP Deployments wherever they run, the nodes for GPU placement). A context bound
  only to a namespace's Role gets HTTP 403 from every cluster-wide list; Kubernetes says so in a
  ``Status`` whose message names the verb, the resource and "at the cluster scope".
* **Multi-user KFP.** Kubeflow's multi-user mode puts every run in a profile namespace behind
  the Kubeflow auth headers; seamcheck's KFP client is a single-user client. The API server says
  which mode it runs in: ``GET /apis/v2beta1/healthz`` answers ``{"multi_user": true}``
  (``backend/api/v2beta1/healthz.proto``, field 3, in kubeflow/pipelines 2.3.0). It is read through
  the Kubernetes API server's service proxy, so nothing needs a port-forward yet.
"""
from __future__ import annotations

import json
from collections.abc import Callable

from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from harness.errors import ProfileError

__all__ = ["check_cluster_reads", "check_kfp_single_user", "kfp_mode"]

#: The cluster-wide lists discovery and GPU placement make: (what, call on the API client)
_CLUSTER_READS: tuple[tuple[str, Callable[[k8s.ApiClient], object]], ...] = (
    ("deployments", lambda api: k8s.AppsV1Api(api).list_deployment_for_all_namespaces(limit=1,
                                                                                       _request_timeout=15)),
    ("nodes", lambda api: k8s.CoreV1Api(api).list_node(limit=1, _request_timeout=15)),
)


def _status_message(exc: ApiException) -> str:
    try:
        return str(json.loads(exc.body or "{}").get("message") or exc.reason)
    except (TypeError, ValueError):
        return str(exc.reason)


def check_cluster_reads(api: k8s.ApiClient, cluster: str) -> None:
    """Raise ProfileError when the credentials may not list what discovery lists cluster-wide."""
    for what, call in _CLUSTER_READS:
        try:
            call(api)
        except ApiException as exc:
            if exc.status not in (401, 403):
                raise
            raise ProfileError(
                f"{cluster} may not list {what} across the cluster (HTTP {exc.status}: {_status_message(exc)}); "
                f"the cloud profile discovers the stack cluster-wide: use a context whose user a ClusterRoleBinding "
                f"lets get and list deployments, nodes and namespaces (`kubectl auth can-i list {what} -A` "
                "must say yes)") from None


def kfp_mode(api: k8s.ApiClient, namespace: str, *, service: str = "ml-pipeline", port: int = 8888) -> dict | None:
    """KFP's healthz through the service proxy, or None when it cannot be read (no such service,
    no ready pod, no rights on services/proxy): then nothing is decided here."""
    try:
        raw = k8s.CoreV1Api(api).connect_get_namespaced_service_proxy_with_path(
            f"{service}:{port}", namespace, "apis/v2beta1/healthz", _preload_content=False, _request_timeout=15)
        body = json.loads(raw.data or b"{}")
    except Exception:  # noqa: BLE001 - an API error, a connection error or a body that is not JSON: undecided
        return None
    return body if isinstance(body, dict) else None


def _kfp_namespaces(api: k8s.ApiClient) -> list[str]:
    found = k8s.AppsV1Api(api).list_deployment_for_all_namespaces(field_selector="metadata.name=ml-pipeline",
                                                                  _request_timeout=15).items
    return sorted({d.metadata.namespace for d in found})


def check_kfp_single_user(api: k8s.ApiClient, cluster: str) -> None:
    """Raise ProfileError when a KFP the cluster runs says it is in multi-user mode."""
    for namespace in _kfp_namespaces(api):
        health = kfp_mode(api, namespace)
        if health is None:
            continue
        if health.get("multi_user", health.get("multiUser")) is True:
            raise ProfileError(
                f"KFP in namespace {namespace} on {cluster} runs in multi-user mode (its /apis/v2beta1/healthz "
                "says multi_user: true); seamcheck submits runs as a single-user client, without a Kubeflow profile "
                "or auth headers: point --kube-context at a cluster whose KFP is the standalone (single-user) "
                "install, such as the row's platform-agnostic manifests")
