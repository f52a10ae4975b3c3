"""What an existing cluster runs, read from the Kubernetes API (cloud profile), and how it
differs from the matrix row. Nothing is changed on the cluster.

Read: the Kubernetes server version; KServe's controller image tag
(`kserve-controller-manager`); Knative Serving's `app.kubernetes.io/version` label (on its
controller, else on the knative-serving namespace); the network layer (Kourier's gateway or
istiod's image); the KFP api-server image tag (`ml-pipeline`); cert-manager's image tag; MLflow
(a deployment named or labelled `mlflow` outside the harness's own namespace: its
`seamcheck.io/mlflow-version` annotation, else its image tag).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from harness.cluster.spec import ClusterSpec

__all__ = ["Discovered", "compare", "discover", "image_version"]


def image_version(image: str | None) -> str | None:
    """'kserve/kserve-controller:v0.14.1' -> '0.14.1'; None for digests and tags without a version."""
    if not image:
        return None
    last = image.split("@", 1)[0].rsplit("/", 1)[-1]  # drop a digest, then the repository path
    if ":" not in last:
        return None
    match = re.match(r"^v?(\d+\.\d+(?:\.\d+)?(?:-(?:rc|alpha|beta)[.\d]*)?)", last.split(":", 1)[1])
    return match.group(1) if match else None


@dataclass
class Discovered:
    versions: dict[str, str | None] = field(default_factory=dict)
    where: dict[str, str] = field(default_factory=dict)  # component -> namespace/deployment

    def found(self, component: str) -> bool:
        return self.versions.get(component) is not None or component in self.where


def _container_image(dep: k8s.V1Deployment, preferred: tuple[str, ...] = ()) -> str | None:
    containers = dep.spec.template.spec.containers or []
    for name in preferred:
        for c in containers:
            if c.name == name:
                return c.image
    return containers[0].image if containers else None


def discover(api: k8s.ApiClient, *, own_namespace: str = "seamcheck-system") -> Discovered:
    """What the cluster runs. The harness's own MLflow (in `own_namespace`) is not the cluster's:
    an MLflow found elsewhere is reported, the harness's is not."""
    apps = k8s.AppsV1Api(api)
    found = Discovered()
    try:
        git = k8s.VersionApi(api).get_code().git_version
        match = re.match(r"v?(\d+\.\d+)", git or "")
        found.versions["kubernetes"] = match.group(1) if match else git
    except ApiException:
        found.versions["kubernetes"] = None
    deployments = apps.list_deployment_for_all_namespaces().items

    def where(dep: k8s.V1Deployment) -> str:
        return f"{dep.metadata.namespace}/{dep.metadata.name}"

    for dep in deployments:
        name, ns = dep.metadata.name, dep.metadata.namespace
        labels = dep.metadata.labels or {}
        annotations = dep.metadata.annotations or {}
        if name == "kserve-controller-manager":
            found.versions["kserve"] = image_version(_container_image(dep, ("manager",)))
            found.where["kserve"] = where(dep)
        elif name == "controller" and ns == "knative-serving":
            found.versions["knative_serving"] = (labels.get("app.kubernetes.io/version")
                                                 or (labels.get("serving.knative.dev/release") or "").lstrip("v")
                                                 or None)
            found.where["knative_serving"] = where(dep)
        elif name == "ml-pipeline":
            found.versions["kfp_backend"] = image_version(_container_image(dep, ("ml-pipeline-api-server",)))
            found.where["kfp_backend"] = where(dep)
        elif name == "cert-manager":
            found.versions["cert_manager"] = image_version(_container_image(dep, ("cert-manager-controller",)))
            found.where["cert_manager"] = where(dep)
        elif name == "3scale-kourier-gateway":
            found.versions.setdefault("network_layer", "kourier")
            found.where["network_layer"] = where(dep)
        elif name == "istiod":
            found.versions["network_layer"] = "istio"
            found.versions["istio"] = image_version(_container_image(dep, ("discovery",)))
            found.where.setdefault("network_layer", where(dep))
        elif (name == "mlflow" or labels.get("app.kubernetes.io/name") == "mlflow") and ns != own_namespace:
            found.versions["mlflow"] = (annotations.get("seamcheck.io/mlflow-version")
                                        or image_version(_container_image(dep, ("mlflow",))))
            found.where["mlflow"] = where(dep)
    if found.versions.get("knative_serving") is None and "knative_serving" not in found.where:
        try:
            ns = k8s.CoreV1Api(api).read_namespace("knative-serving")
            version = (ns.metadata.labels or {}).get("app.kubernetes.io/version")
            if version:
                found.versions["knative_serving"] = version
                found.where["knative_serving"] = "knative-serving (namespace label)"
        except ApiException:
            pass
    return found


def compare(spec: ClusterSpec, kubernetes_versions: tuple[str, ...], found: Discovered) -> list[dict[str, Any]]:
    """Mismatches between the row and the cluster: [{"component", "expected", "found", "where"}]."""
    expected = {"kserve": spec.kserve, "knative_serving": spec.knative_serving, "kfp_backend": spec.kfp_backend,
                "cert_manager": spec.cert_manager, "mlflow": spec.mlflow}
    out = []
    kube = found.versions.get("kubernetes")
    if kube not in kubernetes_versions:
        out.append({"component": "kubernetes", "expected": " or ".join(kubernetes_versions), "found": kube,
                    "where": "server version"})
    for component, want in expected.items():
        if component == "mlflow" and component not in found.where:
            continue  # no MLflow of the cluster's own: the harness brings the row's (seamcheck-system)
        have = found.versions.get(component)
        if have != want.lstrip("v"):
            out.append({"component": component, "expected": want,
                        "found": have if have is not None else ("version unreadable" if component in found.where
                                                                else "not installed"),
                        "where": found.where.get(component, "-")})
    layer = found.versions.get("network_layer")
    if layer is not None and layer != spec.network_layer:
        out.append({"component": "network_layer", "expected": spec.network_layer, "found": layer,
                    "where": found.where.get("network_layer", "-")})
    return out
