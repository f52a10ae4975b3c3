"""The profile interface: how the stack is stood up. Every scenario talks to a Profile only, so
one suite runs unchanged on local processes, a kind cluster, or an existing cloud cluster."""
from __future__ import annotations

import abc
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.envs import RoleEnv
from harness.errors import ProfileError
from harness.matrix import Row
from harness.pipeline.reference_predictions import reference_predictions
from harness.procs import ProcessRegistry, run_checked
from harness.serving.isvc import IsvcClient
from harness.settings import StackConfig

__all__ = ["PipelineRun", "Profile", "ProfileError", "RevisionModel"]


@dataclass
class PipelineRun:
    state: str  # SUCCEEDED | FAILED
    error: str | None
    tasks: dict[str, dict[str, Any]]
    params: dict[str, Any]
    compiled_yaml: Path | None
    log_path: Path | None
    seconds: float
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def succeeded(self) -> bool:
        return self.state == "SUCCEEDED"

    def task(self, name: str) -> dict[str, Any]:
        for key, value in self.tasks.items():
            if key == name or key.replace("_", "-") == name.replace("_", "-"):
                return value
        raise KeyError(f"pipeline run has no task {name!r}; tasks: {sorted(self.tasks)}")


@dataclass(frozen=True)
class RevisionModel:
    """The model a revision actually loads, from the revision's own record (not the
    InferenceService's spec, which a later edit may have moved on)."""

    storage_uri: str
    mlmodel: str  # the MLmodel file's text
    where: str  # where that text was read, for the evidence ("replica ...'s /mnt/models")


class Profile(abc.ABC):
    """One way of standing the stack up. Subclasses are registered by name (the
    ``pytest_seamcheck_profiles`` hook) and built as ``cls(config, row, progress=...)``."""

    name: str
    config: StackConfig
    row: Row
    namespace: str
    state: Path  # the profile's scratch folder, removed at teardown
    registry: ProcessRegistry  # every process the profile started (teardown stops them all)
    envs: dict[str, RoleEnv]  # the row's role environments, built locally on every profile
    _isvc: IsvcClient | None = None

    @classmethod
    def preflight(cls, config: StackConfig, row: Row) -> None:
        """Before any process starts: what this profile needs is there (tools, free fixed ports,
        a reachable cluster). Raise ProfileError (or ConfigError) naming the fix. Default: nothing."""

    @classmethod
    def check_capacity(cls, config: StackConfig, row: Row, suites: frozenset[str]) -> None:
        """Before anything is installed: the selected suites' peak fits where the stack will run.
        Raise ProfileError with the figures and the fix. Default: nothing (the local profile's
        processes are not scheduled by requests)."""

    @classmethod
    def suite_skip_reason(cls, suite: str) -> str | None:
        """Why the tests of ``suite`` ("conformance", "canary", ...) cannot run on this profile, in
        one line; None (the default) when they can. Asked at collection: such tests skip with it."""
        return None

    @abc.abstractmethod
    def start(self) -> None: ...

    @abc.abstractmethod
    def teardown(self) -> None: ...

    # --- MLflow
    @property
    @abc.abstractmethod
    def tracking_uri(self) -> str: ...

    @abc.abstractmethod
    def client_env(self) -> dict[str, str]:
        """Environment a client of the stack needs (artifact store endpoint and credentials)."""

    # --- KFP
    def compile_pipeline(self, out: Path) -> Path:
        """The pipeline compiled by the row's own kfp SDK (the pipeline role), with the row's pins as
        the components' packages: the YAML a cluster receives, on every profile."""
        out.parent.mkdir(parents=True, exist_ok=True)
        run_checked([str(self.envs["pipeline"].python), "-m", "harness.pipeline.compile", "--out", str(out),
                     "--packages-json", json.dumps(list(self.row.role("pipeline").pins))],
                    what=f"compiling the pipeline with the row's kfp ({self.row.name})", timeout=300,
                    env=self._role_env(), cwd=self.state)
        return out

    @abc.abstractmethod
    def run_pipeline(self, params: dict[str, Any], *, name: str) -> PipelineRun: ...

    @abc.abstractmethod
    def default_pipeline_params(self) -> dict[str, Any]: ...

    def reference_predictions(self, model_uri: str, frame: Any) -> dict[str, Any]:
        """{"predictions": [...], "mlflow": version, "warnings": [...]} from the registered model itself,
        computed by the pipeline role's mlflow (on every profile the role envs are built locally)."""
        return reference_predictions(self.envs["pipeline"].python, model_uri, frame, workdir=str(self.state),
                                     env=self._role_env())

    @abc.abstractmethod
    def _role_env(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        """The environment a role's interpreter runs with (the stack's endpoints and credentials)."""

    # --- KServe
    @property
    def isvc(self) -> IsvcClient:
        assert self._isvc is not None, "stack not started"
        return self._isvc

    @abc.abstractmethod
    def revision_logs(self, name: str, revision: str) -> dict[str, str]:
        """Container logs of a revision's replicas (pods), by replica name."""

    @abc.abstractmethod
    def revision_model(self, name: str, revision: str) -> RevisionModel:
        """What revision ``revision`` of InferenceService ``name`` loads (storageUri and MLmodel)."""

    @abc.abstractmethod
    def inference_base_url(self, name: str) -> str:
        """Where V2 requests for InferenceService `name` go (`<base>/v2/models/<name>/infer`)."""

    def router_counts(self, name: str) -> Callable[[], Mapping[str, tuple[str, int, int]]] | None:
        """The router's own counters for service ``name`` (server -> (revision, requests sent,
        2xx answers)), where the profile's router counts per revision; None where it does not."""
        return None

    # --- Prometheus
    @property
    @abc.abstractmethod
    def prometheus_url(self) -> str: ...

    @property
    @abc.abstractmethod
    def metric_dialect(self) -> str: ...

    # --- faults the canary and chaos scenarios need; each acts only on what the harness owns
    @abc.abstractmethod
    def fault_stop_prometheus(self) -> None: ...

    @abc.abstractmethod
    def fault_restore_prometheus(self) -> None: ...

    @abc.abstractmethod
    def fault_kill_revision(self, name: str, revision: str, sig: int = 9) -> list[int]: ...

    def fault_refusal(self, fault: str) -> str | None:
        """Why the canary fault `fault` ("kill-canary", "stop-prometheus") would be refused here, or
        None: asked when the session plans its scenarios, so a refused one is skipped with the reason
        instead of being judged without its fault. Locally every fault acts only on the harness's
        own processes and none is refused."""
        return None

    def versions(self) -> dict[str, Any]:
        return self.row.versions()

    def timings(self) -> dict[str, float]:
        return {}
