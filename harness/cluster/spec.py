"""What a matrix row means on a cluster: component versions, the URLs they install from, node
image, namespaces, ports, images of the harness's own services. One frozen value, computed from
the row (harness/matrix.toml) plus a few choices, so rendering and install plans are pure functions
of it and can be tested for every row.

Row keys read from `[rows.<name>.cluster]`: kind_version, knative_serving, cert_manager, istio
(all present in the matrix today), and optional ones a row may add without code changes:
network_layer ("kourier" default, or "istio"), net_kourier / net_istio (default: the Knative
minor's .0 release, which always exists; patch numbers of net-* differ from serving's),
prometheus, minio, mc (image tags of the harness's own services).
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from harness.cluster.errors import ClusterError
from harness.matrix import Row

__all__ = [
    "CLUSTER_PROFILES",
    "ClusterSpec",
    "PortMapping",
    "cluster_spec",
    "kube_version_key",
    "newest_kubernetes",
]

CLUSTER_PROFILES = ("kind", "kind-gpu", "cloud", "host")

# Images of the harness's own in-cluster services (not part of the stack under test). Tags are
# the MinIO chart 5.4.0 defaults and a Prometheus 2.53 LTS release; a row may override them.
DEFAULT_IMAGES = {
    "minio": "quay.io/minio/minio:RELEASE.2024-12-18T13-15-44Z",
    "mc": "quay.io/minio/mc:RELEASE.2024-11-21T17-21-54Z",
    "prometheus": "quay.io/prometheus/prometheus:v2.53.2",
}
SYSTEM_NAMESPACE = "seamcheck-system"
KFP_NAMESPACE = "kubeflow"
CHAOS_LABEL = "seamcheck.io/chaos"
CHAOS_ALLOWED = "allowed"
#: Knative's external domain on kind: any domain works because the harness sends the Host
#: header itself (harness/cluster/ingress.py); example.com is what KServe's quick install uses.
INGRESS_DOMAIN = "example.com"


@dataclass(frozen=True)
class PortMapping:
    """A NodePort on the kind control-plane node, published on the host's loopback."""

    name: str
    node_port: int
    host_port: int


def kube_version_key(version: str) -> tuple[int, ...]:
    return tuple(int(p) for p in version.lstrip("v").split(".") if p.isdigit())


def newest_kubernetes(row: Row) -> str:
    return max(row.kubernetes, key=kube_version_key)


def _minor_zero(version: str) -> str:
    parts = version.split(".")
    return f"{parts[0]}.{parts[1]}.0" if len(parts) >= 2 else version


@dataclass(frozen=True)
class ClusterSpec:
    profile: str
    row: str
    kubernetes: str  # the Kubernetes minor the cluster runs (kind: the node image's)
    node_image: str
    kind_version: str
    cluster_name: str
    cert_manager: str
    knative_serving: str
    network_layer: str
    net_version: str
    istio: str
    kserve: str
    kfp_backend: str
    python: str
    tracking_pins: tuple[str, ...]
    mlflow: str
    serving_namespace: str
    system_namespace: str = SYSTEM_NAMESPACE
    kfp_namespace: str = KFP_NAMESPACE
    images: Mapping[str, str] = field(default_factory=lambda: dict(DEFAULT_IMAGES))
    gpu_workers: int = 0
    workers: int = 2
    pod_subnet: str = "10.244.0.0/16"
    service_subnet: str = "10.96.0.0/16"
    ingress_domain: str = INGRESS_DOMAIN
    ports: tuple[PortMapping, ...] = ()
    #: An image that already holds the row's tracking pins (the host cluster's, which has no index to
    #: install from); "" runs python:<python>-slim and pip-installs them at start, as kind and cloud do.
    tracking_image: str = ""
    #: What serves S3 behind the minio Service: "minio" (images.minio), or "moto", the host cluster's
    #: stand-in (harness/host/images.toml says why), whose image also creates the buckets.
    s3_server: str = "minio"

    # ---------------------------------------------------------------- derived
    @property
    def is_kind(self) -> bool:
        return self.profile in ("kind", "kind-gpu")

    @property
    def harness_namespaces(self) -> tuple[str, ...]:
        """Namespaces the harness creates (and, on kind, allows chaos in)."""
        return (self.serving_namespace, self.system_namespace, self.kfp_namespace)

    def port(self, name: str) -> PortMapping:
        for mapping in self.ports:
            if mapping.name == name:
                return mapping
        raise KeyError(f"no port mapping {name!r}; have {[m.name for m in self.ports]}")

    @property
    def mlflow_image(self) -> str:
        # The tracking server runs the row's own pins (harness/matrix.toml tracking role) on the
        # row's Python, as the local profile does; no MLflow image carries boto3 for S3 artifacts.
        return self.tracking_image or f"python:{self.python}-slim"

    def urls(self) -> dict[str, str]:
        """Where each component installs from (users' CI has internet; this machine has not)."""
        kn = f"https://github.com/knative/serving/releases/download/knative-v{self.knative_serving}"
        urls = {
            "cert-manager": f"https://github.com/cert-manager/cert-manager/releases/download/v{self.cert_manager}/"
                            "cert-manager.yaml",
            "knative-crds": f"{kn}/serving-crds.yaml",
            "knative-core": f"{kn}/serving-core.yaml",
            # Installed as the seed's stack is; in Serverless mode KServe leaves predictors on KPA (docs/findings.md).
            "knative-hpa": f"{kn}/serving-hpa.yaml",
            "kserve": f"https://github.com/kserve/kserve/releases/download/v{self.kserve}/kserve.yaml",
            "kserve-cluster-resources": f"https://github.com/kserve/kserve/releases/download/v{self.kserve}/"
                                        "kserve-cluster-resources.yaml",
            "kfp-cluster-scoped": "github.com/kubeflow/pipelines/manifests/kustomize/cluster-scoped-resources"
                                  f"?ref={self.kfp_backend}",
            "kfp-platform-agnostic": "github.com/kubeflow/pipelines/manifests/kustomize/env/platform-agnostic"
                                     f"?ref={self.kfp_backend}",
        }
        if self.network_layer == "kourier":
            urls["net-kourier"] = (f"https://github.com/knative/net-kourier/releases/download/"
                                   f"knative-v{self.net_version}/kourier.yaml")
        else:
            urls["net-istio"] = (f"https://github.com/knative-extensions/net-istio/releases/download/"
                                 f"knative-v{self.net_version}/net-istio.yaml")
            urls["istio-charts"] = "https://istio-release.storage.googleapis.com/charts"
        return urls

    @property
    def ingress_service(self) -> tuple[str, str, dict[str, str], int]:
        """(namespace, service, pod selector, container port) of the network layer's gateway."""
        if self.network_layer == "kourier":
            return "kourier-system", "kourier", {"app": "3scale-kourier-gateway"}, 8080
        return "istio-system", "istio-ingressgateway", {"istio": "ingressgateway"}, 80

    def in_cluster(self) -> dict[str, str]:
        """In-cluster URLs of the harness's services (what pipeline tasks and KServe use)."""
        sys_ns = self.system_namespace
        return {
            "mlflow": f"http://mlflow.{sys_ns}.svc.cluster.local:5000",
            "minio": f"http://minio.{sys_ns}.svc.cluster.local:9000",
            "minio_host": f"minio.{sys_ns}.svc.cluster.local:9000",
            "prometheus": f"http://prometheus.{sys_ns}.svc.cluster.local:9090",
        }

    def versions(self) -> dict[str, str]:
        return {"kubernetes": self.kubernetes, "cert_manager": self.cert_manager,
                "knative_serving": self.knative_serving, "network_layer": f"{self.network_layer} {self.net_version}",
                "istio": self.istio if self.network_layer == "istio" else "", "kserve": self.kserve,
                "kfp_backend": self.kfp_backend, "mlflow": self.mlflow, "kind": self.kind_version,
                "node_image": self.node_image if self.is_kind else ""}


#: NodePorts the kind profile publishes on 127.0.0.1 (host port = node port unless overridden).
#: They sit in the static band Kubernetes keeps for fixed allocations: for the default range
#: 30000-32767 that is 30000-30085 (min(max(16, size/32), 128) ports; KEP-3668, the
#: ServiceNodePortStaticSubrange gate, on by default from 1.28), which random allocation (Kourier's
#: LoadBalancer Service takes two before ours exist) uses only once the upper band is full.
KIND_NODE_PORTS = {
    "ingress": 30080,
    "kfp-api": 30081,
    "kfp-minio": 30082,
    "mlflow": 30083,
    "minio": 30084,
    "prometheus": 30085,
}
STATIC_NODE_PORT_BAND = range(30000, 30086)
# config.ports names (the local profile's options) that also choose a kind host port.
_HOST_PORT_OPTIONS = {"ingress": "proxy", "mlflow": "mlflow", "minio": "s3", "prometheus": "prometheus"}


def cluster_spec(row: Row, profile: str, *, serving_namespace: str = "model-serving",
                 cluster_name: str | None = None, node_image: str | None = None,
                 host_ports: Mapping[str, int] | None = None, kubernetes: str | None = None) -> ClusterSpec:
    """The cluster meaning of `row` for `profile`. `node_image` / `kubernetes` override the row's
    choice (--kind-image); `host_ports` uses the local profile's port names."""
    if profile not in CLUSTER_PROFILES:
        raise ClusterError(f"{profile!r} is not a cluster profile; choose one of {', '.join(CLUSTER_PROFILES)}")
    cluster = dict(row.cluster)
    missing = [k for k in ("kind_version", "knative_serving", "cert_manager") if not cluster.get(k)]
    if missing:
        raise ClusterError(f"matrix row {row.name!r} has no {missing} in its [cluster] table; add them "
                           "(see harness/matrix.toml)")
    kube = kubernetes or newest_kubernetes(row)
    image = node_image or row.kind_node_images.get(kube, "")
    if profile in ("kind", "kind-gpu") and not image:
        raise ClusterError(f"matrix row {row.name!r} has no kind node image for Kubernetes {kube} "
                           "(kind_node_images); add one or pass --kind-image")
    layer = cluster.get("network_layer", "kourier")
    if layer not in ("kourier", "istio"):
        raise ClusterError(f"matrix row {row.name!r}: network_layer must be kourier or istio, not {layer!r}")
    net_version = cluster.get(f"net_{layer}") or _minor_zero(cluster["knative_serving"])
    images = dict(DEFAULT_IMAGES)
    images.update({k: cluster[k] for k in DEFAULT_IMAGES if cluster.get(k)})
    chosen = dict(host_ports or {})
    ports = tuple(PortMapping(name, node_port, int(chosen.get(_HOST_PORT_OPTIONS.get(name, name)) or node_port))
                  for name, node_port in KIND_NODE_PORTS.items())
    tracking = row.role("tracking").pins
    return ClusterSpec(
        profile=profile, row=row.name, kubernetes=kube, node_image=image,
        kind_version=cluster["kind_version"],
        cluster_name=cluster_name or "seamcheck",
        cert_manager=cluster["cert_manager"].lstrip("v"), knative_serving=cluster["knative_serving"].lstrip("v"),
        network_layer=layer, net_version=net_version.lstrip("v"), istio=cluster.get("istio", "").lstrip("v"),
        kserve=row.kserve.lstrip("v"), kfp_backend=row.kfp_backend, python=row.python,
        tracking_pins=tuple(tracking), mlflow=row.mlflow, serving_namespace=serving_namespace,
        images=images, gpu_workers=1 if profile in ("kind-gpu", "host") else 0, ports=ports)
