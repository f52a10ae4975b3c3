"""The `kind` and `kind-gpu` profiles: a kind cluster on this machine's Docker, the matrix row's
stack installed on it, the same scenarios as everywhere.

Lifecycle: a cluster named --kind-cluster (default `seamcheck`) is reused when it exists
(and then left in place), else created from harness/cluster/manifests/cluster.yaml.j2 with the row's node
image (the row's newest Kubernetes; --kind-image overrides) and deleted at the end unless
--keep-cluster. The harness reaches the stack through NodePorts that kind publishes on 127.0.0.1.

kind-gpu adds a worker labelled and tainted like a cloud GPU pool, advertises a fake
`nvidia.com/gpu` on it, and submits the train task with a toleration for the taint, so the
task's accelerator request schedules there and only there. Plain kind has no GPU pool: the
accelerator request is dropped from the submitted copy (the compiled YAML keeps it).
"""
from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from typing import Any

import psutil
from kubernetes import client as k8s

from harness.cluster.capacity import KIND_NODE_DAEMON_CPU_M, Demand, NodeRoom, kind_rooms
from harness.cluster.commands import Kubectl
from harness.cluster.errors import ClusterError
from harness.cluster.gpu import FAKE_POOL_SELECTOR, advertise_fake_gpu, gpu_pool_problems
from harness.cluster.install import COMPONENTS
from harness.cluster.kind_cluster import KindCluster
from harness.cluster.spec import ClusterSpec, cluster_spec
from harness.cluster.tools import Tools, check_kind_tools
from harness.ledger import ledger
from harness.matrix import Row
from harness.profiles.base import PipelineRun
from harness.profiles.cluster import ClusterProfile
from harness.settings import StackConfig

__all__ = ["KindGpuProfile", "KindProfile", "kind_spec", "preflight"]


#: kind port mapping name -> endpoint key of ClusterProfile.endpoints
_ENDPOINT_KEYS = {"ingress": "ingress", "kfp-api": "kfp", "kfp-minio": "kfp_minio", "mlflow": "mlflow",
                  "minio": "minio", "prometheus": "prometheus"}


def kind_spec(config: StackConfig, row: Row, profile: str) -> ClusterSpec:
    return cluster_spec(row, profile, serving_namespace=config.namespace, host_ports=config.ports,
                        node_image=config.kind_image, cluster_name=config.kind_cluster)


def preflight(config: StackConfig, row: Row) -> Tools:
    """Before anything starts: the row has what kind needs, kind/docker/kubectl/git are there,
    kind is >= v0.24, and the Docker daemon answers. One-line errors (ProfileError)."""
    spec = kind_spec(config, row, config.profile)
    claim = ledger.active().claims_in_the_way([_claim(spec.cluster_name)]).get(_claim(spec.cluster_name))
    if claim is not None:
        raise ClusterError(f"kind cluster {spec.cluster_name!r} belongs to {claim.describe()}; set "
                           "--kind-cluster to another name, or wait for that run")
    return check_kind_tools(config.kind_bin, need_helm=spec.network_layer == "istio")


def _claim(cluster: str) -> str:
    return f"kind-cluster:{cluster}"


class KindProfile(ClusterProfile):
    name = "kind"

    @classmethod
    def preflight(cls, config: StackConfig, row: Row) -> None:
        preflight(config, row)
    # The train task asks for 4 CPU / 16Gi (limits, which KFP also makes requests); a kind node's
    # capacity is the CI runner's, so the submitted copy asks for what such a node can give.
    fit: dict[str, Any] | None = {"cpu": "1", "memory_gib": 2}
    # A kind node is a share of the runner: the seed's whole CPU per predictor does not fit the
    # canary suite's services on a 4-vCPU runner (docs/profiles.md has the figures).
    default_predictor_requests = {"cpu": "250m", "memory": "1Gi"}

    @classmethod
    def _rooms(cls, config: StackConfig, row: Row, demand: Demand) -> tuple[list[NodeRoom], str, str]:
        spec = kind_spec(config, row, config.profile)
        cpus, memory_mi = os.cpu_count() or 1, psutil.virtual_memory().total // 2**20
        per_node = -(-demand.peak.cpu_m // max(spec.workers, 1)) + KIND_NODE_DAEMON_CPU_M
        return (kind_rooms(spec.workers, cpus, memory_mi),
                f"this machine ({cpus} CPUs, {spec.workers} kind workers that each report them)",
                f"run on a machine with at least {-(-per_node // 1000)} CPUs, lower the predictors' requests "
                "(--predictor-requests cpu=100m,memory=512Mi), or select fewer suites (-m conformance)")
    drop_accelerator = True
    gpu_toleration = False

    def __init__(self, config: StackConfig, row: Row, *, progress: Callable[[str], None] | None = None) -> None:
        super().__init__(config, row, kind_spec(config, row, self.name), progress=progress)
        self.cluster: KindCluster | None = None
        self.created = False
        self.tools: Tools | None = None
        self.gpu: dict[str, Any] = {}
        self.policy_refusal: str | None = None  # why this cluster's CNI would not enforce NetworkPolicy

    def _connect(self) -> None:
        self.tools = preflight(self.config, self.row)
        self.cluster_versions.update(kind=self.tools.kind_version, docker=self.tools.docker_server)
        assert self.tools.kind is not None and self.tools.docker is not None
        self.cluster = KindCluster(self.spec, self.tools.kind, self.tools.docker, self.say)
        record = ledger.active()
        record.claim(_claim(self.spec.cluster_name), cluster=self.spec.cluster_name)
        if not self.cluster.exists():
            # Marked before creating: a creation that fails half-way still gets deleted at teardown,
            # and by the reaper if the session is killed meanwhile (the undo command).
            self.created = True
            record.intend("command", key=_claim(self.spec.cluster_name), ok_if_fails=True,
                          argv=[self.tools.kind, "delete", "cluster", "--name", self.spec.cluster_name],
                          timeout_s=300)
            self.cluster.create(self.state / "kind-config.yaml")
        else:
            self.say(f"kind: reusing the existing cluster {self.spec.cluster_name!r}; it is left in place at the end")
        self.kubeconfig = self.cluster.write_kubeconfig(self.state / "kubeconfig")
        self.kubectl = Kubectl(self.tools.kubectl, self.kubeconfig)

    def _after_connect(self) -> None:
        self.policy_refusal = kindnet_policy_problem(self.api)
        self.cluster_versions["network_policy_enforced"] = self.policy_refusal is None
        if self.policy_refusal:
            self.say(f"kind: {self.policy_refusal}")
        if self.spec.gpu_workers:
            self._prepare_gpu_pool()

    def fault_cut_pipeline_from_mlflow(self) -> dict:
        if self.policy_refusal:
            raise ClusterError(f"refused to cut the pipeline from MLflow: {self.policy_refusal}")
        return super().fault_cut_pipeline_from_mlflow()

    def _prepare_gpu_pool(self) -> None:
        core = k8s.CoreV1Api(self.api)
        nodes = core.list_node(label_selector=FAKE_POOL_SELECTOR).items
        if not nodes:
            raise ClusterError(f"kind-gpu: no node labelled {FAKE_POOL_SELECTOR} in cluster "
                               f"{self.spec.cluster_name!r}; "
                               "a reused cluster must have been created with the kind-gpu config "
                               "(python -m harness.cluster.kind_cluster config --profile kind-gpu)")
        for node in nodes:
            problems = gpu_pool_problems(node)
            if problems:
                raise ClusterError(f"kind-gpu: node {node.metadata.name} does not look like a GPU pool: "
                                   f"{'; '.join(problems)}")
            self.gpu[node.metadata.name] = advertise_fake_gpu(self.api, node.metadata.name, count=1)
            self.say(f"kind-gpu: {node.metadata.name} advertises nvidia.com/gpu=1 (fake; no device plugin)")

    def _components(self) -> list[str]:
        return list(COMPONENTS)

    def _endpoints(self) -> dict[str, str]:
        assert self.cluster is not None
        published = self.cluster.published_ports() if not self.created else {}
        urls = {}
        for name, key in _ENDPOINT_KEYS.items():
            mapping = self.spec.port(name)
            host_port = published.get(mapping.node_port, mapping.host_port)
            if not self.created and mapping.node_port not in published:
                raise ClusterError(f"the reused kind cluster {self.spec.cluster_name!r} does not publish node port "
                                   f"{mapping.node_port} ({name}); recreate it with `python -m harness.cluster.kind_cluster "
                                   f"config --profile {self.name}`")
            urls[key] = f"http://127.0.0.1:{host_port}"
        return urls

    def _chaos_namespaces(self) -> Iterable[str]:
        # The cluster is the harness's own: its namespaces unless the user narrowed them.
        return self.config.chaos_namespaces or self.spec.harness_namespaces

    def _cluster_teardown(self) -> None:
        if self.cluster is None:
            return
        record = ledger.active()
        record.release_key("claim", _claim(self.spec.cluster_name))
        if self.created and not self.config.keep_cluster:
            self.cluster.delete()
            record.release_key("command", _claim(self.spec.cluster_name))
        elif self.created:
            record.keep_key("command", _claim(self.spec.cluster_name))
            self.say(f"kind: keeping cluster {self.spec.cluster_name!r} (--keep-cluster); delete it with "
                     f"`kind delete cluster --name {self.spec.cluster_name}`")

    def versions(self) -> dict[str, Any]:
        out = super().versions()
        if self.gpu:
            out["cluster"]["fake_gpu_nodes"] = self.gpu
        return out


class KindGpuProfile(KindProfile):
    name = "kind-gpu"
    drop_accelerator = False
    gpu_toleration = True

    def gpu_cordon_check(self, run: PipelineRun, task: str = "train-model") -> dict[str, Any]:
        """The training pod's scheduling constraints cannot be met while its GPU node is cordoned."""
        return self._cordon_check(run, task)



def kindnet_policy_problem(api: Any) -> str | None:
    """Why this kind cluster's CNI does not enforce NetworkPolicy, or None when it does.

    kind's CNI, kindnet, comes from the NODE IMAGE (the manifest is baked into it when the image is
    built), not from the kind binary: a kind v0.24 binary with a node image built for an older kind
    runs the older kindnet. kindnet enforces NetworkPolicy from kind v0.24.0 on, and its ClusterRole
    then grants it networkpolicies (kind commit c3e24ff7, "update rbac permissions for kindnet
    network policies"; pkg/build/nodeimage/const_cni.go, v0.24.0); older ones lack that rule."""
    from kubernetes.client.exceptions import ApiException

    rbac = k8s.RbacAuthorizationV1Api(api)
    try:
        role = rbac.read_cluster_role("kindnet")
    except ApiException as exc:
        if exc.status == 404:  # another CNI: the cut's probe pod proves (or refutes) its enforcement
            return None
        raise
    resources = {r for rule in (role.rules or []) for r in (rule.resources or [])}
    if "networkpolicies" in resources:
        return None
    images = ""
    try:
        ds = k8s.AppsV1Api(api).read_namespaced_daemon_set("kindnet", "kube-system")
        images = ", ".join(c.image for c in ds.spec.template.spec.containers)
    except ApiException:
        pass
    return (f"the node image's kindnet ({images or 'image unknown'}) predates NetworkPolicy support (its "
            "ClusterRole grants no networkpolicies): the NetworkPolicy fault would cut nothing; use a node image "
            "built for kind >= v0.24.0 (--kind-image, or the row's kind_node_images)")
