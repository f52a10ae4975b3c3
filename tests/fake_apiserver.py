"""A FAKE Kubernetes API server, in-process, for seamcheck's own tests only.

It exists because no real API server can run on the machines these tests run on (no Docker, no
kind, no envtest binaries). It implements the REST semantics of the endpoints the cluster
profiles use, the way kube-apiserver does, so the harness's API logic is exercised for real:

* paths: /api/v1/... and /apis/<group>/<version>/..., namespaced and cluster-scoped collections,
  items, all-namespaces lists, the subresources status, scale (deployments) and log (pods), and
  the services/proxy path to a backend a test registers;
* resourceVersion: one counter for all writes; a write that changes nothing keeps it; an update
  or patch carrying a stale metadata.resourceVersion is a 409 Conflict;
* errors are `Status` objects with kube-apiserver's reasons and codes: 404 NotFound,
  409 AlreadyExists / Conflict, 422 Invalid (a failed JSON-patch `test`, a bad path),
  400 BadRequest, 415 UnsupportedMediaType (strategic merge on a custom resource, apply patches);
* PATCH: JSON merge patch (RFC 7386), JSON patch (RFC 6902, every op incl. `test`), strategic
  merge for built-in kinds (merge patch plus merging of the keyed lists the harness touches:
  containers, env, ports, volumes, volumeMounts, conditions; `$patch` directives are not supported);
* status subresource: writes to the main resource ignore .status, writes to /status change only
  .status; metadata.generation counts spec changes;
* list: labelSelector (=, ==, !=, in, notin, exists, !exists) and fieldSelector (metadata.name,
  metadata.namespace, spec.nodeName, status.phase).

Not implemented (a test needing them must use something else): watch, server-side apply,
admission (defaulting, validation of the objects' own schemas), garbage collection, RBAC, and any
controller: tests play the controllers through `react()` hooks and `put()`.
"""
from __future__ import annotations

import copy
import json
import re
import threading
import uuid
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable
from urllib.parse import parse_qs, unquote, urlparse

from kubernetes import client as k8s

from harness.local.patch import merge_patch

__all__ = ["FakeApiServer", "RESOURCES"]

# (group, version, plural) -> (kind, namespaced, has status subresource)
RESOURCES: dict[tuple[str, str, str], tuple[str, bool, bool]] = {
    ("", "v1", "namespaces"): ("Namespace", False, True),
    ("", "v1", "nodes"): ("Node", False, True),
    ("", "v1", "pods"): ("Pod", True, True),
    ("", "v1", "services"): ("Service", True, True),
    ("", "v1", "secrets"): ("Secret", True, False),
    ("", "v1", "configmaps"): ("ConfigMap", True, False),
    ("", "v1", "serviceaccounts"): ("ServiceAccount", True, False),
    ("", "v1", "events"): ("Event", True, False),
    ("apps", "v1", "deployments"): ("Deployment", True, True),
    ("apps", "v1", "daemonsets"): ("DaemonSet", True, True),
    ("rbac.authorization.k8s.io", "v1", "clusterroles"): ("ClusterRole", False, False),
    ("batch", "v1", "jobs"): ("Job", True, True),
    ("networking.k8s.io", "v1", "networkpolicies"): ("NetworkPolicy", True, False),
    ("apiextensions.k8s.io", "v1", "customresourcedefinitions"): ("CustomResourceDefinition", False, True),
    ("serving.kserve.io", "v1beta1", "inferenceservices"): ("InferenceService", True, True),
    ("argoproj.io", "v1alpha1", "workflows"): ("Workflow", True, False),
}
CUSTOM_GROUPS = {"serving.kserve.io", "argoproj.io"}
# Strategic merge: list fields merged by a key (the harness's patches touch these).
SMP_KEYS = {"containers": "name", "initContainers": "name", "env": "name", "ports": None, "volumes": "name",
            "volumeMounts": "mountPath", "conditions": "type"}


class ApiError(Exception):
    def __init__(self, code: int, reason: str, message: str, details: dict | None = None) -> None:
        super().__init__(message)
        self.code, self.reason, self.message, self.details = code, reason, message, details or {}

    def status(self) -> dict:
        return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": self.message,
                "reason": self.reason, "details": self.details, "code": self.code}


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


# ---------------------------------------------------------------------------------- patches
def strategic_merge_patch(target: Any, patch: Any, field: str = "") -> Any:
    if isinstance(patch, dict):
        result = copy.deepcopy(target) if isinstance(target, dict) else {}
        for key, value in patch.items():
            if key.startswith("$"):
                raise ApiError(415, "UnsupportedMediaType", f"strategic merge directive {key} is not supported by "
                                                            "the fake API server")
            if value is None:
                result.pop(key, None)
            else:
                result[key] = strategic_merge_patch(result.get(key), value, key)
        return result
    if isinstance(patch, list) and field in SMP_KEYS and isinstance(target, list):
        key = SMP_KEYS[field] or ("containerPort" if patch and "containerPort" in patch[0] else "port")
        merged = copy.deepcopy(target)
        for item in patch:
            match = next((i for i, old in enumerate(merged) if isinstance(old, dict) and old.get(key) == item.get(key)),
                         None)
            if match is None:
                merged.append(copy.deepcopy(item))
            else:
                merged[match] = strategic_merge_patch(merged[match], item)
        return merged
    return copy.deepcopy(patch)


def _pointer(path: str) -> list[str]:
    if path == "":
        return []
    if not path.startswith("/"):
        raise ApiError(422, "Invalid", f"invalid JSON pointer {path!r}")
    return [p.replace("~1", "/").replace("~0", "~") for p in path[1:].split("/")]


def _walk(doc: Any, parts: list[str]) -> Any:
    for part in parts:
        if isinstance(doc, dict):
            if part not in doc:
                raise ApiError(422, "Invalid", f"jsonpatch: path /{'/'.join(parts)} does not exist")
            doc = doc[part]
        elif isinstance(doc, list):
            try:
                doc = doc[int(part)]
            except (ValueError, IndexError):
                raise ApiError(422, "Invalid", f"jsonpatch: index {part} out of range") from None
        else:
            raise ApiError(422, "Invalid", f"jsonpatch: cannot descend into {type(doc).__name__}")
    return doc


def json_patch(doc: Any, ops: Any) -> Any:
    """RFC 6902; a failed test or a missing path is a 422 as kube-apiserver answers."""
    if not isinstance(ops, list):
        raise ApiError(400, "BadRequest", "json patch body must be a JSON array of operations")
    doc = copy.deepcopy(doc)
    for op in ops:
        kind, parts = op.get("op"), _pointer(op.get("path", ""))
        if kind == "test":
            if _walk(doc, parts) != op.get("value"):
                raise ApiError(422, "Invalid", f"the server rejected our request due to an error in our request: "
                                               f"testing value {op.get('path')} failed")
            continue
        if kind in ("move", "copy"):
            value = copy.deepcopy(_walk(doc, _pointer(op["from"])))
            if kind == "move":
                json_patch_remove(doc, _pointer(op["from"]))
            doc = json_patch_add(doc, parts, value)
        elif kind == "add":
            doc = json_patch_add(doc, parts, copy.deepcopy(op.get("value")))
        elif kind == "remove":
            json_patch_remove(doc, parts)
        elif kind == "replace":
            _walk(doc, parts)  # must exist
            json_patch_remove(doc, parts)
            doc = json_patch_add(doc, parts, copy.deepcopy(op.get("value")))
        else:
            raise ApiError(422, "Invalid", f"jsonpatch: unknown op {kind!r}")
    return doc


def json_patch_add(doc: Any, parts: list[str], value: Any) -> Any:
    if not parts:
        return value
    parent = _walk(doc, parts[:-1])
    last = parts[-1]
    if isinstance(parent, dict):
        parent[last] = value
    elif isinstance(parent, list):
        index = len(parent) if last == "-" else int(last)
        if index > len(parent):
            raise ApiError(422, "Invalid", f"jsonpatch: index {index} out of range")
        parent.insert(index, value)
    else:
        raise ApiError(422, "Invalid", "jsonpatch: parent is not a container")
    return doc


def json_patch_remove(doc: Any, parts: list[str]) -> None:
    parent = _walk(doc, parts[:-1])
    last = parts[-1]
    if isinstance(parent, dict):
        if last not in parent:
            raise ApiError(422, "Invalid", f"jsonpatch: remove of missing path /{'/'.join(parts)}")
        del parent[last]
    else:
        try:
            del parent[int(last)]
        except (ValueError, IndexError):
            raise ApiError(422, "Invalid", f"jsonpatch: remove of missing index {last}") from None


# ---------------------------------------------------------------------------------- selectors
def _label_matches(labels: dict[str, str], selector: str) -> bool:
    for term in [t.strip() for t in re.split(r",(?![^()]*\))", selector) if t.strip()]:
        if m := re.match(r"^([\w./-]+)\s+(in|notin)\s+\(([^)]*)\)$", term):
            key, op, values = m.group(1), m.group(2), {v.strip() for v in m.group(3).split(",")}
            if op == "in" and labels.get(key) not in values:
                return False
            if op == "notin" and labels.get(key) in values:
                return False
        elif "!=" in term:
            key, value = term.split("!=", 1)
            if labels.get(key.strip()) == value.strip():
                return False
        elif "=" in term:
            key, value = term.replace("==", "=").split("=", 1)
            if labels.get(key.strip()) != value.strip():
                return False
        elif term.startswith("!"):
            if term[1:] in labels:
                return False
        elif term not in labels:
            return False
    return True


def _field(obj: dict, path: str) -> Any:
    cur: Any = obj
    for part in path.split("."):
        cur = cur.get(part) if isinstance(cur, dict) else None
    return cur


def _field_matches(obj: dict, selector: str) -> bool:
    for term in [t for t in selector.split(",") if t]:
        negate = "!=" in term
        key, value = term.split("!=" if negate else "=", 1)
        have = _field(obj, key.replace("==", ""))
        have = "" if have is None else str(have)
        if (have == value) == negate:
            return False
    return True


# ---------------------------------------------------------------------------------- the server
class FakeApiServer:
    """Start with `with FakeApiServer() as fake:`; `fake.api_client()` is a kubernetes ApiClient."""

    def __init__(self, git_version: str = "v1.30.4") -> None:
        self.git_version = git_version
        self.lock = threading.RLock()
        self.objects: dict[tuple[str, str, str, str, str], dict] = {}  # (group, version, plural, ns, name)
        self.logs: dict[tuple[str, str, str, bool], str] = {}
        self.requests: list[dict[str, Any]] = []
        self.reactions: list[tuple[str, Callable[["FakeApiServer", str, dict], None]]] = []
        self.interceptors: list[Callable[[str, str], None]] = []
        self.proxies: dict[tuple[str, str], Callable[[str, str], tuple[int, Any]]] = {}
        self._rv = 1000
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _make_handler(self))
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._thread.start()

    # -------------------------------------------------------------- test helpers
    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    def api_client(self) -> k8s.ApiClient:
        configuration = k8s.Configuration()
        configuration.host = self.url
        return k8s.ApiClient(configuration)

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def __enter__(self) -> "FakeApiServer":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def put(self, obj: dict) -> dict:
        """Store an object as a controller would (status included, no admission)."""
        group, version = _split_api_version(obj["apiVersion"])
        plural = _plural_of(group, version, obj["kind"])
        with self.lock:
            obj = copy.deepcopy(obj)
            meta = obj.setdefault("metadata", {})
            meta.setdefault("uid", str(uuid.uuid4()))
            meta.setdefault("creationTimestamp", _now())
            meta.setdefault("generation", 1)
            meta["resourceVersion"] = self._next_rv()
            self.objects[(group, version, plural, meta.get("namespace", ""), meta["name"])] = obj
            return copy.deepcopy(obj)

    def get(self, api_version: str, kind: str, name: str, namespace: str = "") -> dict | None:
        group, version = _split_api_version(api_version)
        with self.lock:
            obj = self.objects.get((group, version, _plural_of(group, version, kind), namespace, name))
            return copy.deepcopy(obj) if obj else None

    def update_status(self, api_version: str, kind: str, name: str, namespace: str, status: dict) -> dict:
        group, version = _split_api_version(api_version)
        key = (group, version, _plural_of(group, version, kind), namespace, name)
        with self.lock:
            obj = self.objects[key]
            obj["status"] = copy.deepcopy(status)
            obj["metadata"]["resourceVersion"] = self._next_rv()
            return copy.deepcopy(obj)

    def set_log(self, namespace: str, pod: str, text: str, container: str = "", previous: bool = False) -> None:
        self.logs[(namespace, pod, container, previous)] = text

    def react(self, plural: str, fn: Callable[["FakeApiServer", str, dict], None]) -> None:
        """fn(fake, verb, object) after every successful write to `plural` (a controller's role)."""
        self.reactions.append((plural, fn))

    def intercept(self, fn: Callable[[str, str], None]) -> None:
        """fn(method, path) before each request is served (another client acting in between); an
        ApiError it raises is the answer (RBAC refusing the request, say)."""
        self.interceptors.append(fn)

    def forbid(self, method: str, pattern: str, message: str) -> None:
        """Answer `method` on paths matching the regex `pattern` with 403 Forbidden, as RBAC does."""
        def refuse(m: str, path: str) -> None:
            if m == method and re.fullmatch(pattern, path):
                raise ApiError(403, "Forbidden", message)
        self.intercept(refuse)

    def serve_proxy(self, namespace: str, service: str, fn: Callable[[str, str], tuple[int, Any]]) -> None:
        """Answer /api/v1/namespaces/<namespace>/services/<service>/proxy/<path> with fn(method, path),
        the backend behind kube-apiserver's service proxy; `service` is "name:port" as clients spell it."""
        self.proxies[(namespace, service)] = fn

    def _proxy(self, method: str, namespace: str, service: str, path: str) -> tuple[int, Any, str]:
        fn = self.proxies.get((namespace, service))
        if fn is None:
            raise ApiError(503, "ServiceUnavailable", f'no endpoints available for service "{service}"')
        code, payload = fn(method, path or "")
        return code, payload, "text/plain" if isinstance(payload, str) else "application/json"

    def calls(self, method: str | None = None, contains: str = "") -> list[dict[str, Any]]:
        return [r for r in self.requests if (method is None or r["method"] == method) and contains in r["path"]]

    # -------------------------------------------------------------- REST
    def _next_rv(self) -> str:
        self._rv += 1
        return str(self._rv)

    def handle(self, method: str, raw_path: str, content_type: str, body: bytes) -> tuple[int, Any, str]:
        parsed = urlparse(raw_path)
        query = {k: v[-1] for k, v in parse_qs(parsed.query).items()}
        path = unquote(parsed.path)
        self.requests.append({"method": method, "path": path, "query": query, "content_type": content_type,
                              "body": body.decode(errors="replace") if body else ""})
        if path in ("/version", "/version/"):
            major, minor = self.git_version.lstrip("v").split(".")[:2]
            return 200, {"major": major, "minor": minor, "gitVersion": self.git_version, "gitCommit": "0" * 40,
                         "gitTreeState": "clean", "buildDate": "2024-08-14T19:00:00Z", "goVersion": "go1.22.5",
                         "compiler": "gc", "platform": "linux/amd64"}, "application/json"
        try:
            for fn in list(self.interceptors):
                fn(method, path)  # may raise ApiError: the request is answered with it
            proxied = _PROXY_PATH.fullmatch(path)
            if proxied:
                return self._proxy(method, *proxied.groups())
            route = _route(path)
            with self.lock:
                code, payload = self._dispatch(method, route, query, content_type, body)
            if isinstance(payload, str):
                return code, payload, "text/plain"
            return code, payload, "application/json"
        except ApiError as exc:
            return exc.code, exc.status(), "application/json"

    def _dispatch(self, method: str, route: dict, query: dict, content_type: str, body: bytes) -> tuple[int, Any]:
        group, version, plural, ns, name, sub = (route[k] for k in ("group", "version", "plural", "namespace",
                                                                    "name", "sub"))
        kind, namespaced, has_status = RESOURCES[(group, version, plural)]
        if name is None:
            if method == "GET":
                return 200, self._list(group, version, plural, kind, ns, query)
            if method == "POST":
                return 201, self._create(group, version, plural, kind, ns, _json(body), has_status)
            raise ApiError(405, "MethodNotAllowed", f"{method} is not supported on a collection")
        key = (group, version, plural, ns or "", name)
        current = self.objects.get(key)
        if current is None:
            raise _not_found(group, plural, name)
        if sub == "log":
            return 200, self._log(current, query)
        if sub == "scale":
            return self._scale(method, key, current, content_type, body)
        if sub not in (None, "status"):
            raise ApiError(404, "NotFound", f"the server could not find the requested resource ({sub})")
        if method == "GET":
            return 200, copy.deepcopy(current)
        if method == "DELETE":
            del self.objects[key]
            if plural == "pods":
                gone = copy.deepcopy(current)
                gone["metadata"]["deletionTimestamp"] = _now()
                gone["metadata"]["deletionGracePeriodSeconds"] = int(query.get("gracePeriodSeconds", 30))
                self._react(plural, "DELETE", gone)
                return 200, gone
            self._react(plural, "DELETE", current)
            return 200, {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
                         "details": {"name": name, "group": group, "kind": plural, "uid": current["metadata"]["uid"]}}
        if method in ("PUT", "PATCH"):
            if method == "PUT":
                desired = _json(body)
                rv = (desired.get("metadata") or {}).get("resourceVersion")
                if not rv and group in CUSTOM_GROUPS:
                    raise ApiError(422, "Invalid", f'{plural}.{group} "{name}" is invalid: metadata.resourceVersion: '
                                                   "Invalid value: 0x0: must be specified for an update")
            else:
                desired = self._patched(group, current, content_type, _json(body, allow_list=True))
                rv = (desired.get("metadata") or {}).get("resourceVersion")
            if rv and rv != current["metadata"]["resourceVersion"]:
                raise ApiError(409, "Conflict", f'Operation cannot be fulfilled on {_qualified(group, plural)} '
                                                f'"{name}": the object has been modified; please apply your changes '
                                                "to the latest version and try again",
                               {"name": name, "group": group, "kind": plural})
            return 200, self._write(key, current, desired, plural, status_only=sub == "status",
                                    has_status=has_status)
        raise ApiError(405, "MethodNotAllowed", f"{method} is not supported")

    def _patched(self, group: str, current: dict, content_type: str, patch: Any) -> dict:
        ctype = content_type.split(";")[0].strip()
        if ctype == "application/merge-patch+json":
            if not isinstance(patch, dict):
                raise ApiError(400, "BadRequest", "json: cannot unmarshal array into Go value of type "
                                                  "map[string]interface {}")
            return merge_patch(current, patch)
        if ctype == "application/json-patch+json":
            return json_patch(current, patch)
        if ctype == "application/strategic-merge-patch+json":
            if group in CUSTOM_GROUPS:
                raise ApiError(415, "UnsupportedMediaType",
                               "the body of the request was in an unknown format - accepted media types include: "
                               "application/json-patch+json, application/merge-patch+json, "
                               "application/apply-patch+yaml")
            if not isinstance(patch, dict):
                raise ApiError(400, "BadRequest", "strategic merge patch body must be an object")
            return strategic_merge_patch(current, patch)
        raise ApiError(415, "UnsupportedMediaType", f"the fake API server does not implement {ctype!r} patches")

    def _write(self, key: tuple, current: dict, desired: dict, plural: str, *, status_only: bool,
               has_status: bool) -> dict:
        new = copy.deepcopy(current)
        if status_only:
            new["status"] = copy.deepcopy(desired.get("status"))
        else:
            new = copy.deepcopy(desired)
            for immutable in ("uid", "creationTimestamp", "name", "namespace"):
                if immutable in current["metadata"]:
                    new.setdefault("metadata", {})[immutable] = current["metadata"][immutable]
            if has_status:
                new["status"] = copy.deepcopy(current.get("status"))  # only /status changes status
                if new["status"] is None:
                    new.pop("status", None)
        new["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
        new["metadata"]["generation"] = current["metadata"].get("generation", 1)
        if new == current:
            return copy.deepcopy(current)  # a no-op write keeps the resourceVersion
        if _spec_of(new) != _spec_of(current):
            new["metadata"]["generation"] = current["metadata"].get("generation", 1) + 1
        new["metadata"]["resourceVersion"] = self._next_rv()
        self.objects[key] = new
        self._react(plural, "UPDATE", new)
        return copy.deepcopy(self.objects[key])

    def _create(self, group: str, version: str, plural: str, kind: str, ns: str | None, obj: dict,
                has_status: bool) -> dict:
        if not isinstance(obj, dict):
            raise ApiError(400, "BadRequest", "the body must be an object")
        meta = obj.setdefault("metadata", {})
        if not meta.get("name"):
            if meta.get("generateName"):
                meta["name"] = meta["generateName"] + uuid.uuid4().hex[:5]
            else:
                raise ApiError(422, "Invalid", f"{kind}: metadata.name: Required value: name or generateName is "
                                               "required")
        if ns and meta.get("namespace") not in (None, ns):
            raise ApiError(400, "BadRequest", "the namespace of the provided object does not match the namespace "
                                              "sent on the request")
        if ns is not None:
            meta["namespace"] = ns
            if ("", "v1", "namespaces", "", ns) not in self.objects:
                raise ApiError(404, "NotFound", f'namespaces "{ns}" not found',
                               {"name": ns, "kind": "namespaces"})
        key = (group, version, plural, ns or "", meta["name"])
        if key in self.objects:
            raise ApiError(409, "AlreadyExists", f'{_qualified(group, plural)} "{meta["name"]}" already exists',
                           {"name": meta["name"], "group": group, "kind": plural})
        obj.setdefault("apiVersion", f"{group}/{version}" if group else version)
        obj.setdefault("kind", kind)
        if has_status and plural != "nodes":
            obj.pop("status", None)  # create ignores status where a status subresource exists
        if plural == "namespaces":
            meta.setdefault("labels", {})["kubernetes.io/metadata.name"] = meta["name"]
        meta.update(uid=str(uuid.uuid4()), creationTimestamp=_now(), resourceVersion=self._next_rv(), generation=1)
        self.objects[key] = obj
        self._react(plural, "CREATE", obj)
        return copy.deepcopy(self.objects[key])

    def _list(self, group: str, version: str, plural: str, kind: str, ns: str | None, query: dict) -> dict:
        items = [copy.deepcopy(o) for (g, v, p, n, _name), o in sorted(self.objects.items())
                 if (g, v, p) == (group, version, plural) and (ns is None or n == ns)]
        if query.get("labelSelector"):
            items = [o for o in items if _label_matches(o["metadata"].get("labels") or {}, query["labelSelector"])]
        if query.get("fieldSelector"):
            items = [o for o in items if _field_matches(o, query["fieldSelector"])]
        return {"kind": f"{kind}List", "apiVersion": f"{group}/{version}" if group else version,
                "metadata": {"resourceVersion": str(self._rv)}, "items": items}

    def _log(self, pod: dict, query: dict) -> str:
        containers = [c["name"] for c in pod.get("spec", {}).get("containers", [])]
        container = query.get("container") or ""
        if not container:
            if len(containers) > 1:
                raise ApiError(400, "BadRequest", f"a container name must be specified for pod "
                                                  f"{pod['metadata']['name']}, choose one of: {containers}")
            container = containers[0] if containers else ""
        elif container not in containers:
            raise ApiError(400, "BadRequest", f"container {container} is not valid for pod {pod['metadata']['name']}")
        previous = query.get("previous") in ("true", "True", "1")
        key = (pod["metadata"]["namespace"], pod["metadata"]["name"], container, previous)
        text = self.logs.get(key, self.logs.get((key[0], key[1], "", previous)))
        if text is None:
            if previous:
                raise ApiError(400, "BadRequest", f'previous terminated container "{container}" in pod '
                                                  f'"{pod["metadata"]["name"]}" not found')
            text = ""
        if query.get("tailLines"):
            text = "\n".join(text.splitlines()[-int(query["tailLines"]):])
        return text

    def _scale(self, method: str, key: tuple, deployment: dict, content_type: str, body: bytes) -> tuple[int, dict]:
        def scale_of(dep: dict) -> dict:
            return {"kind": "Scale", "apiVersion": "autoscaling/v1",
                    "metadata": {"name": dep["metadata"]["name"], "namespace": dep["metadata"]["namespace"],
                                 "resourceVersion": dep["metadata"]["resourceVersion"], "uid": dep["metadata"]["uid"]},
                    "spec": {"replicas": dep["spec"].get("replicas", 1)},
                    "status": {"replicas": (dep.get("status") or {}).get("replicas", 0)}}

        if method == "GET":
            return 200, scale_of(deployment)
        current = scale_of(deployment)
        desired = _json(body, allow_list=True) if method == "PUT" else \
            self._patched("apps", current, content_type, _json(body, allow_list=True))
        rv = (desired.get("metadata") or {}).get("resourceVersion")
        if rv and rv != current["metadata"]["resourceVersion"]:
            raise ApiError(409, "Conflict", "the object has been modified; please apply your changes to the latest "
                                            "version and try again")
        new = copy.deepcopy(deployment)
        new["spec"]["replicas"] = int(desired["spec"]["replicas"])
        written = self._write(key, deployment, new, "deployments", status_only=False, has_status=True)
        return 200, scale_of(written)

    def _react(self, plural: str, verb: str, obj: dict) -> None:
        for wanted, fn in self.reactions:
            if wanted == plural:
                fn(self, verb, copy.deepcopy(obj))


# ---------------------------------------------------------------------------------- routing
def _split_api_version(api_version: str) -> tuple[str, str]:
    return tuple(api_version.split("/", 1)) if "/" in api_version else ("", api_version)  # type: ignore[return-value]


def _plural_of(group: str, version: str, kind: str) -> str:
    for (g, v, plural), (k, _ns, _st) in RESOURCES.items():
        if (g, v, k) == (group, version, kind):
            return plural
    raise KeyError(f"the fake API server has no resource for {group}/{version} {kind}")


def _qualified(group: str, plural: str) -> str:
    return f"{plural}.{group}" if group else plural


def _not_found(group: str, plural: str, name: str) -> ApiError:
    return ApiError(404, "NotFound", f'{_qualified(group, plural)} "{name}" not found',
                    {"name": name, "group": group, "kind": plural})


def _json(body: bytes, allow_list: bool = False) -> Any:
    try:
        value = json.loads(body or b"{}")
    except json.JSONDecodeError as exc:
        raise ApiError(400, "BadRequest", f"invalid JSON body: {exc}") from None
    if isinstance(value, list) and not allow_list:
        raise ApiError(400, "BadRequest", "the body must be an object")
    return value


def _spec_of(obj: dict) -> dict:
    return {k: v for k, v in obj.items() if k not in ("metadata", "status", "apiVersion", "kind")}


_PROXY_PATH = re.compile(r"/api/v1/namespaces/([^/]+)/services/([^/]+)/proxy(?:/(.*))?")


def _route(path: str) -> dict:
    parts = [p for p in path.split("/") if p]
    if parts[:2] == ["api", "v1"]:
        group, version, rest = "", "v1", parts[2:]
    elif len(parts) >= 3 and parts[0] == "apis":
        group, version, rest = parts[1], parts[2], parts[3:]
    else:
        raise ApiError(404, "NotFound", f"the server could not find the requested resource ({path})")
    route = {"group": group, "version": version, "namespace": None, "name": None, "sub": None}
    if group == "" and rest[:1] == ["namespaces"] and (len(rest) == 2 or (len(rest) == 3 and rest[2] in
                                                                           ("status", "finalize"))):
        route.update(plural="namespaces", name=rest[1], sub=rest[2] if len(rest) == 3 else None)
    elif rest[:1] == ["namespaces"] and len(rest) >= 3:
        route.update(namespace=rest[1], plural=rest[2], name=rest[3] if len(rest) > 3 else None,
                     sub=rest[4] if len(rest) > 4 else None)
    elif rest:
        route.update(plural=rest[0], name=rest[1] if len(rest) > 1 else None, sub=rest[2] if len(rest) > 2 else None)
    else:
        raise ApiError(404, "NotFound", f"the server could not find the requested resource ({path})")
    if (group, version, route["plural"]) not in RESOURCES:
        raise ApiError(404, "NotFound", f"the server could not find the requested resource ({path})")
    namespaced = RESOURCES[(group, version, route["plural"])][1]
    if not namespaced and route["namespace"] is not None:
        raise ApiError(404, "NotFound", f"{route['plural']} is cluster-scoped")
    if namespaced and route["namespace"] is None and route["name"] is not None:
        raise ApiError(404, "NotFound", f"{route['plural']} is namespaced")
    return route


def _make_handler(fake: FakeApiServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, fmt: str, *args: Any) -> None:
            return

        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            code, payload, ctype = fake.handle(self.command, self.path, self.headers.get("Content-Type", ""), body)
            data = payload.encode() if isinstance(payload, str) else json.dumps(payload).encode()
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _serve

    return Handler
