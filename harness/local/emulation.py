"""KServe 0.14's control plane for `deploymentMode: Serverless`, emulated over local processes.

This is the one piece of the local profile that is not the real program (KServe's controller,
Knative and Kubernetes cannot run here). It follows KServe 0.14's documented and coded behaviour:
  * a revision per change of the predictor's template (anything but canaryTrafficPercent), named
    like Knative's `<isvc>-predictor-0000N`;
  * per replica: KServe's storage initializer copies storageUri into the replica's /mnt/models,
    then MLServer with the MLflow runtime starts; `minReplicas` replicas (Knative's initial scale
    is 1 when minReplicas is 0);
  * readiness: a revision is Ready when all its initial replicas pass the V2 readiness probe; a
    replica that exits before that fails the revision with its log's tail as the message
    (FallbackToLogsOnError), which KServe copies into modelStatus.lastFailureInfo;
  * traffic exactly as KServe's ksvc reconciler builds it: with canaryTrafficPercent P and a
    rolled-out revision, [latest ready: P, latestRolledoutRevision: 100-P tagged "prev"];
    otherwise [latest ready: 100]. Knative routes `latestRevision: true` to the latest READY
    revision, so a broken new revision takes no traffic;
  * status propagation ported from PropagateStatus/PropagateModelStatus (latest/previous
    rolled-out revision bookkeeping, rollback case included) and the Ready condition set
    (PredictorReady and IngressReady);
  * a replica that dies after it was ready is restarted with back-off, as its Deployment would;
  * `minReplicas: 0`: a revision with no traffic is scaled to zero after a grace period, and
    traffic sent to it again starts it cold;
  * cold starts (scale-from-zero) are bounded by the revision's readiness budget: the model
    container's readinessProbe initialDelaySeconds + periodSeconds x failureThreshold (none
    without a probe: Knative's progress deadline then). Replicas not ready within it are stopped,
    the revision stays scaled to zero (event ColdStartTimedOut) until traffic stops naming it, and
    the route reports `Revision "<name>" has no ready pods`. This is the emulation's model of a
    cold start that outlasts the readiness timeout; on a cluster the pods would be restarted by
    their probes. The first deployment of a revision keeps the progress deadline (600 s), so a
    slow model deploys fine the first time;
  * while a routed revision cold-starts, its share of the traffic goes to an activator (see
    activator.py), as Knative's activator takes it: requests are held until a replica is ready
    and then forwarded, or answered 503 when the cold start is abandoned;
  * tagged routes, as Knative makes them from the traffic KServe writes (``prev`` on the rolled-out
    revision of a canary split, ``latest`` with serving.kserve.io/enable-tag-routing): each tagged
    target's ``url`` in the status, and its host routed by the router to that revision alone,
    whatever its percent.
What it does not do is listed in the README ("Where the local KServe emulation differs").
"""
from __future__ import annotations

import copy
import hashlib
import json
import queue
import re
import shutil
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from harness.envs import RoleEnv
from harness.local import reconcile
from harness.local.activator import Activator
from harness.local.haproxy import SERVED_BY_HEADER, HAProxyRouter, tag_backend_name, weight_for
from harness.local.patch import PatchError, json_patch, merge_patch
from harness.local.replica import Replica
from harness.local.services.prometheus import PrometheusServer, ScrapeTarget
from harness.ports import LOOPBACK
from harness.procs import ProcessRegistry
from harness.serving.isvc import revision_template

__all__ = ["AlreadyExists", "Conflict", "EmulationConfig", "InvalidObject", "KServeEmulation", "NotFound"]

GROUP, VERSION, PLURAL, KIND = "serving.kserve.io", "v1beta1", "inferenceservices", "InferenceService"
_DNS1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
#: Model formats the 0.14 kserve-mlserver runtime lists (the only runtime the emulation has).
_MLSERVER_FORMATS = {"mlflow", "sklearn", "xgboost", "lightgbm"}
#: The tags KServe v0.14.1's ksvc reconciler ever writes (ksvc_reconciler.go): each gets a router backend.
_TAGS = ("latest", "prev")


class ApiError(Exception):
    code = 500
    reason = "InternalError"


class NotFound(ApiError):
    code, reason = 404, "NotFound"


class AlreadyExists(ApiError):
    code, reason = 409, "AlreadyExists"


class Conflict(ApiError):
    code, reason = 409, "Conflict"


class InvalidObject(ApiError):
    code, reason = 422, "Invalid"


@dataclass
class EmulationConfig:
    #: Knative's progress deadline: a revision not ready by then fails (ProgressDeadlineExceeded).
    progress_deadline_s: float = 600.0
    #: How long an unreferenced minReplicas-0 revision keeps its replicas (Knative's
    #: stable window + scale-to-zero grace period, 60s + 30s on a cluster; shortened locally).
    scale_to_zero_after_s: float = 30.0
    #: Back-off before a crashed, once-ready replica is restarted (CrashLoopBackOff's first step).
    restart_backoff_s: float = 2.0
    resync_interval_s: float = 0.25
    namespace_domain: str = "example.com"


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _hash(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:12]


@dataclass
class Revision:
    name: str
    isvc: str
    namespace: str
    template: dict
    generation: int
    created: float = field(default_factory=time.monotonic)
    replicas: list[Replica] = field(default_factory=list)
    state: str = "Deploying"  # Deploying | Ready | Failed
    reason: str = ""
    message: str = ""
    failure_exit_code: int = 0
    termination_message: str = ""  # what KServe copies into modelStatus.lastFailureInfo.message
    storage_state: str = "Pending"  # Pending | Running | Terminated-OK | Terminated-Error
    scaled_to_zero: bool = False
    ready_seconds: float | None = None  # creation -> Ready: storage initializer + model load
    last_traffic_at: float = field(default_factory=time.monotonic)
    starting: bool = False
    cold_start_since: float | None = None  # scale-from-zero in progress since (monotonic)
    cold_start_failed: str = ""  # why the last cold start was abandoned; "" once traffic leaves it

    @property
    def min_replicas(self) -> int:
        return int(self.template.get("minReplicas", 1) if self.template.get("minReplicas") is not None else 1)

    @property
    def initial_scale(self) -> int:
        return max(1, self.min_replicas)

    @property
    def readiness_budget_s(self) -> float | None:
        """How long a started replica may take to pass its readiness probe: initialDelaySeconds +
        periodSeconds x failureThreshold (Kubernetes' defaults 0, 10, 3); None without a probe."""
        probe = self.template.get("model", {}).get("readinessProbe")
        if not isinstance(probe, dict):
            return None
        return (float(probe.get("initialDelaySeconds") or 0)
                + float(probe.get("periodSeconds") or 10) * float(probe.get("failureThreshold") or 3))

    @property
    def storage_uri(self) -> str:
        return str(self.template.get("model", {}).get("storageUri", ""))

    def ready_replicas(self) -> list[Replica]:
        return [r for r in self.replicas if r.ready_at is not None and r.alive()]


@dataclass
class _Service:
    obj: dict
    revisions: list[Revision] = field(default_factory=list)
    next_revision: int = 1
    # Its Knative Service's generation (what KServe reports as the InferenceService's
    # status.observedGeneration: not the InferenceService's own metadata.generation).
    ksvc_generations: reconcile.KsvcGenerations = field(default_factory=reconcile.KsvcGenerations)


class KServeEmulation:
    def __init__(self, *, registry: ProcessRegistry, state: Path, serving_env: RoleEnv, storage_env: RoleEnv,
                 router: HAProxyRouter, prometheus: PrometheusServer | None, storage_env_vars: dict[str, str],
                 config: EmulationConfig | None = None) -> None:
        self.registry = registry
        self.state = state / "kserve"
        self.state.mkdir(parents=True, exist_ok=True)
        self.serving_env = serving_env
        self.storage_env = storage_env
        self.router = router
        self.prometheus = prometheus
        self.storage_env_vars = dict(storage_env_vars)
        self.config = config or EmulationConfig()
        self._lock = threading.RLock()
        self._services: dict[tuple[str, str], _Service] = {}
        self._events: list[dict] = []
        self._queue: queue.Queue[tuple[str, str] | None] = queue.Queue()
        self._stop = threading.Event()
        self._resource_version = 0
        self._activators: dict[tuple[str, str], Activator] = {}
        self._worker = threading.Thread(target=self._run, name="kserve-emulation", daemon=True)
        self._worker.start()
        self.on_change: list[Callable[[], None]] = []

    # ------------------------------------------------------------------ API (the apiserver's view)
    def list(self, namespace: str) -> list[dict]:
        with self._lock:
            return [copy.deepcopy(s.obj) for (ns, _), s in sorted(self._services.items()) if ns == namespace]

    def get(self, namespace: str, name: str) -> dict:
        with self._lock:
            return copy.deepcopy(self._service(namespace, name).obj)

    def create(self, namespace: str, obj: dict) -> dict:
        obj = copy.deepcopy(obj)
        meta = obj.setdefault("metadata", {})
        name = meta.get("name", "")
        meta.setdefault("namespace", namespace)
        if meta["namespace"] != namespace:
            raise InvalidObject(f"the namespace of the object ({meta['namespace']}) does not match the "
                                f"namespace on the request ({namespace})")
        self._validate(name, obj)
        with self._lock:
            if (namespace, name) in self._services:
                raise AlreadyExists(f'inferenceservices.serving.kserve.io "{name}" already exists')
            meta.update({"uid": str(uuid.uuid4()), "generation": 1, "creationTimestamp": _now(),
                         "resourceVersion": self._next_rv()})
            obj.pop("status", None)
            obj["status"] = {}
            self._services[(namespace, name)] = _Service(obj)
        self._event(namespace, name, "Created", f"InferenceService {name} created")
        self._queue.put((namespace, name))
        return self.get(namespace, name)

    def replace(self, namespace: str, name: str, obj: dict) -> dict:
        obj = copy.deepcopy(obj)
        self._validate(name, obj)
        with self._lock:
            svc = self._service(namespace, name)
            rv = obj.get("metadata", {}).get("resourceVersion")
            if rv and rv != svc.obj["metadata"]["resourceVersion"]:
                raise Conflict(f'Operation cannot be fulfilled on inferenceservices.serving.kserve.io "{name}": '
                               "the object has been modified; please apply your changes to the latest version "
                               "and try again")
            self._store_update(svc, obj)
        self._queue.put((namespace, name))
        return self.get(namespace, name)

    def patch(self, namespace: str, name: str, patch: Any, content_type: str) -> dict:
        with self._lock:
            current = copy.deepcopy(self._service(namespace, name).obj)
        try:
            if "json-patch" in content_type:
                updated = json_patch(current, patch)
            elif "merge-patch" in content_type or content_type.startswith("application/json"):
                updated = merge_patch(current, patch)
            else:
                raise ApiError(f"unsupported patch type {content_type!r} for custom resources "
                               "(use application/merge-patch+json or application/json-patch+json)")
        except PatchError as exc:
            raise InvalidObject(str(exc)) from None
        self._validate(name, updated)
        with self._lock:
            self._store_update(self._service(namespace, name), updated)
        self._queue.put((namespace, name))
        return self.get(namespace, name)

    def delete(self, namespace: str, name: str) -> dict:
        with self._lock:
            svc = self._services.pop((namespace, name), None)
        if svc is None:
            raise NotFound(f'inferenceservices.serving.kserve.io "{name}" not found')
        retiring = [r for rev in svc.revisions for r in self._scale_to_zero(rev)]
        for rev in svc.revisions:
            self._close_activator(rev)
        self.router.remove_backend(namespace, name)  # unrouted first, as Kubernetes drops endpoints
        for replica in retiring:
            replica.stop(self.registry)
        self._publish_targets()
        self._event(namespace, name, "Deleted", f"InferenceService {name} deleted")
        return {"kind": "Status", "apiVersion": "v1", "status": "Success",
                "details": {"name": name, "group": GROUP, "kind": PLURAL}}

    # ------------------------------------------------------------------ harness-side views
    def revisions(self, namespace: str, name: str) -> list[Revision]:
        with self._lock:
            return list(self._service(namespace, name).revisions)

    def revision(self, namespace: str, name: str, revision: str) -> Revision:
        for rev in self.revisions(namespace, name):
            if rev.name == revision:
                return rev
        raise NotFound(f"revision {revision} of {namespace}/{name} not found")

    def all_revisions(self) -> list[list[Revision]]:
        with self._lock:
            return [list(svc.revisions) for svc in self._services.values()]

    def events(self) -> list[dict]:
        with self._lock:
            return list(self._events)

    def close(self) -> None:
        self._stop.set()
        self._queue.put(None)
        self._worker.join(timeout=10)
        with self._lock:
            services = list(self._services.values())
            self._services.clear()
        for svc in services:
            for rev in svc.revisions:
                for replica in rev.replicas:
                    replica.stop(self.registry)
        with self._lock:
            activators = list(self._activators.values())
            self._activators.clear()
        for activator in activators:
            activator.close()

    # ------------------------------------------------------------------ internals
    def _service(self, namespace: str, name: str) -> _Service:
        svc = self._services.get((namespace, name))
        if svc is None:
            raise NotFound(f'inferenceservices.serving.kserve.io "{name}" not found')
        return svc

    def _next_rv(self) -> str:
        self._resource_version += 1
        return str(self._resource_version)

    def _store_update(self, svc: _Service, obj: dict) -> None:
        old = svc.obj
        meta = obj.setdefault("metadata", {})
        for key in ("uid", "creationTimestamp", "namespace", "name"):
            meta[key] = old["metadata"][key]
        generation = old["metadata"]["generation"]
        if obj.get("spec") != old.get("spec"):
            generation += 1
        meta["generation"] = generation
        meta["resourceVersion"] = self._next_rv()
        obj["status"] = old.get("status", {})  # status is the controller's, not the client's
        svc.obj = obj

    def _validate(self, name: str, obj: dict) -> None:
        """The admission webhook's checks that matter here (inference_service_validation.go)."""
        if obj.get("apiVersion") != f"{GROUP}/{VERSION}" or obj.get("kind") != KIND:
            raise InvalidObject(f"expected apiVersion {GROUP}/{VERSION} and kind {KIND}, got "
                                f"{obj.get('apiVersion')}/{obj.get('kind')}")
        meta_name = obj.get("metadata", {}).get("name")
        if meta_name != name and name:
            raise InvalidObject(f"metadata.name {meta_name!r} does not match the URL's name {name!r}")
        if not meta_name or not _DNS1035.match(meta_name):
            raise InvalidObject(
                f'The InferenceService "{meta_name}" is invalid: a DNS-1035 label must consist of lower case '
                "alphanumeric characters or '-', start with an alphabetic character, and end with an "
                "alphanumeric character")
        predictor = obj.get("spec", {}).get("predictor")
        if not isinstance(predictor, dict):
            raise InvalidObject("spec.predictor: Required value")
        pct = predictor.get("canaryTrafficPercent")
        if pct is not None and (not isinstance(pct, int) or not 0 <= pct <= 100):
            raise InvalidObject(f"spec.predictor.canaryTrafficPercent: Invalid value: {pct!r}: must be an "
                                "integer between 0 and 100")
        lo, hi = predictor.get("minReplicas"), predictor.get("maxReplicas")
        if lo is not None and (not isinstance(lo, int) or lo < 0):
            raise InvalidObject("MinReplicas cannot be less than 0.")
        if hi is not None and (not isinstance(hi, int) or hi < 0):
            raise InvalidObject("MaxReplicas cannot be less than 0.")
        if lo is not None and hi is not None and hi and lo > hi:
            raise InvalidObject("MinReplicas cannot be greater than MaxReplicas.")

    def _event(self, namespace: str, name: str, reason: str, message: str) -> None:
        with self._lock:
            self._events.append({"time": _now(), "namespace": namespace, "name": name, "reason": reason,
                                 "message": message})

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                key = self._queue.get(timeout=self.config.resync_interval_s)
            except queue.Empty:
                key = "resync"
            if key is None:
                return
            with self._lock:
                keys = list(self._services) if key == "resync" else [key]
            for ns, name in keys:
                try:
                    self._reconcile(ns, name)
                except NotFound:
                    continue
                except Exception as exc:  # noqa: BLE001  keep reconciling others; record like a controller would
                    self._event(ns, name, "InternalError", f"{type(exc).__name__}: {exc}")

    # -------------------------------------------------------------- reconcile
    def _reconcile(self, namespace: str, name: str) -> None:
        with self._lock:
            svc = self._service(namespace, name)
            obj = svc.obj
            spec = copy.deepcopy(obj.get("spec", {}))
            generation = obj["metadata"]["generation"]
            annotations = dict(obj["metadata"].get("annotations") or {})
        predictor = spec.get("predictor", {})
        problem = self._runtime_problem(predictor, annotations)
        if problem:
            self._set_invalid(svc, generation, *problem)
            return
        template = revision_template({"spec": spec})
        with self._lock:
            latest = svc.revisions[-1] if svc.revisions else None
            if latest is None or _hash(latest.template) != _hash(template):
                rev = Revision(name=f"{name}-predictor-{svc.next_revision:05d}", isvc=name,
                               namespace=namespace, template=template, generation=generation)
                svc.next_revision += 1
                svc.revisions.append(rev)
                self._event(namespace, name, "RevisionCreated", rev.name)
                self._start_revision(rev)
        self._check_revisions(svc)
        self._route(svc, spec, annotations, generation)

    def _runtime_problem(self, predictor: dict, annotations: dict) -> tuple[str, str] | None:
        model = predictor.get("model")
        if not isinstance(model, dict):
            return ("InvalidPredictorSpec", ("predictor.model is required for the local profile (only the "
                    "model spec is emulated; custom containers are not)"))
        fmt = (model.get("modelFormat") or {}).get("name")
        protocol = model.get("protocolVersion") or "v1"  # ModelSpec.GetProtocol() defaults to v1
        if fmt not in _MLSERVER_FORMATS or protocol != "v2":
            return ("NoSupportingRuntime", "No runtime found to support specified framework/version")
        mode = annotations.get("serving.kserve.io/deploymentMode", "Serverless")
        if mode != "Serverless":
            return ("UnsupportedDeploymentMode", (f"the local profile emulates Serverless only, not {mode} "
                    "(canaryTrafficPercent is honoured only in Serverless mode in KServe 0.14)"))
        if not model.get("storageUri"):
            return ("InvalidPredictorSpec", "predictor.model.storageUri is required")
        return None

    def _set_invalid(self, svc: _Service, generation: int, reason: str, message: str) -> None:
        with self._lock:
            status = svc.obj.setdefault("status", {})
            status["observedGeneration"] = generation
            status["modelStatus"] = {"transitionStatus": "InvalidSpec",
                                     "states": {"targetModelState": "FailedToLoad"},
                                     "lastFailureInfo": {"reason": reason, "message": message}}
            _set_condition(status, "PredictorReady", "False", reason, message)
            _set_condition(status, "Ready", "False", reason, message)
            svc.obj["metadata"]["resourceVersion"] = self._next_rv()

    def _start_revision(self, rev: Revision) -> None:
        rev.starting = True
        threading.Thread(target=self._bring_up, args=(rev, rev.initial_scale), name=f"start-{rev.name}",
                         daemon=True).start()

    def _bring_up(self, rev: Revision, count: int) -> None:
        """Storage initializer then model server for each replica, like a pod's init + main container."""
        try:
            home = self.state / rev.namespace / rev.name
            base = len(rev.replicas)
            fresh = [Replica(rev.name, base + i, home / f"replica-{base + i}", rev.isvc) for i in range(count)]
            rev.storage_state = "Running"
            for replica in fresh:
                shutil.rmtree(replica.home, ignore_errors=True)
                replica.home.mkdir(parents=True)
                result = replica.initialize_storage(self.storage_env, rev.storage_uri, self.storage_env_vars)
                if not result.ok:
                    rev.storage_state = "Terminated-Error"
                    rev.termination_message = result.log.strip()[-2048:]
                    self._fail(rev, "StorageInitializerFailed", rev.termination_message, result.exit_code)
                    return
            rev.storage_state = "Terminated-OK"
            for replica in fresh:
                replica.start(self.registry, self.serving_env, self.storage_env_vars)
                rev.replicas.append(replica)
            rev.scaled_to_zero = False
        finally:
            rev.starting = False
            self._queue.put((rev.namespace, rev.isvc))

    def _fail(self, rev: Revision, reason: str, message: str, exit_code: int) -> None:
        rev.state, rev.reason, rev.message, rev.failure_exit_code = "Failed", reason, message, exit_code
        self._event(rev.namespace, rev.isvc, reason, f"{rev.name}: {message[-300:]}")

    def _check_revisions(self, svc: _Service) -> None:
        now = time.monotonic()
        for rev in list(svc.revisions):
            if rev.starting or rev.state == "Failed":
                continue
            for replica in rev.replicas:
                if replica.ready_at is None and replica.alive() and replica.probe_ready():
                    replica.ready_at = now
            dead = [r for r in rev.replicas if r.process is not None and not r.alive()]
            if rev.state == "Deploying":
                if dead:
                    victim = dead[0]
                    code = victim.process.exit_code()
                    # Knative: "Container failed with: <termination message>". With exit code 0
                    # Kubernetes keeps no message: the cause is only in the container's log.
                    rev.termination_message = victim.termination_message()
                    self._fail(rev, f"ExitCode{code}",
                               f"Container failed with: {rev.termination_message}" if rev.termination_message
                               else f"Container exited with code {code} before it was ready "
                                    "(restarted into CrashLoopBackOff); its log holds the cause", code or 0)
                    for replica in rev.replicas:
                        replica.stop(self.registry)
                    continue
                if rev.replicas and len(rev.ready_replicas()) >= rev.initial_scale:
                    rev.state = "Ready"
                    rev.ready_seconds = now - rev.created
                    self._event(rev.namespace, rev.isvc, "RevisionReady",
                                f"{rev.name} ready {rev.ready_seconds:.1f}s after it was created")
                elif now - rev.created > self.config.progress_deadline_s:
                    self._fail(rev, "ProgressDeadlineExceeded",
                               f'Revision "{rev.name}" failed to become ready within '
                               f"{self.config.progress_deadline_s:.0f}s", 1)
                    for replica in rev.replicas:
                        replica.stop(self.registry)
                continue
            if rev.cold_start_since is not None:
                self._check_cold_start(rev, now)
            # Ready revisions: restart replicas that died, as a Deployment restarts its pods.
            for replica in dead:
                if now - (replica.process_exit_seen or now) >= self.config.restart_backoff_s:
                    replica.restarts += 1
                    replica.start(self.registry, self.serving_env, self.storage_env_vars)
                    replica.process_exit_seen = None
                elif replica.process_exit_seen is None:
                    replica.process_exit_seen = now
                    self._event(rev.namespace, rev.isvc, "ReplicaExited",
                                f"{replica.name} exited with {replica.process.exit_code()}")

    def _check_cold_start(self, rev: Revision, now: float) -> None:
        """A scale-from-zero ends when a replica is ready, or is abandoned when the replicas
        outlast the readiness budget (counted from the container's start, as the kubelet does)."""
        since = rev.cold_start_since
        assert since is not None
        if rev.ready_replicas():
            rev.cold_start_since = None
            self._event(rev.namespace, rev.isvc, "ColdStartReady",
                        f"{rev.name} ready {now - since:.1f}s after traffic named it again")
            return
        started = [r.started_at for r in rev.replicas if r.process is not None]
        budget = rev.readiness_budget_s
        limit = budget if budget is not None else self.config.progress_deadline_s
        if started and now - min(started) > limit:
            what = (f"the readiness probe's budget ({budget:.0f}s = initialDelaySeconds + periodSeconds x "
                    "failureThreshold)" if budget is not None else
                    f"the progress deadline ({limit:.0f}s)")
            rev.cold_start_failed = (f"no replica of {rev.name} passed its readiness probe within {what} "
                                     f"of its start; cold start abandoned {now - since:.1f}s after traffic "
                                     "named it")
            rev.cold_start_since = None
            self._event(rev.namespace, rev.isvc, "ColdStartTimedOut", rev.cold_start_failed)
            # The pods go (a model server busy loading ignores SIGTERM for the stop's grace
            # period): off the reconcile loop, so the status and the router follow at once.
            self._stop_in_background(rev.name, self._scale_to_zero(rev))

    # -------------------------------------------------------------- traffic and status
    def _route(self, svc: _Service, spec: dict, annotations: dict, generation: int) -> None:
        """One reconcile of the service's traffic, scale and status; the decisions are the pure
        functions of reconcile.py (KServe's ksvc reconciler and PropagateStatus, Knative's route
        and scale bounds), applied here to the processes and the router."""
        name, namespace = svc.obj["metadata"]["name"], svc.obj["metadata"]["namespace"]
        with self._lock:
            revisions = list(svc.revisions)
            status = copy.deepcopy(svc.obj.get("status") or {})
        predictor_status = (status.get("components") or {}).get("predictor", {})
        latest_created = revisions[-1]
        ready = [r for r in revisions if r.state == "Ready"]
        latest_ready = ready[-1] if ready else None
        rolled = predictor_status.get("latestRolledoutRevision", "")
        previous = predictor_status.get("previousRolledoutRevision", "")
        tag_routing = annotations.get(reconcile.TAG_ROUTING_ANNOTATION) == "true"
        spec_traffic = reconcile.ksvc_traffic(spec.get("predictor", {}).get("canaryTrafficPercent"), rolled,
                                              tag_routing=tag_routing)
        # KServe copies the Knative Service's generation, not its own, into observedGeneration.
        ksvc_generation = svc.ksvc_generations.observe(latest_created.template, spec_traffic)
        traffic = reconcile.resolve_traffic(spec_traffic, latest_ready.name if latest_ready else None)
        traffic = reconcile.with_tag_urls(traffic, reconcile.predictor_route(name), namespace,
                                          self.config.namespace_domain)
        rolled, previous = reconcile.propagate_rollout(
            traffic, latest_ready=latest_ready.name if latest_ready else None, latest_created=latest_created.name,
            rolled_out=rolled, previous=previous)
        shares = reconcile.per_revision(traffic)

        # Knative: scale from zero for revisions traffic names again, to zero for idle ones.
        now = time.monotonic()
        plan = reconcile.scale_plan([reconcile.RevisionView(
            r.name, ready=r.state == "Ready", has_replicas=bool(r.replicas), starting=r.starting,
            scaled_to_zero=r.scaled_to_zero, cold_start_failed=bool(r.cold_start_failed),
            min_replicas=r.min_replicas, idle_s=now - r.last_traffic_at,
            autoscaler=reconcile.autoscaler_class(annotations)) for r in revisions], shares,
            grace_s=self.config.scale_to_zero_after_s)
        by_name = {r.name: r for r in revisions}
        for rev_name in plan.touched:
            by_name[rev_name].last_traffic_at = now
        for rev_name in plan.cold_start:
            rev = by_name[rev_name]
            self._event(namespace, name, "ScaleFromZero", rev.name)
            rev.cold_start_since = now
            self._start_revision_replicas(rev)
        for rev_name in plan.retry_cold_start:
            by_name[rev_name].cold_start_failed = ""  # an abandoned cold start is retried once traffic returns
        retiring: list[Replica] = []
        for rev_name in plan.scale_to_zero:
            self._event(namespace, name, "ScaleToZero", rev_name)
            retiring.extend(self._scale_to_zero(by_name[rev_name]))

        self._program_router(namespace, name, revisions, shares, traffic)
        if retiring:  # stopped once the router no longer names them, off the reconcile loop
            self._stop_in_background(f"scale-to-zero-{name}", retiring)

        routed = [t["revisionName"] for t in traffic if t["percent"] > 0 and t["revisionName"] in by_name]
        serving = bool(traffic) and all(by_name[r].ready_replicas() or by_name[r].starting or
                                        by_name[r].cold_start_since is not None for r in routed)
        conds = reconcile.conditions(self._configuration_condition(latest_created), traffic, routed_serving=serving,
                                     first_routed=routed[0] if routed else None)

        with self._lock:
            if (namespace, name) not in self._services:
                return
            status = svc.obj.setdefault("status", {})
            url = f"http://{name}.{namespace}.{self.config.namespace_domain}"
            comp = {
                "latestCreatedRevision": latest_created.name,
                "traffic": traffic,
            }
            if latest_ready is not None:
                comp["latestReadyRevision"] = latest_ready.name
            if rolled:
                comp["latestRolledoutRevision"] = rolled
            if previous:
                comp["previousRolledoutRevision"] = previous
            if conds["PredictorReady"][0] == "True":
                comp["url"] = f"http://{name}-predictor.{namespace}.{self.config.namespace_domain}"
                comp["address"] = {"url": f"http://{name}-predictor.{namespace}.svc.cluster.local"}
            status["components"] = {"predictor": comp}
            for ctype, cond in conds.items():
                _set_condition(status, ctype, *cond)
            if conds["Ready"][0] == "True":
                status["url"] = url
                status["address"] = {"url": f"http://{name}.{namespace}.svc.cluster.local"}
            status["modelStatus"] = self._model_status(status, latest_created, conds["Ready"][0] == "True")
            status["observedGeneration"] = ksvc_generation
            if svc.obj.get("status") != status:
                svc.obj["status"] = status
                svc.obj["metadata"]["resourceVersion"] = self._next_rv()
        self._publish_targets()  # after the status write: a target's role follows the new traffic

    def _start_revision_replicas(self, rev: Revision) -> None:
        rev.starting = True
        threading.Thread(target=self._bring_up, args=(rev, rev.initial_scale), name=f"scale-{rev.name}",
                         daemon=True).start()

    @staticmethod
    def _scale_to_zero(rev: Revision) -> list[Replica]:
        """Detach the revision's replicas (the router stops naming them when next programmed) and
        return them, for the caller to stop after that: stopping a replica the router still sends
        requests to fails those requests with 500s, which Knative's drain never does."""
        replicas, rev.replicas, rev.scaled_to_zero = rev.replicas, [], True
        return replicas

    def _stop_in_background(self, what: str, replicas: list[Replica]) -> None:
        """Stop replicas off the reconcile loop: one service's slow shutdown (a model server may
        take its whole grace period) must not delay every other service's reconcile."""
        threading.Thread(target=lambda: [r.stop(self.registry) for r in replicas], name=f"stop-{what}",
                         daemon=True).start()

    @staticmethod
    def _configuration_condition(latest_created: Revision) -> tuple[str, str, str]:
        if latest_created.state == "Ready":
            return ("True", "", "")
        if latest_created.state == "Failed":
            return ("False", "RevisionFailed",
                    f'Revision "{latest_created.name}" failed with message: {latest_created.message}.')
        return ("Unknown", "RevisionMissing", 'Configuration is waiting for a Revision to become ready.')

    @staticmethod
    def _model_status(status: dict, latest_created: Revision, ready: bool) -> dict:
        """PropagateModelStatus: Pending / Loading / Loaded / FailedToLoad with lastFailureInfo."""
        replicas = len(latest_created.replicas)
        prior = status.get("modelStatus") or {}
        states = dict(prior.get("states") or {})
        out: dict[str, Any] = {}
        if latest_created.state == "Failed":
            states["targetModelState"] = "FailedToLoad"
            out["transitionStatus"] = "BlockedByFailedLoad"
            info = {"reason": "ModelLoadFailed", "exitCode": latest_created.failure_exit_code}
            if latest_created.reason == "StorageInitializerFailed":
                info["message"] = latest_created.message
            elif latest_created.termination_message:
                info["message"] = latest_created.termination_message
            out["lastFailureInfo"] = info
        elif ready and status["components"]["predictor"].get("latestReadyRevision") == latest_created.name:
            states.update(targetModelState="Loaded", activeModelState="Loaded")
            out["transitionStatus"] = "UpToDate"
            out["copies"] = {"totalCopies": replicas}
        elif latest_created.storage_state == "Running":
            states["targetModelState"] = "Loading"
            out["transitionStatus"] = "InProgress"
        else:
            states["targetModelState"] = "Pending"
            out["transitionStatus"] = "InProgress"
        out["states"] = states
        if "lastFailureInfo" not in out and prior.get("lastFailureInfo"):
            out["lastFailureInfo"] = prior["lastFailureInfo"]
        return out

    def _program_router(self, namespace: str, name: str, revisions: list[Revision],
                        per_revision: dict[str, int], traffic: list[dict]) -> None:
        backend = self.router.ensure_backend(namespace, name, tags=_TAGS)
        wanted: dict[str, tuple[str, int, int]] = {}
        for rev in revisions:
            share = per_revision.get(rev.name, 0)
            ready = rev.ready_replicas()
            for replica in ready:
                wanted[replica.name] = (LOOPBACK, replica.http_port, weight_for(share, len(ready)))
            # Knative's activator: a routed revision that is cold-starting takes its share through
            # it; once the revision is served directly, it drains (weight 0) and goes.
            key = (rev.namespace, rev.name)
            with self._lock:
                activator = self._activators.get(key)
            if share > 0 and not ready and (rev.cold_start_since is not None or rev.starting):
                if activator is None:
                    activator = self._open_activator(rev)
                wanted[activator.server_name] = (LOOPBACK, activator.port, weight_for(share, 1))
            elif activator is not None and activator.in_flight:
                wanted[activator.server_name] = (LOOPBACK, activator.port, 0)
        self.router.set_servers(backend, wanted)
        self._program_tag_routes(namespace, name, revisions, traffic)
        for rev in revisions:  # closed only once the router no longer names them
            with self._lock:
                idle = self._activators.get((rev.namespace, rev.name))
            if idle is not None and idle.server_name not in wanted:
                self._close_activator(rev)

    def _program_tag_routes(self, namespace: str, name: str, revisions: list[Revision], traffic: list[dict]) -> None:
        """Knative's tagged routes: a tag's host sends every request to the revision the tag names,
        whatever its percent (a rolled-back canary at 0 % stays reachable by its tag); a tag no
        target carries any more stops routing (its host answers by path again: 404 with no
        matching path). Only ready replicas: a tagged revision without one answers 503 (on a
        cluster the activator would hold the request through a cold start)."""
        by_name = {r.name: r for r in revisions}
        tagged = {t["tag"]: t for t in traffic if t.get("tag") and t.get("url")}
        for tag in _TAGS:
            backend = tag_backend_name(namespace, name, tag)
            host = urlparse(reconcile.tag_url(tag, reconcile.predictor_route(name), namespace,
                                              self.config.namespace_domain)).hostname or ""
            target = tagged.get(tag)
            rev = by_name.get(target["revisionName"]) if target is not None else None
            if rev is None:
                self.router.route_host(host, None)
                self.router.set_servers(backend, {})
                continue
            ready = rev.ready_replicas()
            self.router.set_servers(backend, {r.name: (LOOPBACK, r.http_port, weight_for(100, len(ready)))
                                              for r in ready})
            self.router.route_host(host, backend)

    def _open_activator(self, rev: Revision) -> Activator:
        activator = Activator(rev.name, rev.ready_replicas,
                              lambda: rev.cold_start_failed or (rev.message if rev.state == "Failed" else ""),
                              served_by_header=SERVED_BY_HEADER)
        with self._lock:
            self._activators[(rev.namespace, rev.name)] = activator
        self._event(rev.namespace, rev.isvc, "ActivatorRouting",
                    f"{rev.name} has no ready replica: its traffic goes through the activator "
                    f"(127.0.0.1:{activator.port}) while it starts")
        return activator

    def _close_activator(self, rev: Revision) -> None:
        with self._lock:
            activator = self._activators.pop((rev.namespace, rev.name), None)
        if activator is not None:
            activator.close()

    def _publish_targets(self) -> None:
        if self.prometheus is None:
            return
        targets: list[ScrapeTarget] = []
        with self._lock:
            services = list(self._services.values())
        for svc in services:
            comp = ((svc.obj.get("status") or {}).get("components") or {}).get("predictor", {})
            traffic = comp.get("traffic", [])
            latest = next((t["revisionName"] for t in traffic if t.get("latestRevision")), None)
            # A canary exists only when the split names two different revisions (KServe splits
            # a lone rolled-out revision with itself: [latest P%, prev 100-P%] on one revision).
            split = len({t["revisionName"] for t in traffic}) > 1
            for rev in svc.revisions:
                role = "canary" if split and rev.name == latest else "stable"
                for replica in rev.replicas:
                    if replica.process is None or not replica.alive():
                        continue
                    targets.append(ScrapeTarget(f"127.0.0.1:{replica.metrics_port}", {
                        "isvc": rev.isvc, "namespace": rev.namespace, "revision": rev.name,
                        "replica": replica.name, "role": role}))
        self.prometheus.set_targets(targets)


def _set_condition(status: dict, ctype: str, state: str, reason: str = "", message: str = "") -> None:
    conditions = status.setdefault("conditions", [])
    for cond in conditions:
        if cond["type"] == ctype:
            if cond["status"] != state:
                cond["lastTransitionTime"] = _now()
            cond["status"] = state
            _put(cond, "reason", reason)
            _put(cond, "message", message)
            return
    cond = {"type": ctype, "status": state, "lastTransitionTime": _now()}
    _put(cond, "reason", reason)
    _put(cond, "message", message)
    conditions.append(cond)
    conditions.sort(key=lambda c: c["type"])


def _put(d: dict, key: str, value: str) -> None:
    if value:
        d[key] = value
    else:
        d.pop(key, None)
