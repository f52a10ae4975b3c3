"""Rendering harness/cluster/manifests/: the kind cluster config and the manifests of the harness's own
in-cluster services (MinIO, MLflow, Prometheus, access for KServe and the pipeline's tasks),
templated from the matrix row's ClusterSpec. Pure functions of their inputs, so every row's
output is validated in tests (tests/test_cluster_manifests.py) without a cluster.
"""
from __future__ import annotations

import hashlib
import inspect
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import jinja2
import yaml

from harness.cluster import task_log_probe
from harness.cluster.spec import CHAOS_ALLOWED, CHAOS_LABEL, ClusterSpec
from harness.metrics.alerts import CLUSTER_GROUPS, SEED, rule_groups
from harness.metrics.cadence import CADENCE
from harness.paths import KIND_MANIFESTS

__all__ = [
    "BUCKETS",
    "FIXTURES",
    "PROBE_MOUNT",
    "TASK_SECRETS",
    "RenderedManifests",
    "S3Credentials",
    "manifest_files",
    "mlflow_allowed_hosts",
    "probe_source",
    "render_kind_config",
    "render_manifests",
    "task_env",
]

FIXTURES = KIND_MANIFESTS
BUCKETS = {"artifacts": "mlflow-artifacts", "data": "seamcheck-data"}
TASK_SECRETS = {"env": "seamcheck-task-env", "probe": "seamcheck-task-probe"}
PROBE_MOUNT = "/seamcheck/probe"
SCRAPE_INTERVAL = CADENCE.scrape  # the local profile's too: windows need >= 2 scrapes


@dataclass(frozen=True)
class S3Credentials:
    access_key: str
    secret_key: str


@dataclass(frozen=True)
class RenderedManifests:
    """file stem -> the documents it holds, in apply order."""

    files: dict[str, list[dict[str, Any]]]

    def documents(self) -> list[dict[str, Any]]:
        return [doc for docs in self.files.values() for doc in docs]

    def text(self, stem: str) -> str:
        return yaml.safe_dump_all(self.files[stem], sort_keys=False)


def _env() -> jinja2.Environment:
    return jinja2.Environment(loader=jinja2.FileSystemLoader(str(FIXTURES)), undefined=jinja2.StrictUndefined,
                              trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True)


def _load_all(text: str, where: str) -> list[dict[str, Any]]:
    try:
        return [doc for doc in yaml.safe_load_all(text) if doc]
    except yaml.YAMLError as exc:  # a template bug: say which file
        raise ValueError(f"{where} rendered to invalid YAML: {exc}") from None


def render_kind_config(spec: ClusterSpec) -> str:
    """The `kind create cluster --config` file (YAML text, comments kept for the reader)."""
    return _env().get_template("cluster.yaml.j2").render(spec=spec)


def probe_source() -> str:
    """The task probe as the sitecustomize.py the tasks import (the module plus its call)."""
    return inspect.getsource(task_log_probe) + "\n\ninstall()\n"


def mlflow_allowed_hosts(spec: ClusterSpec) -> list[str]:
    """Host headers MLflow's server accepts: its Service names, loopback (NodePort, port-forward)
    and private IPs (kubelet probes), each with and without a port."""
    ns = spec.system_namespace
    names = ["mlflow", f"mlflow.{ns}", f"mlflow.{ns}.svc", f"mlflow.{ns}.svc.cluster.local", "localhost", "127.0.0.1"]
    return [h for name in names for h in (name, f"{name}:*")] + ["10.*", "172.*", "192.168.*"]


def task_env(spec: ClusterSpec, s3: S3Credentials) -> dict[str, str]:
    """Environment of every pipeline task: S3 for boto3 and MLflow, and the probe on PYTHONPATH."""
    minio = spec.in_cluster()["minio"]
    return {
        "AWS_ACCESS_KEY_ID": s3.access_key,
        "AWS_SECRET_ACCESS_KEY": s3.secret_key,
        "AWS_ENDPOINT_URL": minio,
        "MLFLOW_S3_ENDPOINT_URL": minio,
        "AWS_DEFAULT_REGION": "us-east-1",
        "PYTHONPATH": PROBE_MOUNT,
    }


def manifest_files(*, knative_owned: bool) -> list[str]:
    """Template stems in apply order; Knative's settings only when the harness installed Knative."""
    stems = sorted(p.name[: -len(".yaml.j2")] for p in (FIXTURES / "stack").glob("*.yaml.j2"))
    return [s for s in stems if knative_owned or s != "45-knative-config"]


def render_manifests(spec: ClusterSpec, s3: S3Credentials, *, knative_owned: bool,
                     namespaces: Iterable[str] | None = None,
                     chaos_labelled: Iterable[str] | None = None) -> RenderedManifests:
    """Every manifest of the harness's services for `spec`. `namespaces`: which to create
    (default: all the harness's); `chaos_labelled`: which get seamcheck.io/chaos=allowed
    (default: all on kind, none on an existing cluster)."""
    namespaces = list(namespaces if namespaces is not None else spec.harness_namespaces)
    if chaos_labelled is None:
        chaos_labelled = namespaces if spec.is_kind else []
    base = {
        "spec": spec, "s3": s3, "buckets": BUCKETS, "in_cluster": spec.in_cluster(),
        "namespaces": namespaces, "chaos_labelled": list(chaos_labelled), "scrape_interval": SCRAPE_INTERVAL,
        "ingress": spec.ingress_service, "task_secrets": TASK_SECRETS, "task_env": task_env(spec, s3),
        "probe_source": probe_source(), "chaos_label": CHAOS_LABEL, "chaos_allowed": CHAOS_ALLOWED,
        "mlflow_allowed_hosts": mlflow_allowed_hosts(spec),
        "dashboard_groups": rule_groups(CLUSTER_GROUPS, SEED),  # 60-prometheus-rule: rendered, never applied
    }
    # Prometheus reads its config at start: a hash of the inputs that shape it rolls the pod on change.
    base["prometheus_config_hash"] = hashlib.sha256(
        f"{spec.serving_namespace}|{SCRAPE_INTERVAL}|{spec.images['prometheus']}".encode()).hexdigest()[:16]
    env = _env()
    files = {}
    for stem in manifest_files(knative_owned=knative_owned):
        text = env.get_template(f"stack/{stem}.yaml.j2").render(**base)
        files[stem] = _load_all(text, f"harness/cluster/manifests/stack/{stem}.yaml.j2")
    return RenderedManifests(files)
