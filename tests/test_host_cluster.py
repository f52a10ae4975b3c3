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
