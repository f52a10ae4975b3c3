"""The `host` profile: a real Kubernetes cluster on this machine without Docker (harness/host/), with
kind-gpu's shape: a control-plane node and a second node labelled and tainted like a cloud GPU pool
that advertises `nvidia.com/gpu`; kube-proxy, CoreDNS and an enforcing NetworkPolicy controller.

Lifecycle, as the kind profile's: a cluster kept by an earlier run (``--keep-cluster`` or
``seamcheck-cluster up``) that still answers is reused and left in place; otherwise one is started
and removed at teardown (pass, fail, Ctrl-C, SIGTERM; the cluster's own ledger reaper after a kill),
unless ``--keep-cluster`` keeps it for the next run.

What runs on it today: the cluster profiles' own claims (faults behind the chaos guard, GPU
placement, discovery). The serving stack (Knative Serving, KServe, KFP, the harness's MLflow) is not
installed yet, so the conformance, canary and chaos suites skip here with one line saying so
(``suite_skip_reason``); the endpoints those suites read raise the same reason.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, ClassVar

from harness.cluster.commands import Kubectl
from harness.cluster.errors import ClusterError
from harness.cluster.faults import ClusterFaults
from harness.cluster.guard import ChaosGuard
from harness.cluster.spec import ClusterSpec, cluster_spec
from harness.errors import ProfileError
from harness.host.preflight import preflight_machine
from harness.matrix import Row
from harness.profiles.base import PipelineRun
from harness.profiles.cluster import ClusterProfile, api_client
from harness.settings import StackConfig

__all__ = ["NOT_INSTALLED", "HostProfile", "preflight"]

#: Why the suites that need the serving stack skip on `host` (one line).
NOT_INSTALLED = ("the host cluster has no serving stack yet (Knative Serving, KServe, KFP and the harness's MLflow "
                 "are installed on it in a later step); run this suite on local, kind or cloud")
def host_spec(config: StackConfig, row: Row) -> ClusterSpec:
    from harness.host.versions import load_host_versions

    return cluster_spec(row, "host", serving_namespace=config.namespace, cluster_name="seamcheck-host",
                        kubernetes=load_host_versions().kubernetes)


def preflight(config: StackConfig, row: Row) -> None:
    """Before anything starts (the session's collection): see harness/host/preflight.py."""
    preflight_machine()


class HostProfile(ClusterProfile):
    name = "host"
    # The nodes are this machine (2 CPUs here): the train task asks for what kind's nodes get.
    fit: ClassVar[dict[str, Any] | None] = {"cpu": "1", "memory_gib": 2}
    default_predictor_requests: ClassVar[dict[str, str] | None] = {"cpu": "250m", "memory": "1Gi"}
    drop_accelerator = False
    gpu_toleration = True

    def __init__(self, config: StackConfig, row: Row, *, progress: Callable[[str], None] | None = None) -> None:
        super().__init__(config, row, host_spec(config, row), progress=progress)
        self.cluster: Any = None  # harness.host.cluster.HostCluster
        self.created = False

    @classmethod
    def preflight(cls, config: StackConfig, row: Row) -> None:
        preflight(config, row)

    @classmethod
    def suite_skip_reason(cls, suite: str) -> str | None:
        return NOT_INSTALLED if suite in ("conformance", "canary", "chaos") else None

    @classmethod
    def check_capacity(cls, config: StackConfig, row: Row, suites: frozenset[str]) -> None:
        return None  # nothing is installed on it yet: the suites that would need room skip

    # ------------------------------------------------------------ lifecycle
    def start(self) -> None:
        import time

        started = time.monotonic()
        self._connect()
        self.api = api_client(self.kubeconfig, None)
        self._check_reachable()
        self.cluster_versions.update(nodes=[n.name for n in self.cluster.nodes], enforcer=self.cluster.enforcer,
                                     network_policy=self.cluster.network_policy or "enforced",
                                     reused=not self.created)
        self.guard = ChaosGuard.of(self.api, self._chaos_namespaces(), cluster=self._cluster_label())
        self.faults = ClusterFaults(self.api, self.guard, self.say, kubectl=self.kubectl.argv)
        self._timings.update({f"cluster[{k}]": round(v, 2) for k, v in self.cluster.timings.items()})
        self._timings["stack_start_s"] = time.monotonic() - started
        self.say(f"host cluster ready in {self._timings['stack_start_s']:.0f}s ({self.cluster.server}; "
                 f"{'reused' if not self.created else 'started'}; serving stack not installed yet)")

    def _connect(self) -> None:
        from harness.host.cluster import HostCluster
        from harness.host.kept import reuse_kept

        kept = reuse_kept()
        if kept is not None and not (kept.addons and kept.gpu_node):
            raise ClusterError("a kept host cluster without the add-ons or the GPU node is in the way; remove it "
                               "with `seamcheck-cluster down`")
        if kept is not None:
            self.cluster = kept
            self.say(f"host: reusing the kept cluster at {kept.server}; it is left in place at the end")
        else:
            self.say("host: starting the cluster (etcd, control plane, two nodes, add-ons) ...")
            self.cluster = HostCluster(addons=True, gpu_node=True)
            self.created = True
            self.cluster.start()
        self.kubeconfig = self.cluster.kubeconfig
        self.kubectl = Kubectl(self.cluster.bin("kubernetes", "kubectl"), self.kubeconfig)

    def _cluster_label(self) -> str:
        return "the host cluster"

    def _chaos_namespaces(self) -> Iterable[str]:
        # The cluster is the harness's own: its namespaces unless the user narrowed them (as on kind).
        return self.config.chaos_namespaces or self.spec.harness_namespaces

    def _cluster_teardown(self) -> None:
        if self.cluster is None or not self.created:
            return
        if self.config.keep_cluster:
            path = self.cluster.keep()
            self.say(f"host: keeping the cluster (--keep-cluster): KUBECONFIG={self.cluster.kubeconfig}; remove it "
                     f"with `seamcheck-cluster down` (record {path})")
        else:
            self.cluster.stop()

    # ------------------------------------------------------------ what needs the serving stack
    @property
    def tracking_uri(self) -> str:
        raise ProfileError(NOT_INSTALLED)

    @property
    def prometheus_url(self) -> str:
        raise ProfileError(NOT_INSTALLED)

    def run_pipeline(self, params: dict[str, Any], *, name: str) -> PipelineRun:
        raise ProfileError(NOT_INSTALLED)

    def inference_base_url(self, name: str) -> str:
        raise ProfileError(NOT_INSTALLED)

    def gpu_cordon_check(self, run: PipelineRun, task: str = "train-model") -> dict[str, Any]:
        """The training pod's scheduling constraints cannot be met while its GPU node is cordoned."""
        return self._cordon_check(run, task)

    def versions(self) -> dict[str, Any]:
        out = super().versions()
        if self.cluster is not None:
            out["cluster"]["kubernetes_host"] = self.spec.kubernetes
        return out
