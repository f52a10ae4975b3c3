"""Where chaos may act on a cluster: only in a namespace that is BOTH listed by the user
(--chaos-namespaces, or the harness's own namespaces on its own kind cluster) AND labelled
`seamcheck.io/chaos=allowed` on the cluster. Anything else is refused before any change is made.

Two keys because either alone is too easy to get wrong on a shared cluster: a flag typed into
the wrong kubeconfig context, or a label someone left behind. The check reads the namespace
from the API every time (labels can change during a session).
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from harness.cluster.errors import ChaosRefused
from harness.cluster.spec import CHAOS_ALLOWED, CHAOS_LABEL

__all__ = ["ChaosGuard"]


@dataclass
class ChaosGuard:
    api: k8s.ApiClient
    allowed: frozenset[str]
    cluster: str = "the cluster"

    @classmethod
    def of(cls, api: k8s.ApiClient, namespaces: Iterable[str], cluster: str = "the cluster") -> ChaosGuard:
        return cls(api, frozenset(ns for ns in namespaces if ns), cluster)

    def check(self, namespace: str, action: str) -> None:
        """Return when `action` may act in `namespace`; raise ChaosRefused (nothing done) otherwise."""
        if namespace not in self.allowed:
            listed = ", ".join(sorted(self.allowed)) or "none"
            raise ChaosRefused(f"refused to {action} in namespace {namespace!r} on {self.cluster}: it is not listed in "
                               f"--chaos-namespaces (listed: {listed})")
        try:
            ns = k8s.CoreV1Api(self.api).read_namespace(namespace)
        except ApiException as exc:
            if exc.status == 404:
                raise ChaosRefused(f"refused to {action} in namespace {namespace!r} on {self.cluster}: "
                                   "the namespace does not exist") from None
            raise ChaosRefused(f"refused to {action} in namespace {namespace!r} on {self.cluster}: could not read "
                               f"its labels (HTTP {exc.status} {exc.reason})") from None
        value = (ns.metadata.labels or {}).get(CHAOS_LABEL)
        if value != CHAOS_ALLOWED:
            raise ChaosRefused(f"refused to {action} in namespace {namespace!r} on {self.cluster}: it lacks the label "
                               f"{CHAOS_LABEL}={CHAOS_ALLOWED} (found {value!r}); label it with `kubectl label "
                               f"namespace {namespace} {CHAOS_LABEL}={CHAOS_ALLOWED}` if chaos may act there")
