"""One model-server replica of a revision: what a KServe predictor pod runs for
`modelFormat: mlflow` - MLServer with `mlserver_mlflow.MLflowRuntime`, configured the way the
kserve-mlserver ClusterServingRuntime and the controller configure it (environment variables;
`mlserver start <model dir>`), after KServe's storage initializer filled its model folder.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import requests

from harness.envs import RoleEnv
from harness.local.storage_initializer import DownloadResult, download_model
from harness.ports import LOOPBACK, free_port
from harness.procs import ManagedProcess, ProcessRegistry

__all__ = ["TERMINATION_MESSAGE_BYTES", "Replica"]

#: Kubernetes' FallbackToLogsOnError: the last 2048 bytes or 80 lines of the log, whichever is
#: smaller, and only when the container exited with an error (non-zero).
TERMINATION_MESSAGE_BYTES = 2048
TERMINATION_MESSAGE_LINES = 80
MLFLOW_RUNTIME = "mlserver_mlflow.MLflowRuntime"


@dataclass
class Replica:
    revision: str
    index: int
    home: Path
    model_name: str
    http_port: int = field(default_factory=free_port)
    grpc_port: int = field(default_factory=free_port)
    metrics_port: int = field(default_factory=free_port)
    process: ManagedProcess | None = None
    storage: DownloadResult | None = None
    started_at: float = 0.0
    ready_at: float | None = None
    restarts: int = 0
    #: When the emulation first saw this (once ready) replica dead; restart follows a back-off.
    process_exit_seen: float | None = None

    @property
    def name(self) -> str:
        return f"{self.revision}-r{self.index}"

    @property
    def model_dir(self) -> Path:
        return self.home / "mnt" / "models"  # the pod's emptyDir at /mnt/models

    @property
    def base_url(self) -> str:
        return f"http://{LOOPBACK}:{self.http_port}"

    def initialize_storage(self, env: RoleEnv, storage_uri: str, extra_env: dict[str, str]) -> DownloadResult:
        self.storage = download_model(env, storage_uri, self.model_dir, extra_env=extra_env)
        (self.home / "storage-initializer.log").write_text(self.storage.log)
        return self.storage

    def start(self, registry: ProcessRegistry, env: RoleEnv, extra_env: dict[str, str]) -> None:
        metrics_dir = self.home / "metrics"
        metrics_dir.mkdir(parents=True, exist_ok=True)
        proc_env = {
            **os.environ,
            **extra_env,
            "PATH": f"{env.path / 'bin'}:{os.environ.get('PATH', '')}",
            # What the kserve-mlserver runtime and the controller set on the container:
            "MLSERVER_MODEL_IMPLEMENTATION": MLFLOW_RUNTIME,
            "MLSERVER_MODEL_NAME": self.model_name,
            "MLSERVER_MODEL_URI": str(self.model_dir),
            "MLSERVER_HTTP_PORT": str(self.http_port),
            "MLSERVER_GRPC_PORT": str(self.grpc_port),
            # Local differences: one machine hosts every replica, so each binds loopback on its
            # own ports, and the metrics endpoint gets its own port as MLServer 1.5 defaults to.
            "MLSERVER_HOST": LOOPBACK,
            "MLSERVER_METRICS_PORT": str(self.metrics_port),
            "MLSERVER_METRICS_DIR": str(metrics_dir),
        }
        argv = [str(env.bin("mlserver")), "start", str(self.model_dir)]
        self.process = registry.start(ManagedProcess(f"mlserver {self.name}", argv,
                                                     self.home / "mlserver.log", env=proc_env,
                                                     cwd=self.home))
        self.started_at = time.monotonic()
        self.ready_at = None

    def alive(self) -> bool:
        return self.process is not None and self.process.alive()

    def probe_ready(self) -> bool:
        """The readiness probe: the server and the model both ready (KServe's V2 health routes)."""
        try:
            ok = requests.get(f"{self.base_url}/v2/health/ready", timeout=1).status_code == 200
            return ok and requests.get(f"{self.base_url}/v2/models/{self.model_name}/ready",
                                       timeout=1).status_code == 200
        except requests.RequestException:
            return False

    def termination_message(self) -> str:
        if self.process is None or not self.process.exit_code():
            return ""  # exit 0: Kubernetes does not fall back to the log
        try:
            data = self.process.log_path.read_bytes()
        except OSError:
            return ""
        tail = data[-TERMINATION_MESSAGE_BYTES:].decode(errors="replace")
        return "\n".join(tail.splitlines()[-TERMINATION_MESSAGE_LINES:]).strip()

    def log(self, lines: int = 400) -> str:
        """What `kubectl logs` would show for this replica's container."""
        if self.process is None:
            return ""
        try:
            text = self.process.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self, registry: ProcessRegistry) -> None:
        if self.process is not None:
            self.process.stop()
            registry.forget(self.process)
