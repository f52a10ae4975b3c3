"""The capacity preflight: the selected suites' peak requests against the nodes' room, refused in
one line with the figures and the fix before anything is installed."""
from __future__ import annotations

import json

import pytest
from kubernetes import client as k8s

from harness.cluster.capacity import (
    NodeRoom,
    Resources,
    check_fits,
    cluster_rooms,
    kind_rooms,
    predictor_pods,
    session_demand,
)
from harness.errors import ConfigError, ProfileError
from harness.matrix import load_matrix
from harness.options import parse_requests
from harness.profiles.cloud import CloudProfile
from harness.profiles.cluster import SEED_PREDICTOR_REQUESTS
from harness.profiles.kind import KindProfile
from harness.settings import StackConfig
from tests.host_fixtures import Kube

ROW = load_matrix().row(None)
SUITES = frozenset({"conformance", "canary"})


def _kind_demand(suites=SUITES, **config):
    return KindProfile._demand(StackConfig(profile="kind", **config), ROW, frozenset(suites))


def test_the_canary_suite_with_the_seeds_requests_does_not_fit_a_4_vcpu_runner() -> None:
    """The review's case: 1 CPU per predictor on two kind workers of a 4-vCPU runner."""
    demand = _kind_demand(predictor_requests=dict(SEED_PREDICTOR_REQUESTS))
    assert demand.predictor_pods == 11  # 2 conformance + 4 canary services + 3 in flight + 2 not yet at zero
    assert demand.predictor == Resources(1025, 2048)  # the queue-proxy's 25m on top
    with pytest.raises(ProfileError) as refused:
        check_fits(demand, kind_rooms(2, 4, 16 * 1024), where="this machine (4 CPUs)", remedy="the fix")
    message = str(refused.value)
    assert "\n" not in message
    assert message.startswith("the selected suites need 11 predictor pods x 1.02 CPU / 2.0 GiB + the stack's "
                              "2.06 CPU / 3.5 GiB = 13.34 CPU / 25.5 GiB at the peak, but this machine (4 CPUs) has "
                              "7.80 CPU / 32.0 GiB free on 2 schedulable node(s) (short of CPU); the fix"), message


def test_the_kind_default_requests_fit_a_4_vcpu_runner_and_name_the_cpus_a_smaller_one_needs() -> None:
    demand = _kind_demand()
    assert demand.predictor == Resources(275, 1024)
    check_fits(demand, kind_rooms(2, 4, 16 * 1024), where="here", remedy="-")  # 5.09 of 7.80 CPU
    rooms, where, remedy = KindProfile._rooms(StackConfig(profile="kind"), ROW, demand)
    assert len(rooms) == 2 and "kind workers that each report them" in where
    assert remedy.startswith("run on a machine with at least 3 CPUs")  # ceil(5.09 / 2 + 0.1)
    with pytest.raises(ProfileError, match=r"short of CPU, memory\); run on a machine with at least 3 CPUs"):
        check_fits(demand, kind_rooms(2, 2, 7 * 1024), where="a 2-vCPU runner", remedy=remedy)


def test_only_what_the_selected_suites_deploy_counts() -> None:
    assert predictor_pods({"conformance"}) == 2
    assert predictor_pods({"matrix"}) == 0 and predictor_pods({"chaos"}) == 0  # neither runs on a cluster stack
    conformance = _kind_demand({"conformance"}, predictor_requests=dict(SEED_PREDICTOR_REQUESTS))
    check_fits(conformance, kind_rooms(2, 4, 16 * 1024), where="here", remedy="-")
    check_fits(_kind_demand(set()), [], where="nowhere", remedy="-")  # nothing to schedule: nothing to refuse


def test_a_predictor_pod_must_fit_on_one_node_not_only_in_the_sum() -> None:
    demand = session_demand({"conformance"}, predictor_requests={"cpu": "2", "memory": "1Gi"},
                            train_requests={"cpu": "1"}, stack_cpu_m=0, stack_memory_mi=0)
    rooms = [NodeRoom(f"n{i}", Resources(1500, 8192)) for i in range(4)]  # 6 CPU in all, 1.5 on each
    with pytest.raises(ProfileError, match="short of room for one predictor pod on any node"):
        check_fits(demand, rooms, where="here", remedy="-")


def test_an_existing_clusters_room_is_allocatable_minus_what_its_pods_request(kube: Kube) -> None:
    """Nodes and pods as their kubelets report them (status written through /status), on a real API server."""
    def node(name, cpu, memory, taints=None):
        return {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name}, "spec": {"taints": taints or []},
                "status": {"capacity": {"cpu": cpu, "memory": memory},
                           "allocatable": {"cpu": cpu, "memory": memory},
                           "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady"}]}}

    def ready(name, taints=None):
        # kube-apiserver's TaintNodesByCondition admission gives every new Node the taint
        # node.kubernetes.io/not-ready:NoSchedule, which the scheduler honours and the node lifecycle
        # controller lifts once the kubelet reports Ready; no controller runs here, so the test lifts it.
        core = k8s.CoreV1Api(kube.api)
        added = [(t.key, t.effect) for t in core.read_node(name).spec.taints or []]
        assert ("node.kubernetes.io/not-ready", "NoSchedule") in added, added
        core.patch_node(name, [{"op": "replace", "path": "/spec/taints", "value": taints or []}])

    def pod(name, node_name, cpu, memory, phase="Running"):
        return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": "team"},
                "spec": {"nodeName": node_name, "containers": [
                    {"name": "a", "image": "x", "resources": {"requests": {"cpu": cpu, "memory": memory}}},
                    {"name": "b", "image": "x"}]},
                "status": {"phase": phase}}

    kube.scratch.namespace("team")
    gpu_taints = [{"key": "nvidia.com/gpu", "effect": "NoSchedule"}]
    kube.scratch.add(node("a", "3920m", "15Gi"))
    kube.scratch.add(node("gpu", "8", "60Gi", taints=gpu_taints))
    assert cluster_rooms(kube.api) == []  # not Ready yet: the scheduler places nothing there either
    ready("a")
    ready("gpu", gpu_taints)
    kube.scratch.add(pod("busy", "a", "1500m", "3Gi"))
    kube.scratch.add(pod("done", "a", "2", "2Gi", phase="Succeeded"))  # finished pods hold nothing
    rooms = cluster_rooms(kube.api)
    assert rooms == [NodeRoom("a", Resources(2420, 12 * 1024))]


def test_cloud_counts_the_upstream_stack_only_when_it_installs_it() -> None:
    discovered = CloudProfile._demand(StackConfig(profile="cloud"), ROW, SUITES)
    installing = CloudProfile._demand(StackConfig(profile="cloud", install_stack=True), ROW, SUITES)
    assert discovered.stack == Resources(200, 1024)  # seamcheck's own MinIO, MLflow, Prometheus
    assert installing.stack == Resources(2060, 3584)
    assert discovered.predictor == Resources(1025, 2048)  # the seed's requests on a real cluster


def test_the_predictor_requests_reach_the_deploy_step_as_json() -> None:
    kind = KindProfile(StackConfig(profile="kind"), ROW)
    assert json.loads(kind.default_pipeline_params()["predictor_requests"]) == {"cpu": "250m", "memory": "1Gi"}
    kind.teardown()
    cloud = CloudProfile(StackConfig(profile="cloud"), ROW)
    assert "predictor_requests" not in cloud.default_pipeline_params()  # the seed's, as the step writes them
    cloud.teardown()
    chosen = CloudProfile(StackConfig(profile="cloud", predictor_requests={"cpu": "500m"}), ROW)
    assert json.loads(chosen.default_pipeline_params()["predictor_requests"]) == {"cpu": "500m"}
    chosen.teardown()


def test_predictor_requests_are_validated_where_the_option_is_read() -> None:
    assert parse_requests("cpu=250m, memory=1Gi", "--predictor-requests") == {"cpu": "250m", "memory": "1Gi"}
    with pytest.raises(ConfigError, match=r"'gpu=1' is not cpu=<quantity> or memory=<quantity>"):
        parse_requests("cpu=1,gpu=1", "--predictor-requests")
    with pytest.raises(ConfigError, match=r"'lots' is not a Kubernetes quantity"):
        parse_requests("cpu=lots", "--predictor-requests")


def test_the_train_task_is_sized_by_the_option_for_the_pool_it_lands_on() -> None:
    assert KindProfile.train_fit(StackConfig(profile="kind")) == {"cpu": "1", "memory_gib": 2}
    assert CloudProfile.train_fit(StackConfig(profile="cloud")) is None  # as compiled: 4 CPU, 16Gi
    sized = StackConfig(profile="cloud", train_requests={"cpu": "1500m", "memory": "6Gi"})
    assert CloudProfile.train_fit(sized) == {"cpu": "1.5", "memory_gib": 6.0}
    assert CloudProfile._demand(sized, ROW, frozenset({"conformance"})).train_task == Resources(1500, 6144)
    memory_only = StackConfig(profile="kind", train_requests={"memory": "3Gi"})
    assert KindProfile.train_fit(memory_only) == {"cpu": "1", "memory_gib": 3.0}
