"""The host cluster's network stays on this machine: its namespaces (the nodes' and the Pods') have
no route out, and a probe to any address outside the cluster's CIDRs fails at once, from each node
and from a real Pod on each node; the machine's own routing and firewall are left as they were."""
from __future__ import annotations

import errno
import ipaddress
import json
import subprocess

import pytest
from kubernetes import client as k8s

from harness.cluster.kfp import GPU_TOLERATION
from harness.host.probe import tcp_probe
from tests.host_fixtures import running_pod

#: The cluster's own address space: the nodes' links, the Pods, the Services.
CLUSTER_CIDRS = [ipaddress.ip_network(c) for c in ("10.214.0.0/16", "10.244.0.0/16", "10.96.0.0/16")]
PAUSE = "dev.local/seamcheck/pause:3.9"
UNREACHABLE = {errno.ENETUNREACH, errno.EHOSTUNREACH}


def _machine_addresses() -> list[str]:
    """This machine's own default gateway and addresses (outside the cluster): they must be
    unreachable from inside it too."""
    out: list[str] = []
    routes = subprocess.run(["ip", "-j", "route", "show", "default"], capture_output=True, text=True, timeout=20,
                            check=False).stdout
    out += [r["gateway"] for r in json.loads(routes or "[]") if r.get("gateway")]
    addrs = subprocess.run(["ip", "-j", "-4", "addr", "show"], capture_output=True, text=True, timeout=20,
                           check=False).stdout
    for link in json.loads(addrs or "[]"):
        for a in link.get("addr_info", []):
            ip = ipaddress.ip_address(a["local"])
            if not ip.is_loopback and not any(ip in c for c in CLUSTER_CIDRS):
                out.append(str(ip))
    return out


OUTSIDE = ["1.1.1.1", "8.8.8.8", "192.168.1.1", "172.16.0.1", "10.1.2.3", "100.64.0.1"]


@pytest.fixture(scope="module")
def probes(host):
    """A Pod on each node (the GPU node's tolerates its taint), Running; removed afterwards."""
    core = k8s.CoreV1Api(host.api)
    ns = host.namespace
    pods = {}
    for node in host.cluster.nodes:
        name = f"probe-{node.name}"
        core.create_namespaced_pod(ns, {"metadata": {"name": name}, "spec": {
            "nodeSelector": {"kubernetes.io/hostname": node.name}, "tolerations": [dict(GPU_TOLERATION)],
            "automountServiceAccountToken": False, "terminationGracePeriodSeconds": 0,
            "containers": [{"name": "main", "image": PAUSE, "imagePullPolicy": "Never"}]}})
        pods[node.name] = name
    for name in pods.values():
        running_pod(host.api, ns, name)
    yield {node: host.cluster.in_pod(ns, name) for node, name in pods.items()}
    for name in pods.values():
        core.delete_namespaced_pod(name, ns, grace_period_seconds=0)


def _routes(prefix: list[str]) -> list[dict]:
    out = subprocess.run([*prefix, "ip", "-j", "-4", "route", "show"], capture_output=True, text=True, timeout=20,
                         check=False)
    return json.loads(out.stdout or "[]")


def test_the_cluster_namespaces_have_no_default_route_out(host, probes) -> None:
    for node in host.cluster.nodes:
        routes = _routes(node.netns.exec_argv())
        assert routes and not [r for r in routes if r["dst"] == "default"], (node.name, routes)
        outside = [r for r in routes if not any(ipaddress.ip_network(r["dst"]).subnet_of(c) for c in CLUSTER_CIDRS)]
        assert outside == [], f"{node.name} routes outside the cluster: {outside}"
    for node, prefix in probes.items():
        # A Pod's default route leads to its node's bridge, inside the cluster, where it ends.
        gateways = {r.get("gateway") for r in _routes(prefix) if r["dst"] == "default"}
        assert gateways and all(ipaddress.ip_address(g) in CLUSTER_CIDRS[1] for g in gateways), (node, gateways)


def test_a_probe_to_an_address_outside_the_cluster_fails_at_once(host, probes) -> None:
    targets = OUTSIDE + _machine_addresses()
    results = {}
    for node in host.cluster.nodes:
        for where, prefix in ((f"node {node.name}", node.netns.exec_argv()), (f"pod on {node.name}", probes[node.name])):
            for target in targets:
                probe = tcp_probe(prefix, target, 443, timeout_s=3)
                results[f"{where} -> {target}"] = probe.describe()
                assert not probe.connected, probe.describe()
                # "At once": an answer (no route: ENETUNREACH, or an ICMP unreachable: EHOSTUNREACH),
                # not a timeout. Its delay is not asserted: once, on a loaded machine, a pod's first
                # SYN went unanswered and the answer came for its retransmission (1.01 s); how long
                # says nothing about where a packet went, the errno does.
                assert probe.errno in UNREACHABLE, f"{where}: {probe.describe()}"
    print(json.dumps(results, indent=1))


def test_a_service_address_nothing_answers_goes_nowhere(host, probes) -> None:
    """An address of the Service CIDR that no Service has (as every ClusterIP is before kube-proxy
    writes its rules) is routed to the namespace's dead end, never to a default route."""
    for node, prefix in probes.items():
        probe = tcp_probe(prefix, "10.96.250.250", 80, timeout_s=2)
        assert not probe.connected, (node, probe.describe())


def test_the_machine_routes_and_filters_nothing_for_the_cluster(host) -> None:
    routes = _routes([])
    ours = [r for r in routes if r["dst"] != "default"  # "default" first: it is no network ip_network reads
            and any(ipaddress.ip_network(r["dst"]).subnet_of(c) for c in CLUSTER_CIDRS[1:])]
    assert ours == [], f"the host routes pods or services: {ours}"
    links = [r["dst"] for r in routes if r["dst"] != "default"
             and ipaddress.ip_network(r["dst"]).subnet_of(CLUSTER_CIDRS[0])]
    # Only links: the cluster's one /30 to its first node (and other clusters' own, if any run).
    assert host.cluster.netns.link_cidr in links and all(d.endswith("/30") for d in links), links
    rules = subprocess.run(["iptables-save"], capture_output=True, text=True, timeout=20, check=False).stdout
    assert not [ln for ln in rules.splitlines() if "10.244." in ln or "10.96." in ln or "KUBE-" in ln]
