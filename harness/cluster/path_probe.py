"""A real pod that says whether a namespace can reach an address: the evidence that a
NetworkPolicy cut really cuts (harness/cluster/faults.py), since a CNI that does not enforce
NetworkPolicy accepts the policy and changes nothing.

The pod runs Python's own socket connect with a short timeout to each address (the same Python
image seamcheck's MLflow runs, so nothing else is pulled) and exits 0 when one still answers after
the settle time, 1 as soon as none does. It has no labels a policy would single out, so a policy that selects every pod of the
namespace (podSelector {}) applies to it as it does to the pipeline's tasks.
"""
from __future__ import annotations

import secrets
from collections.abc import Callable

from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from harness.cluster.faults import PathProbe
from harness.cluster.waits import delete_pod_now, wait_until

__all__ = ["PROBE_SCRIPT", "SETTLE_S", "pod_path_probe", "probe_pod_manifest"]

#: How long a path must stay open before the probe says it is open (a policy's enforcement lags its creation).
SETTLE_S = 15.0

PROBE_SCRIPT = """
import socket, sys, time
args = sys.argv[1:]
settle = 0.0
if args[0] == "--settle":
    settle, args = float(args[1]), args[2:]
port, addresses = int(args[0]), args[1:]
end = time.monotonic() + settle
while True:
    reached, errors = None, []
    for address in addresses:
        try:
            socket.create_connection((address, port), timeout=3).close()
            reached = address
            break
        except OSError as exc:
            errors.append(f"{address}: {exc}")
    if reached is None:
        print(f"no path to {', '.join(addresses)}:{port}: {'; '.join(errors)}")
        sys.exit(1)
    if time.monotonic() >= end:
        print(f"reached {reached}:{port}")
        sys.exit(0)
    time.sleep(0.5)
"""


def probe_pod_manifest(name: str, namespace: str, image: str, addresses: list[str], port: int, *,
                       settle_s: float = 0.0) -> dict:
    return {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace,
                     "labels": {"app.kubernetes.io/part-of": "seamcheck", "seamcheck.io/probe": "path"}},
        "spec": {"restartPolicy": "Never", "terminationGracePeriodSeconds": 0,
                 "containers": [{"name": "probe", "image": image, "imagePullPolicy": "IfNotPresent",
                                 "command": ["python", "-c", PROBE_SCRIPT, *(["--settle", str(settle_s)] if settle_s else []),
                                             str(port), *addresses],
                                 "resources": {"requests": {"cpu": "10m", "memory": "32Mi"}}}]},
    }


def pod_path_probe(api: k8s.ApiClient, image: str, *, deadline_s: float = 180.0, interval_s: float = 1.0,
                   settle_s: float = SETTLE_S, say: Callable[[str], None] = lambda _m: None) -> PathProbe:
    """A PathProbe that creates the probe pod, waits for it to finish, reads its verdict and log,
    and deletes it. The path counts as open only if it stays open for ``settle_s``: every
    NetworkPolicy controller applies a policy some time after the API server stored it (kube-router
    on its next sync of the new probe pod; the first probe on the host cluster got through at once)."""
    core = k8s.CoreV1Api(api)

    def probe(namespace: str, addresses: list[str], port: int) -> bool:
        name = f"seamcheck-path-probe-{secrets.token_hex(3)}"
        core.create_namespaced_pod(namespace, probe_pod_manifest(name, namespace, image, addresses, port,
                                                                 settle_s=settle_s))
        try:
            def phase() -> str:
                status = core.read_namespaced_pod(name, namespace).status
                return (status.phase if status is not None else "") or ""

            done = wait_until(lambda: (p := phase()) in ("Succeeded", "Failed") and p,
                              what=f"the path probe pod {namespace}/{name} to finish (image {image})",
                              deadline_s=deadline_s, interval_s=interval_s, last_seen=lambda: phase() or "no phase yet")
            try:
                # the client gives None, not "", where no log came back (an API-only server has no kubelet)
                log = core.read_namespaced_pod_log(name, namespace, container="probe") or ""
            except ApiException:
                log = ""
            say(f"path probe {namespace}/{name}: {done}: {log.strip().splitlines()[-1] if log.strip() else ''}")
            return done == "Succeeded"
        finally:
            delete_pod_now(core, namespace, name)

    return probe
