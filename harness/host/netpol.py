"""The NetworkPolicy enforcer on kernels without the nftables ``queue`` expression: kube-router's
network policy controller.

kind's enforcer, kube-network-policies, hands each new connection to user space with nftables
``queue``; a kernel without nft_queue refuses those rules and the controller fails open
(harness/host/addons.py ``nft_queue_missing`` probes it). kube-router v2.1.0's controller instead
writes iptables chains and ipsets (pkg/controllers/netpol: ``-m set``, ``-m physdev``, ``-m mark``,
``-j NFLOG``, ``-j REJECT``), which such a kernel supports, and is run the way its
daemonset/kube-router-firewall-daemonset.yaml runs it: ``--run-router=false --run-firewall=true
--run-service-proxy=false``.

One difference, and why: it runs as a process in each node's network namespace, as kube-proxy does
here, not as a DaemonSet. Its upstream image is Alpine with Alpine's iptables and ipset, which cannot
be built here (no Alpine packages); as a process it uses Debian's iptables and ipset, the same
programs (and the same nf_tables backend) kube-proxy uses on the node. Its identity is a client
certificate (``system:kube-router``) bound to upstream's ClusterRole, instead of a ServiceAccount.
"""
from __future__ import annotations

import shutil
from typing import Any

__all__ = ["KUBE_ROUTER_USER", "kube_router_argv", "kube_router_missing", "kube_router_rbac"]

KUBE_ROUTER_USER = "system:kube-router"


def kube_router_argv(binary: str, *, kubeconfig: str, node: str, service_cidr: str) -> list[str]:
    # Health on the node's loopback (no one outside the namespace needs it); metrics off (0, its default).
    return [binary, "--run-router=false", "--run-firewall=true", "--run-service-proxy=false",
            f"--kubeconfig={kubeconfig}", f"--hostname-override={node}",
            f"--service-cluster-ip-range={service_cidr}", "--health-port=20244", "--metrics-port=0", "--v=2"]


def kube_router_missing() -> str | None:
    """What the controller execs and this machine lacks, with the Debian package to install, or None."""
    for tool, package in (("ipset", "ipset"), ("iptables-restore", "iptables"), ("iptables-save", "iptables")):
        if not shutil.which(tool):
            return f"kube-router's network policy controller needs {tool}: apt-get install -y {package}"
    return None


def kube_router_rbac() -> list[dict[str, Any]]:
    """Upstream's ClusterRole (daemonset/generic-kuberouter.yaml@v2.1.0, the rules its policy
    controller reads with), bound to the controller's certificate user."""
    read = ["list", "get", "watch"]
    return [
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": {"name": "kube-router"},
         "rules": [{"apiGroups": [""], "resources": ["namespaces", "pods", "services", "nodes", "endpoints"],
                    "verbs": read},
                   {"apiGroups": ["networking.k8s.io"], "resources": ["networkpolicies"], "verbs": read},
                   {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"], "verbs": read},
                   {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["get", "create", "update"]},
                   {"apiGroups": [""], "resources": ["services/status"], "verbs": ["update"]}]},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding", "metadata": {"name": "kube-router"},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "kube-router"},
         "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": KUBE_ROUTER_USER}]},
    ]
