"""A real pod that says whether a namespace can reach an address: the evidence that a
NetworkPolicy cut really cuts (harness/cluster/faults.py), since a CNI that does not enforce
NetworkPolicy accepts the policy and changes nothing.

The pod runs Python's own socket connect with a short timeout to each address (the same Python
image seamcheck's MLflow runs, so nothing else is pulled) and exits 0 when one answered, 1 when
none did. It has no labels a policy would single out, so a policy that selects every pod of the
namespace (podSelector {}) applies to it as it does to the pipeline's tasks.
"""
from __future__ import annotations

import secrets
import time
from collections.abc import Callable

from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from harness.cluster.errors import WaitTimeout
from harness.cluster.faults import PathProbe

__all__ = ["PROBE_SCRIPT", "pod_path_probe", "probe_pod_manifest"]

PROBE_SCRIPT = """
import socket, sys
port = int(sys.argv[1])
for address in sys.argv[2:]:
    try:
        socket.create_connection((address, port), timeout=3).close()
        print(f"reached {address}:{port}")
        sys.exit(0)
    except OSError as exc:
        print(f"no path to {address}:{port}: {exc}")
sys.exit(1)
"""


def probe_pod_manifest(name: str, namespace: str, image: str, addresses: list[str], port: int) -> dict:
    return {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace,
                     "labels": {"app.kubernetes.io/part-of": "seamcheck", "seamcheck.io/probe": "path"}},
        "spec": {"restartPolicy": "Never", "terminationGracePeriodSeconds": 0,
                 "containers": [{"name": "probe", "image": image, "imagePullPolicy": "IfNotPresent",
                                 "command": ["python", "-c", PROBE_SCRIPT, str(port), *addresses],
                                 "resources": {"requests": {"cpu": "10m", "memory": "32Mi"}}}]},
    }


def pod_path_probe(api: k8s.ApiClient, image: str, *, deadline_s: float = 180.0, interval_s: float = 1.0,
                   say: Callable[[str], None] = lambda _m: None) -> PathProbe:
    """A PathProbe that creates the probe pod, waits for it to finish, reads its verdict and log,
    and deletes it."""
    core = k8s.CoreV1Api(api)

    def probe(namespace: str, addresses: list[str], port: int) -> bool:
        name = f"seamcheck-path-probe-{secrets.token_hex(3)}"
        core.create_namespaced_pod(namespace, probe_pod_manifest(name, namespace, image, addresses, port))
        try:
            end = time.monotonic() + deadline_s
            phase = ""
            while time.monotonic() < end:
                status = core.read_namespaced_pod(name, namespace).status
                phase = (status.phase if status is not None else "") or ""
                if phase in ("Succeeded", "Failed"):
                    break
                time.sleep(interval_s)
            else:
                raise WaitTimeout(f"gave up after {deadline_s:.0f}s waiting for the path probe pod {namespace}/{name} "
                                  f"to finish (phase {phase or 'none yet'}; image {image})")
            try:
                # the client gives None, not "", where no log came back (an API-only server has no kubelet)
                log = core.read_namespaced_pod_log(name, namespace, container="probe") or ""
            except ApiException:
                log = ""
            say(f"path probe {namespace}/{name}: {phase}: {log.strip().splitlines()[-1] if log.strip() else ''}")
            return phase == "Succeeded"
        finally:
            try:
                core.delete_namespaced_pod(name, namespace, grace_period_seconds=0)
            except ApiException as exc:
                if exc.status != 404:
                    raise

    return probe
