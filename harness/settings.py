"""What a run was asked to do, resolved once at configure time into one frozen object.

``RunSettings.resolve`` reads every option of harness/options.py (command line, else environment,
else default), validates each one and the relations between them (the row is in the matrix file,
the profile is registered, the judge spec loads), and returns a ``RunSettings`` that the plugin
stores under ``SETTINGS_KEY``. Below the plugin nothing reads an option, an environment variable
or the matrix file again: profiles get the ``StackConfig`` and the ``Row``.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from harness.errors import ConfigError, SeamcheckError
from harness.matrix import Matrix, Row, load_matrix
from harness.options import OPTIONS, PORT_COMPONENTS, option, port_flag
from harness.report.history import HISTORY_FILE
from harness.report.summary import RunReport, new_run_id

__all__ = ["REPORT_KEY", "SETTINGS_KEY", "RunSettings", "StackConfig"]


@dataclass(frozen=True)
class StackConfig:
    """What a profile reads: how to stand the stack up, and its deadlines."""

    profile: str = "local"
    keep_stack: bool = False
    namespace: str = "model-serving"
    artifact_store: str = "s3"  # s3 (moto's S3-compatible server) | files
    ports: dict[str, int] = field(default_factory=dict)  # component -> fixed port (absent: a free one)
    env_cache: Path | None = None
    component_deadline_s: float = 120.0
    isvc_deadline_s: float = 300.0
    pipeline_deadline_s: float = 900.0
    # Cluster profiles (kind, kind-gpu, cloud): see docs/profiles.md.
    kubeconfig: Path | None = None  # cloud: the kubeconfig to use (default: kubectl's own lookup)
    kube_context: str | None = None  # cloud: the context in it (default: its current-context)
    keep_cluster: bool = False  # kind: keep a cluster the harness created
    kind_bin: str | None = None  # kind: the kind binary (default: `kind` on PATH)
    kind_image: str | None = None  # kind: the node image (default: the row's)
    kind_cluster: str = "seamcheck"  # kind: the cluster's name
    install_stack: bool = False  # cloud: install the row's missing components instead of only discovering
    chaos_namespaces: tuple[str, ...] = ()  # clusters: where chaos may act (with the namespace label too)
    predictor_requests: dict[str, str] | None = None  # clusters: the predictors' requests (None: the profile's)
    train_requests: dict[str, str] | None = None  # clusters: the train task's size as submitted (None: the profile's)


@dataclass(frozen=True)
class RunSettings:
    profile: str
    matrix: Matrix
    row: Row  # the row the stack suites run (the first one named, or the file's default)
    rows: tuple[Row, ...] | None  # what --matrix-row named for the matrix suite (None: not given)
    stack: StackConfig
    reports_dir: Path
    run_id: str
    history: Path  # the run history's SQLite file (--history, else <reports-dir>/history.sqlite)
    judges: dict[str, str]  # judge name -> spec, every one loaded once to validate it
    matrix_gate: bool
    ledger_dir: Path | None
    stack_manifest: Path | None
    #: Every registered profile class and judge factory, by name (from the plugin hooks).
    profiles: Mapping[str, Any] = field(default_factory=dict)
    judge_factories: Mapping[str, Callable[[Any], Any]] = field(default_factory=dict)

    @classmethod
    def resolve(cls, getoption: Callable[[str], Any], environ: Mapping[str, str], *,
                profiles: Mapping[str, Any], judge_factories: Mapping[str, Callable[[Any], Any]],
                judge_loader: Callable[[str], Any]) -> RunSettings:
        """Every option validated; all problems in one ConfigError ("; " between them)."""
        values: dict[str, Any] = {}
        problems: list[str] = []
        for opt in OPTIONS:
            try:
                values[opt.flag] = opt.resolve(getoption(opt.dest), environ)
            except ConfigError as exc:
                problems.append(str(exc))
        if problems:
            raise ConfigError("; ".join(problems))
        profile = values["--profile"]
        if profile not in profiles:
            raise ConfigError(f"unknown profile {profile!r}; choose one of {', '.join(profiles)} (--profile or "
                              f"{option('--profile').env}; a plugin adds one with pytest_seamcheck_profiles)")
        matrix = load_matrix(values["--matrix-file"])
        asked = values["--matrix-row"]
        selected = matrix.select(asked) if asked else None
        # The stack suites run one row: the first named (or the default when `all` or none).
        row = matrix.row(selected[0].name if selected and asked != "all" else None)
        # Every built-in is graded; the peers (Flagger's, Argo Rollouts', Kayenta's defaults) beside
        # the seed's and seamcheck's, so the table shows what each would have done. Only one acts.
        judges = {name: name for name in ("seed", "sequential", "flagger", "argo", "kayenta")}
        if values["--judge"]:
            try:
                judge_loader(values["--judge"])
            except SeamcheckError as exc:
                raise ConfigError(f"--judge={values['--judge']!r}: {exc}") from None
            judges["user"] = values["--judge"]
        ports = {c: values[port_flag(c)] for c in PORT_COMPONENTS if values[port_flag(c)]}
        stack = StackConfig(
            profile=profile, keep_stack=values["--keep-stack"], namespace=values["--namespace"],
            artifact_store=values["--artifact-store"], ports=ports, env_cache=values["--env-cache"],
            kubeconfig=values["--kubeconfig"], kube_context=values["--kube-context"],
            keep_cluster=values["--keep-cluster"], kind_bin=values["--kind-bin"], kind_image=values["--kind-image"],
            kind_cluster=values["--kind-cluster"], install_stack=values["--install-stack"],
            chaos_namespaces=values["--chaos-namespaces"], predictor_requests=values["--predictor-requests"],
            train_requests=values["--train-requests"])
        return cls(profile=profile, matrix=matrix, row=row, rows=tuple(selected) if selected is not None else None,
                   stack=stack, reports_dir=values["--reports-dir"], run_id=values["--run-id"] or new_run_id(),
                   history=values["--history"] or values["--reports-dir"] / HISTORY_FILE,
                   judges=judges, matrix_gate=values["--matrix-gate"], ledger_dir=values["--ledger-dir"],
                   stack_manifest=values["--stack-manifest"], profiles=dict(profiles),
                   judge_factories=dict(judge_factories))

    def profile_class(self) -> Any:
        return self.profiles[self.profile]

    def header(self) -> str:
        """What the run is set up to do, for pytest's header."""
        judges = ", ".join(f"{n}={s}" if n == "user" else n for n, s in self.judges.items())
        return (f"seamcheck: profile {self.profile}, row {self.row.name}, judges {judges}, "
                f"reports {self.reports_dir / self.run_id}")


#: The run's settings (resolved once, in pytest_configure).
SETTINGS_KEY = pytest.StashKey[RunSettings]()
#: The run's report (the controller's only: xdist workers send theirs in their reports).
REPORT_KEY = pytest.StashKey[RunReport]()
