"""The fault and probe surface of a running local stack, for Chaos Toolkit experiments.

Experiments may run in another process than the one that owns the stack (`chaos run` by hand
against `seamcheck-stack`), so the owner serves these operations on loopback, behind a random
token, and the experiments' actions and probes (actions.py, probes.py) call them.

Blast radius: every operation acts on the harness's own things only. Processes are signalled
only when the stack's ProcessRegistry owns their pid; network rules live only inside the
harness's own network namespace; services are the ones in the stack's namespace. Every fault that
is put in place is also written down, and `close()` (the owner's teardown) undoes what is still
in place, so a method that fails half-way or an interrupted run leaves nothing behind.
"""
from __future__ import annotations

import contextlib
import copy
import functools
import itertools
import json
import secrets
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from harness.faults.models import FaultSpec, log_faulty_model
from harness.faults.network import PipelineNetns
from harness.load import LoadHandle, start_load
from harness.ports import LOOPBACK
from harness.profiles.local import LocalProfile
from harness.serving.activator import HOLD_S
from harness.serving.client import failed_revision, predictor_status, summarize
from harness.serving.lint import LintError, lint_isvc
from harness.serving.storage import copy_storage
from harness.traffic.haproxy import revision_of
from harness.traffic.rollout import split_of

__all__ = ["ChaosContext", "ChaosControl", "ControlError"]


#: Locust's start (imports, its users) until its first request, on a busy machine.
FIRST_REQUEST_DEADLINE_S = 60.0
#: Lines of a pipeline run's log worth carrying into the journal: MLflow's failure and retries.
_LOG_MARKERS = ("could not log to MLflow", "Retrying (", "Max retries exceeded", "ConnectionError",
                "Connection refused", "timed out")


def _excerpt(path: Path | None, markers: tuple[str, ...], limit: int = 30) -> list[str]:
    if path is None or not path.exists():
        return []
    lines = [line.strip()[:400] for line in path.read_text(errors="replace").splitlines()
             if any(m in line for m in markers)]
    return lines[-limit:]


class ControlError(RuntimeError):
    """An operation was refused or failed; the message says which and why."""


@dataclass
class ChaosContext:
    """What the experiments build on: the model the pipeline trained and the service it deployed."""

    base_storage_uri: str  # the deployed model's storageUri (artifact_uri + "/model")
    model_name: str  # its registered model name
    model_version: str  # its registered version
    template: dict[str, Any]  # the deployed InferenceService, as the pattern for new services
    dataset_path: str  # the training data the pipeline reads
    rows_path: Path  # V2 request rows for Locust (hold-out rows, features only)


@dataclass
class _Fault:
    kind: str
    target: str
    undo: Callable[[], Any]
    started: float = field(default_factory=time.time)


class ChaosControl:
    def __init__(self, profile: LocalProfile, context: ChaosContext, workdir: Path) -> None:
        self.profile = profile
        self.context = context
        self.workdir = workdir
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.token = secrets.token_urlsafe(24)
        self._faults: list[_Fault] = []
        self._loads: dict[str, LoadHandle] = {}
        self._netns: PipelineNetns | None = None
        self._services: set[str] = set()
        self._lock = threading.RLock()
        self._server: ThreadingHTTPServer | None = None
        self._ids = itertools.count(1)
        self.operations: dict[str, Callable[..., Any]] = {
            name[len("op_"):]: getattr(self, name) for name in dir(self) if name.startswith("op_")}

    # ------------------------------------------------------------------ serving
    def serve(self, port: int = 0) -> str:
        control = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *_args: Any) -> None:  # the journal and our log say enough
                pass

            def do_POST(self) -> None:
                if self.headers.get("Authorization") != f"Bearer {control.token}":
                    self._reply(401, {"error": "missing or wrong token (SEAMCHECK_CONTROL_TOKEN)"})
                    return
                name = self.path.strip("/").removeprefix("v1/")
                length = int(self.headers.get("Content-Length") or 0)
                try:
                    kwargs = json.loads(self.rfile.read(length) or b"{}")
                    self._reply(200, {"result": control.call(name, **kwargs)})
                except ControlError as exc:
                    self._reply(409, {"error": str(exc)})
                except (TypeError, ValueError, PermissionError, LintError) as exc:
                    self._reply(400, {"error": f"{type(exc).__name__}: {exc}"})
                except Exception as exc:  # noqa: BLE001  reported to the caller, whatever it was
                    self._reply(500, {"error": f"{type(exc).__name__}: {exc}"})

            def _reply(self, status: int, body: dict[str, Any]) -> None:
                data = json.dumps(body, default=str).encode()
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # the caller gave up
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)

        self._server = ThreadingHTTPServer((LOOPBACK, port), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, name="chaos-control", daemon=True).start()
        return self.url

    @property
    def url(self) -> str:
        assert self._server is not None, "not serving"
        return f"http://{LOOPBACK}:{self._server.server_address[1]}"

    def environment(self) -> dict[str, str]:
        """What an experiment's configuration reads (see scenarios/chaos/*.json)."""
        return {"SEAMCHECK_CONTROL_URL": self.url, "SEAMCHECK_CONTROL_TOKEN": self.token}

    def call(self, operation_name: str, /, **kwargs: Any) -> Any:
        operation = self.operations.get(operation_name)
        if operation is None:
            raise ControlError(f"unknown operation {operation_name!r}; known: {', '.join(sorted(self.operations))}")
        return operation(**kwargs)

    def close(self) -> list[str]:
        """Undo every fault still in place, stop loads, delete the services experiments made.
        Idempotent: the fixture's teardown and the atexit fallback may both call it."""
        try:
            undone = self.op_restore_all()["undone"]
        except ControlError:
            undone = []  # the namespace below goes anyway; the stack's teardown stops the rest
        for handle in self._loads.values():
            handle.kill()
        self._loads.clear()
        for name in list(self._services):
            with contextlib.suppress(Exception):  # already gone is fine
                self.profile.isvc.delete(name)
        self._services.clear()
        if self._netns is not None:
            self._netns.close()
            self._netns = None
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        return undone

    def faults_in_place(self) -> list[str]:
        with self._lock:
            return [f"{f.kind}:{f.target}" for f in self._faults]

    def _record(self, kind: str, target: str, undo: Callable[[], Any]) -> None:
        with self._lock:
            self._faults.append(_Fault(kind, target, undo))

    def _lift(self, kind: str, target: str | None = None) -> list[str]:
        with self._lock:
            matching = [f for f in self._faults if f.kind == kind and (target is None or f.target == target)]
            for fault in matching:
                self._faults.remove(fault)
        for fault in reversed(matching):
            fault.undo()
        return [f"{f.kind}:{f.target}" for f in matching]

    # ------------------------------------------------------------------ stack facts
    def op_describe(self) -> dict[str, Any]:
        profile = self.profile
        return {
            "profile": profile.name, "row": profile.row.name, "namespace": profile.namespace,
            "tracking_uri": profile.tracking_uri, "prometheus_url": profile.prometheus_url,
            "inference_url": profile.inference_base_url(""), "kubeconfig": str(profile.kubeconfig),
            "base_storage_uri": self.context.base_storage_uri, "model_name": self.context.model_name,
            "model_version": self.context.model_version, "faults_in_place": self.faults_in_place(),
            "harness_pids": profile.registry.pids(),
        }

    # ------------------------------------------------------------------ InferenceServices
    def _storage_for(self, model: str) -> str:
        """base | run-root (the seed's bug: no "/model") | copy:<tag> | slow-load:<seconds>."""
        base = self.context.base_storage_uri
        if model == "base":
            return base
        if model == "run-root":
            return base.rsplit("/", 1)[0]
        kind, _, arg = model.partition(":")
        if kind == "copy" and arg:
            target = f"{base.rsplit('/', 1)[0]}/{arg}/model"
            copy_storage(base, target, self.profile.client_env())
            return target
        if kind == "slow-load" and arg:
            info = log_faulty_model(self.profile.envs["pipeline"].python, FaultSpec.slow_load(float(arg)),
                                    base_model_uri=f"models:/{self.context.model_name}/{self.context.model_version}",
                                    registered_model_name=f"seamcheck-chaos-slow-load-{next(self._ids)}",
                                    tracking_uri=self.profile.tracking_uri, env=self.profile.client_env())
            assert info.artifact_uri, "the faulty model has no artifact location"
            return info.artifact_uri
        raise ValueError(f"model {model!r}: use base, run-root, copy:<tag> or slow-load:<seconds>")

    def op_deploy_service(self, name: str, model: str = "base", min_replicas: int = 1,
                          canary_percent: int | None = None, readiness_budget_s: float | None = None,
                          lint: bool = True, wait_ready: bool = True, deadline_s: float = 180) -> dict[str, Any]:
        """Create or change service ``name`` (from the deployed service's pattern) to serve ``model``.

        With ``lint`` the manifest goes through the pre-apply lint first and is refused, not
        applied, when it would fail (harness/serving/lint.py)."""
        template = self.context.template
        storage_uri = self._storage_for(model)
        manifest = {
            "apiVersion": template["apiVersion"], "kind": template["kind"],
            "metadata": {"name": name, "namespace": self.profile.namespace,
                         "labels": {"app.kubernetes.io/managed-by": "seamcheck-chaos"},
                         "annotations": dict(template["metadata"].get("annotations") or {})},
            "spec": copy.deepcopy(template["spec"]),
        }
        predictor = manifest["spec"]["predictor"]
        predictor["minReplicas"] = min_replicas
        predictor["model"]["storageUri"] = storage_uri
        predictor.pop("canaryTrafficPercent", None)
        if canary_percent is not None:
            predictor["canaryTrafficPercent"] = canary_percent
        predictor["model"].pop("readinessProbe", None)
        if readiness_budget_s is not None:
            # The container's readiness probe: how long a cold-starting replica may take.
            predictor["model"]["readinessProbe"] = {
                "httpGet": {"path": "/v2/health/ready", "port": 8080},
                "periodSeconds": 1, "failureThreshold": max(1, int(readiness_budget_s))}
        if lint:
            problems = lint_isvc(manifest, self.profile.client_env())
            if problems:
                raise LintError(name, problems)
        client = self.profile.isvc
        verb, obj = client.create_or_patch(manifest)
        self._services.add(name)
        generation = obj["metadata"].get("generation")
        if wait_ready:
            obj = client.wait_ready(name, deadline_s=deadline_s, generation=generation)
        return {"verb": verb, "storage_uri": storage_uri, "generation": generation, **self._status(obj)}

    def op_set_canary(self, name: str, percent: int | None) -> dict[str, Any]:
        """Set (or, with None, remove = promote) canaryTrafficPercent; 0 is KServe's rollback."""
        obj = self.profile.isvc.patch(name, {"spec": {"predictor": {"canaryTrafficPercent": percent}}})
        return self._status(obj)

    def op_service_status(self, name: str) -> dict[str, Any]:
        return self._status(self.profile.isvc.get(name))

    def op_wait_for_split(self, name: str, split: dict[str, int] | None = None, ready: bool = True,
                          deadline_s: float = 60) -> dict[str, Any]:
        """Wait until the status routes ``split`` (revision -> percent) and, with ``ready``, is Ready."""
        def done(obj: dict) -> bool:
            status = self._status(obj)
            return (split is None or status["split"] == split) and (not ready or status["ready"])
        obj = self.profile.isvc.wait_for(name, done, what=f"split {split} ready={ready}", deadline_s=deadline_s)
        return self._status(obj)

    @staticmethod
    def _status(obj: dict) -> dict[str, Any]:
        pred = predictor_status(obj)
        conditions = {c["type"]: {k: c.get(k, "") for k in ("status", "reason", "message")}
                      for c in (obj.get("status") or {}).get("conditions", [])}
        return {
            "summary": summarize(obj), "ready": conditions.get("Ready", {}).get("status") == "True",
            "split": split_of(obj), "latest_created": pred.get("latestCreatedRevision", ""),
            "latest_ready": pred.get("latestReadyRevision", ""),
            "rolled_out": pred.get("latestRolledoutRevision", ""),
            "previous_rolled_out": pred.get("previousRolledoutRevision", ""),
            "conditions": conditions, "model_status": (obj.get("status") or {}).get("modelStatus") or {},
            "failure": failed_revision(obj) or "",
        }

    def op_wait_for_failure(self, name: str, deadline_s: float = 120) -> dict[str, Any]:
        """Wait until the latest revision of ``name`` has failed; its status and its pods' logs."""
        obj = self.profile.isvc.wait_for(name, lambda o: bool(failed_revision(o)),
                                         what="the latest revision to fail", deadline_s=deadline_s)
        status = self._status(obj)
        logs = self.profile.revision_logs(name, status["latest_created"])
        status["failed_revision"] = status["latest_created"]
        status["pod_log_lines"] = [line.strip()[:500] for text in logs.values() for line in text.splitlines()
                                   if "MLmodel" in line or "Error" in line][-12:]
        return status

    def op_answers(self, name: str, requests_count: int = 10) -> dict[str, Any]:
        """A few V2 requests through the router, as a client sends them: statuses and who answered."""
        import pandas as pd
        import requests

        from harness.serving.v2 import v2_request
        from harness.traffic.haproxy import SERVED_BY_HEADER

        rows = pd.read_parquet(self.context.rows_path).head(2)
        url = f"{self.profile.inference_base_url(name)}/v2/models/{name}/infer"
        statuses, served_by = [], []
        for _ in range(requests_count):
            try:
                response = requests.post(url, json=v2_request(rows), timeout=10)
                statuses.append(response.status_code)
                served_by.append(response.headers.get(SERVED_BY_HEADER, ""))
            except requests.RequestException as exc:
                statuses.append(0)
                served_by.append(type(exc).__name__)
        return {"statuses": statuses, "served_by": sorted(set(served_by)),
                "ok": all(code == 200 for code in statuses)}

    def op_storage_listing(self, name: str) -> dict[str, Any]:
        """What the storage of ``name``'s serving (latest ready) revision holds, as the harness sees it."""
        from harness.serving.storage import list_storage

        assert self.profile.emulation is not None
        revision = self.op_service_status(name)["latest_ready"]
        uri = self.profile.emulation.revision(self.profile.namespace, name, revision).storage_uri
        files = list_storage(uri, self.profile.client_env())
        return {"revision": revision, "storage_uri": uri, "files": files, "has_mlmodel": "MLmodel" in files}

    def op_revision_logs(self, name: str, revision: str) -> dict[str, str]:
        return {k: v[-6000:] for k, v in self.profile.revision_logs(name, revision).items()}

    # ------------------------------------------------------------------ process faults
    def op_kill_replicas(self, name: str, revision: str, count: int = 1) -> dict[str, Any]:
        """SIGKILL ``count`` replicas of one revision of one of our services (a pod dying)."""
        if name not in self._services and name != (self.context.template.get("metadata") or {}).get("name"):
            raise PermissionError(f"service {name!r} was not created by the harness; refusing to touch it")
        assert self.profile.emulation is not None
        if revision == "latest-ready":
            revision = self.op_service_status(name)["latest_ready"]
        rev = self.profile.emulation.revision(self.profile.namespace, name, revision)
        alive = [r for r in rev.replicas if r.process is not None and r.alive()]
        if len(alive) < count:
            raise ControlError(f"{revision} has {len(alive)} live replica(s), cannot kill {count}")
        killed = []
        for replica in alive[:count]:
            pid = replica.process.pid  # type: ignore[union-attr]
            if not self.profile.registry.owns(pid):
                raise PermissionError(f"pid {pid} ({replica.name}) is not a process the harness started")
            replica.process.kill()  # type: ignore[union-attr]
            killed.append({"replica": replica.name, "pid": pid})
        return {"killed": killed, "revision": revision, "replicas_before": len(alive), "at": time.time()}

    def op_stop_component(self, component: str) -> dict[str, Any]:
        pid = self.profile.fault_stop_component(component)
        self._record("stopped", component, lambda: self.profile.fault_restore_component(component))
        return {"component": component, "stopped_pid": pid, "at": time.time()}

    def op_restore_component(self, component: str) -> dict[str, Any]:
        lifted = self._lift("stopped", component)
        return {"component": component, "restored": bool(lifted), "at": time.time()}

    # ------------------------------------------------------------------ network faults
    def _pipeline_netns(self) -> PipelineNetns:
        if self._netns is None:
            self._netns = PipelineNetns(self.profile.registry, self.workdir / "netns").open()
        return self._netns

    def op_cut_pipeline_to_mlflow(self, mode: str = "REJECT") -> dict[str, Any]:
        """The NetworkPolicy case: the pipeline's namespace loses its path to the MLflow server."""
        assert self.profile.tracking is not None
        netns = self._pipeline_netns()
        port = self.profile.tracking.port
        netns.forward(port)
        rule = netns.block(port, mode)
        self._record("netns-cut", f"mlflow:{mode}", netns.unblock)
        return {"namespace": netns.name, "host_link": netns.host_if, "rule": " ".join(rule), "rules": netns.rules()}

    def op_restore_pipeline_to_mlflow(self) -> dict[str, Any]:
        lifted = self._lift("netns-cut")
        rules = self._netns.rules() if self._netns is not None else []
        return {"lifted": lifted, "rules": rules}

    def op_restore_all(self) -> dict[str, Any]:
        with self._lock:
            faults, self._faults = list(self._faults), []
        undone, errors = [], []
        for fault in reversed(faults):
            try:
                fault.undo()
                undone.append(f"{fault.kind}:{fault.target}")
            except Exception as exc:  # noqa: BLE001  keep undoing the others; report this one
                errors.append(f"{fault.kind}:{fault.target}: {type(exc).__name__}: {exc}")
        if errors:
            raise ControlError("could not undo: " + "; ".join(errors))
        return {"undone": undone}

    # ------------------------------------------------------------------ pipeline and MLflow
    def op_run_pipeline(self, name: str, stages: str = "all", mlflow_failure_policy: str = "raise",
                        in_pipeline_netns: bool = False, experiment: str | None = None,
                        model_name: str | None = None, isvc_name: str | None = None) -> dict[str, Any]:
        params = {**self.profile.default_pipeline_params(), "data_path": self.context.dataset_path,
                  "mlflow_experiment": experiment or f"seamcheck-chaos-{name}",
                  "model_name": model_name or f"seamcheck-chaos-{name}"}
        if stages == "train":
            params.pop("serving_namespace", None)  # no deploy step in the training-only pipeline
            params["mlflow_failure_policy"] = mlflow_failure_policy
        else:
            params.update(isvc_name=isvc_name or f"chaos-{name}", canary_traffic_percent=20,
                          f1_threshold=0.80, regression_delta=0.02, production_alias="production")
            if isvc_name:
                self._services.add(isvc_name)
        netns = self._pipeline_netns() if in_pipeline_netns else None
        started = time.time()
        run = self.profile.run_pipeline(params, name=f"chaos-{name}-{uuid.uuid4().hex[:6]}", stages=stages,
                                        netns=netns)
        train = run.tasks.get("train-model", {})
        return {"state": run.state, "error": run.error or "", "seconds": round(run.seconds, 1),
                "started": started, "ended": time.time(),
                "train_outputs": train.get("parameters", {}), "train_error": train.get("error") or "",
                "train_started_at": train.get("started_at"), "train_ended_at": train.get("ended_at"),
                "log_excerpt": _excerpt(run.log_path, _LOG_MARKERS),
                "tasks": {k: v.get("state") for k, v in run.tasks.items()},
                "params": params, "log_path": str(run.log_path)}

    def op_mlflow_health(self) -> dict[str, Any]:
        import requests

        try:
            response = requests.get(f"{self.profile.tracking_uri}/health", timeout=5)
            return {"ok": response.status_code == 200, "status": response.status_code}
        except requests.RequestException as exc:
            return {"ok": False, "error": f"{type(exc).__name__}: {exc}"}

    def op_mlflow_inventory(self, experiment: str, model_name: str) -> dict[str, Any]:
        """Runs in the experiment and versions of the registered model, as the harness sees them."""
        from mlflow.tracking import MlflowClient

        client = MlflowClient(tracking_uri=self.profile.tracking_uri)
        exp = client.get_experiment_by_name(experiment)
        runs = client.search_runs([exp.experiment_id]) if exp is not None else []
        try:
            versions = client.search_model_versions(f"name='{model_name}'")
        except Exception:  # noqa: BLE001  no such model: no versions
            versions = []
        return {"experiment_exists": exp is not None, "runs": [r.info.run_id for r in runs],
                "run_states": [r.info.status for r in runs],
                "versions": sorted(str(v.version) for v in versions)}

    # ------------------------------------------------------------------ load
    def op_start_load(self, service: str, seconds: float, rate: float = 30.0, users: int = 6,
                      load_id: str | None = None) -> dict[str, Any]:
        """Locust against ``service`` (a subprocess), returning once its first request is logged;
        ``load_id`` (default: the service's name) is how a later activity finds it, since an
        experiment cannot pass one activity's output on."""
        load_id = load_id or service
        if load_id in self._loads:
            raise ControlError(f"a load named {load_id!r} is already running; finish it first")
        out = self.workdir / "loads" / f"{load_id}-{next(self._ids)}"
        handle = start_load(self.profile.inference_base_url(service), service, self.context.rows_path,
                            users=users, spawn_rate=users, duration_s=seconds, target_rps=rate, out_dir=out,
                            # Longer than the activator holds a request for a cold start: what is
                            # measured is the stack's answer, not the client giving up first.
                            request_timeout_s=HOLD_S + 5)
        self._loads[load_id] = handle
        waited = handle.wait_for_first_request(FIRST_REQUEST_DEADLINE_S)
        return {"load_id": load_id, "events": str(handle.events_path), "started": time.time(),
                "first_request_after_s": round(waited, 1)}

    def op_finish_load(self, load_id: str, stop: bool = False) -> dict[str, Any]:
        """Wait for (or with ``stop`` end) a load and report what its requests met."""
        handle = self._loads.pop(load_id, None)
        if handle is None:
            raise ControlError(f"no running load {load_id!r}")
        with handle:
            result = handle.stop() if stop else handle.result()
        per_revision: dict[str, int] = {}
        for event in result.events:
            if event.served_by:
                rev = revision_of(event.served_by)
                per_revision[rev] = per_revision.get(rev, 0) + 1
        total = result.between(0, 1e9)
        return {"load_id": load_id, "requests": result.requests, "failures": result.failures,
                "failures_5xx": total.failures_5xx, "statuses": {str(k): v for k, v in total.statuses.items()},
                "per_revision": per_revision, "events": str(handle.events_path),
                "error_rate": round(result.failures / result.requests, 5) if result.requests else None}

    # ------------------------------------------------------------------ rollback to a scaled-to-zero revision
    def op_scale_to_zero_after(self, seconds: float | None = None) -> dict[str, Any]:
        """Shorten the emulation's scale-to-zero grace period (EmulationConfig.scale_to_zero_after_s,
        30 s by default; Knative's stable window + grace period on a cluster) so that a chaos
        scenario sees an unreferenced revision scaled to zero within seconds. Written down like a
        fault, once per caller: experiments running side by side each set it and each lift it
        (``seconds=None``), and the original value comes back with the last lift (or the
        control's close), never under another experiment still relying on it."""
        assert self.profile.emulation is not None, "the local profile's emulation is not running"
        config = self.profile.emulation.config
        kind, target = "emulation-setting", "scale_to_zero_after_s"
        if seconds is None:
            with self._lock:
                held = [f for f in self._faults if f.kind == kind and f.target == target]
                if held:
                    self._faults.remove(held[-1])
            if len(held) == 1:
                held[0].undo()
            return {"scale_to_zero_after_s": config.scale_to_zero_after_s, "restored": len(held) == 1,
                    "still_held": max(0, len(held) - 1)}
        with self._lock:
            first = next((f for f in self._faults if f.kind == kind and f.target == target), None)
            self._faults.append(_Fault(kind, target, first.undo if first else
                                       functools.partial(setattr, config, target, config.scale_to_zero_after_s)))
            config.scale_to_zero_after_s = float(seconds)
        return {"scale_to_zero_after_s": config.scale_to_zero_after_s, "restored": False}

    def _revision_named(self, name: str, revision: str) -> str:
        status = self.op_service_status(name)
        aliases = {"previous-rolled-out": status["previous_rolled_out"], "rolled-out": status["rolled_out"],
                   "latest-ready": status["latest_ready"]}
        resolved = aliases.get(revision, revision)
        if not resolved:
            raise ControlError(f"{name} has no {revision} revision (status: {status['summary']})")
        return resolved

    def _service_events(self, name: str) -> list[dict[str, Any]]:
        assert self.profile.emulation is not None
        return [e for e in self.profile.emulation.events()
                if e["namespace"] == self.profile.namespace and e["name"] == name]

    def op_wait_scaled_to_zero(self, name: str, revision: str = "previous-rolled-out",
                               deadline_s: float = 60) -> dict[str, Any]:
        """Wait until ``revision`` of ``name`` (or previous-rolled-out / rolled-out / latest-ready)
        has no replica left: Knative scaled it to zero."""
        assert self.profile.emulation is not None
        resolved = self._revision_named(name, revision)
        rev = self.profile.emulation.revision(self.profile.namespace, name, resolved)
        start = time.monotonic()
        while not (rev.scaled_to_zero and not rev.replicas):
            if time.monotonic() - start > deadline_s:
                raise ControlError(f"{resolved} of {name} still has {len(rev.replicas)} replica(s) after "
                                   f"{deadline_s:.0f}s (waiting for it to be scaled to zero)")
            time.sleep(0.25)
        return {"revision": resolved, "waited_s": round(time.monotonic() - start, 1), "at": time.time(),
                "events": [e for e in self._service_events(name)
                           if e["reason"] == "ScaleToZero" and e["message"] == resolved]}

    def op_roll_back(self, name: str, by: str = "traffic", deadline_s: float = 180) -> dict[str, Any]:
        """Roll ``name`` back to its previous rolled-out revision, ``by``:
        traffic: canaryTrafficPercent 0 (KServe routes 100% to previousRolledoutRevision);
        storage-uri: a new revision whose storageUri is the previous revision's (the previous
        stable model, read from that revision's template as `kubectl get revision` shows it),
        waited for until it is Ready."""
        assert self.profile.emulation is not None
        before = self.op_service_status(name)
        previous = self._revision_named(name, "previous-rolled-out")
        client = self.profile.isvc
        at = time.time()
        if by == "traffic":
            obj = client.patch(name, {"spec": {"predictor": {"canaryTrafficPercent": 0}}})
            storage_uri = self.profile.emulation.revision(self.profile.namespace, name, previous).storage_uri
        elif by == "storage-uri":
            storage_uri = self.profile.emulation.revision(self.profile.namespace, name, previous).storage_uri
            obj = client.patch(name, {"spec": {"predictor": {"canaryTrafficPercent": None,
                                                             "model": {"storageUri": storage_uri}}}})
            obj = client.wait_ready(name, deadline_s=deadline_s, generation=obj["metadata"].get("generation"))
        else:
            raise ValueError(f"by={by!r}: use traffic or storage-uri")
        return {"by": by, "from_revision": before["rolled_out"], "previous_revision": previous,
                "storage_uri": storage_uri, "at": at, "patched_s": round(time.time() - at, 1),
                **self._status(obj)}

    def op_wait_rollback_settled(self, name: str, deadline_s: float = 90) -> dict[str, Any]:
        """Wait until a rollback has settled one way or the other: all traffic on the rolled-out
        revision and a ready pod of it serving, or the route reporting a revision with no ready
        pods. The status, the pods ready per revision and the service's emulation events."""
        assert self.profile.emulation is not None
        emulation, namespace = self.profile.emulation, self.profile.namespace

        def ready_pods() -> dict[str, int]:
            return {r.name: len(r.ready_replicas()) for r in emulation.revisions(namespace, name)}

        def settled(obj: dict) -> bool:
            status = self._status(obj)
            if (obj.get("status") or {}).get("observedGeneration") != obj["metadata"].get("generation"):
                return False
            route = status["conditions"].get("PredictorRouteReady", {})
            if route.get("status") == "False" and "has no ready pods" in route.get("message", ""):
                return True
            routed = {rev for rev, pct in status["split"].items() if pct > 0}
            pods = ready_pods()
            return status["ready"] and routed == {status["rolled_out"]} and all(pods.get(r) for r in routed)

        start = time.monotonic()
        obj = self.profile.isvc.wait_for(name, settled, what="the rollback to settle (all traffic on a ready "
                                         "rolled-out revision, or a route with no ready pods)",
                                         deadline_s=deadline_s)
        status = self._status(obj)
        route = status["conditions"].get("PredictorRouteReady", {})
        outcome = "no-ready-pods" if route.get("status") == "False" else "serving"
        return {**status, "outcome": outcome, "route_message": route.get("message", ""),
                "ready_pods": ready_pods(), "waited_s": round(time.monotonic() - start, 1), "at": time.time(),
                "events": self._service_events(name)}

    def op_delete_service(self, name: str) -> dict[str, Any]:
        """Delete one of the services the experiments made (frees its replicas)."""
        if name not in self._services:
            raise PermissionError(f"service {name!r} was not created by the chaos control; refusing to delete it")
        self.profile.isvc.delete(name)
        self._services.discard(name)
        return {"deleted": name, "at": time.time()}
