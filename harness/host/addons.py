"""The host cluster's add-ons: kube-proxy, CoreDNS and kube-network-policies, from the local
images and binaries.

kube-proxy runs as a process in the node's namespace (iptables mode, as kind's), the other two as
the workloads a kubeadm or kind cluster runs: CoreDNS as kubeadm v1.30's Deployment, Service,
ConfigMap and RBAC (cmd/kubeadm/app/phases/addons/dns/manifests.go), kube-network-policies as its
v0.7.0 install.yaml's DaemonSet. Differences, each for a reason given where it is made: the
images are the dev.local/seamcheck ones (harness/host/images.toml); CoreDNS forwards nowhere (no
upstream resolver exists inside the cluster's namespace; kubeadm's `forward . /etc/resolv.conf`
and `loop` would find a loop); the NetworkPolicy DaemonSet mounts no /lib/modules (this machine
has none, and a missing hostPath would be created on the host).
"""
from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from typing import Any

from harness.procs import run_command

__all__ = ["as_list", "coredns_manifests", "dns_query_argv", "kube_proxy_argv", "network_policy_manifests",
           "nft_queue_missing"]


def kube_proxy_argv(binary: str, *, kubeconfig: str, node: str, pod_cidr: str) -> list[str]:
    # conntrack sysctls are the machine's (nf_conntrack_max is writable only from the first network
    # namespace): 0 leaves each as it is, as kind does for maxPerCore.
    return [binary, f"--kubeconfig={kubeconfig}", f"--hostname-override={node}", f"--cluster-cidr={pod_cidr}",
            "--proxy-mode=iptables", "--metrics-bind-address=127.0.0.1:10249",
            "--healthz-bind-address=127.0.0.1:10256", "--conntrack-max-per-core=0",
            "--conntrack-tcp-timeout-established=0", "--conntrack-tcp-timeout-close-wait=0", "--v=2"]


_COREFILE = """.:53 {
    errors
    health {
       lameduck 5s
    }
    ready
    kubernetes cluster.local in-addr.arpa ip6.arpa {
       pods insecure
       fallthrough in-addr.arpa ip6.arpa
       ttl 30
    }
    prometheus :9153
    cache 30
    reload
    loadbalance
}
"""


def coredns_manifests(image: str, dns_ip: str) -> list[dict[str, Any]]:
    labels = {"k8s-app": "kube-dns"}
    container = {
        "name": "coredns", "image": image, "imagePullPolicy": "IfNotPresent",
        "resources": {"limits": {"memory": "170Mi"}, "requests": {"cpu": "100m", "memory": "70Mi"}},
        "args": ["-conf", "/etc/coredns/Corefile"],
        "volumeMounts": [{"name": "config-volume", "mountPath": "/etc/coredns", "readOnly": True}],
        "ports": [{"containerPort": 53, "name": "dns", "protocol": "UDP"},
                  {"containerPort": 53, "name": "dns-tcp", "protocol": "TCP"},
                  {"containerPort": 9153, "name": "metrics", "protocol": "TCP"}],
        "livenessProbe": {"httpGet": {"path": "/health", "port": 8080, "scheme": "HTTP"}, "initialDelaySeconds": 60,
                          "timeoutSeconds": 5, "successThreshold": 1, "failureThreshold": 5},
        "readinessProbe": {"httpGet": {"path": "/ready", "port": 8181, "scheme": "HTTP"}},
        "securityContext": {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                            "capabilities": {"add": ["NET_BIND_SERVICE"], "drop": ["ALL"]}},
    }
    return [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "coredns", "namespace": "kube-system"}},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": {"name": "system:coredns"},
         "rules": [{"apiGroups": [""], "resources": ["endpoints", "services", "pods", "namespaces"],
                    "verbs": ["list", "watch"]},
                   {"apiGroups": [""], "resources": ["nodes"], "verbs": ["get"]},
                   {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"], "verbs": ["list", "watch"]}]},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
         "metadata": {"name": "system:coredns"},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "system:coredns"},
         "subjects": [{"kind": "ServiceAccount", "name": "coredns", "namespace": "kube-system"}]},
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "coredns", "namespace": "kube-system"},
         "data": {"Corefile": _COREFILE}},
        {"apiVersion": "apps/v1", "kind": "Deployment",
         "metadata": {"name": "coredns", "namespace": "kube-system", "labels": labels},
         "spec": {"replicas": 1, "selector": {"matchLabels": labels},
                  "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1}},
                  "template": {"metadata": {"labels": labels}, "spec": {
                      "priorityClassName": "system-cluster-critical", "serviceAccountName": "coredns",
                      "tolerations": [{"key": "CriticalAddonsOnly", "operator": "Exists"}],
                      "nodeSelector": {"kubernetes.io/os": "linux"}, "containers": [container],
                      "dnsPolicy": "Default",
                      "volumes": [{"name": "config-volume", "configMap": {
                          "name": "coredns", "items": [{"key": "Corefile", "path": "Corefile"}]}}]}}}},
        {"apiVersion": "v1", "kind": "Service",
         "metadata": {"name": "kube-dns", "namespace": "kube-system",
                      "labels": {**labels, "kubernetes.io/cluster-service": "true", "kubernetes.io/name": "CoreDNS"},
                      "annotations": {"prometheus.io/port": "9153", "prometheus.io/scrape": "true"}},
         "spec": {"clusterIP": dns_ip, "selector": labels,
                  "ports": [{"name": "dns", "port": 53, "protocol": "UDP", "targetPort": 53},
                            {"name": "dns-tcp", "port": 53, "protocol": "TCP", "targetPort": 53},
                            {"name": "metrics", "port": 9153, "protocol": "TCP", "targetPort": 9153}]}},
    ]


def network_policy_manifests(image: str) -> list[dict[str, Any]]:
    labels = {"tier": "node", "app": "kube-network-policies", "k8s-app": "kube-network-policies"}
    return [
        {"kind": "ClusterRole", "apiVersion": "rbac.authorization.k8s.io/v1", "metadata": {"name": "kube-network-policies"},
         "rules": [{"apiGroups": [""], "resources": ["pods", "namespaces"], "verbs": ["list", "watch"]},
                   {"apiGroups": ["networking.k8s.io"], "resources": ["networkpolicies"], "verbs": ["list", "watch"]}]},
        {"kind": "ClusterRoleBinding", "apiVersion": "rbac.authorization.k8s.io/v1",
         "metadata": {"name": "kube-network-policies"},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "kube-network-policies"},
         "subjects": [{"kind": "ServiceAccount", "name": "kube-network-policies", "namespace": "kube-system"}]},
        {"apiVersion": "v1", "kind": "ServiceAccount",
         "metadata": {"name": "kube-network-policies", "namespace": "kube-system"}},
        {"apiVersion": "apps/v1", "kind": "DaemonSet",
         "metadata": {"name": "kube-network-policies", "namespace": "kube-system", "labels": labels},
         "spec": {"selector": {"matchLabels": {"app": "kube-network-policies"}},
                  "template": {"metadata": {"labels": labels}, "spec": {
                      "hostNetwork": True, "dnsPolicy": "ClusterFirst", "nodeSelector": {"kubernetes.io/os": "linux"},
                      "tolerations": [{"operator": "Exists", "effect": "NoSchedule"}],
                      "serviceAccountName": "kube-network-policies",
                      "containers": [{
                          "name": "kube-network-policies", "image": image,
                          "args": ["/bin/netpol", "--hostname-override=$(MY_NODE_NAME)", "--v=2", "--nfqueue-id=98"],
                          "resources": {"requests": {"cpu": "100m", "memory": "50Mi"}},
                          "securityContext": {"privileged": True, "capabilities": {"add": ["NET_ADMIN"]}},
                          "env": [{"name": "MY_NODE_NAME", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}}],
                      }]}}}},
    ]


def as_list(objects: list[dict[str, Any]]) -> str:
    """A v1 List, for one ``kubectl apply -f -``."""
    return json.dumps({"apiVersion": "v1", "kind": "List", "items": objects})


#: A one-question DNS client (A record, UDP) for the node's namespace, where no dig is installed:
#: prints the first answer's address, exits 1 on no answer within 3 s.
_DNS_CLIENT = r"""
import socket, struct, sys
server, name = sys.argv[1], sys.argv[2]
query = struct.pack(">HHHHHH", 0x5ca1, 0x0100, 1, 0, 0, 0)
query += b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\0" + struct.pack(">HH", 1, 1)
sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
sock.settimeout(3)
try:
    sock.sendto(query, (server, 53))
    reply = sock.recv(4096)
except OSError as exc:
    sys.exit(f"no answer from {server}: {exc}")
if struct.unpack(">H", reply[6:8])[0] < 1:
    sys.exit(f"{server} answered no record for {name} (rcode {reply[3] & 15})")
print(socket.inet_ntoa(reply[-4:]))
"""


def dns_query_argv(python: str, server: str, name: str) -> list[str]:
    return [python, "-c", _DNS_CLIENT, server, name]


def nft_queue_missing(exec_argv: Callable[..., list[str]]) -> str | None:
    """Why kube-network-policies cannot enforce in this kernel, or None when it can.

    It hands each new connection to user space with the nftables ``queue`` expression (google/nftables,
    pkg/networkpolicy/controller.go@v0.7.0). A kernel without nft_queue refuses every such rule with
    ENOENT, the controller logs "syncing nftables rules ... netlink receive: no such file or
    directory" and, failing open, enforces nothing. The probe adds that rule in a scratch table of
    the node's namespace (``exec_argv`` runs a command there) and deletes it."""
    if not shutil.which("nft"):
        return None  # cannot tell: deploy it, as kind does
    steps = ["add table inet seamcheck-probe",
             "add chain inet seamcheck-probe c { type filter hook forward priority 0 ; }",
             "add rule inet seamcheck-probe c queue num 98 bypass"]
    failure = None
    for step in steps:
        out = run_command(exec_argv("nft", step), what="nft probe", timeout=20)
        if out.returncode != 0:
            failure = (f"this kernel has no nftables queue expression (nft_queue): `nft {step}` says "
                       f"{out.stderr.strip().splitlines()[0] if out.stderr.strip() else out.returncode}; "
                       "kube-network-policies v0.7.0 cannot enforce NetworkPolicy here")
            break
    run_command(exec_argv("nft", "delete table inet seamcheck-probe"), what="nft probe cleanup", timeout=20)
    return failure
