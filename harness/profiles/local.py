"""The `local` profile: every component is its real program, run as a local process on loopback.

MLflow's tracking server (the row's), an S3-compatible artifact store (moto's server), the KFP
SDK's compiler (the row's) and local runner, KServe's storage initializer (the row's) and MLServer
with the MLflow runtime (the row's runtime image contents), Prometheus and HAProxy (Debian's).
KServe's control plane is emulated (harness/local/emulation.py) behind a Kubernetes-shaped API,
so the deploy step and the harness use the official kubernetes client as on a cluster.
"""
from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from kubernetes import client as k8s

from harness.envs import RoleEnv, ensure_envs
from harness.ledger import ledger
from harness.local.apiserver import EmulatedApiServer, write_kubeconfig
from harness.local.emulation import EmulationConfig, KServeEmulation
from harness.local.haproxy import HAProxyRouter, find_haproxy, start_router
from harness.local.netns import PipelineNetns
from harness.local.services.prometheus import PrometheusServer, find_prometheus, start_prometheus
from harness.local.services.s3 import S3Store, start_s3
from harness.local.services.tracking import TrackingServer, start_tracking
from harness.matrix import Row
from harness.options import PORT_COMPONENTS, port_flag
from harness.paths import role_pythonpath
from harness.ports import PortTaken, check_free, pick
from harness.procs import ComponentFailed, ProcessRegistry, log_tail, run_checked
from harness.profiles.base import PipelineRun, Profile, RevisionModel
from harness.serving.isvc import IsvcClient
from harness.serving.storage import read_storage_file
from harness.settings import StackConfig

__all__ = ["LocalProfile", "preflight"]

ARTIFACT_BUCKET = "mlflow-artifacts"
ROLES_NEEDED = ("tracking", "pipeline", "serving", "storage", "runner")


def preflight(config: StackConfig) -> None:
    """Everything checkable before any process starts: binaries and chosen ports (a port another
    live seamcheck run holds is refused naming that run's pytest pid)."""
    find_prometheus()
    find_haproxy()
    fixed = {component: port for component, port in config.ports.items() if port}
    in_the_way = ledger.active().claims_in_the_way([f"port:{port}" for port in fixed.values()])
    for component, port in fixed.items():
        option = port_flag(component)
        claim = in_the_way.get(f"port:{port}")
        if claim is not None:
            raise PortTaken(f"port {port} for {component} is held by {claim.describe()}; pass another port to "
                            f"{option} (or 0 for a free one)")
        check_free(port, component, option)


class LocalProfile(Profile):
    name = "local"

    @classmethod
    def preflight(cls, config: StackConfig, row: Row) -> None:
        preflight(config)

    def __init__(self, config: StackConfig, row: Row, *, progress: Callable[[str], None] | None = None) -> None:
        self.config = config
        self.row = row
        self.namespace = config.namespace
        self.say = progress or (lambda _m: None)
        self.registry = ProcessRegistry()
        self.state = ledger.active().make_dir("seamcheck-local-")
        self.envs: dict[str, RoleEnv] = {}
        self.s3: S3Store | None = None
        self.tracking: TrackingServer | None = None
        self.router: HAProxyRouter | None = None
        self.prometheus: PrometheusServer | None = None
        self.emulation: KServeEmulation | None = None
        self.api: EmulatedApiServer | None = None
        self.kubeconfig: Path | None = None
        self._isvc: IsvcClient | None = None
        self._timings: dict[str, float] = {}
        self._ports: dict[str, int] = {}

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        preflight(self.config)
        t0 = time.monotonic()
        self.envs = ensure_envs(self.row, ROLES_NEEDED, cache=self.config.env_cache, progress=self.say)
        self._timings["envs_s"] = time.monotonic() - t0
        for role, env in self.envs.items():
            self._timings[f"env_{role}_build_s"] = env.build_seconds
        ports = {c: pick(self.config.ports.get(c, 0)) for c in PORT_COMPONENTS}
        for component, port in ports.items():  # another run asking for one of these is refused
            ledger.active().claim(f"port:{port}", component=component)
        self._ports = ports
        deadline = self.config.component_deadline_s

        if self.config.artifact_store == "s3":
            self.say("starting the S3-compatible artifact store (moto) ...")
            self.s3 = start_s3(self.registry, self.state, ports["s3"], bucket=ARTIFACT_BUCKET, deadline_s=deadline)
            self._timings["ready_s3_s"] = self.s3.ready_seconds
            artifact_root = f"s3://{ARTIFACT_BUCKET}/"
        else:
            artifact_root = str(self.state / "artifacts")
        self.say(f"starting mlflow server {self.row.mlflow} ...")
        self.tracking = start_tracking(self.registry, self.envs["tracking"], self.state, ports["mlflow"],
                                       artifact_root=artifact_root, extra_env=self.client_env(),
                                       deadline_s=deadline)
        self._timings["ready_mlflow_s"] = self.tracking.ready_seconds
        self.say("starting haproxy and prometheus ...")
        self.router = start_router(self.registry, self.state, ports["proxy"], ports["proxy_metrics"],
                                   deadline_s=deadline)
        self._timings["ready_haproxy_s"] = self.router.ready_seconds
        self.prometheus = start_prometheus(self.registry, self.state, ports["prometheus"],
                                           proxy_metrics=self.router.metrics_url.split("//", 1)[1].split("/")[0],
                                           deadline_s=deadline)
        self._timings["ready_prometheus_s"] = self.prometheus.ready_seconds
        self.emulation = KServeEmulation(
            registry=self.registry, state=self.state, serving_env=self.envs["serving"],
            storage_env=self.envs["storage"], router=self.router, prometheus=self.prometheus,
            storage_env_vars=self.client_env(), config=EmulationConfig())
        self.api = EmulatedApiServer(self.emulation, ports["kube_api"], self.state / "logs" / "kube-api.log")
        self.kubeconfig = write_kubeconfig(self.state / "kubeconfig", self.api.url, self.namespace)
        configuration = k8s.Configuration()
        configuration.host = self.api.url
        self._isvc = IsvcClient(k8s.ApiClient(configuration), self.namespace)
        self._timings["stack_start_s"] = time.monotonic() - t0
        self.say(f"local stack up in {self._timings['stack_start_s']:.1f}s (state in {self.state})")

    def teardown(self) -> None:
        """Idempotent: fixture teardown and the atexit fallback may both call it."""
        emulation, api, self.emulation, self.api = self.emulation, self.api, None, None
        if emulation is not None:
            emulation.close()
        if api is not None:
            api.close()
        self.registry.stop_all()
        record = ledger.active()
        for port in self._ports.values():
            record.release_key("claim", f"port:{port}")
        self._ports = {}
        record.remove_dir(self.state, keep=self.config.keep_stack)

    # ------------------------------------------------------------------ MLflow
    @property
    def tracking_uri(self) -> str:
        assert self.tracking is not None, "stack not started"
        return self.tracking.uri

    def client_env(self) -> dict[str, str]:
        env = self.s3.client_env() if self.s3 is not None else {}
        if self.tracking is not None:
            env["MLFLOW_TRACKING_URI"] = self.tracking.uri
        return env

    # ------------------------------------------------------------------ KFP
    def _role_env(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        tmp = self.state / "tmp"
        tmp.mkdir(exist_ok=True)
        env = {**os.environ, **self.client_env(), "PYTHONPATH": role_pythonpath(),
               # kfp's local runner leaves temp folders behind: keep them in our state dir.
               "TMPDIR": str(tmp)}
        if self.kubeconfig is not None:
            env["KUBECONFIG"] = str(self.kubeconfig)
        env.update(extra or {})
        return env

    def default_pipeline_params(self) -> dict[str, Any]:
        return {
            "mlflow_tracking_uri": self.tracking_uri,
            "serving_namespace": self.namespace,
        }

    def run_pipeline(self, params: dict[str, Any], *, name: str, stages: str = "all",
                     netns: PipelineNetns | None = None) -> PipelineRun:
        """Runs the pipeline with the KFP local runner; ``stages="train"`` runs its first three steps.

        With ``netns`` the runner and every task run inside that network namespace and reach
        MLflow and the artifact store only through its forwarders (as a task pod reaches them
        through the cluster network): a rule there cuts the tasks' path and not the harness's.
        """
        run_dir = self.state / "pipeline-runs" / name
        run_dir.mkdir(parents=True, exist_ok=True)
        extra_env: dict[str, str] = {}
        if netns is not None:
            assert self.tracking is not None, "stack not started"
            tracking_uri = f"http://{netns.forward(self.tracking.port)}"
            extra_env["MLFLOW_TRACKING_URI"] = tracking_uri
            params = {**params, "mlflow_tracking_uri": tracking_uri}
            if self.s3 is not None:
                endpoint = f"http://{netns.forward(self.s3.port)}"
                extra_env.update(MLFLOW_S3_ENDPOINT_URL=endpoint, AWS_ENDPOINT_URL=endpoint)
        (run_dir / "params.json").write_text(json.dumps(params, indent=2))
        result_path = run_dir / "result.json"
        log_path = run_dir / "runner.log"
        started = time.monotonic()
        argv = [str(self.envs["runner"].python), "-m", "harness.pipeline.run_local",
                "--component-python", str(self.envs["pipeline"].python),
                "--pipeline-root", str(run_dir / "root"), "--stages", stages,
                "--params", str(run_dir / "params.json"), "--result", str(result_path)]
        if netns is not None:
            argv = netns.exec_argv(*argv)
        try:
            run_checked(argv, what=f"KFP local runner for pipeline run {name}", timeout=self.config.pipeline_deadline_s,
                        env=self._role_env(extra_env), cwd=run_dir, log_path=log_path)
        except ComponentFailed as exc:
            raise ComponentFailed(f"{exc}\n(full log: {log_path})") from None
        result = json.loads(result_path.read_text())
        return PipelineRun(state=result["state"], error=result.get("error"), tasks=result.get("tasks", {}),
                           params=params, compiled_yaml=None, log_path=log_path,
                           seconds=time.monotonic() - started, details=result)

    # ------------------------------------------------------------------ KServe
    def revision_logs(self, name: str, revision: str) -> dict[str, str]:
        """Each replica's container log for a revision (`kubectl logs` on a cluster)."""
        assert self.emulation is not None, "stack not started"
        rev = self.emulation.revision(self.namespace, name, revision)
        return {replica.name: replica.log() for replica in rev.replicas} or self._stopped_replica_logs(revision)

    def _stopped_replica_logs(self, revision: str) -> dict[str, str]:
        logs = {}
        for path in sorted((self.state / "kserve" / self.namespace / revision).glob("replica-*/mlserver.log")):
            logs[f"{revision}-{path.parent.name}"] = "\n".join(path.read_text(errors="replace").splitlines()[-400:])
        return logs

    def revision_model(self, name: str, revision: str) -> RevisionModel:
        """The revision's storageUri, and the MLmodel a ready replica downloaded into its
        /mnt/models (what MLServer loaded); from the storageUri when no replica holds one."""
        assert self.emulation is not None, "stack not started"
        rev = self.emulation.revision(self.namespace, name, revision)
        for replica in rev.ready_replicas():
            path = replica.model_dir / "MLmodel"
            if path.is_file():
                return RevisionModel(rev.storage_uri, path.read_text(), f"replica {replica.name}'s /mnt/models")
        return RevisionModel(rev.storage_uri, read_storage_file(rev.storage_uri, "MLmodel", self.client_env()),
                             "its storageUri")

    def router_counts(self, name: str) -> Callable[[], Mapping[str, tuple[str, int, int]]]:
        """HAProxy's per-server request and 2xx counters for the service's backend."""
        assert self.router is not None, "stack not started"
        router = self.router
        return lambda: router.routed_counts(self.namespace, name)

    def inference_base_url(self, name: str) -> str:
        assert self.router is not None, "stack not started"
        return self.router.url

    # ------------------------------------------------------------------ Prometheus
    @property
    def prometheus_url(self) -> str:
        assert self.prometheus is not None, "stack not started"
        return self.prometheus.url

    @property
    def metric_dialect(self) -> str:
        return "mlserver"

    # ------------------------------------------------------------------ faults (blast radius: ours only)
    #: The stack's components a fault may stop and restart (each keeps its state on disk:
    #: MLflow's sqlite store, moto's persisted buckets, Prometheus's TSDB).
    STOPPABLE = ("mlflow", "s3", "prometheus")

    def _component(self, name: str) -> Any:
        component = {"mlflow": self.tracking, "s3": self.s3, "prometheus": self.prometheus}.get(name)
        if name not in self.STOPPABLE:
            raise ValueError(f"unknown component {name!r}; a fault can stop one of {', '.join(self.STOPPABLE)}")
        if component is None:
            raise ValueError(f"component {name!r} is not part of this stack (not started)")
        return component

    def fault_stop_component(self, name: str) -> int:
        """Stops one of the harness's own components; returns the pid it stopped."""
        proc = self._component(name).process
        if not self.registry.owns(proc.pid):
            raise PermissionError(f"refusing to stop {name}: pid {proc.pid} is not a process the harness started")
        pid = proc.pid
        if name == "s3":
            saved = self.state / "s3-outage"
            shutil.rmtree(saved, ignore_errors=True)
            self.s3.save_bucket(saved)  # type: ignore[union-attr]
        proc.stop()
        self.registry.forget(proc)
        return pid

    def fault_restore_component(self, name: str) -> float:
        """Starts a stopped component again on its port, with its state; returns its ready seconds."""
        component = self._component(name)
        if component.process.alive():
            return 0.0
        deadline = self.config.component_deadline_s
        if name == "mlflow":
            assert self.tracking is not None
            self.tracking = start_tracking(self.registry, self.envs["tracking"], self.state, self.tracking.port,
                                           artifact_root=self.tracking.artifact_root, extra_env=self.client_env(),
                                           deadline_s=deadline)
            return self.tracking.ready_seconds
        if name == "s3":
            assert self.s3 is not None
            self.s3 = start_s3(self.registry, self.state, self.s3.port, bucket=self.s3.bucket, deadline_s=deadline)
            self.s3.load_bucket(self.state / "s3-outage")
            return self.s3.ready_seconds
        assert self.prometheus is not None and self.router is not None
        port = int(self.prometheus.url.rsplit(":", 1)[1])
        self.prometheus = start_prometheus(
            self.registry, self.state, port,
            proxy_metrics=self.router.metrics_url.split("//", 1)[1].split("/")[0], deadline_s=deadline)
        if self.emulation is not None:
            self.emulation.prometheus = self.prometheus
        return self.prometheus.ready_seconds

    def fault_stop_prometheus(self) -> None:
        self.fault_stop_component("prometheus")

    def fault_restore_prometheus(self) -> None:
        self.fault_restore_component("prometheus")

    def fault_kill_revision(self, name: str, revision: str, sig: int = 9) -> list[int]:
        """SIGKILL (by default) every replica process group of one revision; returns their pids."""
        assert self.emulation is not None, "stack not started"
        killed = []
        for replica in self.emulation.revision(self.namespace, name, revision).replicas:
            if replica.process is not None and replica.alive():
                assert self.registry.owns(replica.process.pid), f"{replica.name} is not the harness's process"
                replica.process.kill(sig)
                killed.append(replica.process.pid)
        return killed

    def timings(self) -> dict[str, float]:
        timings = dict(self._timings)
        if self.emulation is not None:
            for svc_revisions in self.emulation.all_revisions():
                for rev in svc_revisions:
                    if rev.ready_seconds is not None:
                        timings[f"revision_ready_s[{rev.name}]"] = rev.ready_seconds
        return timings

    def component_logs(self) -> dict[str, str]:
        logs = {}
        for path in sorted((self.state / "logs").glob("*.log")):
            logs[path.stem] = log_tail(path, 20)
        return logs
