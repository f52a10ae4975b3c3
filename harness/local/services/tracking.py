"""The MLflow tracking server of the matrix row, from its `tracking` role environment."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import requests

from harness.envs import RoleEnv
from harness.ports import LOOPBACK
from harness.procs import ManagedProcess, ProcessRegistry

__all__ = ["TrackingServer", "start_tracking"]


@dataclass
class TrackingServer:
    process: ManagedProcess
    uri: str
    artifact_root: str
    backend_store_uri: str
    ready_seconds: float

    @property
    def port(self) -> int:
        return int(self.uri.rsplit(":", 1)[1])

    def version(self) -> str:
        return requests.get(f"{self.uri}/version", timeout=5).text.strip()


def start_tracking(registry: ProcessRegistry, env: RoleEnv, state: Path, port: int, *,
                   artifact_root: str, extra_env: dict[str, str], deadline_s: float = 120.0) -> TrackingServer:
    db = state / "mlflow" / "mlflow.db"
    db.parent.mkdir(parents=True, exist_ok=True)
    backend = f"sqlite:///{db}"
    argv = [
        str(env.bin("mlflow")), "server",
        "--backend-store-uri", backend,
        "--default-artifact-root", artifact_root,
        # Clients write artifacts straight to the store, so run.info.artifact_uri is the store's
        # own URI (s3://...) - what the seed turns into a KServe storageUri.
        "--no-serve-artifacts",
        "--host", LOOPBACK, "--port", str(port),
        # gunicorn defaults to 4 workers here (~0.9 GB); one is plenty for a test stack.
        "--workers", "1",
    ]
    proc_env = {**os.environ, **extra_env, "PATH": f"{env.path / 'bin'}:{os.environ.get('PATH', '')}"}
    proc = registry.start(ManagedProcess("mlflow tracking server", argv, state / "logs" / "mlflow.log",
                                         env=proc_env))
    uri = f"http://{LOOPBACK}:{port}"
    seconds = proc.wait_http(f"{uri}/health", deadline_s=deadline_s)
    return TrackingServer(proc, uri, artifact_root, backend, seconds)
