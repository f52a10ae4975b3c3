"""The host cluster comes up for real: the node is Ready and a Pod from a locally written image runs.

Needs root and every component in the host build cache (a cold build of all of them takes about
40 minutes on 2 cores: python -m harness.host.build); skips otherwise. Marked slow: about a minute.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from harness.host import build as hbuild
from harness.host.cluster import COMPONENTS, HostCluster
from harness.host.netns import netns_unavailable
from harness.host.recipes import recipes
from harness.host.versions import load_host_versions

pytestmark = pytest.mark.slow


def _skip_unless_ready() -> None:
    reason = netns_unavailable()
    if reason:
        pytest.skip(reason)
    known = recipes(load_host_versions())
    missing = [c for c in COMPONENTS if hbuild.find(known[c]) is None]
    if missing:
        pytest.skip(f"not in the host build cache: {missing} (python -m harness.host.build {' '.join(missing)})")


POD = {
    "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "pause", "namespace": "default"},
    "spec": {"containers": [{"name": "pause", "image": "dev.local/seamcheck/pause:3.9", "imagePullPolicy": "Never"}],
             "automountServiceAccountToken": False},
}


def test_node_ready_and_a_local_image_pod_runs() -> None:
    _skip_unless_ready()
    cluster = HostCluster().start()
    work = cluster.work
    try:
        nodes = cluster.kubectl("get", "nodes", "-o", "json")
        node = json.loads(nodes.stdout)["items"][0]
        assert node["status"]["nodeInfo"]["kubeletVersion"] == "v1.30.14"
        assert node["status"]["nodeInfo"]["containerRuntimeVersion"] == "containerd://1.7.18"  # the CRI drops the v
        cluster.kubectl("apply", "-f", "-", input=json.dumps(POD))
        deadline = time.monotonic() + 120
        phase = ""
        while time.monotonic() < deadline:
            out = cluster.kubectl("get", "pod", "pause", "-o", "json", check=False)
            if out.returncode == 0:
                pod = json.loads(out.stdout)
                phase = pod["status"].get("phase", "")
                if phase == "Running":
                    break
            time.sleep(1)
        assert phase == "Running", cluster.kubectl("describe", "pod", "pause", check=False).stdout[-2000:]
        assert pod["status"]["podIP"].startswith("10.244.0.")
    finally:
        cluster.stop()
    assert work is not None and not Path(work).exists()


DENY_DNS = {
    "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
    "metadata": {"name": "deny-dns", "namespace": "kube-system"},
    "spec": {"podSelector": {"matchLabels": {"k8s-app": "kube-dns"}}, "policyTypes": ["Ingress"]},
}


def test_addons_resolve_through_the_service_and_a_policy_cuts_it() -> None:
    """kube-proxy's DNAT, CoreDNS from the local image (nonroot on port 53) and kube-network-policies
    enforcing a deny-all-ingress policy, seen from the node's namespace."""
    _skip_unless_ready()
    import shutil as _shutil
    import sys

    from harness.host.addons import dns_query_argv
    from harness.procs import run_command

    if not _shutil.which("conntrack"):
        pytest.skip("kube-proxy needs conntrack: apt-get install -y conntrack")
    cluster = HostCluster(addons=True).start()
    try:
        python = sys.executable

        def ask(server: str) -> tuple[int, str]:
            out = run_command(cluster.netns.exec_argv(*dns_query_argv(python, server,
                                                                      "kubernetes.default.svc.cluster.local")),
                              what="dns query", timeout=30)
            return out.returncode, (out.stdout + out.stderr).strip()

        assert ask(cluster.dns_ip) == (0, cluster.service_ip)  # through the kube-dns ClusterIP
        pod = json.loads(cluster.kubectl("-n", "kube-system", "get", "pods", "-l", "k8s-app=kube-dns",
                                         "-o", "json").stdout)["items"][0]
        assert ask(pod["status"]["podIP"]) == (0, cluster.service_ip)
        # Traffic from a pod's own node is always allowed (the NetworkPolicy API says so): ask
        # from inside a client Pod's network namespace instead.
        client = {**POD, "metadata": {"name": "client", "namespace": "default"}}
        cluster.kubectl("apply", "-f", "-", input=json.dumps(client))
        cluster.kubectl("wait", "--for=condition=Ready", "pod/client", "--timeout=120s", timeout=150)
        in_pod = ["nsenter", f"--net=/proc/{cluster.pod_pid('default', 'client')}/ns/net", "--"]

        def ask_from_pod(server: str) -> tuple[int, str]:
            out = run_command([*in_pod, *dns_query_argv(python, server, "kubernetes.default.svc.cluster.local")],
                              what="dns query from a pod", timeout=30)
            return out.returncode, (out.stdout + out.stderr).strip()

        assert ask_from_pod(pod["status"]["podIP"]) == (0, cluster.service_ip)
        if cluster.network_policy:
            pytest.skip(cluster.network_policy)
        cluster.kubectl("apply", "-f", "-", input=json.dumps(DENY_DNS))
        deadline, answer = time.monotonic() + 60, (0, "")
        while time.monotonic() < deadline:
            answer = ask_from_pod(pod["status"]["podIP"])
            if answer[0] != 0:
                break
            time.sleep(1)
        assert answer[0] != 0 and "no answer" in answer[1], answer
        assert ask(pod["status"]["podIP"]) == (0, cluster.service_ip)  # the node still may
    finally:
        cluster.stop()
