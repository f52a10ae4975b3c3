"""Helpers for tests against a real kube-apiserver (tests/host_fixtures.py):

* ``Recorder``: what the harness's client SENT (method, path, query, content type, body), recorded
  in the client (the server is real; this only watches our side of the wire), with an optional
  hook run before each request (another writer acting in between);
* ``put`` / ``get``: store an object as its controller would leave it (status written through the
  status subresource: the test plays that controller or kubelet), read one back as a dict;
* ``Scratch``: namespaces and cluster-scoped objects one test makes, removed at its end. With no
  namespace controller (the API-only server) a namespace's objects are deleted here and the
  namespace finalized, as the namespace controller would.
"""
from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl, unquote, urlparse

from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException
from kubernetes.dynamic import DynamicClient
from kubernetes.dynamic.exceptions import ConflictError, NotFoundError, ResourceNotFoundError

__all__ = ["Recorder", "Scratch", "get", "put", "wait_for"]


class Recorder:
    """Wraps an ApiClient's REST layer; ``calls`` as the fake API server's ``calls`` were."""

    def __init__(self, api: k8s.ApiClient, before: Callable[[str, str], None] | None = None) -> None:
        self.api = api
        self.requests: list[dict[str, Any]] = []
        self.before = before
        rest = api.rest_client
        original = rest.request

        def request(method, url, headers=None, body=None, post_params=None, _request_timeout=None):
            parsed = urlparse(url)
            path = unquote(parsed.path)
            headers = headers or {}
            if self.before is not None:
                self.before(method, path)
            self.requests.append({"method": method, "path": path, "query": dict(parse_qsl(parsed.query)),
                                  "content_type": headers.get("Content-Type", ""),
                                  # as the client's REST layer writes a JSON body (rest.py: json.dumps)
                                  "body": json.dumps(body) if body is not None and not isinstance(body, str)
                                  else (body or "")})
            return original(method, url, headers=headers, body=body, post_params=post_params,
                            _request_timeout=_request_timeout)

        rest.request = request

    def calls(self, method: str | None = None, contains: str = "") -> list[dict[str, Any]]:
        return [r for r in self.requests if (method is None or r["method"] == method) and contains in r["path"]]

    def clear(self) -> None:
        self.requests.clear()


_DYNAMIC: dict[int, DynamicClient] = {}
_LOCK = threading.Lock()


def _resource(api: k8s.ApiClient, api_version: str, kind: str):
    with _LOCK:
        dyn = _DYNAMIC.get(id(api))
        if dyn is None:
            dyn = _DYNAMIC[id(api)] = DynamicClient(api)
    return dyn.resources.get(api_version=api_version, kind=kind)


def put(api: k8s.ApiClient, obj: dict) -> dict:
    """Create (or replace) ``obj``; its ``status``, if any, is then written through /status, as the
    object's controller (or a node's kubelet) writes it."""
    res = _resource(api, obj["apiVersion"], obj["kind"])
    meta = obj["metadata"]
    ns = meta.get("namespace") if res.namespaced else None
    body = {k: v for k, v in obj.items() if k != "status"}
    try:
        stored = res.create(body=body, namespace=ns).to_dict()
    except ConflictError:
        current = res.get(name=meta["name"], namespace=ns).to_dict()
        body = {**body, "metadata": {**meta, "resourceVersion": current["metadata"]["resourceVersion"]}}
        stored = res.replace(body=body, namespace=ns).to_dict()
    if obj.get("status") is not None:
        status = res.subresources["status"]
        stored = status.patch(body={"status": obj["status"]}, name=meta["name"], namespace=ns,
                              content_type="application/merge-patch+json").to_dict()
    return stored


def get(api: k8s.ApiClient, api_version: str, kind: str, name: str, namespace: str = "") -> dict | None:
    res = _resource(api, api_version, kind)
    try:
        return res.get(name=name, namespace=namespace or None).to_dict()
    except NotFoundError:
        return None


def wait_for(what: str, check: Callable[[], Any], deadline_s: float = 30, interval_s: float = 0.1) -> Any:
    end = time.monotonic() + deadline_s
    last = None
    while time.monotonic() < end:
        last = check()
        if last:
            return last
        time.sleep(interval_s)
    raise AssertionError(f"gave up after {deadline_s:.0f}s waiting for {what} (last: {last!r})")


#: What the tests put in namespaces (deleted before a namespace is finalized).
_NAMESPACED = (("v1", "Pod"), ("v1", "Service"), ("v1", "Endpoints"), ("v1", "Secret"), ("v1", "ConfigMap"),
               ("v1", "ServiceAccount"), ("apps/v1", "Deployment"), ("batch/v1", "Job"),
               ("networking.k8s.io/v1", "NetworkPolicy"), ("rbac.authorization.k8s.io/v1", "Role"),
               ("rbac.authorization.k8s.io/v1", "RoleBinding"))


class Scratch:
    """Namespaces and cluster-scoped objects a test made; ``cleanup()`` removes them all."""

    def __init__(self, api: k8s.ApiClient, *, custom: tuple[tuple[str, str], ...] = ()) -> None:
        self.api = api
        self.namespaces: list[str] = []
        self.cluster_scoped: list[tuple[str, str, str]] = []  # (api_version, kind, name)
        self.custom = custom  # namespaced custom kinds to delete too: (api_version, kind)

    def namespace(self, name: str, labels: dict[str, str] | None = None) -> dict:
        self.namespaces.append(name)
        return put(self.api, {"apiVersion": "v1", "kind": "Namespace",
                              "metadata": {"name": name, "labels": labels or {}}})

    def add(self, obj: dict) -> dict:
        """``put`` an object, and remember a cluster-scoped one (a Node, a CRD) for cleanup."""
        stored = put(self.api, obj)
        if not _resource(self.api, obj["apiVersion"], obj["kind"]).namespaced:
            self.cluster_scoped.append((obj["apiVersion"], obj["kind"], obj["metadata"]["name"]))
        return stored

    def cleanup(self) -> None:
        for api_version, kind, name in reversed(self.cluster_scoped):
            try:
                _resource(self.api, api_version, kind).delete(name=name)
            except NotFoundError:
                pass
        core = k8s.CoreV1Api(self.api)
        for ns in self.namespaces:
            for api_version, kind in (*_NAMESPACED, *self.custom):
                try:
                    res = _resource(self.api, api_version, kind)
                    items = res.get(namespace=ns).items
                except (ResourceNotFoundError, NotFoundError):
                    # a custom kind this server does not serve (a 404 where the client's discovery cache,
                    # kept in a file per server address, still lists a CRD an earlier server had)
                    continue
                for item in items:
                    try:
                        res.delete(name=item.metadata.name, namespace=ns, grace_period_seconds=0)
                    except NotFoundError:
                        pass
            try:
                core.delete_namespace(ns)
                core.replace_namespace_finalize(ns, {"metadata": {"name": ns}, "spec": {"finalizers": []}})
            except ApiException as exc:
                if exc.status != 404:
                    raise
            wait_for(f"namespace {ns} gone", lambda ns=ns: _gone(core, ns), deadline_s=30)


def _gone(core: k8s.CoreV1Api, ns: str) -> bool:
    try:
        core.read_namespace(ns)
        return False
    except ApiException as exc:
        return exc.status == 404
