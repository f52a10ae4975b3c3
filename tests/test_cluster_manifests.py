"""Everything the cluster profiles render, for every matrix row, checked without a cluster:

* every Kubernetes manifest against the OpenAPI schema of each of the row's Kubernetes versions
  (kubernetes-validate, strict: unknown fields are errors);
* the kind cluster config (node image, labels, taints, port mappings) and its agreement with the
  NodePort services;
* InferenceServices against a schema DERIVED from KServe 0.14's v1beta1 types (the real CRD
  schema is a release asset that cannot be downloaded here), Kubernetes parts by reference to
  the real Kubernetes schema;
* the submitted pipeline's Kubernetes platform spec against a schema DERIVED from kfp-kubernetes
  1.3.0's KubernetesExecutorConfig proto, and the whole submitted pipeline against the row's own
  kfp-pipeline-spec protos (strict parse) in the pipeline role environment.
"""
from __future__ import annotations

import ast
import copy
import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import jsonschema
import kubernetes_validate
import pytest
import referencing
import yaml
from kubernetes_validate import utils as kv_utils

from harness.cluster.commands import Kubectl
from harness.cluster.faults import mlflow_cut_policy
from harness.cluster.install import COMPONENTS, install_plan
from harness.cluster.kfp import GPU_TOLERATION, prepare_submission, split_documents
from harness.cluster.render import (
    FIXTURES,
    PROBE_MOUNT,
    TASK_SECRETS,
    S3Credentials,
    probe_source,
    render_kind_config,
    render_manifests,
    task_env,
)
from harness.cluster.spec import KIND_NODE_PORTS, cluster_spec, newest_kubernetes
from harness.matrix import load_matrix

REPO = Path(__file__).resolve().parents[1]
MATRIX = load_matrix()
ROWS = sorted(MATRIX.rows)
PROFILES = ("kind", "kind-gpu", "cloud")
CREDS = S3Credentials("seamcheck-test", "not-a-secret")


def _rendered(row_name: str, profile: str):
    spec = cluster_spec(MATRIX.row(row_name), profile)
    return spec, render_manifests(spec, CREDS, knative_owned=profile != "cloud")


# ------------------------------------------------------------------------ Kubernetes schemas
def test_kubernetes_validate_ships_a_schema_for_every_rows_kubernetes_version() -> None:
    shipped = {kv_utils.major_minor(v) for v in kv_utils.all_versions()}
    wanted = {v for row in MATRIX.rows.values() for v in row.kubernetes}
    assert wanted <= shipped, f"kubernetes-validate lacks {sorted(wanted - shipped)} (ships {sorted(shipped)})"


def _extra_manifests(spec) -> list[dict]:
    """Manifests built in code rather than templates: the NetworkPolicy fault and the GPU probe pod."""
    from kubernetes import client as k8s

    from harness.cluster.gpu import _probe_pod

    policy = mlflow_cut_policy(spec.kfp_namespace, spec.system_namespace, {"app.kubernetes.io/name": "mlflow"},
                               ["10.244.1.7", "fd00::7"])
    template = k8s.V1Pod(spec=k8s.V1PodSpec(
        containers=[k8s.V1Container(name="main", image="python:3.11-slim", resources=k8s.V1ResourceRequirements(
            limits={"cpu": "1", "memory": "2Gi", "nvidia.com/gpu": "1"}))],
        tolerations=[k8s.V1Toleration(**{k: v for k, v in GPU_TOLERATION.items()})]))
    return [policy, _probe_pod(k8s.ApiClient(), template, spec.kfp_namespace)]


def test_every_rendered_manifest_validates_against_each_of_the_rows_kubernetes_versions() -> None:
    seen: set[tuple[str, str]] = set()
    checked = 0
    for row_name in ROWS:
        row = MATRIX.row(row_name)
        for profile in PROFILES:
            spec, rendered = _rendered(row_name, profile)
            # the PrometheusRule is the operator's kind, not Kubernetes': checked on its own below
            docs = [d for d in rendered.documents() if d["kind"] != "PrometheusRule"] + _extra_manifests(spec)
            assert len({(d["kind"], d["metadata"].get("namespace"), d["metadata"]["name"]) for d in docs}) == len(docs)
            for version in row.kubernetes:
                for doc in docs:
                    key = (version, json.dumps(doc, sort_keys=True))
                    if key in seen:
                        continue
                    seen.add(key)
                    try:
                        used = kubernetes_validate.validate(doc, version, strict=True)
                    except kubernetes_validate.ValidationError as exc:
                        pytest.fail(f"{row_name}/{profile}: {doc['kind']} {doc['metadata']['name']} is invalid for "
                                    f"Kubernetes {version}: {exc.message} at {list(exc.absolute_path)}")
                    assert used == version  # validated with that version's own schema, not an older one
                    checked += 1
    assert checked > 100


def test_the_prometheus_rule_holds_the_shipped_cluster_rules(tmp_path) -> None:
    """60-prometheus-rule: the Prometheus Operator's PrometheusRule around cluster.rules.yml; its
    spec is a rules file promtool accepts (the operator's CRD schema is not available here)."""
    import shutil

    from harness.metrics.alerts import CLUSTER_RULES_FILE
    from harness.procs import run_command

    _, rendered = _rendered(MATRIX.default_row, "kind")
    (rule,) = rendered.files["60-prometheus-rule"]
    assert rule["apiVersion"] == "monitoring.coreos.com/v1" and rule["kind"] == "PrometheusRule"
    assert set(rule) == {"apiVersion", "kind", "metadata", "spec"} and set(rule["spec"]) == {"groups"}
    assert rule["spec"]["groups"] == yaml.safe_load(CLUSTER_RULES_FILE.read_text())["groups"]
    if shutil.which("promtool"):
        path = tmp_path / "rule.yml"
        path.write_text(yaml.safe_dump(rule["spec"]))
        done = run_command(["promtool", "check", "rules", str(path)], timeout=60)
        assert done.returncode == 0, done.stdout + done.stderr


def test_manifests_differ_by_profile_only_where_they_should() -> None:
    _, kind = _rendered(MATRIX.default_row, "kind")
    _, cloud = _rendered(MATRIX.default_row, "cloud")
    node_ports = lambda r: sorted(d["metadata"]["name"] for d in r.documents()  # noqa: E731
                                  if d["kind"] == "Service" and d["spec"].get("type") == "NodePort")
    assert node_ports(kind) == ["minio-nodeport", "mlflow-nodeport", "prometheus-nodeport", "seamcheck-ingress",
                                "seamcheck-kfp-api", "seamcheck-kfp-minio"]
    assert node_ports(cloud) == []
    assert "45-knative-config" not in cloud.files  # Knative of an existing cluster is not reconfigured
    labels = {d["metadata"]["name"]: d["metadata"]["labels"] for d in kind.documents() if d["kind"] == "Namespace"}
    assert all(v.get("seamcheck.io/chaos") == "allowed" for v in labels.values()), labels
    cloud_ns = [d for d in cloud.documents() if d["kind"] == "Namespace"]
    assert cloud_ns and all("seamcheck.io/chaos" not in d["metadata"]["labels"] for d in cloud_ns)


def test_services_use_the_rows_versions_and_reach_each_other_in_cluster() -> None:
    for row_name in ROWS:
        row = MATRIX.row(row_name)
        spec, rendered = _rendered(row_name, "kind")
        by_name = {(d["kind"], d["metadata"]["name"]): d for d in rendered.documents()}
        mlflow = by_name[("Deployment", "mlflow")]["spec"]["template"]["spec"]["containers"][0]
        assert mlflow["image"] == f"python:{row.python}-slim"
        command = mlflow["args"][0]
        for pin in row.role("tracking").pins:
            assert f"'{pin}'" in command, (row_name, pin)
        assert "--default-artifact-root s3://mlflow-artifacts/" in command and "--no-serve-artifacts" in command
        secret = by_name[("Secret", "seamcheck-s3")]
        assert secret["metadata"]["namespace"] == spec.serving_namespace
        assert secret["metadata"]["annotations"]["serving.kserve.io/s3-endpoint"] == \
            f"minio.{spec.system_namespace}.svc.cluster.local:9000"
        env = by_name[("Secret", TASK_SECRETS["env"])]["stringData"]
        assert env == task_env(spec, CREDS) and env["PYTHONPATH"] == PROBE_MOUNT
        probe = by_name[("Secret", TASK_SECRETS["probe"])]["stringData"]["sitecustomize.py"]
        compile(probe, "sitecustomize.py", "exec")
        assert probe == probe_source() and probe.rstrip().endswith("install()")
        binding = by_name[("RoleBinding", "seamcheck-pipeline-runner-deploys")]
        assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "pipeline-runner",
                                        "namespace": spec.kfp_namespace}]


def _host_rendered(row_name: str):
    """The host profile's rendering: kind's templates with the images it makes on this machine."""
    spec = dataclasses.replace(
        cluster_spec(MATRIX.row(row_name), "host"), tracking_image="dev.local/seamcheck/mlflow:tracking-0123",
        s3_server="moto", images={"minio": "dev.local/seamcheck/s3-moto:image-s3-0123", "mc": "unused:0",
                                  "prometheus": "dev.local/seamcheck/prometheus:v2.53.2"})
    namespaces = list(spec.harness_namespaces)
    return spec, render_manifests(spec, CREDS, knative_owned=False, namespaces=namespaces, chaos_labelled=namespaces)


def test_the_host_cluster_renders_the_same_services_with_its_own_images() -> None:
    for row_name in ROWS:
        row = MATRIX.row(row_name)
        spec, host = _host_rendered(row_name)
        _, cloud = _rendered(row_name, "cloud")
        hosts = {(d["kind"], d["metadata"]["name"]): d for d in host.documents()}
        clouds = {(d["kind"], d["metadata"]["name"]): d for d in cloud.documents()}
        assert set(hosts) == set(clouds)  # no NodePort: the host profile port-forwards, as cloud does
        changed = {k for k in hosts if hosts[k] != clouds[k]}
        assert changed == {("Namespace", ns) for ns in spec.harness_namespaces} | {
            ("Deployment", "mlflow"), ("Deployment", "minio"), ("Job", "minio-buckets"), ("Deployment", "prometheus")}
        mlflow = hosts[("Deployment", "mlflow")]["spec"]["template"]["spec"]["containers"][0]
        cloud_mlflow = clouds[("Deployment", "mlflow")]["spec"]["template"]["spec"]["containers"][0]
        assert mlflow["image"] == spec.tracking_image and mlflow["command"] == ["sh", "-ec"]
        # the same server and flags; only the install before it is gone (the image holds the pins)
        assert mlflow["args"][0].startswith("exec mlflow server") and "pip" not in mlflow["args"][0]
        assert cloud_mlflow["args"][0].endswith(mlflow["args"][0]) and "pip install" in cloud_mlflow["args"][0]
        assert {k: v for k, v in mlflow.items() if k not in ("image", "args")} == \
            {k: v for k, v in cloud_mlflow.items() if k not in ("image", "args")}
        s3 = hosts[("Deployment", "minio")]["spec"]["template"]["spec"]["containers"][0]
        assert s3["image"] == spec.images["minio"] and s3["command"] == ["moto_server", "-H", "0.0.0.0", "-p", "9000"]
        assert "args" not in s3 and s3["readinessProbe"]["httpGet"] == {"path": "/moto-api/", "port": 9000}
        job = hosts[("Job", "minio-buckets")]["spec"]["template"]["spec"]["containers"][0]
        assert job["image"] == spec.images["minio"] and job["command"] == ["python", "-c"]
        compile(job["args"][0], "buckets.py", "exec")
        assert '"mlflow-artifacts"' in job["args"][0] and '"seamcheck-data"' in job["args"][0]
        prom = hosts[("Deployment", "prometheus")]["spec"]["template"]["spec"]["containers"][0]
        assert prom["image"] == spec.images["prometheus"]
        assert all(hosts[("Namespace", ns)]["metadata"]["labels"]["seamcheck.io/chaos"] == "allowed"
                   for ns in spec.harness_namespaces)
        for version in row.kubernetes:
            for doc in (d for d in host.documents() if d["kind"] != "PrometheusRule"):
                kubernetes_validate.validate(doc, version, strict=True)


def test_prometheus_scrapes_queue_proxies_and_model_servers_with_isvc_and_revision_labels() -> None:
    spec, rendered = _rendered(MATRIX.default_row, "kind")
    config_map = next(d for d in rendered.documents() if d["kind"] == "ConfigMap" and
                      d["metadata"]["name"] == "prometheus-config")
    config = yaml.safe_load(config_map["data"]["prometheus.yml"])
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert set(jobs) == {"knative-queue-proxy", "model-servers"}
    for job in jobs.values():
        assert job["kubernetes_sd_configs"] == [{"role": "pod", "namespaces": {"names": [spec.serving_namespace]}}]
        targets = {r.get("target_label") for r in job["relabel_configs"]}
        assert {"isvc", "revision", "namespace", "pod"} <= targets
    keep = [r for r in jobs["knative-queue-proxy"]["relabel_configs"] if r.get("action") == "keep"]
    assert keep == [{"source_labels": ["__meta_kubernetes_pod_container_port_name"], "action": "keep",
                     "regex": "http-usermetric"}]
    address = [r for r in jobs["model-servers"]["relabel_configs"] if r.get("target_label") == "__address__"]
    assert address and address[0]["replacement"] == "${1}:8082"  # MLServer's metrics port


# ------------------------------------------------------------------------ kind cluster config
@pytest.mark.parametrize("profile", ["kind", "kind-gpu"])
@pytest.mark.parametrize("row_name", ROWS)
def test_kind_cluster_config(row_name: str, profile: str) -> None:
    row = MATRIX.row(row_name)
    spec = cluster_spec(row, profile)
    config = yaml.safe_load(render_kind_config(spec))
    assert (config["kind"], config["apiVersion"]) == ("Cluster", "kind.x-k8s.io/v1alpha4")
    assert config["name"] == "seamcheck"
    nodes = config["nodes"]
    image = row.kind_node_images[newest_kubernetes(row)]
    assert {n["image"] for n in nodes} == {image} and "@sha256:" in image
    assert [n["role"] for n in nodes] == ["control-plane", "worker", "worker"] + (["worker"] if profile == "kind-gpu"
                                                                                  else [])
    mappings = nodes[0]["extraPortMappings"]
    assert {m["containerPort"] for m in mappings} == set(KIND_NODE_PORTS.values())
    assert all(m["listenAddress"] == "127.0.0.1" and m["protocol"] == "TCP" for m in mappings)
    assert all(m["hostPort"] == m["containerPort"] for m in mappings)
    gpu_nodes = [n for n in nodes if (n.get("labels") or {}).get("nvidia.com/gpu.present") == "true"]
    if profile == "kind":
        assert gpu_nodes == [] and not any("kubeadmConfigPatches" in n for n in nodes)
        return
    assert len(gpu_nodes) == 1
    gpu = gpu_nodes[0]
    assert gpu["role"] == "worker" and gpu["labels"]["seamcheck.io/role"] == "gpu"
    patches = [yaml.safe_load(p) for p in gpu["kubeadmConfigPatches"]]
    assert patches == [{"kind": "JoinConfiguration", "nodeRegistration": {"taints": [
        {"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"}]}}]


def test_kind_port_mappings_match_the_node_port_services_and_honour_chosen_host_ports() -> None:
    spec = cluster_spec(MATRIX.row(None), "kind", host_ports={"mlflow": 15000, "proxy": 18080})
    config = yaml.safe_load(render_kind_config(spec))
    host_of = {m["containerPort"]: m["hostPort"] for m in config["nodes"][0]["extraPortMappings"]}
    assert host_of[KIND_NODE_PORTS["mlflow"]] == 15000 and host_of[KIND_NODE_PORTS["ingress"]] == 18080
    rendered = render_manifests(spec, CREDS, knative_owned=True)
    node_ports = {p["nodePort"] for d in rendered.documents() if d["kind"] == "Service"
                  and d["spec"].get("type") == "NodePort" for p in d["spec"]["ports"]}
    assert node_ports == set(host_of)  # every published port has its service and vice versa


def test_node_image_override() -> None:
    spec = cluster_spec(MATRIX.row(None), "kind", node_image="kindest/node:v1.29.8@sha256:abc")
    images = {n["image"] for n in yaml.safe_load(render_kind_config(spec))["nodes"]}
    assert images == {"kindest/node:v1.29.8@sha256:abc"}


def test_the_kind_cli_prints_the_same_config() -> None:
    out = subprocess.run([sys.executable, "-m", "harness.cluster.kind_cluster", "config", "--profile",
                          "kind-gpu"], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout == render_kind_config(cluster_spec(MATRIX.row(None), "kind-gpu"))


# ------------------------------------------------------------------------ install plan
def test_install_plan_sources_follow_each_row() -> None:
    for row_name in ROWS:
        row = MATRIX.row(row_name)
        spec, rendered = _rendered(row_name, "kind")
        steps = install_plan(spec, Kubectl(), None, rendered)  # type: ignore[arg-type]
        names = [s.name for s in steps]
        assert [s.component for s in steps] == ["seamcheck", "cert-manager", "knative", "knative", "knative", "knative",
                                                "kserve", "kfp", "kfp", "seamcheck"], names
        sources = [src for s in steps for src in s.sources]
        cm, kn = row.cluster["cert_manager"].lstrip("v"), row.cluster["knative_serving"].lstrip("v")
        assert f"cert-manager/releases/download/v{cm}/cert-manager.yaml" in " ".join(sources)
        assert f"serving/releases/download/knative-v{kn}/serving-core.yaml" in " ".join(sources)
        kourier = f"knative-v{'.'.join(kn.split('.')[:2])}.0"  # net-* patch numbers differ from serving's
        assert f"net-kourier/releases/download/{kourier}/kourier.yaml" in " ".join(sources)
        assert f"kserve/releases/download/v{row.kserve}/kserve.yaml" in " ".join(sources)
        assert f"cluster-scoped-resources?ref={row.kfp_backend}" in " ".join(sources)
        assert f"env/platform-agnostic?ref={row.kfp_backend}" in " ".join(sources)
        assert all(s.deadline_s > 0 for s in steps)
    istio_row = dataclasses.replace(MATRIX.row(None), cluster={**MATRIX.row(None).cluster, "network_layer": "istio",
                                                               "net_istio": "1.13.1"})
    spec = cluster_spec(istio_row, "cloud")
    steps = install_plan(spec, Kubectl(), None, render_manifests(spec, CREDS, knative_owned=True),  # type: ignore
                         components=["knative"])
    network = next(s for s in steps if s.name.startswith("network layer"))
    assert network.name == "network layer: Istio 1.20.4 + net-istio 1.13.1"
    assert any("net-istio/releases/download/knative-v1.13.1/net-istio.yaml" in s for s in network.sources)
    assert spec.ingress_service[:2] == ("istio-system", "istio-ingressgateway")
    assert set(COMPONENTS) == {"cert-manager", "knative", "kserve", "kfp", "seamcheck"}


# ------------------------------------------------------------------------ InferenceService (derived schema)
def _k8s_registry(version: str) -> referencing.Registry:
    root = Path(kubernetes_validate.__file__).parent / "kubernetes-json-schema" / f"v{version}.0-local-strict"
    definitions = json.loads((root / "_definitions.json").read_text())
    return referencing.Resource.from_contents(definitions) @ referencing.Registry()


_K8S = "/api/_definitions.json#/$defs/io.k8s"
#: DERIVED, not KServe's CRD: field names, types and enums of KServe 0.14's v1beta1 Go types
#: (pkg/apis/serving/v1beta1) for the parts the seed and the harness write; strict about unknown
#: keys there so a typo fails here rather than on a cluster.
ISVC_SCHEMA = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "$id": "https://kubernetes.io/api/seamcheck-derived-inferenceservice.json",
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "additionalProperties": False,
    "properties": {
        "apiVersion": {"const": "serving.kserve.io/v1beta1"},
        "kind": {"const": "InferenceService"},
        "metadata": {"$ref": f"{_K8S}.apimachinery.pkg.apis.meta.v1.ObjectMeta"},
        "status": {"type": "object"},
        "spec": {
            "type": "object", "required": ["predictor"], "additionalProperties": False,
            "properties": {"predictor": {
                "type": "object", "additionalProperties": False,
                "properties": {
                    "minReplicas": {"type": "integer", "minimum": 0},
                    "maxReplicas": {"type": "integer", "minimum": 0},
                    "canaryTrafficPercent": {"type": ["integer", "null"], "minimum": 0, "maximum": 100},
                    "serviceAccountName": {"type": "string"},
                    "timeout": {"type": "integer"},
                    "containerConcurrency": {"type": "integer"},
                    "model": {
                        "type": "object", "required": ["modelFormat"], "additionalProperties": False,
                        "properties": {
                            "modelFormat": {"type": "object", "required": ["name"], "additionalProperties": False,
                                            "properties": {"name": {"type": "string", "minLength": 1},
                                                           "version": {"type": "string"}}},
                            "protocolVersion": {"enum": ["v1", "v2", "grpc-v1", "grpc-v2"]},
                            "storageUri": {"type": "string", "pattern": "^(s3|gs|pvc|https?|hdfs|webhdfs|oci|hf)://"},
                            "runtime": {"type": "string"},
                            "resources": {"$ref": f"{_K8S}.api.core.v1.ResourceRequirements"},
                            "env": {"type": "array", "items": {"$ref": f"{_K8S}.api.core.v1.EnvVar"}},
                        },
                    },
                },
            }},
        },
    },
}


def _seed_deploy_manifest(predictor_requests: str = "") -> dict:
    """The InferenceService the pipeline's deploy step builds, read from its source (the dict
    literal in harness/pipeline/components.py) so this test follows the real step."""
    tree = ast.parse((REPO / "harness/pipeline/components.py").read_text())
    func = next(n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef) and n.name == "deploy_to_kserve")
    assign = next(n for n in ast.walk(func) if isinstance(n, ast.Assign)
                  and any(isinstance(t, ast.Name) and t.id == "inference_service" for t in n.targets))
    names = {"isvc_name": "recommendation-classifier", "serving_namespace": "model-serving",
             "mlflow_run_id": "0123456789abcdef", "canary_traffic_percent": 20,
             "storage_uri": "s3://mlflow-artifacts/1/0123456789abcdef/artifacts/model",
             "predictor_requests": predictor_requests, "json": json}
    return eval(compile(ast.Expression(assign.value), "components.py", "eval"), {}, names)  # noqa: S307


def test_inference_services_validate_against_the_derived_kserve_schema() -> None:
    from harness.serving.isvc import service_from_template, storage_uri_of, with_storage_uri

    seed = _seed_deploy_manifest()
    canary = service_from_template(seed, "rc-canary", storage_uri_of(seed))  # every suite's manifest builder
    broken = with_storage_uri(seed, storage_uri_of(seed)[:-6])
    smaller = _seed_deploy_manifest('{"cpu": "250m", "memory": "1Gi"}')  # the kind profile's requests
    assert smaller["spec"]["predictor"]["model"]["resources"]["requests"] == {"cpu": "250m", "memory": "1Gi"}
    assert seed["spec"]["predictor"]["model"]["resources"]["requests"] == {"cpu": "1", "memory": "2Gi"}
    for version in sorted({v for row in MATRIX.rows.values() for v in row.kubernetes}):
        validator = jsonschema.Draft202012Validator(ISVC_SCHEMA, registry=_k8s_registry(version))
        for manifest in (seed, canary, broken, smaller):
            validator.validate(manifest)
    # The schema is not a rubber stamp: the seed's own mistakes are caught.
    validator = jsonschema.Draft202012Validator(ISVC_SCHEMA, registry=_k8s_registry("1.30"))
    bad = copy.deepcopy(seed)
    bad["spec"]["predictor"]["model"]["protocolVersion"] = "V2"
    bad["spec"]["predictor"]["canaryTrafficPercent"] = 120
    bad["spec"]["predictor"]["model"]["storageUri"] = "runs:/abc/model"
    bad["spec"]["predictor"]["model"]["resources"]["limits"]["cpu"] = {"cores": 2}
    errors = {".".join(map(str, e.absolute_path)) for e in validator.iter_errors(bad)}
    assert {"spec.predictor.model.protocolVersion", "spec.predictor.canaryTrafficPercent",
            "spec.predictor.model.storageUri", "spec.predictor.model.resources.limits.cpu"} <= errors, errors


# ------------------------------------------------------------------------ submitted pipeline (KFP)
#: DERIVED from kfp-kubernetes 1.3.0's KubernetesExecutorConfig proto (field names as protojson
#: writes them), for the entries the harness adds; strict about unknown keys.
PLATFORM_SCHEMA = {
    "type": "object", "required": ["platforms"], "additionalProperties": False,
    "properties": {"platforms": {
        "type": "object", "additionalProperties": False,
        "properties": {"kubernetes": {
            "type": "object", "required": ["deploymentSpec"], "additionalProperties": False,
            "properties": {"deploymentSpec": {
                "type": "object", "required": ["executors"], "additionalProperties": False,
                "properties": {"executors": {"type": "object", "additionalProperties": {
                    "type": "object", "additionalProperties": False,
                    "properties": {
                        "secretAsEnv": {"type": "array", "items": {
                            "type": "object", "required": ["secretName", "keyToEnv"], "additionalProperties": False,
                            "properties": {"secretName": {"type": "string", "minLength": 1},
                                           "keyToEnv": {"type": "array", "minItems": 1, "items": {
                                               "type": "object", "required": ["secretKey", "envVar"],
                                               "additionalProperties": False,
                                               "properties": {"secretKey": {"type": "string"},
                                                              "envVar": {"type": "string"}}}}}}},
                        "secretAsVolume": {"type": "array", "items": {
                            "type": "object", "required": ["secretName", "mountPath"], "additionalProperties": False,
                            "properties": {"secretName": {"type": "string"}, "mountPath": {"type": "string"},
                                           "optional": {"type": "boolean"}}}},
                        "tolerations": {"type": "array", "items": {
                            "type": "object", "additionalProperties": False,
                            "properties": {"key": {"type": "string"},
                                           "operator": {"enum": ["Exists", "Equal"]},
                                           "value": {"type": "string"},
                                           "effect": {"enum": ["NoSchedule", "PreferNoSchedule", "NoExecute"]},
                                           "tolerationSeconds": {"type": ["integer", "string"]}}}},
                        "nodeSelector": {"type": "object"},
                    }}}},
            }},
        }},
    }},
}


@pytest.fixture(scope="module")
def compiled_pipeline(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The pipeline compiled by the default row's kfp, in its pipeline role environment."""
    from harness.envs import ensure_env

    row = MATRIX.row(None)
    env = ensure_env(row, "pipeline")
    out = tmp_path_factory.mktemp("compiled") / "pipeline.yaml"
    proc = subprocess.run([str(env.python), "-m", "harness.pipeline.compile", "--out", str(out), "--packages-json",
                           json.dumps(list(row.role("pipeline").pins))], cwd=REPO, capture_output=True, text=True,
                          timeout=300, env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    return out.read_text()


def _submission(compiled: str, profile: str):
    from harness.profiles.cloud import CloudProfile
    from harness.profiles.kind import KindGpuProfile, KindProfile

    cls = {"kind": KindProfile, "kind-gpu": KindGpuProfile, "cloud": CloudProfile}[profile]
    spec = cluster_spec(MATRIX.row(None), profile)
    return prepare_submission(compiled, env_secret=TASK_SECRETS["env"], env_keys=list(task_env(spec, CREDS)),
                              probe_secret=TASK_SECRETS["probe"], probe_mount=PROBE_MOUNT,
                              gpu_toleration=cls.gpu_toleration, drop_accelerator=cls.drop_accelerator, fit=cls.fit)


@pytest.mark.parametrize("profile", PROFILES)
def test_submitted_pipeline_platform_spec(compiled_pipeline: str, profile: str) -> None:
    submission = _submission(compiled_pipeline, profile)
    pipeline, platform = split_documents(submission.yaml_text)
    jsonschema.Draft202012Validator(PLATFORM_SCHEMA).validate(platform)
    executors = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    assert set(executors) == set(pipeline["deploymentSpec"]["executors"])
    for label, cfg in executors.items():
        assert cfg["secretAsVolume"] == [{"secretName": TASK_SECRETS["probe"], "mountPath": PROBE_MOUNT,
                                          "optional": False}]
        keys = [k["envVar"] for k in cfg["secretAsEnv"][0]["keyToEnv"]]
        assert {"AWS_ENDPOINT_URL", "MLFLOW_S3_ENDPOINT_URL", "PYTHONPATH"} <= set(keys)
        assert ("tolerations" in cfg) == (label == "exec-train-model" and profile != "kind"), (label, cfg)
    train = pipeline["deploymentSpec"]["executors"]["exec-train-model"]["container"]["resources"]
    original, _ = split_documents(compiled_pipeline)
    assert original["deploymentSpec"]["executors"]["exec-train-model"]["container"]["resources"]["cpuLimit"] == 4.0
    if profile == "cloud":
        assert train == original["deploymentSpec"]["executors"]["exec-train-model"]["container"]["resources"]
    else:
        assert (train["cpuLimit"], train["memoryLimit"]) == (1.0, round(2 * 2**30 / 1e9, 9))
    assert ("accelerator" in train) == (profile != "kind")
    assert executors["exec-train-model"].get("tolerations", [GPU_TOLERATION])[0] == GPU_TOLERATION
    dags = [pipeline["root"]["dag"]] + [c["dag"] for c in pipeline["components"].values() if "dag" in c]
    tasks = [t for dag in dags for t in dag["tasks"].values()]
    assert len(tasks) == 6 and all(t["cachingOptions"] == {"enableCache": False} for t in tasks)  # 5 + condition


def test_submitted_pipeline_parses_with_the_rows_kfp_protos(compiled_pipeline: str, tmp_path: Path) -> None:
    """The real check for KFP objects: the row's kfp-pipeline-spec parses the submitted
    PipelineSpec and PlatformSpec strictly (unknown fields are errors), as the API server does."""
    from harness.envs import ensure_env

    env = ensure_env(MATRIX.row(None), "pipeline")
    path = tmp_path / "submitted.yaml"
    path.write_text(_submission(compiled_pipeline, "kind-gpu").yaml_text)
    code = ("import sys, yaml\nfrom google.protobuf import json_format\n"
            "from kfp.pipeline_spec import pipeline_spec_pb2 as ps\n"
            "docs = list(yaml.safe_load_all(open(sys.argv[1])))\n"
            "json_format.ParseDict(docs[0], ps.PipelineSpec())\n"
            "json_format.ParseDict(docs[1], ps.PlatformSpec())\nprint('ok')\n")
    proc = subprocess.run([str(env.python), "-c", code, str(path)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr[-2000:]


def test_fixture_templates_are_all_rendered() -> None:
    on_disk = {p.name for p in (FIXTURES / "stack").glob("*.yaml.j2")}
    _, rendered = _rendered(MATRIX.default_row, "kind")
    assert {f"{stem}.yaml.j2" for stem in rendered.files} == on_disk


def test_fixed_node_ports_sit_in_the_static_band() -> None:
    """Kubernetes keeps 30000-30085 of the default NodePort range for fixed allocations (KEP-3668);
    random allocation takes from above first, so no other Service can take one of ours first."""
    from harness.cluster.spec import KIND_NODE_PORTS, STATIC_NODE_PORT_BAND

    size = 32767 - 30000 + 1
    assert len(STATIC_NODE_PORT_BAND) == min(max(16, size // 32), 128) == 86
    assert all(port in STATIC_NODE_PORT_BAND for port in KIND_NODE_PORTS.values()), KIND_NODE_PORTS
