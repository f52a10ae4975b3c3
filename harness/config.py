"""What a run was asked to do: the options every profile reads (from pytest options or env vars)."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["PORT_OPTIONS", "PROFILES", "StackConfig"]

PROFILES = ("local", "kind", "kind-gpu", "cloud")

#: Local components whose loopback port a user may fix: component -> (option, environment variable).
PORT_OPTIONS = {
    "mlflow": ("--mlflow-port", "SEAMCHECK_MLFLOW_PORT"),
    "s3": ("--s3-port", "SEAMCHECK_S3_PORT"),
    "prometheus": ("--prometheus-port", "SEAMCHECK_PROMETHEUS_PORT"),
    "proxy": ("--proxy-port", "SEAMCHECK_PROXY_PORT"),
    "proxy_metrics": ("--proxy-metrics-port", "SEAMCHECK_PROXY_METRICS_PORT"),
    "kube_api": ("--kube-api-port", "SEAMCHECK_KUBE_API_PORT"),
}


@dataclass(frozen=True)
class StackConfig:
    profile: str = "local"
    matrix_row: str | None = None
    matrix_file: Path | None = None
    reports_dir: Path = Path("reports")
    keep_stack: bool = False
    namespace: str = "model-serving"
    artifact_store: str = "s3"  # s3 (moto's S3-compatible server) | files
    ports: dict[str, int] = field(default_factory=dict)  # component -> fixed port (0/absent: free)
    env_cache: Path | None = None
    component_deadline_s: float = 120.0
    isvc_deadline_s: float = 300.0
    pipeline_deadline_s: float = 900.0
    # Cluster profiles (kind, kind-gpu, cloud): see docs/profiles.md.
    kubeconfig: Path | None = None  # cloud: the kubeconfig to use (default: kubectl's own lookup)
    kube_context: str | None = None  # cloud: the context in it (default: its current-context)
    keep_cluster: bool = False  # kind: keep a cluster the harness created
    kind_bin: str | None = None  # kind: the kind binary (default: `kind` on PATH)
    install_stack: bool = False  # cloud: install the row's missing components instead of only discovering
    chaos_namespaces: tuple[str, ...] = ()  # clusters: where chaos may act (with the namespace label too)
