"""The `cloud` profile: an existing cluster from a kubeconfig context (--kubeconfig, --kube-context).

It first discovers what the cluster runs (KServe, Knative Serving, KFP, cert-manager, MLflow,
the network layer, Kubernetes) and reports every difference from the matrix row. Components the
row needs and the cluster lacks are an error, unless --install-stack: then the harness installs
the missing ones (never one that is already there). The harness's own services (MinIO, MLflow
with the row's pins, Prometheus, and the RBAC and Secrets the pipeline's tasks use) live in the
`seamcheck-system` namespace and are (re)applied on every run. Outside it the profile adds a
Secret and a RoleBinding to the serving namespace, a ClusterRole, two Secrets in KFP's namespace,
and the run's InferenceServices (deleted at teardown): docs/profiles.md lists what stays.

Everything is reached through supervised `kubectl port-forward`s; InferenceServices through the
ingress gateway's load balancer when its address accepts a connection from here, else a
port-forward to the gateway. Chaos acts only in namespaces listed in --chaos-namespaces AND
labelled seamcheck.io/chaos=allowed. The GPU check records the node the training pod ran on and
that it offers a real (device-plugin) GPU.
"""
from __future__ import annotations

import socket
from collections.abc import Callable, Iterable
from dataclasses import replace
from typing import Any

from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes.client.exceptions import ApiException

from harness.cluster.access import check_cluster_reads, check_kfp_single_user
from harness.cluster.capacity import Demand, NodeRoom, cluster_rooms
from harness.cluster.commands import Kubectl
from harness.cluster.discover import Discovered, compare, discover
from harness.cluster.errors import ClusterError
from harness.cluster.portforward import PortForwards
from harness.cluster.spec import ClusterSpec, cluster_spec
from harness.cluster.tools import Tools, check_cloud_tools
from harness.matrix import Row
from harness.procs import ComponentFailed
from harness.profiles.base import PipelineRun, ProfileError
from harness.profiles.cluster import ClusterProfile, api_client
from harness.settings import StackConfig

__all__ = ["CloudProfile", "preflight"]

#: install component -> what discovery calls it
_DISCOVERED_AS = {"cert-manager": "cert_manager", "knative": "knative_serving", "kserve": "kserve",
                  "kfp": "kfp_backend"}
_REQUIRED = ("knative", "kserve", "kfp")


#: How long the load balancer's address gets to accept a TCP connection before the port-forward is used
LB_PROBE_TIMEOUT_S = 3.0


def tcp_reachable(host: str, port: int, *, timeout_s: float) -> bool:
    """Whether a TCP connection to host:port opens within timeout_s (then it is closed at once)."""
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return True
    except OSError:
        return False


def _load_balancer_addresses(svc: Any) -> list[str]:
    status = svc.status.load_balancer if svc.status else None
    return [entry.ip or entry.hostname for entry in (status.ingress or []) if entry.ip or entry.hostname] \
        if status else []


def _http_port(svc: Any) -> int:
    """The Service port named http (or http2; Kourier and Istio name theirs so), else port 80."""
    ports = (svc.spec.ports or []) if svc.spec else []
    for wanted in ("http", "http2"):
        for entry in ports:
            if entry.name == wanted:
                return int(entry.port)
    return 80


def _cloud_spec(config: StackConfig, row: Row) -> ClusterSpec:
    return cluster_spec(row, "cloud", serving_namespace=config.namespace)


def preflight(config: StackConfig, row: Row) -> Tools:
    """kubectl (and git/helm when installing); the kubeconfig and context exist; the API answers;
    its user may list cluster-wide; KFP, where the cluster runs one, is not in multi-user mode."""
    spec = _cloud_spec(config, row)
    tools = check_cloud_tools(install=config.install_stack, need_helm=spec.network_layer == "istio")
    if config.kubeconfig is not None and not config.kubeconfig.is_file():
        raise ProfileError(f"--kubeconfig {config.kubeconfig} does not exist; pass the kubeconfig of the cluster "
                           "to test (or SEAMCHECK_KUBECONFIG)")
    try:
        contexts, current = k8s_config.list_kube_config_contexts(
            config_file=str(config.kubeconfig) if config.kubeconfig else None)
    except (k8s_config.ConfigException, OSError) as exc:
        raise ProfileError(f"cannot read the kubeconfig {config.kubeconfig or '(default)'}: "
                           f"{str(exc).splitlines()[0]}; pass --kubeconfig") from None
    names = [c["name"] for c in contexts or []]
    if config.kube_context and config.kube_context not in names:
        raise ProfileError(f"context {config.kube_context!r} is not in {config.kubeconfig or 'the kubeconfig'}; "
                           f"it has: {', '.join(names) or 'none'} (--kube-context)")
    if not config.kube_context and not current:
        raise ProfileError("the kubeconfig has no current-context; pass --kube-context")
    try:
        api = api_client(config.kubeconfig, config.kube_context)
        k8s.VersionApi(api).get_code(_request_timeout=15)
    except Exception as exc:  # noqa: BLE001 - any failure means the cluster cannot be used
        context = config.kube_context or (current or {}).get("name")
        raise ProfileError(f"the Kubernetes API of context {context!r} does not answer: "
                           f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}") from None
    cluster = f"context {config.kube_context or (current or {}).get('name')!r}"
    check_cluster_reads(api, cluster)
    check_kfp_single_user(api, cluster)
    return tools


class CloudProfile(ClusterProfile):
    name = "cloud"
    fit = None  # a real cluster's GPU pool takes the task as compiled
    drop_accelerator = False
    gpu_toleration = True

    @classmethod
    def preflight(cls, config: StackConfig, row: Row) -> None:
        preflight(config, row)

    @classmethod
    def _installs_upstream(cls, config: StackConfig) -> bool:
        return config.install_stack  # else the cluster runs them already: their requests are on its nodes

    @classmethod
    def _rooms(cls, config: StackConfig, row: Row, demand: Demand) -> tuple[list[NodeRoom], str, str]:
        context = config.kube_context or "the current context"
        return (cluster_rooms(api_client(config.kubeconfig, config.kube_context)), f"the cluster of {context}",
                "add nodes (or free some), lower the predictors' requests (--predictor-requests "
                "cpu=250m,memory=1Gi), or select fewer suites (-m conformance)")

    def __init__(self, config: StackConfig, row: Row, *, progress: Callable[[str], None] | None = None) -> None:
        super().__init__(config, row, _cloud_spec(config, row), progress=progress)
        self.discovered = Discovered()
        self.forwards: PortForwards | None = None
        self.tools: Tools | None = None

    def _connect(self) -> None:
        self.tools = preflight(self.config, self.row)
        self.kubeconfig, self.context = self.config.kubeconfig, self.config.kube_context
        self.kubectl = Kubectl(self.tools.kubectl, self.kubeconfig, self.context)

    def _cluster_label(self) -> str:
        return f"context {self.context!r}" if self.context else "the kubeconfig's current context"

    def _after_connect(self) -> None:
        self.discovered = discover(self.api, own_namespace=self.spec.system_namespace)
        self.mismatches = compare(self.spec, self.row.kubernetes, self.discovered)
        self.cluster_versions["discovered"] = dict(self.discovered.versions)
        self.cluster_versions["discovered_at"] = dict(self.discovered.where)
        for miss in self.mismatches:
            self.say(f"cloud: {miss['component']}: row {self.row.name} expects {miss['expected']}, the cluster has "
                     f"{miss['found']} ({miss['where']})")
        kfp_at = self.discovered.where.get("kfp_backend")
        if kfp_at:
            self.kfp_namespace = kfp_at.split("/", 1)[0]
            self.spec = replace(self.spec, kfp_namespace=self.kfp_namespace)
        missing = [c for c in _REQUIRED if not self.discovered.found(_DISCOVERED_AS[c])]
        if missing and not self.config.install_stack:
            raise ClusterError(f"the cluster ({self._cluster_label()}) lacks {', '.join(missing)}; install them or "
                               "pass --install-stack to let seamcheck install the row's versions")

    def _components(self) -> list[str]:
        wanted = []
        if self.config.install_stack:
            wanted = [c for c, key in _DISCOVERED_AS.items() if not self.discovered.found(key)]
        return wanted + ["seamcheck"]

    def _namespaces(self, components: list[str]) -> list[str]:
        spaces = [self.spec.serving_namespace, self.spec.system_namespace]
        return spaces + ([self.spec.kfp_namespace] if "kfp" in components else [])

    def _endpoints(self) -> dict[str, str]:
        assert self.api is not None
        self.forwards = PortForwards(self.kubectl, self.registry, self.state / "logs")
        sys_ns = self.spec.system_namespace
        urls = {
            "mlflow": self.forwards.add("mlflow", sys_ns, "svc/mlflow", 5000).url,
            "minio": self.forwards.add("minio", sys_ns, "svc/minio", 9000).url,
            "prometheus": self.forwards.add("prometheus", sys_ns, "svc/prometheus", 9090).url,
            "kfp": self.forwards.add("kfp", self.kfp_namespace, "svc/ml-pipeline", 8888).url,
        }
        try:  # KFP's own MinIO, where runs write artifacts; an install on cloud storage has none
            urls["kfp_minio"] = self.forwards.add("kfp_minio", self.kfp_namespace, "svc/minio-service", 9000).url
        except ComponentFailed as exc:
            self.say(f"cloud: no KFP MinIO to read run artifacts from ({str(exc).splitlines()[0]}); artifact paths "
                     "will be empty")
        urls["ingress"] = self._ingress_url()
        return urls

    def _ingress_url(self) -> str:
        """The gateway's load balancer when it has an address that answers, else a port-forward to it.

        A LoadBalancer Service can publish an address nothing here can reach (an internal load
        balancer seen from a CI runner outside the VPC, a firewall on port 80): the address is
        probed with a TCP connect first, and an unreachable one falls back to the port-forward with
        a line saying so, rather than every inference request timing out later.
        """
        core = k8s.CoreV1Api(self.api)
        candidates = [self.spec.ingress_service[:2], ("kourier-system", "kourier"),
                      ("istio-system", "istio-ingressgateway")]
        for namespace, name in dict.fromkeys(candidates):
            try:
                svc = core.read_namespaced_service(name, namespace)
            except ApiException as exc:
                if exc.status == 404:
                    continue
                raise
            port = _http_port(svc)
            for address in _load_balancer_addresses(svc):
                if tcp_reachable(address, port, timeout_s=LB_PROBE_TIMEOUT_S):
                    return f"http://{address}:{port}"
                self.say(f"cloud: the load balancer of {namespace}/{name} publishes {address}:{port}, which does "
                         f"not accept a connection from here within {LB_PROBE_TIMEOUT_S:g} s; using a "
                         "port-forward instead")
            assert self.forwards is not None
            return self.forwards.add("ingress", namespace, f"svc/{name}", port).url
        raise ClusterError("no Knative ingress gateway found (kourier-system/kourier or istio-system/"
                           "istio-ingressgateway)")

    def _chaos_namespaces(self) -> Iterable[str]:
        return self.config.chaos_namespaces  # nothing unless the user lists it (and labels it)

    def _stop_processes(self) -> None:
        if self.forwards is not None:
            self.forwards.close()
        super()._stop_processes()

    def gpu_placement(self, run: PipelineRun, task: str = "train-model") -> dict[str, Any]:
        """As the base class, plus `real_gpu`: the node advertises GPUs and is not seamcheck's fake pool."""
        evidence = super().gpu_placement(run, task)
        evidence["real_gpu"] = bool(evidence["on_gpu_node"] and not evidence["fake_gpu_pool"])
        return evidence
