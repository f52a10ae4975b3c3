"""Installing the matrix row's stack on a cluster, step by step, each step with its own deadline
and a progress line when it starts and ends.

Order and sources (versions from the row, see harness/cluster/spec.py):
 1. namespaces of the harness (serving, seamcheck-system, and kubeflow when KFP is installed);
 2. cert-manager (release manifest), waited until its three deployments are available;
 3. Knative Serving CRDs, then core and the HPA extension (KServe's deploy step asks for
    autoscalerClass hpa), then the network layer: Kourier (default) or Istio (Helm charts of the
    row's version) with net-istio; then Knative's domain/ingress settings;
 4. KServe (release manifest, server-side apply: its CRDs are too big for client-side apply),
    its controller, then its cluster resources (ClusterServingRuntimes), retried until the
    webhook answers; with Kourier, KServe's Istio VirtualService is switched off;
 5. KFP: cluster-scoped resources, wait for the Application CRD, then env/platform-agnostic
    (KFP's documented order for a cluster without GCP);
 6. the harness's own services: MinIO + buckets, MLflow (the row's tracking pins), Prometheus,
    and the access KServe and the pipeline's tasks need.
A step is skipped when its component is not asked for (an existing cluster that has it).
"""
from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import requests
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from harness.cluster.commands import Kubectl, run_cmd
from harness.cluster.errors import ClusterError, WaitTimeout
from harness.cluster.images import (
    check_images,
    kfp_overlay,
    referenced_images,
    replaced,
)
from harness.cluster.render import RenderedManifests
from harness.cluster.spec import ClusterSpec
from harness.cluster.waits import (
    wait_crds_established,
    wait_deployments_available,
    wait_job_complete,
    wait_until,
)

__all__ = ["COMPONENTS", "COMPONENT_SOURCES", "Deadline", "Step", "install_images", "install_plan", "kfp_target",
           "run_plan"]

COMPONENTS = ("cert-manager", "knative", "kserve", "kfp", "seamcheck")
RETRY_INTERVAL_S = 5.0

# Errors that mean "a webhook or CRD the previous step created is not serving yet": retried.
_TRANSIENT = ("failed calling webhook", "connection refused", "no endpoints available", "ensure CRDs are installed",
              "the server could not find the requested resource", "i/o timeout", "EOF",
              "context deadline exceeded", "no matches for kind")


class Deadline:
    """The time left to one install step; sub-waits take what is left, never more."""

    def __init__(self, seconds: float, what: str, clock: Callable[[], float] = time.monotonic) -> None:
        self.seconds, self.what, self.clock = seconds, what, clock
        self.end = clock() + seconds

    def left(self, at_least: float = 1.0) -> float:
        remaining = self.end - self.clock()
        if remaining <= 0:
            raise WaitTimeout(f"install step {self.what!r} used up its {self.seconds:.0f}s deadline")
        return max(remaining, at_least)


@dataclass
class Step:
    name: str
    component: str
    deadline_s: float
    action: Callable[[Deadline], None]
    sources: tuple[str, ...] = field(default_factory=tuple)


def retry_transient(fn: Callable[[], object], *, deadline: Deadline, what: str) -> None:
    """Run fn until it stops failing with a 'not serving yet' error (webhooks, fresh CRDs)."""
    last = {"error": ""}

    def attempt() -> bool:
        try:
            fn()
            return True
        except ClusterError as exc:
            if not any(marker in str(exc) for marker in _TRANSIENT):
                raise
            last["error"] = str(exc).splitlines()[-1][:300]
            return False

    wait_until(attempt, what=what, deadline_s=deadline.left(), interval_s=RETRY_INTERVAL_S,
               last_seen=lambda: last["error"])


def _disable_istio_virtual_host(api: k8s.ApiClient, namespace: str = "kserve") -> None:
    """KServe's top-level VirtualService needs Istio; with Kourier it is switched off
    (inferenceservice-config `ingress.disableIstioVirtualHost`), as KServe documents for Kourier."""
    core = k8s.CoreV1Api(api)
    cm = core.read_namespaced_config_map("inferenceservice-config", namespace)
    ingress = json.loads((cm.data or {}).get("ingress") or "{}")
    if ingress.get("disableIstioVirtualHost") is True:
        return
    ingress["disableIstioVirtualHost"] = True
    core.patch_namespaced_config_map("inferenceservice-config", namespace,
                                     {"data": {"ingress": json.dumps(ingress, indent=2)}})


#: The release files (URL keys of ClusterSpec.urls) and kustomize targets each component applies.
COMPONENT_SOURCES = {"cert-manager": ("cert-manager",), "knative": ("knative-crds", "knative-core", "knative-hpa",
                                                                  "net-kourier", "net-istio"),
                     "kserve": ("kserve", "kserve-cluster-resources"),
                     "kfp": ("kfp-cluster-scoped", "kfp-platform-agnostic")}
_KUSTOMIZE_SOURCES = ("kfp-cluster-scoped", "kfp-platform-agnostic")


def kfp_target(spec: ClusterSpec, replacements: Mapping[str, str], hidden_images: Iterable[str],
               overlay_dir: Path) -> str:
    """What `kubectl apply -k` applies for KFP: the remote env/platform-agnostic, or an overlay over
    it that pulls the row's replacement images (harness/cluster/images.py kfp_overlay)."""
    remote = spec.urls()["kfp-platform-agnostic"]
    text = kfp_overlay(remote, replacements, hidden_images=hidden_images)
    if text is None:
        return remote
    overlay_dir.mkdir(parents=True, exist_ok=True)
    (overlay_dir / "kustomization.yaml").write_text(text)
    return str(overlay_dir)


def install_images(spec: ClusterSpec, kubectl: Kubectl, components: Iterable[str], *, kfp: str,
                   replacements: Mapping[str, str], hidden_images: Iterable[str], timeout_s: float) -> list[str]:
    """Every image installing `components` would pull: each source rendered as the install applies
    it (release files fetched, kustomizations built), the replacements applied."""
    urls = spec.urls()
    found: list[str] = []
    for component in components:
        for key in COMPONENT_SOURCES.get(component, ()):
            if key not in urls:
                continue
            if key in _KUSTOMIZE_SOURCES:
                target = kfp if key == "kfp-platform-agnostic" else urls[key]
                text = kubectl.run("kustomize", target, what=f"rendering {target}", timeout=timeout_s).stdout
            else:
                try:
                    resp = requests.get(urls[key], timeout=timeout_s)
                    resp.raise_for_status()
                except requests.RequestException as exc:
                    raise ClusterError(f"cannot fetch {urls[key]} to list its images: {type(exc).__name__}: "
                                       f"{str(exc)[:200]}; the install needs that URL reachable") from None
                text = resp.text
            found += referenced_images(text)
    if "kfp" in components:
        found += list(hidden_images)
    return replaced(found, replacements)


def install_plan(spec: ClusterSpec, kubectl: Kubectl, api: k8s.ApiClient, manifests: RenderedManifests, *,
                 components: Iterable[str] = COMPONENTS, helm: str = "helm", kfp: str | None = None,
                 images: Callable[[], list[str]] | None = None, check_image: Callable[[str], str | None] | None = None,
                 row_name: str = "") -> list[Step]:
    """The steps that install `components` of `spec` (in dependency order). `kfp`: what KFP's
    step applies (kfp_target; default the remote); `images` and `check_image`: when both are
    given, the first step checks every image the install would pull."""
    wanted = set(components)
    unknown = wanted - set(COMPONENTS)
    if unknown:
        raise ClusterError(f"unknown component(s) {sorted(unknown)}; known: {', '.join(COMPONENTS)}")
    urls = spec.urls()
    kfp = kfp or urls["kfp-platform-agnostic"]
    steps: list[Step] = []
    if images is not None and check_image is not None and wanted - {"seamcheck"}:
        steps.append(Step("images the install would pull exist", "images", 600,
                          lambda _deadline: check_images(images(), problem=check_image, row=row_name), ()))

    def add(name: str, component: str, deadline_s: float, action: Callable[[Deadline], None],
            *sources: str) -> None:
        if component in wanted:
            steps.append(Step(name, component, deadline_s, action, tuple(sources)))

    def apply_rendered(stem: str, what: str) -> Callable[[Deadline], None]:
        def action(deadline: Deadline) -> None:
            text = manifests.text(stem)
            retry_transient(lambda: kubectl.apply_text(text, what=what, timeout=min(120, deadline.left())),
                            deadline=deadline, what=what)
        return action

    # 1. the harness's namespaces (before anything is put into them)
    add("namespaces", "seamcheck", 60, apply_rendered("00-namespaces", "creating the harness's namespaces"),
        "harness/cluster/manifests/stack/00-namespaces.yaml.j2")

    # 2. cert-manager
    def cert_manager(deadline: Deadline) -> None:
        kubectl.apply_url(urls["cert-manager"], what="applying cert-manager", timeout=min(180, deadline.left()))
        wait_deployments_available(api, "cert-manager", names=["cert-manager", "cert-manager-cainjector",
                                                                 "cert-manager-webhook"], deadline_s=deadline.left())
    add(f"cert-manager v{spec.cert_manager}", "cert-manager", 420, cert_manager, urls["cert-manager"])

    # 3. Knative Serving + network layer + settings
    def knative_crds(deadline: Deadline) -> None:
        kubectl.apply_url(urls["knative-crds"], what="applying Knative Serving CRDs", timeout=min(180, deadline.left()))
        wait_crds_established(api, [f"{r}.serving.knative.dev" for r in ("services", "configurations", "revisions",
                                                                          "routes")], deadline_s=deadline.left())
    add(f"Knative Serving {spec.knative_serving} CRDs", "knative", 240, knative_crds, urls["knative-crds"])

    def knative_core(deadline: Deadline) -> None:
        for key in ("knative-core", "knative-hpa"):
            retry_transient(lambda key=key: kubectl.apply_url(urls[key], what=f"applying {key}",
                                                              timeout=min(180, deadline.left())),
                            deadline=deadline, what=f"applying {urls[key]}")
        wait_deployments_available(api, "knative-serving", names=["activator", "autoscaler", "controller", "webhook",
                                                                    "autoscaler-hpa"], deadline_s=deadline.left())
    add(f"Knative Serving {spec.knative_serving} core + HPA", "knative", 600, knative_core, urls["knative-core"],
        urls["knative-hpa"])

    if spec.network_layer == "kourier":
        def network(deadline: Deadline) -> None:
            retry_transient(lambda: kubectl.apply_url(urls["net-kourier"], what="applying Kourier",
                                                      timeout=min(180, deadline.left())),
                            deadline=deadline, what=f"applying {urls['net-kourier']}")
            wait_deployments_available(api, "kourier-system", names=["3scale-kourier-gateway"],
                                       deadline_s=deadline.left())
            wait_deployments_available(api, "knative-serving", names=["net-kourier-controller"],
                                       deadline_s=deadline.left())
        add(f"network layer: Kourier {spec.net_version}", "knative", 420, network, urls["net-kourier"])
    else:
        def network(deadline: Deadline) -> None:
            repo = urls["istio-charts"]
            for release, chart, extra in (("istio-base", "base", []),
                                          ("istiod", "istiod", ["--set", "proxy.autoInject=disabled"]),
                                          ("istio-ingressgateway", "gateway", [])):
                run_cmd([helm, "upgrade", "--install", release, chart, "--repo", repo, "--version", spec.istio,
                         "--namespace", "istio-system", "--create-namespace", *extra,
                         *(["--kubeconfig", str(kubectl.kubeconfig)] if kubectl.kubeconfig else []),
                         *(["--kube-context", kubectl.context] if kubectl.context else [])],
                        what=f"helm install {chart} {spec.istio}", timeout=min(300, deadline.left()))
            wait_deployments_available(api, "istio-system", names=["istiod", "istio-ingressgateway"],
                                       deadline_s=deadline.left())
            retry_transient(lambda: kubectl.apply_url(urls["net-istio"], what="applying net-istio",
                                                      timeout=min(180, deadline.left())),
                            deadline=deadline, what=f"applying {urls['net-istio']}")
            wait_deployments_available(api, "knative-serving", names=["net-istio-controller", "net-istio-webhook"],
                                       deadline_s=deadline.left())
        add(f"network layer: Istio {spec.istio} + net-istio {spec.net_version}", "knative", 900, network,
            urls["istio-charts"], urls["net-istio"])

    if "45-knative-config" in manifests.files:
        add("Knative domain and ingress settings", "knative", 120,
            apply_rendered("45-knative-config", "applying Knative settings"),
            "harness/cluster/manifests/stack/45-knative-config.yaml.j2")

    # 4. KServe
    def kserve(deadline: Deadline) -> None:
        retry_transient(lambda: kubectl.apply_url(urls["kserve"], what="applying KServe",
                                                  timeout=min(240, deadline.left())),
                        deadline=deadline, what=f"applying {urls['kserve']}")
        wait_deployments_available(api, "kserve", names=["kserve-controller-manager"], deadline_s=deadline.left())
        if spec.network_layer == "kourier":
            _disable_istio_virtual_host(api)
        retry_transient(lambda: kubectl.apply_url(urls["kserve-cluster-resources"],
                                                  what="applying KServe's cluster resources (runtimes)",
                                                  timeout=min(180, deadline.left())),
                        deadline=deadline, what=f"applying {urls['kserve-cluster-resources']}")
    add(f"KServe v{spec.kserve} (Serverless) + runtimes", "kserve", 600, kserve, urls["kserve"],
        urls["kserve-cluster-resources"])

    # 5. KFP
    def kfp_cluster_scoped(deadline: Deadline) -> None:
        kubectl.apply_kustomize(urls["kfp-cluster-scoped"], what="applying KFP's cluster-scoped resources",
                                timeout=min(300, deadline.left()))
        wait_crds_established(api, ["applications.app.k8s.io"], deadline_s=deadline.left())
    add(f"KFP {spec.kfp_backend} cluster-scoped resources", "kfp", 420, kfp_cluster_scoped,
        urls["kfp-cluster-scoped"])

    def kfp_platform_agnostic(deadline: Deadline) -> None:
        retry_transient(lambda: kubectl.apply_kustomize(kfp, what="applying KFP env/platform-agnostic",
                                                        timeout=min(300, deadline.left())),
                        deadline=deadline, what=f"applying {kfp}")
        # KFP's own CI allows 10 minutes for its pods on kind; images are many and large.
        wait_deployments_available(api, spec.kfp_namespace, deadline_s=deadline.left(),
                                   what=f"KFP's deployments in {spec.kfp_namespace} to be available")
    add(f"KFP {spec.kfp_backend} env/platform-agnostic", "kfp", 1500, kfp_platform_agnostic, kfp)

    # 6. the harness's services
    def services(deadline: Deadline) -> None:
        for stem in ("10-minio", "20-mlflow", "30-prometheus", "40-serving-access", "50-kfp-access"):
            if stem in manifests.files:
                apply_rendered(stem, f"applying {stem}")(deadline)
        wait_deployments_available(api, spec.system_namespace, names=["minio", "mlflow", "prometheus"],
                                   deadline_s=deadline.left(),
                                   what=f"MinIO, MLflow {spec.mlflow} and Prometheus in {spec.system_namespace}")
        wait_job_complete(api, spec.system_namespace, "minio-buckets", deadline_s=deadline.left())
    add(f"seamcheck services: MinIO, MLflow {spec.mlflow}, Prometheus", "seamcheck", 600, services,
        *(f"harness/cluster/manifests/stack/{s}.yaml.j2" for s in ("10-minio", "20-mlflow", "30-prometheus",
                                                          "40-serving-access", "50-kfp-access")))
    return steps


def run_plan(steps: list[Step], say: Callable[[str], None] = lambda _m: None,
             clock: Callable[[], float] = time.monotonic) -> dict[str, float]:
    """Run the steps in order; returns seconds per step. A failing step stops the install with
    its own message (and which step it was)."""
    timings: dict[str, float] = {}
    for index, step in enumerate(steps, 1):
        say(f"install {index}/{len(steps)}: {step.name} (deadline {step.deadline_s:.0f}s) ...")
        started = clock()
        try:
            step.action(Deadline(step.deadline_s, step.name, clock))
        except ApiException as exc:
            raise ClusterError(f"install step {index}/{len(steps)} {step.name!r}: API error {exc.status} "
                               f"{exc.reason}: {(exc.body or '')[:300]}") from None
        except ClusterError as exc:
            raise type(exc)(f"install step {index}/{len(steps)} {step.name!r}: {exc}") from None
        timings[step.name] = clock() - started
        say(f"install {index}/{len(steps)}: {step.name} done in {timings[step.name]:.0f}s")
    return timings
