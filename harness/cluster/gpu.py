"""GPU pools: the fake one on kind-gpu, and placement evidence on any cluster.

kind-gpu: a worker joins labelled `nvidia.com/gpu.present=true` and tainted
`nvidia.com/gpu=present:NoSchedule` (harness/cluster/manifests/cluster.yaml.j2), like a cloud GPU pool. No
device plugin runs there, so the harness advertises the `nvidia.com/gpu` extended resource by
PATCHing the node's status capacity (JSON patch on the status subresource), the documented way
to advertise extended resources; the kubelet then copies it into allocatable. The scheduler
treats it like any GPU: only that node can take the train task's `nvidia.com/gpu: 1`, and only
with a toleration for the taint.

Checks: the training pod ran on a GPU node (`placement_evidence`), and a pod with the training
pod's own scheduling constraints is Unschedulable while that node is cordoned
(`unschedulable_when_cordoned`; the node is uncordoned afterwards whatever happens).
"""
from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any

from kubernetes import client as k8s

from harness.cluster.errors import ClusterError
from harness.cluster.waits import delete_pod_now, wait_until

__all__ = [
    "GPU_LABEL",
    "GPU_RESOURCE",
    "GPU_TAINT",
    "advertise_fake_gpu",
    "gpu_pool_problems",
    "gpu_quantity",
    "placement_evidence",
    "unschedulable_when_cordoned",
]

GPU_RESOURCE = "nvidia.com/gpu"
GPU_LABEL = ("nvidia.com/gpu.present", "true")
GPU_TAINT = {"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"}
FAKE_POOL_SELECTOR = "seamcheck.io/role=gpu"
#: Labels clouds put on GPU nodes (evidence of a real pool on the cloud profile).
REAL_GPU_LABELS = ("nvidia.com/gpu.present", "nvidia.com/gpu.product", "cloud.google.com/gke-accelerator",
                   "k8s.amazonaws.com/accelerator", "accelerator", "node.kubernetes.io/instance-type")
PROBE_IMAGE = "registry.k8s.io/pause:3.9"


def gpu_quantity(resources: dict[str, str] | None) -> int:
    try:
        return int(str((resources or {}).get(GPU_RESOURCE, "0")))
    except ValueError:
        return 0


def _json_pointer(key: str) -> str:
    return key.replace("~", "~0").replace("/", "~1")


def advertise_fake_gpu(api: k8s.ApiClient, node: str, *, count: int = 1, deadline_s: float = 60.0,
                       interval_s: float = 1.0) -> dict[str, Any]:
    """Advertise `count` nvidia.com/gpu on `node` (status capacity) and wait until allocatable has it."""
    core = k8s.CoreV1Api(api)
    current = core.read_node(node)
    if gpu_quantity(current.status.capacity) != count:
        op = "replace" if GPU_RESOURCE in (current.status.capacity or {}) else "add"
        core.patch_node_status(node, [{"op": op, "path": f"/status/capacity/{_json_pointer(GPU_RESOURCE)}",
                                       "value": str(count)}])

    def allocatable() -> dict | None:
        seen = core.read_node(node)
        return seen if gpu_quantity(seen.status.allocatable) == count else None

    seen = wait_until(allocatable, what=f"the kubelet of {node} to list {count} {GPU_RESOURCE} as allocatable",
                      deadline_s=deadline_s, interval_s=interval_s,
                      last_seen=lambda: str(core.read_node(node).status.allocatable))
    return {"node": node, "capacity": seen.status.capacity.get(GPU_RESOURCE),
            "allocatable": seen.status.allocatable.get(GPU_RESOURCE)}


def gpu_pool_problems(node: k8s.V1Node) -> list[str]:
    """What a node lacks to look like a cloud GPU pool (label, taint)."""
    problems = []
    key, value = GPU_LABEL
    if (node.metadata.labels or {}).get(key) != value:
        problems.append(f"label {key}={value} missing")
    taints = [(t.key, t.value, t.effect) for t in (node.spec.taints or [])]
    if (GPU_TAINT["key"], GPU_TAINT["value"], GPU_TAINT["effect"]) not in taints:
        problems.append(f"taint {GPU_TAINT['key']}={GPU_TAINT['value']}:{GPU_TAINT['effect']} missing")
    return problems


def placement_evidence(api: k8s.ApiClient, namespace: str, pod_name: str) -> dict[str, Any]:
    """Where a pod ran and what its node offers: the evidence a GPU placement check records."""
    core = k8s.CoreV1Api(api)
    pod = core.read_namespaced_pod(pod_name, namespace)
    node_name = pod.spec.node_name
    if not node_name:
        raise ClusterError(f"pod {namespace}/{pod_name} was never scheduled (phase {pod.status.phase})")
    node = core.read_node(node_name)
    nodes = core.list_node().items
    requested = 0
    for container in pod.spec.containers:
        res = container.resources
        requested += max(gpu_quantity(res.limits if res else None), gpu_quantity(res.requests if res else None))
    labels = node.metadata.labels or {}
    return {
        "pod": pod_name,
        "node": node_name,
        "pod_gpu_request": requested,
        "tolerations": [t.to_dict() for t in (pod.spec.tolerations or []) if t.key == GPU_TAINT["key"]],
        "node_labels": {k: v for k, v in labels.items() if k in REAL_GPU_LABELS or k.startswith("seamcheck.io/")},
        "node_taints": [f"{t.key}={t.value}:{t.effect}" for t in (node.spec.taints or [])],
        "node_gpu_capacity": gpu_quantity(node.status.capacity),
        "node_gpu_allocatable": gpu_quantity(node.status.allocatable),
        "fake_gpu_pool": labels.get("seamcheck.io/role") == "gpu",
        "other_nodes_with_gpus": sorted(n.metadata.name for n in nodes
                                        if n.metadata.name != node_name and gpu_quantity(n.status.allocatable)),
        "on_gpu_node": gpu_quantity(node.status.allocatable) > 0,
    }


def _probe_pod(api: k8s.ApiClient, template: k8s.V1Pod, namespace: str) -> dict[str, Any]:
    """A pause pod with the template pod's scheduling constraints (resources of its main
    container, tolerations, node selector, affinity) and nothing else."""
    main = next((c for c in template.spec.containers if c.name == "main"), template.spec.containers[0])
    res = main.resources.to_dict() if main.resources else {}
    resources = {k: v for k, v in (("limits", res.get("limits")), ("requests", res.get("requests"))) if v}
    spec: dict[str, Any] = {
        "restartPolicy": "Never",
        "containers": [{"name": "probe", "image": PROBE_IMAGE, "resources": resources}],
        "tolerations": [api.sanitize_for_serialization(t) for t in (template.spec.tolerations or [])],
    }
    if template.spec.node_selector:
        spec["nodeSelector"] = dict(template.spec.node_selector)
    if template.spec.affinity:
        spec["affinity"] = api.sanitize_for_serialization(template.spec.affinity)
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": f"seamcheck-gpu-cordon-probe-{uuid.uuid4().hex[:6]}", "namespace": namespace,
                         "labels": {"app.kubernetes.io/part-of": "seamcheck", "seamcheck.io/probe": "gpu-cordon"}},
            "spec": spec}


def unschedulable_when_cordoned(api: k8s.ApiClient, node: str, template: k8s.V1Pod, namespace: str, *,
                                deadline_s: float = 60.0, interval_s: float = 1.0,
                                say: Callable[[str], None] = lambda _m: None) -> dict[str, Any]:
    """Cordon `node`, create a pod with `template`'s scheduling constraints, wait for the
    scheduler's verdict (PodScheduled=False/Unschedulable, or a node), then delete the pod and
    restore the node. Returns the evidence; `unschedulable` is True when the verdict was that."""
    core = k8s.CoreV1Api(api)
    was_unschedulable = bool(core.read_node(node).spec.unschedulable)
    probe = _probe_pod(api, template, namespace)
    name = probe["metadata"]["name"]
    started = time.monotonic()
    core.patch_node(node, {"spec": {"unschedulable": True}})
    say(f"gpu check: cordoned {node}; pod {namespace}/{name} asks for what the training pod asked for")
    try:
        core.create_namespaced_pod(namespace, probe)

        def verdict() -> dict | None:
            pod = core.read_namespaced_pod(name, namespace)
            if pod.spec.node_name:
                return {"scheduled_on": pod.spec.node_name}
            for cond in (pod.status.conditions or []) if pod.status else []:
                if cond.type == "PodScheduled" and cond.status == "False" and cond.reason == "Unschedulable":
                    return {"reason": cond.reason, "message": cond.message}
            return None

        seen = wait_until(verdict, what=f"the scheduler's verdict on {namespace}/{name} while {node} is cordoned",
                          deadline_s=deadline_s, interval_s=interval_s)
    finally:
        delete_pod_now(core, namespace, name)
        core.patch_node(node, {"spec": {"unschedulable": was_unschedulable}})
        say(f"gpu check: {node} restored (unschedulable={was_unschedulable})")
    return {"node": node, "probe_pod": name, "unschedulable": "reason" in seen,
            "scheduled_on": seen.get("scheduled_on"), "reason": seen.get("reason"), "message": seen.get("message"),
            "seconds": round(time.monotonic() - started, 1),
            "probe_resources": probe["spec"]["containers"][0]["resources"],
            "probe_tolerations": probe["spec"]["tolerations"]}
