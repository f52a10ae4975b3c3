"""Faults on a cluster, each behind the chaos guard (harness/cluster/guard.py), each undoable:

* a NetworkPolicy that cuts the pipeline's namespace from MLflow (create; remove to restore);
* pod deletion by label selector (SIGKILL-like with grace 0, or a normal termination);
* scaling a deployment (returns the previous replica count, to restore it).

Before a fault that stays in place (the policy, a changed replica count) is applied, its undo is
recorded in the run's ledger as a kubectl command (``kubectl``: the profile's kubectl argv builder),
so the reaper lifts it if the session is killed: a cut that outlived its session would leave a
user's pipeline namespace cut from MLflow.

The NetworkPolicy is an egress policy on the pipeline namespace's pods that allows everything
except MLflow's pods: pods in every other namespace, the other pods of MLflow's namespace (its
MinIO keeps working), and non-pod addresses (the API server, package indexes) minus MLflow's pod
IPs. Only MLflow is cut, so the failure the scenario sees is the one it asked for. (ipBlock is
meant for addresses outside the cluster; excluding MLflow's pod IPs there also covers policy
engines that apply ipBlock to pod IPs. kind >= 0.24 enforces it.)
"""
from __future__ import annotations

import ipaddress
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from harness.cluster.guard import ChaosGuard
from harness.ledger import ledger

__all__ = ["CUT_POLICY_NAME", "ClusterFaults", "mlflow_cut_policy"]

CUT_POLICY_NAME = "seamcheck-cut-mlflow"
FAULT_LABEL = "seamcheck.io/fault"


def mlflow_cut_policy(pipeline_ns: str, mlflow_ns: str, mlflow_selector: Mapping[str, str],
                      mlflow_pod_ips: list[str], name: str = CUT_POLICY_NAME) -> dict:
    """The NetworkPolicy manifest (see the module docstring)."""
    if not mlflow_selector:
        raise ValueError("mlflow_selector must name MLflow's pod labels")
    peers_elsewhere = {"namespaceSelector": {"matchExpressions": [
        {"key": "kubernetes.io/metadata.name", "operator": "NotIn", "values": [mlflow_ns]}]}}
    # A pod is "not MLflow" when any one of MLflow's labels differs: one peer per label (peers OR).
    peers_beside = [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": mlflow_ns}},
                     "podSelector": {"matchExpressions": [{"key": key, "operator": "NotIn", "values": [value]}]}}
                    for key, value in sorted(mlflow_selector.items())]
    v4 = [f"{ip}/32" for ip in mlflow_pod_ips if ipaddress.ip_address(ip).version == 4]
    v6 = [f"{ip}/128" for ip in mlflow_pod_ips if ipaddress.ip_address(ip).version == 6]
    blocks = [{"ipBlock": {"cidr": "0.0.0.0/0", **({"except": v4} if v4 else {})}},
              {"ipBlock": {"cidr": "::/0", **({"except": v6} if v6 else {})}}]
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": name, "namespace": pipeline_ns,
                     "labels": {"app.kubernetes.io/part-of": "seamcheck", FAULT_LABEL: "cut-mlflow"}},
        "spec": {
            "podSelector": {},
            "policyTypes": ["Egress"],
            "egress": [{"to": [peers_elsewhere]}, {"to": peers_beside}, {"to": blocks}],
        },
    }


@dataclass
class ClusterFaults:
    api: k8s.ApiClient
    guard: ChaosGuard
    say: Callable[[str], None] = lambda _m: None
    policies: list[tuple[str, str]] = field(default_factory=list)
    #: kubectl's argv for the undo commands (Kubectl.argv), or None: no undo recorded
    kubectl: Callable[..., list[str]] | None = None
    _scaled: dict[tuple[str, str], int] = field(default_factory=dict)  # (ns, deployment) -> original replicas

    def _record_undo(self, key: str, *args: str) -> None:
        if self.kubectl is not None and ledger.active().entry_for("command", key) is None:
            ledger.active().intend("command", key=key, argv=self.kubectl(*args), timeout_s=60)

    # ------------------------------------------------------------ network
    def cut_pipeline_from_mlflow(self, pipeline_ns: str, mlflow_ns: str, mlflow_selector: Mapping[str, str]) -> dict:
        self.guard.check(pipeline_ns, "cut the pipeline's namespace from MLflow (NetworkPolicy)")
        core = k8s.CoreV1Api(self.api)
        selector = ",".join(f"{k}={v}" for k, v in sorted(mlflow_selector.items()))
        ips = [p.status.pod_ip for p in core.list_namespaced_pod(mlflow_ns, label_selector=selector).items
               if p.status is not None and p.status.pod_ip]
        policy = mlflow_cut_policy(pipeline_ns, mlflow_ns, mlflow_selector, ips)
        self._record_undo(f"networkpolicy:{pipeline_ns}/{CUT_POLICY_NAME}", "delete", "networkpolicy", "-n",
                          pipeline_ns, CUT_POLICY_NAME, "--ignore-not-found")
        net = k8s.NetworkingV1Api(self.api)
        try:
            created = net.create_namespaced_network_policy(pipeline_ns, policy)
        except ApiException as exc:
            if exc.status != 409:
                raise
            created = net.replace_namespaced_network_policy(CUT_POLICY_NAME, pipeline_ns, policy)
        if (pipeline_ns, CUT_POLICY_NAME) not in self.policies:
            self.policies.append((pipeline_ns, CUT_POLICY_NAME))
        self.say(f"fault: NetworkPolicy {pipeline_ns}/{CUT_POLICY_NAME} cuts {pipeline_ns} from MLflow "
                 f"({mlflow_ns}, pods {ips or 'none running'})")
        return self.api.sanitize_for_serialization(created)

    def restore_pipeline_to_mlflow(self, pipeline_ns: str) -> bool:
        """Remove the policy; True when one was removed. Restoring is never refused."""
        try:
            k8s.NetworkingV1Api(self.api).delete_namespaced_network_policy(CUT_POLICY_NAME, pipeline_ns)
            removed = True
        except ApiException as exc:
            if exc.status != 404:
                raise
            removed = False
        if (pipeline_ns, CUT_POLICY_NAME) in self.policies:
            self.policies.remove((pipeline_ns, CUT_POLICY_NAME))
        ledger.active().release_key("command", f"networkpolicy:{pipeline_ns}/{CUT_POLICY_NAME}")
        if removed:
            self.say(f"fault restored: NetworkPolicy {pipeline_ns}/{CUT_POLICY_NAME} removed")
        return removed

    # ------------------------------------------------------------ pods
    def delete_pods(self, namespace: str, label_selector: str, *, grace_period_s: int | None = 0) -> list[str]:
        """Delete every pod matching the selector (grace 0 = like SIGKILL); returns their names."""
        if not label_selector:
            raise ValueError("a label selector is required: refusing to delete every pod of a namespace")
        self.guard.check(namespace, f"delete pods {label_selector!r}")
        core = k8s.CoreV1Api(self.api)
        names = [p.metadata.name for p in core.list_namespaced_pod(namespace, label_selector=label_selector).items]
        for name in names:
            try:
                core.delete_namespaced_pod(name, namespace, grace_period_seconds=grace_period_s)
            except ApiException as exc:
                if exc.status != 404:
                    raise
        self.say(f"fault: deleted pods {names} in {namespace} ({label_selector}, grace {grace_period_s})")
        return names

    # ------------------------------------------------------------ scale
    def scale(self, namespace: str, deployment: str, replicas: int) -> int:
        """Set a deployment's replicas through its scale subresource; returns the previous count."""
        self.guard.check(namespace, f"scale deployment {deployment} to {replicas}")
        apps = k8s.AppsV1Api(self.api)
        before = apps.read_namespaced_deployment_scale(deployment, namespace).spec.replicas or 0
        key = f"scale:{namespace}/{deployment}"
        original = self._scaled.setdefault((namespace, deployment), before)
        if replicas != original:
            self._record_undo(key, "scale", "deployment", deployment, "-n", namespace, f"--replicas={original}")
        apps.patch_namespaced_deployment_scale(deployment, namespace, {"spec": {"replicas": replicas}})
        if replicas == original:  # restored
            self._scaled.pop((namespace, deployment), None)
            ledger.active().release_key("command", key)
        self.say(f"fault: deployment {namespace}/{deployment} scaled {before} -> {replicas}")
        return before

    def restore_scale(self, namespace: str, deployment: str) -> bool:
        """Put a deployment this object scaled back to its original replicas, without asking the
        guard (restoring is never refused); False when it never scaled it."""
        original = self._scaled.pop((namespace, deployment), None)
        if original is None:
            return False
        k8s.AppsV1Api(self.api).patch_namespaced_deployment_scale(deployment, namespace,
                                                                  {"spec": {"replicas": original}})
        ledger.active().release_key("command", f"scale:{namespace}/{deployment}")
        self.say(f"fault restored: deployment {namespace}/{deployment} scaled back to {original}")
        return True

    def cleanup(self) -> None:
        for namespace, _name in list(self.policies):
            self.restore_pipeline_to_mlflow(namespace)
        for namespace, deployment in list(self._scaled):
            self.restore_scale(namespace, deployment)
