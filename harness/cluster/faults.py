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

A policy is only a request: a CNI that does not enforce NetworkPolicy accepts it and cuts
nothing. So a cut is proven with a probe (``path_probe``: a real pod in the pipeline namespace
that tries MLflow's port), and a cut the probe gets through is an error naming the CNI, not a
fault the scenario believes in. MLflow's pod IPs are re-read while the cut is on
(``refresh_cuts``): a restarted MLflow pod gets a new IP, which the policy's ipBlock must follow.
"""
from __future__ import annotations

import ipaddress
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from harness.cluster.errors import ClusterError
from harness.cluster.guard import ChaosGuard
from harness.ledger import ledger

__all__ = ["CUT_POLICY_NAME", "ClusterFaults", "PathProbe", "mlflow_cut_policy"]

#: path_probe(namespace, addresses, port) -> whether a pod in `namespace` reached any of them
PathProbe = Callable[[str, list[str], int], bool]
MLFLOW_PORT = 5000
REFRESH_S = 2.0  # how often MLflow's pod IPs are re-read while a cut is on

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
    #: proves a cut from a real pod (None: not proven, as where no pod can run)
    path_probe: PathProbe | None = None
    _scaled: dict[tuple[str, str], int] = field(default_factory=dict)  # (ns, deployment) -> original replicas
    #: pipeline namespace -> (MLflow's namespace, selector, the pod IPs its policy excludes now)
    _cuts: dict[str, tuple[str, dict[str, str], list[str]]] = field(default_factory=dict)
    _refresher: threading.Thread | None = None
    _stop_refresh: threading.Event = field(default_factory=threading.Event)

    def _record_undo(self, key: str, *args: str) -> None:
        if self.kubectl is not None and ledger.active().entry_for("command", key) is None:
            ledger.active().intend("command", key=key, argv=self.kubectl(*args), timeout_s=60)

    # ------------------------------------------------------------ network
    def cut_pipeline_from_mlflow(self, pipeline_ns: str, mlflow_ns: str, mlflow_selector: Mapping[str, str]) -> dict:
        self.guard.check(pipeline_ns, "cut the pipeline's namespace from MLflow (NetworkPolicy)")
        ips = self._mlflow_ips(mlflow_ns, mlflow_selector)
        self._record_undo(f"networkpolicy:{pipeline_ns}/{CUT_POLICY_NAME}", "delete", "networkpolicy", "-n",
                          pipeline_ns, CUT_POLICY_NAME, "--ignore-not-found")
        created = self._put_policy(pipeline_ns, mlflow_cut_policy(pipeline_ns, mlflow_ns, mlflow_selector, ips))
        if (pipeline_ns, CUT_POLICY_NAME) not in self.policies:
            self.policies.append((pipeline_ns, CUT_POLICY_NAME))
        self._cuts[pipeline_ns] = (mlflow_ns, dict(mlflow_selector), ips)
        self.say(f"fault: NetworkPolicy {pipeline_ns}/{CUT_POLICY_NAME} cuts {pipeline_ns} from MLflow "
                 f"({mlflow_ns}, pods {ips or 'none running'})")
        if self.path_probe is not None and ips:
            probes = f"pods:{pipeline_ns}/seamcheck.io/probe=path"  # a killed session's probe pod goes too
            self._record_undo(probes, "delete", "pods", "-n", pipeline_ns, "-l", "seamcheck.io/probe=path",
                              "--ignore-not-found")
            try:
                reached = self.path_probe(pipeline_ns, ips, MLFLOW_PORT)
            finally:
                ledger.active().release_key("command", probes)
            if reached:
                self.restore_pipeline_to_mlflow(pipeline_ns)
                raise ClusterError(f"the NetworkPolicy {pipeline_ns}/{CUT_POLICY_NAME} did not cut: a probe pod in "
                                   f"{pipeline_ns} still reached MLflow ({', '.join(ips)}:{MLFLOW_PORT}); the "
                                   "cluster's CNI does not enforce NetworkPolicy (on kind, use a node image built "
                                   "for kind >= v0.24.0, whose kindnet enforces it)")
            self.say(f"fault proven: a probe pod in {pipeline_ns} cannot reach MLflow while the cut is on")
        self._start_refresher()
        return self.api.sanitize_for_serialization(created)

    def _mlflow_ips(self, mlflow_ns: str, selector: Mapping[str, str]) -> list[str]:
        labels = ",".join(f"{k}={v}" for k, v in sorted(selector.items()))
        return sorted(p.status.pod_ip for p in k8s.CoreV1Api(self.api).list_namespaced_pod(
            mlflow_ns, label_selector=labels).items if p.status is not None and p.status.pod_ip)

    def _put_policy(self, pipeline_ns: str, policy: dict) -> object:
        net = k8s.NetworkingV1Api(self.api)
        try:
            return net.create_namespaced_network_policy(pipeline_ns, policy)
        except ApiException as exc:
            if exc.status != 409:
                raise
            return net.replace_namespaced_network_policy(CUT_POLICY_NAME, pipeline_ns, policy)

    def refresh_cuts(self) -> list[str]:
        """Re-read MLflow's pod IPs for every cut still on and update a policy whose IPs moved;
        returns the namespaces whose policy changed."""
        changed = []
        for pipeline_ns, (mlflow_ns, selector, before) in list(self._cuts.items()):
            ips = self._mlflow_ips(mlflow_ns, selector)
            if ips == before or pipeline_ns not in self._cuts:
                continue
            self._put_policy(pipeline_ns, mlflow_cut_policy(pipeline_ns, mlflow_ns, selector, ips))
            self._cuts[pipeline_ns] = (mlflow_ns, selector, ips)
            self.say(f"fault: MLflow's pods moved ({before} -> {ips}); {pipeline_ns}/{CUT_POLICY_NAME} follows them")
            changed.append(pipeline_ns)
        return changed

    def _start_refresher(self) -> None:
        if self._refresher is not None and self._refresher.is_alive():
            return
        self._stop_refresh.clear()

        def loop() -> None:
            while not self._stop_refresh.wait(REFRESH_S) and self._cuts:
                try:
                    self.refresh_cuts()
                except ApiException as exc:  # the API busy for a moment: the next round tries again
                    self.say(f"fault: re-reading MLflow's pods failed (HTTP {exc.status}); retrying")
        self._refresher = threading.Thread(target=loop, name="seamcheck-cut-refresh", daemon=True)
        self._refresher.start()

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
        self._cuts.pop(pipeline_ns, None)
        if not self._cuts:
            self._stop_refresh.set()
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
