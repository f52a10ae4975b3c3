"""The `host` profile: a real Kubernetes cluster on this machine without Docker (harness/host/), with
kind-gpu's shape: a control-plane node and a second node labelled and tainted like a cloud GPU pool
that advertises `nvidia.com/gpu`; kube-proxy, CoreDNS and an enforcing NetworkPolicy controller.

Lifecycle, as the kind profile's: a cluster kept by an earlier run (``--keep-cluster`` or
``seamcheck-cluster up``) that still answers is reused and left in place; otherwise one is started
and removed at teardown (pass, fail, Ctrl-C, SIGTERM; the cluster's own ledger reaper after a kill),
unless ``--keep-cluster`` keeps it for the next run.

What runs on it today: the harness's own services in ``seamcheck-system``, installed from the
templates the kind profile applies (harness/cluster/manifests/stack/) by the same install step, with
images made on this machine (harness/host/service_images.py): MLflow with the row's tracking pins
(its role environment), an S3 store behind the ``minio`` Service (moto's server: a stand-in, see
harness/host/images.toml for why MinIO cannot be built here) and Prometheus; and the cluster profiles'
own claims on them (faults behind the chaos guard, the NetworkPolicy cut proved by a real pod, GPU
placement, discovery). The serving stack (Knative Serving, KServe, KFP) is not installed yet, so the
conformance, canary and chaos suites skip here with one line saying so (``suite_skip_reason``); the
endpoints only those suites read raise the same reason.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import replace
from typing import Any, ClassVar

from harness.cluster.commands import Kubectl
from harness.cluster.errors import ClusterError
from harness.cluster.faults import ClusterFaults
from harness.cluster.guard import ChaosGuard
from harness.cluster.install import install_plan, run_plan
from harness.cluster.path_probe import pod_path_probe
from harness.cluster.portforward import PortForwards
from harness.cluster.render import render_manifests
from harness.cluster.spec import ClusterSpec, cluster_spec
from harness.cluster.waits import wait_http
from harness.errors import ProfileError
from harness.host.preflight import preflight_machine
from harness.matrix import Row
from harness.profiles.base import PipelineRun
from harness.profiles.cluster import ClusterProfile, api_client
from harness.settings import StackConfig

__all__ = ["NOT_INSTALLED", "SERVICE_IMAGES", "HostProfile", "preflight"]

#: Why the suites that need the serving stack skip on `host` (one line).
NOT_INSTALLED = ("the host cluster has the harness's MLflow, S3 store and Prometheus but no serving stack yet "
                 "(Knative Serving, KServe and KFP are installed on it in a later step); run this suite on local, "
                 "kind or cloud")
#: The services' images made from role environments (harness/host/images.toml [services.*]); Prometheus's
#: is [images.prometheus], the static binary built from the Go module proxy.
SERVICE_IMAGES = ("mlflow", "s3")
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
        self.forwards: PortForwards | None = None
        self.service_images: dict[str, Any] = {}  # name -> harness.host.service_images.ServiceImage

    @classmethod
    def preflight(cls, config: StackConfig, row: Row) -> None:
        preflight(config, row)

    @classmethod
    def suite_skip_reason(cls, suite: str) -> str | None:
        return NOT_INSTALLED if suite in ("conformance", "canary", "chaos") else None

    @classmethod
    def check_capacity(cls, config: StackConfig, row: Row, suites: frozenset[str]) -> None:
        # Only the harness's three small services run on it (350 MiB of requests on this machine's own
        # memory); the suites that would need room skip until the serving stack is installed.
        return None

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
        self._timings.update({f"cluster[{k}]": round(v, 2) for k, v in self.cluster.timings.items()})
        self._install_services()
        self.guard = ChaosGuard.of(self.api, self._chaos_namespaces(), cluster=self._cluster_label())
        self.faults = ClusterFaults(self.api, self.guard, self.say, kubectl=self.kubectl.argv,
                                    path_probe=pod_path_probe(self.api, self.spec.mlflow_image, say=self.say))
        self._timings["stack_start_s"] = time.monotonic() - started
        self.say(f"host cluster ready in {self._timings['stack_start_s']:.0f}s ({self.cluster.server}; "
                 f"{'reused' if not self.created else 'started'}; MLflow {self.row.mlflow}, S3 (stand-in), "
                 "Prometheus installed; serving stack not installed yet)")

    def _install_services(self) -> None:
        """The harness's services, as the kind profile installs them: images onto the nodes that run
        them, the templates rendered for this cluster, the install step's waits, then port-forwards."""
        import time

        from harness.host.images import load_images, write_images
        from harness.host.service_images import service_images

        t0 = time.monotonic()
        images = service_images(self.row, list(SERVICE_IMAGES), env_cache=self.config.env_cache, progress=self.say)
        self.service_images = images
        prometheus = load_images()["prometheus"].local
        archives = [i.archive for i in images.values()] + [write_images(["prometheus"])["prometheus"]]
        # Only nodes without taints run them (the GPU node's taint keeps every service off it).
        nodes = [n for n in self.cluster.nodes if not n.taints]
        for node in nodes:
            node.import_images(archives)
        self._timings["images_s"] = time.monotonic() - t0
        self.say(f"host: service images imported on {', '.join(n.name for n in nodes)} in "
                 f"{self._timings['images_s']:.0f}s ({', '.join(i.ref for i in images.values())}, {prometheus})")
        self.spec = replace(self.spec, tracking_image=images["mlflow"].ref, s3_server="moto",
                            images={**self.spec.images, "minio": images["s3"].ref, "prometheus": prometheus})
        self.s3 = self._s3_credentials()
        namespaces = list(self.spec.harness_namespaces)
        # The cluster is the harness's own (as kind's): its namespaces are open to chaos unless narrowed.
        manifests = render_manifests(self.spec, self.s3, knative_owned=False, namespaces=namespaces,
                                     chaos_labelled=self.config.chaos_namespaces or namespaces)
        (self.state / "manifests").mkdir(exist_ok=True)
        for stem in manifests.files:
            (self.state / "manifests" / f"{stem}.yaml").write_text(manifests.text(stem))
        steps = install_plan(self.spec, self.kubectl, self.api, manifests, components=["seamcheck"])
        t1 = time.monotonic()
        self._timings.update({f"install_s[{k}]": v for k, v in run_plan(steps, self.say).items()})
        self._timings["install_s"] = time.monotonic() - t1
        self.forwards = PortForwards(self.kubectl, self.registry, self.state / "logs")
        ns = self.spec.system_namespace
        self.endpoints = {"mlflow": self.forwards.add("mlflow", ns, "svc/mlflow", 5000).url,
                          "minio": self.forwards.add("minio", ns, "svc/minio", 9000).url,
                          "prometheus": self.forwards.add("prometheus", ns, "svc/prometheus", 9090).url}
        self._wait_services()

    def _wait_services(self) -> None:
        deadline = self.config.component_deadline_s
        wait_http(f"{self.endpoints['mlflow']}/health", what=f"MLflow {self.row.mlflow}", deadline_s=deadline)
        wait_http(f"{self.endpoints['prometheus']}/-/ready", what="Prometheus", deadline_s=deadline)
        wait_http(f"{self.endpoints['minio']}/moto-api/", what="the S3 store (moto, MinIO's stand-in)",
                  deadline_s=deadline)

    def _stop_processes(self) -> None:
        if self.forwards is not None:
            self.forwards.close()
        super()._stop_processes()

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
        # Which image stands for which upstream one; a stand-in says it is one (and why, in images.toml).
        out["cluster"]["service_images"] = {
            name: {"upstream": image.spec.upstream, "local": image.ref, **({"fake": True} if image.fake else {})}
            for name, image in self.service_images.items()}
        return out
