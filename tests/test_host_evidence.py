"""What the cluster profiles claim, proven on real Kubernetes (the `host` profile's cluster: real
kube-apiserver, controllers, scheduler, kubelets, containerd, runc, kube-proxy, CoreDNS and an
enforcing NetworkPolicy controller), with evidence from real Pods:

* the NetworkPolicy fault (harness/cluster/faults.py) cuts a Pod of the pipeline's namespace from
  MLflow's Pod and Service, and only from it; lifting it restores the path (probed from the Pod);
* pod kill and scale faults act on real Deployments, and their controllers answer;
* the chaos guard refuses unlisted, unlabelled and missing namespaces before anything changes;
* GPU placement: the training Pod lands on the GPU node and only there, and is Unschedulable while
  that node is cordoned;
* the cloud profile's discovery and version-mismatch report, run against this cluster.

The MLflow the policy cuts is the real one the host profile installs (the row's tracking server in
seamcheck-system); the S3 store beside it, which must stay reachable, is its stand-in (moto's
server behind the minio Service, harness/host/images.toml says why).
"""
from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from harness.cluster.errors import ChaosRefused, ClusterError
from harness.cluster.faults import CUT_POLICY_NAME
from harness.cluster.gpu import (
    GPU_RESOURCE,
    advertise_fake_gpu,
    gpu_pool_problems,
    placement_evidence,
    unschedulable_when_cordoned,
)
from harness.cluster.guard import ChaosGuard
from harness.cluster.kfp import GPU_TOLERATION
from harness.cluster.spec import CHAOS_ALLOWED, CHAOS_LABEL
from harness.host.probe import tcp_probe
from tests.kube import Recorder, wait_for

PAUSE = "dev.local/seamcheck/pause:3.9"
MLFLOW_LABELS = {"app.kubernetes.io/name": "mlflow"}


def _wait(what: str, check: Callable[[], Any], deadline_s: float = 120, interval_s: float = 0.5) -> Any:
    """tests/kube.py's wait_for, with the longer deadline and slower poll real pods need."""
    return wait_for(what, check, deadline_s=deadline_s, interval_s=interval_s)


def _pod(name: str, ns: str, *, labels: dict | None = None, image: str = PAUSE, args: list | None = None,
         resources: dict | None = None, tolerations: list | None = None) -> dict:
    container: dict[str, Any] = {"name": "main", "image": image, "imagePullPolicy": "Never"}
    if args:
        container["args"] = args
    if resources:
        container["resources"] = resources
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": ns, "labels": labels or {}},
            "spec": {"containers": [container], "automountServiceAccountToken": False,
                     "terminationGracePeriodSeconds": 0, "tolerations": tolerations or []}}


def _running(core: k8s.CoreV1Api, ns: str, name: str, deadline_s: float = 120) -> k8s.V1Pod:
    def ready() -> k8s.V1Pod | None:
        pod = core.read_namespaced_pod(name, ns)
        return pod if pod.status.phase == "Running" and pod.status.pod_ip else None
    return _wait(f"pod {ns}/{name} Running", ready, deadline_s)


def _deployment(name: str, ns: str, replicas: int, *, labels: dict | None = None, image: str = PAUSE,
                args: list | None = None, port: int | None = None) -> dict:
    labels = labels or {"app": name}
    pod = _pod(name, ns, labels=labels, image=image, args=args)
    if port:
        pod["spec"]["containers"][0]["ports"] = [{"containerPort": port}]
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name, "namespace": ns, "labels": labels},
            "spec": {"replicas": replicas, "selector": {"matchLabels": labels},
                     "template": {"metadata": {"labels": labels}, "spec": pod["spec"]}}}


def _pods(core: k8s.CoreV1Api, ns: str, selector: str) -> list[k8s.V1Pod]:
    return [p for p in core.list_namespaced_pod(ns, label_selector=selector).items
            if p.metadata.deletion_timestamp is None]


# ------------------------------------------------------------------------------ NetworkPolicy
def test_the_network_policy_fault_cuts_a_pipeline_pod_from_mlflow_and_lifting_it_restores_the_path(host) -> None:
    core = k8s.CoreV1Api(host.api)
    system, pipeline = host.spec.system_namespace, host.kfp_namespace
    core.create_namespaced_pod(pipeline, _pod("task", pipeline, labels={"pipeline/runid": "evidence"}))
    _running(core, pipeline, "task")

    def ready(selector: str) -> list[k8s.V1Pod]:
        return [p for p in _pods(core, system, selector) if p.status.phase == "Running" and p.status.pod_ip
                and all(c.ready for c in p.status.container_statuses or [])]

    mlflow_pod = _wait("MLflow ready", lambda: ready("app.kubernetes.io/name=mlflow"))[0]
    s3_pod = _wait("the S3 store ready", lambda: ready("app.kubernetes.io/name=minio"))[0]
    targets = {"mlflow pod": (mlflow_pod.status.pod_ip, 5000),
               "mlflow service": (core.read_namespaced_service("mlflow", system).spec.cluster_ip, 5000),
               "minio pod": (s3_pod.status.pod_ip, 9000)}
    in_task = host.cluster.in_pod(pipeline, "task")

    def probe(key: str):
        return tcp_probe(in_task, *targets[key], timeout_s=2)

    before = {k: _wait(f"{k} answering the task pod", lambda k=k: (p := probe(k)).connected and p) for k in targets}
    assert host.cluster.enforcer and not host.cluster.network_policy, host.cluster.network_policy
    policy = host.fault_cut_pipeline_from_mlflow()
    try:
        assert policy["metadata"]["name"] == CUT_POLICY_NAME
        cut = {k: _wait(f"{k} cut from the task pod", lambda k=k: (not (p := probe(k)).connected) and p, 30)
               for k in ("mlflow pod", "mlflow service")}
        beside = probe("minio pod")
        assert beside.connected, f"only MLflow may be cut, but {beside.describe()}"
        # A refusal, not a silent drop: the enforcer REJECTs, so the pipeline's client fails at once.
        assert all(p.seconds < 1.5 for p in cut.values()), {k: p.describe() for k, p in cut.items()}
    finally:
        assert host.fault_restore_pipeline_to_mlflow() is True
    after = {k: _wait(f"{k} answering again", lambda k=k: (p := probe(k)).connected and p, 30) for k in targets}
    print(json.dumps({"before": {k: p.describe() for k, p in before.items()},
                      "cut": {k: p.describe() for k, p in cut.items()}, "beside": beside.describe(),
                      "after": {k: p.describe() for k, p in after.items()}, "enforcer": host.cluster.enforcer}, indent=1))
    core.delete_namespaced_pod("task", pipeline, grace_period_seconds=0)


# ------------------------------------------------------------------------------ pods and scale
def test_pod_kill_and_scale_faults_act_on_a_real_deployment_and_its_controllers_answer(host) -> None:
    core, apps = k8s.CoreV1Api(host.api), k8s.AppsV1Api(host.api)
    ns = host.namespace
    apps.create_namespaced_deployment(ns, _deployment("web", ns, 2))

    def running() -> list[str]:
        pods = [p for p in _pods(core, ns, "app=web") if p.status.phase == "Running"]
        return sorted(p.metadata.name for p in pods) if len(pods) == 2 else []

    first = _wait("2 web pods Running", running)
    deleted = host.fault_delete_pods(ns, "app=web", grace_period_s=0)
    assert sorted(deleted) == first
    replaced = _wait("the ReplicaSet's 2 replacements Running", lambda: (r := running()) and not set(r) & set(first) and r)
    assert host.fault_scale(ns, "web", 0) == 2
    _wait("web scaled to no pod", lambda: not _pods(core, ns, "app=web"))
    # Scale's spec.replicas is omitempty: zero comes back as no field (None in the client).
    assert (apps.read_namespaced_deployment_scale("web", ns).spec.replicas or 0) == 0
    assert apps.read_namespaced_deployment("web", ns).spec.replicas == 0
    assert host.faults.restore_scale(ns, "web") is True
    back = _wait("web back to 2 Running pods", running)
    print(json.dumps({"first": first, "deleted": deleted, "replaced": replaced, "after_restore": back}))
    apps.delete_namespaced_deployment("web", ns)


# ------------------------------------------------------------------------------ the chaos guard
def test_the_chaos_guard_refuses_real_namespaces_before_anything_changes(host) -> None:
    core, apps = k8s.CoreV1Api(host.api), k8s.AppsV1Api(host.api)
    core.create_namespace({"metadata": {"name": "team-prod", "labels": {CHAOS_LABEL: CHAOS_ALLOWED}}})
    core.create_namespace({"metadata": {"name": "team-dev"}})
    try:
        for ns in ("team-prod", "team-dev"):
            _wait(f"the default ServiceAccount of {ns}",
                  lambda ns=ns: core.list_namespaced_service_account(ns, field_selector="metadata.name=default").items)
            apps.create_namespaced_deployment(ns, _deployment("web", ns, 1))
        _wait("team-prod's pod Running", lambda: [p for p in _pods(core, "team-prod", "app=web")
                                                 if p.status.phase == "Running"])
        guard = ChaosGuard.of(host.api, ["team-dev", "absent"], cluster="the host cluster")
        host.faults.guard = guard  # as --chaos-namespaces=team-dev,absent would
        refusals = {}
        for label, attempt, match in (
                ("labelled, not listed", lambda: host.fault_delete_pods("team-prod", "app=web"), "not listed"),
                ("listed, not labelled", lambda: host.fault_scale("team-dev", "web", 0), "lacks the label"),
                ("missing", lambda: host.fault_delete_pods("absent", "app=x"), "does not exist"),
                ("policy", lambda: host.faults.cut_pipeline_from_mlflow("team-prod", "team-dev", MLFLOW_LABELS),
                 "not listed")):
            with pytest.raises(ChaosRefused, match=match) as refused:
                attempt()
            refusals[label] = str(refused.value)
        assert len(_pods(core, "team-prod", "app=web")) == 1
        assert apps.read_namespaced_deployment_scale("web", "team-dev").spec.replicas == 1
        assert not k8s.NetworkingV1Api(host.api).list_namespaced_network_policy("team-prod").items
        print(json.dumps(refusals, indent=1))
    finally:
        host.faults.guard = host.guard
        for ns in ("team-prod", "team-dev"):
            core.delete_namespace(ns)


# ------------------------------------------------------------------------------ GPU
def _training_pod(host, name: str, *, toleration: bool = True) -> dict:
    """The train task's pod as the host profile submits it: kind's fit (1 CPU, 2Gi; KFP makes limits
    requests too), the accelerator request, and the toleration the harness adds for it."""
    fit = {"cpu": host.fit["cpu"], "memory": f"{host.fit['memory_gib']}Gi", GPU_RESOURCE: "1"}
    return _pod(name, host.kfp_namespace, labels={"seamcheck.io/task": "train-model"},
                resources={"limits": fit, "requests": fit}, tolerations=[dict(GPU_TOLERATION)] if toleration else [])


def test_the_gpu_node_looks_like_a_cloud_gpu_pool_and_its_kubelet_lists_the_fake_gpu(host) -> None:
    core = k8s.CoreV1Api(host.api)
    gpu = core.read_node(host.cluster.gpu_node_name)
    assert gpu_pool_problems(gpu) == []
    assert gpu.status.capacity[GPU_RESOURCE] == "1" and gpu.status.allocatable[GPU_RESOURCE] == "1"
    others = [n for n in core.list_node().items if n.metadata.name != gpu.metadata.name]
    assert others and all(GPU_RESOURCE not in (n.status.allocatable or {}) for n in others)
    assert all(c.status == "True" for n in [gpu, *others] for c in n.status.conditions if c.type == "Ready")


def test_the_fake_gpu_is_advertised_through_the_node_status_subresource_and_the_kubelet_lists_it(host) -> None:
    """advertise_fake_gpu's one JSON patch on the status subresource, then the GPU node's real kubelet
    copying the extended resource into allocatable (what kind-gpu relies on); a second call patches nothing."""
    from kubernetes import config as k8s_config

    core = k8s.CoreV1Api(host.api)
    name = host.cluster.gpu_node_name
    core.patch_node_status(name, [{"op": "remove", "path": "/status/capacity/nvidia.com~1gpu"}])
    _wait("the kubelet dropping the GPU from allocatable", lambda: GPU_RESOURCE not in (
        core.read_node(name).status.allocatable or {}), 60)
    recorder = Recorder(k8s_config.new_client_from_config(config_file=str(host.kubeconfig)))
    seen = advertise_fake_gpu(recorder.api, name, count=1, deadline_s=60)
    assert seen == {"node": name, "capacity": "1", "allocatable": "1"}
    patch = recorder.calls("PATCH", f"/nodes/{name}/status")
    assert len(patch) == 1 and patch[0]["content_type"] == "application/json-patch+json"
    assert '"path": "/status/capacity/nvidia.com~1gpu"' in patch[0]["body"]
    advertise_fake_gpu(recorder.api, name, count=1, deadline_s=10)
    assert len(recorder.calls("PATCH", f"/nodes/{name}/status")) == 1  # already advertised: no second patch
    assert gpu_pool_problems(core.read_node(name)) == []  # the status patch touched status only


def test_the_training_pod_lands_on_the_gpu_node_and_only_there(host) -> None:
    core = k8s.CoreV1Api(host.api)
    ns = host.kfp_namespace
    core.create_namespaced_pod(ns, _training_pod(host, "train"))
    core.create_namespaced_pod(ns, _training_pod(host, "train-untolerated", toleration=False))
    core.create_namespaced_pod(ns, _pod("cpu-task", ns))
    try:
        _running(core, ns, "train")
        evidence = placement_evidence(host.api, ns, "train")
        assert evidence["node"] == host.cluster.gpu_node_name and evidence["on_gpu_node"], evidence
        assert evidence["fake_gpu_pool"] and evidence["pod_gpu_request"] == 1 and evidence["other_nodes_with_gpus"] == []

        def verdict() -> dict | None:
            pod = core.read_namespaced_pod("train-untolerated", ns)
            conds = [c for c in pod.status.conditions or [] if c.type == "PodScheduled" and c.status == "False"]
            return {"node": pod.spec.node_name, "message": conds[0].message} if conds else None

        refused = _wait("the scheduler's verdict on a GPU pod without the toleration", verdict, 60)
        assert refused["node"] is None and "untolerated taint" in refused["message"], refused
        plain = _running(core, ns, "cpu-task")
        assert plain.spec.node_name == host.cluster.node  # the taint keeps everything else off the GPU node
        print(json.dumps({"placement": evidence, "without_toleration": refused}, indent=1, default=str))
    finally:
        for name in ("train", "train-untolerated", "cpu-task"):
            core.delete_namespaced_pod(name, ns, grace_period_seconds=0)


def test_the_training_pod_is_unschedulable_while_its_gpu_node_is_cordoned(host) -> None:
    from kubernetes import config as k8s_config

    core = k8s.CoreV1Api(host.api)
    ns = host.kfp_namespace
    core.create_namespaced_pod(ns, _training_pod(host, "train-template"))
    template = _running(core, ns, "train-template")  # the training pod as the API server holds it
    # It holds the node's only GPU: gone first, so the cordon alone decides the probe's verdict.
    core.delete_namespaced_pod("train-template", ns, grace_period_seconds=0)
    _wait("the training pod gone", lambda: not [p for p in core.list_namespaced_pod(ns).items
                                                if p.metadata.name == "train-template"])
    recorder = Recorder(k8s_config.new_client_from_config(config_file=str(host.kubeconfig)))
    result = unschedulable_when_cordoned(recorder.api, host.cluster.gpu_node_name, template, ns, deadline_s=60)
    assert result["unschedulable"] and result["reason"] == "Unschedulable", result
    # The probe carries the training pod's own tolerations: the harness's, and the admission defaults.
    assert result["probe_resources"]["limits"][GPU_RESOURCE] == "1" and GPU_TOLERATION in result["probe_tolerations"]
    node_patches = [c["body"] for c in recorder.calls("PATCH", f"/nodes/{host.cluster.gpu_node_name}")]
    assert node_patches == ['{"spec": {"unschedulable": true}}', '{"spec": {"unschedulable": false}}']
    assert "were unschedulable" in result["message"], result["message"]
    assert not core.read_node(host.cluster.gpu_node_name).spec.unschedulable  # uncordoned again
    assert not [p for p in core.list_namespaced_pod(ns).items if p.metadata.name == result["probe_pod"]
                and p.metadata.deletion_timestamp is None]
    print(json.dumps(result, indent=1))


# ------------------------------------------------------------------------------ cloud discovery
def test_the_cloud_profiles_discovery_reads_this_cluster_and_reports_what_differs(host, monkeypatch) -> None:
    import os
    from pathlib import Path

    from harness.matrix import load_matrix
    from harness.profiles.cloud import CloudProfile, preflight
    from harness.settings import StackConfig

    # The cloud profile drives kubectl from PATH: this cluster's own build of it.
    kubectl = Path(host.cluster.bin("kubernetes", "kubectl"))
    monkeypatch.setenv("PATH", f"{kubectl.parent}{os.pathsep}{os.environ.get('PATH', '')}")
    row = load_matrix().row(None)
    config = StackConfig(profile="cloud", kubeconfig=host.kubeconfig)
    preflight(config, row)  # cluster-wide reads allowed, no KFP to find multi-user: passes
    said: list[str] = []
    cloud = CloudProfile(config, row, progress=said.append)
    cloud.api = host.api
    try:
        with pytest.raises(ClusterError, match="lacks knative, kserve, kfp; install them or pass --install-stack"):
            cloud._after_connect()
        k8s.CoreV1Api(host.api).create_namespace({"metadata": {"name": "kserve"}})
        # An older KServe, as a cluster's own install would show it (no replica: nothing is pulled).
        k8s.AppsV1Api(host.api).create_namespaced_deployment("kserve", {
            "metadata": {"name": "kserve-controller-manager"},
            "spec": {"replicas": 0, "selector": {"matchLabels": {"app": "kserve"}},
                     "template": {"metadata": {"labels": {"app": "kserve"}}, "spec": {"containers": [
                         {"name": "manager", "image": "kserve/kserve-controller:v0.13.1"}]}}}})
        installing = CloudProfile(StackConfig(profile="cloud", kubeconfig=host.kubeconfig, install_stack=True), row,
                                  progress=said.append)
        installing.api = host.api
        installing._after_connect()
        found = {m["component"]: (m["expected"], m["found"]) for m in installing.mismatches}
        assert found["kserve"] == ("0.14.1", "0.13.1")
        assert found["knative_serving"][1] == found["kfp_backend"][1] == "not installed"
        assert "kubernetes" not in found  # 1.30 is in the row's range
        assert installing.cluster_versions["discovered"]["kubernetes"] == "1.30"
        assert installing._components() == ["cert-manager", "knative", "kfp", "seamcheck"]  # KServe is there
        print(json.dumps(installing.mismatches, indent=1))
        installing.teardown()
    finally:
        cloud.teardown()
        try:
            k8s.CoreV1Api(host.api).delete_namespace("kserve")
        except ApiException:
            pass
