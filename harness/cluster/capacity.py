"""Will the selected suites' pods fit the cluster? Computed before anything is installed.

The scheduler places a pod by its requests against a node's allocatable, so a suite whose peak
requests exceed what the nodes have free leaves pods Pending ("Insufficient cpu") and every wait
after that runs to its deadline. The peak is estimated from what seamcheck deploys:

* the stack: the row's upstream components' requests (``stack_cpu_request_m`` and
  ``stack_memory_request_mi`` in the row's ``cluster`` table of harness/matrix.toml) plus
  seamcheck's own MinIO, MLflow and Prometheus (harness/cluster/manifests/stack);
* the pipeline's train task (its requests as submitted) while it runs, before any predictor exists;
* the predictor pods: the conformance service's ``minReplicas`` (2, the seed's), and for the canary
  suite its four services (two main, one beside, one for the split test) with one replica each,
  the canary revisions in flight at once (the one judged, the next one coming up on the other main
  service, the beside one) and the losing revisions that still hold a pod until Knative's KPA
  scales them to zero (an unreachable revision goes after the stable window, 60 s, and the
  scale-to-zero grace period, 30 s: Knative Serving v1.13.1 config/core/configmaps/autoscaler.yaml);
  each pod also runs Knative's queue-proxy, which requests 25m CPU and no memory
  (QueueSidecarCPURequestDefault, pkg/deployment/config.go, Knative Serving v1.13.1).

KServe 0.14's Serverless mode makes every predictor KPA-class whatever the seed's
``serving.kserve.io/autoscalerClass: hpa`` says (that key is read only by the RawDeployment
reconciler): pkg/controller/v1beta1/inferenceservice/reconcilers/knative/ksvc_reconciler.go sets
``autoscaling.knative.dev/class`` to KPA unless the user set that key; so losing revisions do go
to zero, after the delay above.

Figures are estimates (the upstream sums are read from the manifests, not measured) and the
check is deliberately simple: the total against the nodes' free total, and one predictor pod
against the freest node.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from kubernetes.utils import parse_quantity

from harness.errors import ProfileError

__all__ = ["Demand", "NodeRoom", "Resources", "check_fits", "cluster_rooms", "kind_rooms", "parse_requests",
           "session_demand", "stack_requests"]

#: The upstream components' requests where seamcheck installs them (a row's cluster table may say
#: otherwise: stack_cpu_request_m, stack_memory_request_mi). CPU is the sum read from the seed row's
#: manifests: Knative Serving v1.13.1 (activator 300m, autoscaler 100m, controller 100m, webhook
#: 100m, autoscaler-hpa 30m), net-kourier (controller 200m, gateway 200m), KServe v0.14.1 (controller
#: 100m, localmodel controller 100m) and KFP 2.3.0 (api-server 250m, persistenceagent 120m, ui 10m,
#: visualization 30m, workflow-controller 100m, minio 20m, mysql 100m). Memory is an estimate.
STACK_CPU_M, STACK_MEMORY_MI = 1860, 2560
KIND_NODE_DAEMON_CPU_M = 100  # kindnet's request on every kind node (kind v0.24.0's default CNI)
QUEUE_PROXY_CPU_M = 25
#: seamcheck's own MinIO, MLflow and Prometheus (harness/cluster/manifests/stack): 50m + 100m + 50m
SEAMCHECK_CPU_M, SEAMCHECK_MEMORY_MI = 200, 1024
CONFORMANCE_REPLICAS = 2  # the seed's minReplicas
CANARY_SERVICES = 4  # rc-canary, rc-canary-b, rc-canary-beside, rc-canary-split (scenarios/canary/conftest.py)
CANARY_IN_FLIGHT = 3  # the canary judged, the next one deploying on the other main service, the beside one
CANARY_LINGERING = 2  # losing revisions not yet scaled to zero (~90 s each; a scenario takes ~60 s)


@dataclass(frozen=True)
class Resources:
    cpu_m: int
    memory_mi: int

    def __add__(self, other: Resources) -> Resources:
        return Resources(self.cpu_m + other.cpu_m, self.memory_mi + other.memory_mi)

    def times(self, n: int) -> Resources:
        return Resources(self.cpu_m * n, self.memory_mi * n)

    def __str__(self) -> str:
        return f"{self.cpu_m / 1000:.2f} CPU / {self.memory_mi / 1024:.1f} GiB"


def _quantity(raw: str, name: str) -> float:
    try:
        return float(parse_quantity(raw))
    except ValueError:
        raise ProfileError(f"{name}={raw!r} is not a Kubernetes quantity; write it as a manifest would "
                           "(cpu=250m, memory=1Gi)") from None


def parse_requests(requests: Mapping[str, str], name: str = "requests") -> Resources:
    """{"cpu": "250m", "memory": "1Gi"} as millicores and MiB (a missing one counts 0)."""
    cpu = _quantity(str(requests.get("cpu", "0")), f"{name}.cpu")
    memory = _quantity(str(requests.get("memory", "0")), f"{name}.memory")
    return Resources(round(cpu * 1000), round(memory / 2**20))


@dataclass(frozen=True)
class Demand:
    predictor_pods: int
    predictor: Resources  # one pod, queue-proxy included
    train_task: Resources
    stack: Resources

    @property
    def peak(self) -> Resources:
        """The stack, plus the larger of the training task (before any predictor) and the predictors."""
        predictors = self.predictor.times(self.predictor_pods)
        return self.stack + (predictors if predictors.cpu_m >= self.train_task.cpu_m else self.train_task)

    def describe(self) -> str:
        return (f"{self.predictor_pods} predictor pods x {self.predictor} + the stack's {self.stack} = {self.peak} "
                "at the peak")


def predictor_pods(suites: Iterable[str]) -> int:
    chosen = set(suites)
    pods = CONFORMANCE_REPLICAS if chosen & {"conformance", "canary"} else 0
    if "canary" in chosen:
        pods += CANARY_SERVICES + CANARY_IN_FLIGHT + CANARY_LINGERING
    return pods


def session_demand(suites: Iterable[str], *, predictor_requests: Mapping[str, str], train_requests: Mapping[str, str],
                   stack_cpu_m: int, stack_memory_mi: int) -> Demand:
    one = parse_requests(predictor_requests, "predictor requests") + Resources(QUEUE_PROXY_CPU_M, 0)
    return Demand(predictor_pods(suites), one, parse_requests(train_requests, "train task requests"),
                  Resources(stack_cpu_m + SEAMCHECK_CPU_M, stack_memory_mi + SEAMCHECK_MEMORY_MI))


@dataclass(frozen=True)
class NodeRoom:
    """What a schedulable node has left: allocatable minus the requests of the pods on it."""

    name: str
    free: Resources


def check_fits(demand: Demand, nodes: list[NodeRoom], *, where: str, remedy: str) -> None:
    """Raise ProfileError (one line: the figures and the fix) when the peak cannot be scheduled."""
    if demand.predictor_pods == 0:  # no suite selected that deploys the stack's services
        return
    total = Resources(sum(n.free.cpu_m for n in nodes), sum(n.free.memory_mi for n in nodes))
    short = []
    if demand.peak.cpu_m > total.cpu_m:
        short.append("CPU")
    if demand.peak.memory_mi > total.memory_mi:
        short.append("memory")
    freest = max((n.free.cpu_m for n in nodes), default=0)
    if demand.predictor_pods and demand.predictor.cpu_m > freest:
        short.append("room for one predictor pod on any node")
    if short:
        raise ProfileError(f"the selected suites need {demand.describe()}, but {where} has {total} free on "
                           f"{len(nodes)} schedulable node(s) (short of {', '.join(short)}); {remedy}")


def stack_requests(cluster_table: Mapping[str, str]) -> tuple[int, int]:
    """(cpu_m, memory_mi) of the row's upstream components: its cluster table's figures, else the default."""
    return (int(cluster_table.get("stack_cpu_request_m", STACK_CPU_M)),
            int(cluster_table.get("stack_memory_request_mi", STACK_MEMORY_MI)))


def kind_rooms(workers: int, host_cpus: int, host_memory_mi: int) -> list[NodeRoom]:
    """A kind cluster's schedulable nodes before it exists: each worker reports the host's CPUs and
    memory as allocatable (kind reserves nothing) less kindnet's request; the control-plane node
    keeps its NoSchedule taint on a multi-node cluster (kind v0.24.0 removes it only when it is the
    only node), and kind-gpu's GPU worker is tainted for GPU pods."""
    free = Resources(host_cpus * 1000 - KIND_NODE_DAEMON_CPU_M, host_memory_mi)
    return [NodeRoom(f"worker{i or ''}", free) for i in range(workers)]


def _schedulable(node: Any) -> bool:
    if node.spec is not None and node.spec.unschedulable:
        return False
    taints = (node.spec.taints or []) if node.spec is not None else []
    return not any(t.effect in ("NoSchedule", "NoExecute") for t in taints)


def cluster_rooms(api: Any) -> list[NodeRoom]:
    """An existing cluster's untainted, schedulable nodes: allocatable minus the requests of the
    pods that run there now (what the scheduler subtracts)."""
    from kubernetes import client as k8s

    core = k8s.CoreV1Api(api)
    rooms = []
    for node in core.list_node(_request_timeout=30).items:
        if not _schedulable(node):
            continue
        allocatable = parse_requests(node.status.allocatable or {}, f"node {node.metadata.name} allocatable")
        used = Resources(0, 0)
        pods = core.list_pod_for_all_namespaces(field_selector=f"spec.nodeName={node.metadata.name},"
                                                "status.phase!=Succeeded,status.phase!=Failed",
                                                _request_timeout=30).items
        for pod in pods:
            for container in pod.spec.containers or []:
                requests = (container.resources.requests or {}) if container.resources else {}
                used = used + parse_requests(requests, f"pod {pod.metadata.name}")
        rooms.append(NodeRoom(node.metadata.name, Resources(allocatable.cpu_m - used.cpu_m,
                                                            allocatable.memory_mi - used.memory_mi)))
    return rooms
