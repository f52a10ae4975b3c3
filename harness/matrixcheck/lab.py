"""The matrix suite's orchestration: which environments, servers and probes a set of rows and
upgrade steps needs, each done once, lazily, and always stopped.

Per row (phase "row"): start the row's `mlflow server` (its own sqlite DB and S3 bucket on one
shared moto server), run the client probe in the row's pipeline environment, stop the server;
KServe's storage initializer of the row fetches the models; the row's kfp compiles the pipeline;
the skew role (if any) pickles its probe model. Per serving environment (phase "serving"): ONE
MLServer loads every model meant for it (the rows' own, the skew probes, and the models of the
upgrade steps it is an end of), answers the V2 requests, and stops. Per upgrade step (phase
"read"): the older row's tracking server is started again on its own DB and the newer row's
client reads it. Rows are sequential (2 cores); environment builds run in parallel.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.envs import EnvBuildError, RoleEnv, ensure_env, env_dir_for
from harness.ledger import ledger
from harness.local.services.s3 import S3Store, start_s3
from harness.local.services.tracking import start_tracking
from harness.matrix import MATRIX_CHECKS, UPGRADE_CHECKS, Matrix, Row
from harness.matrixcheck import checks
from harness.matrixcheck.modelserver import ModelServer
from harness.matrixcheck.outcome import CANNOT_BUILD, Cell, Finding, NotEstablished
from harness.matrixcheck.probes import RESULT_PREFIX
from harness.paths import role_pythonpath
from harness.pipeline.compile import inspect_compiled
from harness.pipeline.dataset import holdout_rows
from harness.ports import free_port
from harness.procs import ComponentFailed, ProcessRegistry, run_checked, run_command

__all__ = ["ROW_ROLES", "MatrixLab", "RowBuild"]

#: What the matrix suite runs of a row (no KFP runner: the client and compiler are the pipeline role's).
ROW_ROLES = ("tracking", "pipeline", "serving", "storage")
MODEL_NAME = "matrix-classifier"
ALIAS = "champion"
HOLDOUT_ROWS = 20
PROBE_TIMEOUT_S = 600.0
TRACKING_DEADLINE_S = 240.0  # mlflow 3 needs 30-50 s to answer /health on 2 busy cores
SERVER_DEADLINE_S = 240.0


@dataclass
class RowBuild:
    row: str
    envs: dict[str, RoleEnv] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)  # role -> uv's error lines
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.errors


@dataclass
class RowRun:
    row: str
    register: dict[str, Any]
    storage: dict[str, Any]  # job label -> job result
    compiled: dict[str, Any]
    skew: dict[str, Any] | None
    folders: dict[str, Path]  # label -> model folder for the runtime
    seconds: dict[str, float]


def _probe(python: Path, module: str, args: list[str], *, what: str, env: dict[str, str], cwd: Path,
           timeout_s: float = PROBE_TIMEOUT_S) -> dict[str, Any]:
    try:
        proc = run_checked([str(python), "-m", f"harness.matrixcheck.probes.{module}", *args], what=what,
                           timeout=timeout_s, env=env, cwd=cwd, log_path=cwd / f"{module}-{args[0]}.log")
    except ComponentFailed as exc:
        raise NotEstablished(f"probe crashed: {exc}") from None
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith(RESULT_PREFIX):
            return json.loads(line[len(RESULT_PREFIX):])
    raise NotEstablished(f"{what}: no result line\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")


def _with_resolver_reason(role: Any, detail: str) -> str:
    """EnvBuildError keeps uv's `error:` lines; uv (non-tty) gives the reason on a `cause:` line.
    When it is missing, ask uv's resolver alone (`uv pip compile`, no install) for its full words."""
    if any(ln.strip().startswith(("cause:", "╰", "Caused by:")) for ln in detail.splitlines()):
        return detail
    from harness.envs import _uv  # the same uv the build used

    argv = [*_uv(), "pip", "compile", "--quiet", "--python-version", ".".join(map(str, sys.version_info[:2])),
            *(["--exclude-newer", role.exclude_newer] if role.exclude_newer else []), "-"]
    try:
        proc = run_command(argv, what="uv pip compile", input="\n".join(role.pins), timeout=300)
    except subprocess.TimeoutExpired:
        return detail
    extra = [ln for ln in (proc.stderr or "").splitlines() if ln.strip()]
    return detail + ("\n" + "\n".join(extra[-15:]) if proc.returncode != 0 and extra else "")


class _Memo:
    """Compute once; a failure is remembered and raised again (one crash, not one per cell)."""

    def __init__(self) -> None:
        self._done: dict[Any, tuple[bool, Any]] = {}

    def get(self, key: Any, compute: Callable[[], Any]) -> Any:
        if key not in self._done:
            try:
                self._done[key] = (True, compute())
            except (NotEstablished, ComponentFailed) as exc:
                self._done[key] = (False, exc)
        ok, value = self._done[key]
        if not ok:
            raise value
        return value


class MatrixLab:
    def __init__(self, matrix: Matrix, rows: list[Row], pairs: list[tuple[Row, Row]], *, cache: Path | None,
                 progress: Callable[[str], None] | None = None, parallel_builds: int = 3,
                 keep: bool = False) -> None:
        self.matrix, self.rows, self.pairs = matrix, {r.name: r for r in rows}, list(pairs)
        for old, new in self.pairs:
            self.rows.setdefault(old.name, old)
            self.rows.setdefault(new.name, new)
        self.cache, self.say = cache, progress or (lambda _m: None)
        self.parallel_builds, self.keep = parallel_builds, keep
        self.registry = ProcessRegistry()
        self.state = ledger.active().make_dir("seamcheck-matrix-")
        self.timings: dict[str, float] = {}
        self._memo = _Memo()
        self._s3: S3Store | None = None
        self._buckets: dict[str, str] = {}
        self._holdout = holdout_rows(HOLDOUT_ROWS)
        self._holdout_path = self.state / "holdout.parquet"
        self._holdout.to_parquet(self._holdout_path)

    # ------------------------------------------------------------------ lifecycle
    def close(self) -> None:
        self.registry.stop_all()
        ledger.active().remove_dir(self.state, keep=self.keep)

    def _row_roles(self, row: Row) -> tuple[str, ...]:
        return ROW_ROLES + (("skew",) if "skew" in row.roles else ())

    # ------------------------------------------------------------------ environments
    def builds(self) -> dict[str, RowBuild]:
        return self._memo.get("builds", self._build_all)

    def _build_all(self) -> dict[str, RowBuild]:
        """Every planned row's environments, in parallel, one build per distinct environment."""
        from harness.envs import default_cache_dir

        cache = self.cache or default_cache_dir()
        jobs: dict[Path, tuple[Row, str]] = {}
        for row in self.rows.values():
            for role in self._row_roles(row):
                jobs.setdefault(env_dir_for(cache, row.role(role)), (row, role))
        started = time.monotonic()
        self.say(f"matrix: {len(jobs)} distinct environments for {len(self.rows)} row(s), "
                 f"{self.parallel_builds} builds at a time")
        results: dict[Path, RoleEnv | EnvBuildError] = {}

        def build(path: Path) -> None:
            row, role = jobs[path]
            try:
                results[path] = ensure_env(row, role, cache=cache, progress=self.say)
            except EnvBuildError as exc:
                exc.detail = _with_resolver_reason(row.role(role), exc.detail)
                self.say(f"matrix: {row.name}/{role} cannot be built: {checks.uv_error_line(exc.detail)}")
                results[path] = exc

        with ThreadPoolExecutor(max_workers=max(1, self.parallel_builds)) as pool:
            list(pool.map(build, jobs))
        self.timings["env_builds_s"] = time.monotonic() - started
        out = {}
        for row in self.rows.values():
            rb = RowBuild(row.name)
            for role in self._row_roles(row):
                got = results[env_dir_for(cache, row.role(role))]
                if isinstance(got, EnvBuildError):
                    rb.errors[role] = got.detail
                else:
                    rb.envs[role] = got
                    rb.seconds[role] = got.build_seconds
            out[row.name] = rb
        return out

    def build(self, row: str) -> RowBuild:
        return self.builds()[row]

    def _envs(self, row: str) -> dict[str, RoleEnv]:
        rb = self.build(row)
        if not rb.ok:
            raise _CannotBuild(row, rb)
        return rb.envs

    # ------------------------------------------------------------------ shared S3
    def _store(self) -> S3Store:
        if self._s3 is None:
            self.say("matrix: starting the S3-compatible artifact store (moto) ...")
            self._s3 = start_s3(self.registry, self.state, free_port(), bucket="matrix-shared", deadline_s=120)
        return self._s3

    def _bucket(self, row: str) -> str:
        if row not in self._buckets:
            name = f"matrix-row-{len(self._buckets)}"
            self._store().client().create_bucket(Bucket=name)
            self._buckets[row] = name
        return self._buckets[row]

    def _client_env(self, tracking_uri: str | None = None) -> dict[str, str]:
        env = {**os.environ, **self._store().client_env(), "PYTHONPATH": role_pythonpath(),
               "PYTHONUNBUFFERED": "1", "PYTHONWARNINGS": "default"}
        env.pop("MLFLOW_TRACKING_URI", None)
        if tracking_uri:
            env["MLFLOW_TRACKING_URI"] = tracking_uri
        return env

    def _tracking(self, row: str):
        envs = self._envs(row)
        home = self.state / "rows" / row
        server = start_tracking(self.registry, envs["tracking"], home, free_port(),
                                artifact_root=f"s3://{self._bucket(row)}/", extra_env=self._store().client_env(),
                                deadline_s=TRACKING_DEADLINE_S)
        return server

    def _stop(self, proc) -> None:
        proc.stop()
        self.registry.forget(proc)

    # ------------------------------------------------------------------ phase: row
    def row_run(self, row: str) -> RowRun:
        return self._memo.get(("row", row), lambda: self._row_run(row))

    def _row_run(self, name: str) -> RowRun:
        row, envs = self.rows[name], self._envs(name)
        home = self.state / "rows" / name
        (home / "work").mkdir(parents=True, exist_ok=True)
        seconds: dict[str, float] = {}
        t0 = time.monotonic()
        self.say(f"matrix {name}: mlflow server {row.mlflow} ...")
        server = self._tracking(name)
        seconds["tracking_ready_s"] = server.ready_seconds
        try:
            self.say(f"matrix {name}: client probe (log, register, alias, stages) ...")
            t = time.monotonic()
            register = _probe(envs["pipeline"].python, "mlflow_client",
                              ["register", "--tracking-uri", server.uri, "--model-name", MODEL_NAME,
                               "--alias", ALIAS, "--input", str(self._holdout_path)],
                              what=f"{name}: MLflow client probe", env=self._client_env(server.uri),
                              cwd=home / "work")
            seconds["client_probe_s"] = time.monotonic() - t
        finally:
            self._stop(server.process)
        models = register.get("models") or {}
        jobs, folders = [], {}
        signed, unsigned = models.get("signed", {}), models.get("unsigned", {})
        if signed.get("artifact_uri"):
            jobs.append(("artifact_uri+/model", signed["artifact_uri"] + "/model", home / "fetch" / "seed-rule"))
        for label, model in (("signed", signed), ("unsigned", unsigned)):
            if model.get("download_uri"):
                jobs.append((f"download_uri[{label}]", model["download_uri"], home / "fetch" / label))
        storage = self._download(name, jobs, home / "work", what=f"{name}: storage initializer")
        for label in ("signed", "unsigned"):
            job = storage.get(f"download_uri[{label}]")
            if job and job["ok"] and "MLmodel" in job["files"]:
                folders[label] = Path(job["dest"])
        self.say(f"matrix {name}: kfp compile ...")
        t = time.monotonic()
        compiled = self._compile(name, envs["pipeline"], home / "work")
        seconds["compile_s"] = time.monotonic() - t
        skew = None
        if "skew" in envs:
            self.say(f"matrix {name}: skew probe (train-save with scikit-learn of the skew role) ...")
            skew = _probe(envs["skew"].python, "mlflow_client",
                          ["train-save", "--out", str(home / "skew-model"), "--input", str(self._holdout_path)],
                          what=f"{name}: skew trainer probe", env=self._client_env(), cwd=home / "work")
            if (skew["steps"].get("save") or {}).get("ok"):
                folders["skew"] = home / "skew-model"
        seconds["row_phase_s"] = time.monotonic() - t0
        return RowRun(name, register, storage, compiled, skew, folders, seconds)

    def _download(self, row: str, jobs: list[tuple[str, str, Path]], cwd: Path, *, what: str) -> dict[str, Any]:
        if not jobs:
            return {}
        envs = self._envs(row)
        payload = [{"uri": uri, "dest": str(dest)} for _label, uri, dest in jobs]
        for _l, _u, dest in jobs:
            shutil.rmtree(dest, ignore_errors=True)
        res = _probe(envs["storage"].python, "storage", ["--jobs", json.dumps(payload)], what=what,
                     env=self._client_env(), cwd=cwd)
        return {label: job for (label, _u, _d), job in zip(jobs, res["jobs"])}

    def _compile(self, row: str, env: RoleEnv, cwd: Path) -> dict[str, Any]:
        out = cwd / "pipeline.yaml"
        pins = list(self.rows[row].role("pipeline").pins)
        try:
            proc = run_command([str(env.python), "-m", "harness.pipeline.compile", "--out", str(out),
                                "--packages-json", json.dumps(pins)], what=f"kfp compile ({row})",
                               timeout=PROBE_TIMEOUT_S, env=self._client_env(), cwd=cwd)
        except subprocess.TimeoutExpired:
            raise NotEstablished(f"{row}: kfp compile gave no result in {PROBE_TIMEOUT_S:.0f}s") from None
        if proc.returncode != 0:
            return {"ok": False, "error": proc.stderr[-4000:] or proc.stdout[-4000:], "inspected": None}
        text = out.read_text()
        return {"ok": True, "error": "", "inspected": inspect_compiled(text), "yaml": text,
                "cli": json.loads(proc.stdout.strip().splitlines()[-1])}

    # ------------------------------------------------------------------ phase: serving
    def _serving_key(self, row: str) -> str:
        return str(self._envs(row)["serving"].path)

    def _plan_for_server(self, key: str) -> list[tuple[str, str, str]]:
        """(model id, row whose phase provides the folder, folder label) for one serving env."""
        plan = []
        for name in self.rows:
            if not self.build(name).ok or self._serving_key(name) != key:
                continue
            for label in ("signed", "unsigned", "skew"):
                plan.append((f"{name}:{label}", name, label))
        for old, new in self.pairs:
            if not (self.build(old.name).ok and self.build(new.name).ok):
                continue
            if self._serving_key(new.name) == key:
                plan.append((f"{old.name}>{new.name}:old-in-new", new.name, f"from:{old.name}"))
            if self._serving_key(old.name) == key:
                plan.append((f"{old.name}>{new.name}:new-in-old", old.name, f"from:{new.name}"))
        return plan

    def pair_download(self, old: str, new: str, direction: str) -> dict[str, Any] | None:
        """The other row's signed model fetched by this end's storage initializer."""
        return self._memo.get(("pair-dl", old, new, direction), lambda: self._pair_download(old, new, direction))

    def _pair_download(self, old: str, new: str, direction: str) -> dict[str, Any] | None:
        origin, fetcher = (old, new) if direction == "old-in-new" else (new, old)
        uri = ((self.row_run(origin).register.get("models") or {}).get("signed") or {}).get("download_uri")
        if not uri:
            return None
        home = self.state / "pairs" / f"{old}__{new}"
        (home / "work").mkdir(parents=True, exist_ok=True)
        jobs = self._download(fetcher, [(direction, uri, home / direction)], home / "work",
                              what=f"{fetcher}'s storage initializer fetching {origin}'s model")
        return jobs[direction]

    def serving_run(self, row: str) -> dict[str, Any]:
        key = self._serving_key(row)
        return self._memo.get(("serving", key), lambda: self._serving_run(key))

    def _serving_run(self, key: str) -> dict[str, Any]:
        plan = self._plan_for_server(key)
        folders: dict[str, Path] = {}
        for model_id, row, label in plan:
            if label.startswith("from:"):
                old, new = model_id.split(":")[0].split(">")
                direction = model_id.split(":")[1]
                job = self.pair_download(old, new, direction)
                if job and job["ok"] and "MLmodel" in job["files"]:
                    folders[model_id] = Path(job["dest"])
            else:
                folder = self.row_run(row).folders.get(label)
                if folder is not None:
                    folders[model_id] = folder
        env = next(self._envs(r)["serving"] for _m, r, _l in plan)
        label = Path(key).name
        home = self.state / "servers" / label
        self.say(f"matrix: MLServer of {label} for {len(folders)} model(s) ...")
        started = time.monotonic()
        server = ModelServer(self.registry, env, home, label=label).start(deadline_s=SERVER_DEADLINE_S)
        results: dict[str, Any] = {"ready_s": server.ready_seconds}
        try:
            for index, (model_id, folder) in enumerate(folders.items()):
                name = f"m{index}"
                load = server.load(name, folder)
                entry: dict[str, Any] = {"model": name, "load": load.as_dict(), "infer": {}}
                if load.ok:
                    for variant, content_type in checks.CONTENT_TYPES.items():
                        entry["infer"][variant] = server.infer(name, self._holdout, content_type=content_type).as_dict()
                results[model_id] = entry
                self.say(f"matrix: {model_id}: load {'ok' if load.ok else 'failed'} "
                         f"({load.seconds:.0f}s)")
        finally:
            server.stop()
        self.timings[f"serving[{label}]_s"] = time.monotonic() - started
        return results

    def served(self, row: str, label: str) -> dict[str, Any] | None:
        return self.serving_run(row).get(f"{row}:{label}")

    # ------------------------------------------------------------------ phase: read (upgrade)
    def pair_read(self, old: str, new: str) -> dict[str, Any]:
        return self._memo.get(("read", old, new), lambda: self._pair_read(old, new))

    def _pair_read(self, old: str, new: str) -> dict[str, Any]:
        self.row_run(old)  # the older registry must exist
        self.say(f"matrix: {new}'s client reads {old}'s registry ...")
        server = self._tracking(old)
        home = self.state / "pairs" / f"{old}__{new}"
        (home / "work").mkdir(parents=True, exist_ok=True)
        try:
            return _probe(self._envs(new)["pipeline"].python, "mlflow_client",
                          ["read", "--tracking-uri", server.uri, "--model-name", MODEL_NAME, "--alias", ALIAS,
                           "--input", str(self._holdout_path)],
                          what=f"{new}'s client against {old}'s server", env=self._client_env(server.uri),
                          cwd=home / "work")
        finally:
            self._stop(server.process)

    # ------------------------------------------------------------------ cells
    def versions(self, row: str, role: str) -> dict[str, Any]:
        return self._memo.get(("versions", row, role), lambda: _probe(
            self._envs(row)[role].python, "versions", ["mlflow", "scikit-learn", "numpy", "mlserver",
                                                         "mlserver-mlflow", "kfp", "kserve", "kserve-storage"],
            what=f"{row}: {role} versions", env=self._client_env(), cwd=self.state)["versions"])

    def row_cell(self, row: str, check: str) -> Cell:
        """The cell of ``check`` (a MATRIX_CHECKS name) for ``row``."""
        if check not in MATRIX_CHECKS:
            raise NotEstablished(f"unknown matrix check {check!r}; known: {', '.join(MATRIX_CHECKS)}")
        rb = self.build(row)
        if check == "env-build":
            return checks.build_cell(row, rb.errors, rb.seconds)
        if not rb.ok:
            return _cannot_build_cell("row", row, check, rb)
        run = self.row_run(row)
        cell = _ROW_CELLS[check](self, row, run)
        cell.evidence.setdefault("phase_seconds", {k: round(v, 1) for k, v in run.seconds.items()})
        return cell

    def _tracking_client(self, row: str, run: RowRun) -> Cell:
        return checks.tracking_client_cell(row, run.register)

    def _v2_predictions(self, row: str, run: RowRun) -> Cell:
        served = {label: self.served(row, label) for label in ("signed", "unsigned")}
        return checks.v2_predictions_cell(row, run.register, {k: v for k, v in served.items() if v is not None})

    def _library_skew(self, row: str, run: RowRun) -> Cell:
        probe = None
        if run.skew is not None:
            probe_served = self.served(row, "skew")
            probe = {"versions": run.skew["versions"], "load": probe_served["load"] if probe_served else None}
            if probe_served and probe_served["load"]["ok"]:
                want = (run.skew["steps"].get("predict") or {}).get("predictions")
                got = (probe_served["infer"].get("content_type") or {}).get("predictions")
                probe["predictions_equal"] = checks.same_predictions(got, want)[0]
        # The unsigned model's load isolates the pickle (a signed one may fail on the MLmodel
        # signature format first, e.g. mlflow 2.3.1 reading a 2.15 signature).
        own = self.served(row, "unsigned") or self.served(row, "signed")
        return checks.library_skew_cell(row, run.register.get("versions") or {}, self.versions(row, "serving"),
                                        own["load"] if own else None, probe)

    def _storage_uri(self, row: str, run: RowRun) -> Cell:
        jobs = {"artifact_uri+/model": run.storage.get("artifact_uri+/model"),
                "download_uri": run.storage.get("download_uri[signed]")}
        return checks.storage_uri_cell(row, run.register, {k: v for k, v in jobs.items() if v is not None})

    def _kfp_compile(self, row: str, run: RowRun) -> Cell:
        return checks.kfp_compile_cell(row, self.rows[row].role("pipeline").pin_version("kfp"), run.compiled)

    def _signature_claim(self, row: str, run: RowRun) -> Cell:
        return checks.signature_claim_cell(row, run.register, self.served(row, "unsigned"))

    def pair_cell(self, old: str, new: str, check: str) -> Cell:
        """The cell of ``check`` (an UPGRADE_CHECKS name) for the upgrade step ``old -> new``."""
        if check not in _PAIR_CELLS:
            raise NotEstablished(f"unknown upgrade check {check!r}; known: {', '.join(UPGRADE_CHECKS)}")
        subject = f"{old} -> {new}"
        for end in (old, new):
            if not self.build(end).ok:
                return _cannot_build_cell("upgrade", subject, check, self.build(end), row=end)
        return _PAIR_CELLS[check](self, old, new, subject, check)

    def _model_in_runtime(self, old: str, new: str, subject: str, check: str) -> Cell:
        direction = "old-in-new" if check == "old-model-in-new-runtime" else "new-in-old"
        origin, runtime = (old, new) if direction == "old-in-new" else (new, old)
        want = ((self.row_run(origin).register.get("models") or {}).get("signed") or {}).get("predictions")
        download = self.pair_download(old, new, direction)
        served = self.serving_run(runtime).get(f"{old}>{new}:{direction}")
        return checks.model_in_runtime_cell(subject, check, origin, runtime, want, download, served)

    def _client_reads_registry(self, old: str, new: str, subject: str, check: str) -> Cell:
        signed = (self.row_run(old).register.get("models") or {}).get("signed") or {}
        read = self.pair_read(old, new) if signed.get("version") else None
        return checks.client_reads_registry_cell(subject, new, old, read, signed.get("version"),
                                                 signed.get("predictions"))


#: Each registered check (harness/matrix.py) and the lab's method that fills its cell (env-build is
#: answered by row_cell itself, from the build).
_ROW_CELLS: dict[str, Callable[..., Cell]] = {
    "tracking-client": MatrixLab._tracking_client, "v2-predictions": MatrixLab._v2_predictions,
    "library-skew": MatrixLab._library_skew, "storage-uri": MatrixLab._storage_uri,
    "kfp-compile": MatrixLab._kfp_compile, "signature-claim": MatrixLab._signature_claim,
}
_PAIR_CELLS: dict[str, Callable[..., Cell]] = {
    "old-model-in-new-runtime": MatrixLab._model_in_runtime, "new-model-in-old-runtime": MatrixLab._model_in_runtime,
    "new-client-reads-old-registry": MatrixLab._client_reads_registry,
}
if set(_ROW_CELLS) | {"env-build"} != set(MATRIX_CHECKS) or set(_PAIR_CELLS) != set(UPGRADE_CHECKS):
    raise RuntimeError("harness/matrixcheck/lab.py and the check registry in harness/matrix.py disagree")


class _CannotBuild(NotEstablished):
    def __init__(self, row: str, build: RowBuild) -> None:
        self.build = build
        super().__init__(f"{row} cannot be built")


def _cannot_build_cell(kind: str, subject: str, check: str, build: RowBuild, row: str = "") -> Cell:
    findings = [Finding(f"{row + ':' if row else ''}{role}", checks.uv_error_line(detail))
                for role, detail in build.errors.items()]
    return Cell(kind, subject, check, CANNOT_BUILD, "; ".join(f"{f.facet}: {f.text}" for f in findings)[:600],
                findings, {"uv_errors": dict(build.errors)})

