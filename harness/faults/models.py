"""Faulty canary models: real MLflow pyfunc models that wrap a real base model with one fault.

Kinds (see harness/faults/model_code/seamcheck_fault_model.py for the class itself):

  error         raise with probability ``p`` per request          -> MLServer answers HTTP 500
  latency       add ``delay_s`` seconds to every request
  tail_latency  add ``delay_s`` seconds to a fraction ``q`` only  -> p99 up, median unchanged
  wrong         flip each predicted label with probability ``p`` (default 1.0: every label)
  slow_load     sleep ``load_delay_s`` seconds in load_context    -> readiness comes late
  proba         answer the positive class' probability (the base classifier's predict_proba)
                plus ``shift``, clipped to [0, 1]; ``shift`` 0 is the base model's own
                probabilities: a probability-serving version, the stable such canaries are
                compared with (its signature's output is then a double, not the label)

The model is logged (and registered) by the *pipeline* role's mlflow (2.17.2 in the seed row),
and must load in the *serving* role's MLServer 1.5.0 / mlflow 2.10.2. So the wrapper class lives
in a module shipped with the model (``code_paths``) and is pickled by reference only; the base
model goes in as the artifact ``base`` (``artifacts={"base": base_model_uri}``); the signature is
the base model's own, so the same V2 ``content_type: pd`` requests work against both.

Two halves:
* Harness side (any interpreter, no mlflow import): ``log_faulty_model``, ``save_faulty_model``
  and ``save_base_model`` run this module as a subprocess in the pipeline environment.
* Environment side (``python -m harness.faults.models {log,save,base} ...``, PYTHONPATH=repo root,
  MLflow/S3 env vars of the stack passed through by the caller): does the MLflow work and prints
  one JSON object on its last stdout line (also written to ``--output`` when given).

Example, inside the pipeline env::

    python -m harness.faults.models log --kind error --p 0.1 \\
        --base-model-uri models:/recommendation-classifier/1 \\
        --registered-model-name recommendation-classifier --tracking-uri http://127.0.0.1:5000
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import tempfile
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from harness.paths import role_pythonpath

__all__ = [
    "FAULT_KINDS",
    "MODEL_CODE_FILE",
    "MODEL_CODE_MODULE",
    "FaultSpec",
    "FaultyModelInfo",
    "log_faulty_model",
    "main",
    "save_base_model",
    "save_faulty_model",
    "save_faulty_models",
]

FAULT_KINDS = ("error", "latency", "tail_latency", "wrong", "slow_load", "proba")
MODEL_CODE_MODULE = "seamcheck_fault_model"
MODEL_CODE_FILE = Path(__file__).with_name("model_code") / f"{MODEL_CODE_MODULE}.py"
#: Key of the MLmodel `metadata` entry (and prefix of the run tags) that describe the fault.
METADATA_KEY = "seamcheck_fault"
_RESULT_PREFIX = "SEAMCHECK_FAULT_RESULT "


@dataclass(frozen=True)
class FaultSpec:
    """One fault. Only the fields of its kind matter; ``validate`` rejects nonsense early."""

    kind: str
    p: float = 0.0
    q: float = 0.0
    delay_s: float = 0.0
    load_delay_s: float = 0.0
    shift: float = 0.0  # proba: added to every probability (then clipped to [0, 1])

    # Constructors with each kind's own parameters.
    @classmethod
    def error(cls, p: float = 0.1) -> FaultSpec:
        return cls("error", p=p).validate()

    @classmethod
    def latency(cls, delay_s: float = 0.5) -> FaultSpec:
        return cls("latency", delay_s=delay_s).validate()

    @classmethod
    def tail_latency(cls, q: float = 0.05, delay_s: float = 1.0) -> FaultSpec:
        return cls("tail_latency", q=q, delay_s=delay_s).validate()

    @classmethod
    def wrong(cls, p: float = 1.0) -> FaultSpec:
        return cls("wrong", p=p).validate()

    @classmethod
    def slow_load(cls, load_delay_s: float = 10.0) -> FaultSpec:
        return cls("slow_load", load_delay_s=load_delay_s).validate()

    @classmethod
    def proba(cls, shift: float = 0.0) -> FaultSpec:
        return cls("proba", shift=shift).validate()

    def validate(self) -> FaultSpec:
        if self.kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {self.kind!r}; choose one of {', '.join(FAULT_KINDS)}")
        for name in ("p", "q"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"fault {self.kind}: {name}={value} is not a probability in [0, 1]")
        for name in ("delay_s", "load_delay_s"):
            if getattr(self, name) < 0:
                raise ValueError(f"fault {self.kind}: {name} must be >= 0")
        needs = {"error": "p", "tail_latency": "q", "wrong": "p"}.get(self.kind)
        if needs and getattr(self, needs) == 0.0:
            raise ValueError(f"fault {self.kind} with {needs}=0 injects nothing")
        if self.kind in ("latency", "tail_latency") and self.delay_s == 0.0:
            raise ValueError(f"fault {self.kind} with delay_s=0 injects nothing")
        if self.kind == "slow_load" and self.load_delay_s == 0.0:
            raise ValueError("fault slow_load with load_delay_s=0 injects nothing")
        if not -1.0 <= self.shift <= 1.0:
            raise ValueError(f"fault {self.kind}: shift={self.shift} moves a probability out of [0, 1] entirely; "
                             "use -1 <= shift <= 1")
        if self.shift and self.kind != "proba":
            raise ValueError(f"fault {self.kind}: shift={self.shift} applies to kind proba only")
        return self

    def argv(self) -> list[str]:
        return ["--kind", self.kind, "--p", repr(self.p), "--q", repr(self.q),
                "--delay-s", repr(self.delay_s), "--load-delay-s", repr(self.load_delay_s), "--shift", repr(self.shift)]

    def describe(self) -> str:
        return {
            "error": f"error p={self.p}",
            "latency": f"latency +{self.delay_s}s",
            "tail_latency": f"tail_latency +{self.delay_s}s on q={self.q}",
            "wrong": f"wrong labels p={self.p}",
            "slow_load": f"slow_load {self.load_delay_s}s",
            "proba": f"probabilities shifted {self.shift:+g}" if self.shift else "probabilities",
        }[self.kind]


#: The faulty models' artifact path (see the comment where it is used).
CANARY_ARTIFACT_PATH = "canary"


@dataclass
class FaultyModelInfo:
    """What the environment side reports after logging or saving a faulty model."""

    spec: FaultSpec
    base_model_uri: str
    model_uri: str  # runs:/<run>/model, or the local folder for `save`
    local_path: str | None = None  # `save` only: the model folder (an MLmodel file inside)
    run_id: str | None = None
    artifact_uri: str | None = None  # the model's own artifact location (the registry's source)
    registered_model_name: str | None = None
    registered_model_version: str | None = None
    mlflow_version: str = ""
    seconds: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> FaultyModelInfo:
        data = dict(data)
        spec = FaultSpec(**data.pop("spec"))
        known = {f for f in cls.__dataclass_fields__ if f != "spec"}
        extra = {k: data.pop(k) for k in list(data) if k not in known}
        info = cls(spec=spec, **data)
        info.extra.update(extra)
        return info


# =============================================================================== harness side
def _abs_uri(uri: str) -> str:
    """A local model folder as an absolute path (the subprocess runs elsewhere); URIs unchanged."""
    return str(Path(uri).resolve()) if "://" not in uri and ":/" not in uri and Path(uri).exists() else uri


def _run_in_env(python: Path | str, args: list[str], *, what: str, env: Mapping[str, str] | None,
                timeout_s: float, cwd: Path | None = None) -> dict[str, Any]:
    from harness.procs import run_checked  # harness venv only (tenacity, psutil)

    proc_env = dict(os.environ if env is None else env)
    path = proc_env.get("PYTHONPATH", "")
    root = role_pythonpath()
    if root not in path.split(os.pathsep):
        proc_env["PYTHONPATH"] = os.pathsep.join(p for p in (root, path) if p)
    proc_env.setdefault("PYTHONUNBUFFERED", "1")
    # Not the caller's folder by default: mlflow may create ./mlruns where it runs.
    proc = run_checked([str(python), "-m", "harness.faults.models", *args], what=what, timeout=timeout_s,
                       env=proc_env, cwd=cwd or tempfile.gettempdir())
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith(_RESULT_PREFIX):
            return json.loads(line[len(_RESULT_PREFIX):])
    raise RuntimeError(f"{what}: no result line in its output:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")


def log_faulty_model(python: Path | str, spec: FaultSpec, *, base_model_uri: str, registered_model_name: str,
                     tracking_uri: str, experiment_name: str = "seamcheck-faults",
                     env: Mapping[str, str] | None = None, timeout_s: float = 300.0) -> FaultyModelInfo:
    """Log and register a faulty canary wrapping ``base_model_uri`` with the mlflow of the
    interpreter ``python`` (the pipeline role's). ``env``: the stack's client environment (MLflow
    and S3 variables); PYTHONPATH gets the repo root added."""
    spec.validate()
    data = _run_in_env(python, ["log", *spec.argv(), "--base-model-uri", _abs_uri(base_model_uri),
                                "--registered-model-name", registered_model_name, "--tracking-uri", tracking_uri,
                                "--experiment-name", experiment_name],
                       what=f"logging a faulty model ({spec.describe()}) over {base_model_uri}", env=env,
                       timeout_s=timeout_s)
    return FaultyModelInfo.from_json(data)


def save_faulty_model(python: Path | str, spec: FaultSpec, *, base_model_uri: str, out_dir: Path,
                      env: Mapping[str, str] | None = None, timeout_s: float = 300.0) -> FaultyModelInfo:
    """Save (no tracking server) a faulty model to ``out_dir``, a folder an MLServer can serve
    as is. ``base_model_uri`` may be a local model folder."""
    spec.validate()
    data = _run_in_env(python, ["save", *spec.argv(), "--base-model-uri", _abs_uri(base_model_uri),
                                "--out", str(Path(out_dir).resolve())],
                       what=f"saving a faulty model ({spec.describe()}) over {base_model_uri}", env=env,
                       timeout_s=timeout_s)
    return FaultyModelInfo.from_json(data)


def save_faulty_models(python: Path | str, specs: Mapping[str, FaultSpec], *, base_model_uri: str, out_root: Path,
                       env: Mapping[str, str] | None = None, timeout_s: float = 300.0) -> dict[str, FaultyModelInfo]:
    """Several faulty models over one base in ONE subprocess (mlflow imports once): each goes to
    ``out_root/<name>``. Returns {name: info}."""
    payload = []
    for name, spec in specs.items():
        spec.validate()
        if not name or "/" in name or name.startswith("."):
            raise ValueError(f"bad model folder name {name!r}")
        payload.append({"name": name, "spec": asdict(spec)})
    data = _run_in_env(python, ["save-many", "--base-model-uri", _abs_uri(base_model_uri),
                                "--out-root", str(Path(out_root).resolve()),
                                "--specs-json", json.dumps(payload)],
                       what=f"saving {len(payload)} faulty models over {base_model_uri}", env=env, timeout_s=timeout_s)
    return {name: FaultyModelInfo.from_json(info) for name, info in data["models"].items()}


def save_base_model(python: Path | str, out_dir: Path, *, rows: int = 600, seed: int = 7,
                    env: Mapping[str, str] | None = None, timeout_s: float = 300.0) -> dict[str, Any]:
    """A small real base model for tests: the pipeline's GradientBoostingClassifier on the
    pipeline's synthetic dataset (harness.pipeline.dataset), saved with a signature by the
    interpreter's mlflow.sklearn, as train_model logs it. Returns {"path", "mlflow_version", ...}."""
    return _run_in_env(python, ["base", "--out", str(Path(out_dir).resolve()), "--rows", str(rows),
                                "--seed", str(seed)],
                       what="saving a small base model", env=env, timeout_s=timeout_s)


# =============================================================================== environment side
def _python_model(spec: FaultSpec):
    """The wrapper instance, its class imported as the top-level module shipped in code/."""
    code_dir = str(MODEL_CODE_FILE.parent)
    if code_dir not in sys.path:
        sys.path.insert(0, code_dir)
    import importlib

    module = importlib.import_module(MODEL_CODE_MODULE)
    model = module.FaultyModel(kind=spec.kind, p=spec.p, q=spec.q, delay_s=spec.delay_s,
                               load_delay_s=spec.load_delay_s, shift=spec.shift)
    if type(model).__module__ != MODEL_CODE_MODULE:  # would pickle a path no server can import
        raise RuntimeError(f"FaultyModel comes from {type(model).__module__!r}, not {MODEL_CODE_MODULE!r}")
    return model


def _base_facts(base_model_uri: str) -> tuple[Any, list[str]]:
    """The base model's signature and pip requirements (small files only, no weights)."""
    import mlflow
    from mlflow.models import Model

    local = Path(base_model_uri)
    if local.is_dir():
        signature = Model.load(str(local / "MLmodel")).signature
        reqs_file = local / "requirements.txt"
        reqs = reqs_file.read_text().splitlines() if reqs_file.is_file() else []
    else:
        signature = mlflow.models.get_model_info(base_model_uri).signature
        try:
            reqs_file = Path(mlflow.pyfunc.get_model_dependencies(base_model_uri, format="pip"))
            reqs = reqs_file.read_text().splitlines()
        except Exception:  # noqa: BLE001 - a model logged without requirements.txt
            reqs = []
    if signature is None:
        raise SystemExit(f"base model {base_model_uri} has no signature: a faulty canary must take the same "
                         "V2 requests as its base, so log the base with one")
    reqs = [r.strip() for r in reqs if r.strip() and not r.strip().startswith(("#", "-"))]
    return signature, reqs or [f"mlflow=={mlflow.__version__}"]


def _model_kwargs(spec: FaultSpec, base_model_uri: str) -> dict[str, Any]:
    signature, reqs = _base_facts(base_model_uri)
    if spec.kind == "proba":  # it answers a probability, not the base's label: say so in the signature
        from mlflow.models.signature import ModelSignature
        from mlflow.types.schema import ColSpec, Schema

        signature = ModelSignature(inputs=signature.inputs, outputs=Schema([ColSpec("double")]))
    return {
        "python_model": _python_model(spec),
        "artifacts": {"base": base_model_uri},
        # mlflow 2.17 has both `code_path` (deprecated) and `code_paths`; both write the same
        # MLmodel key `code: code`, which mlflow 2.10 reads on load.
        "code_paths": [str(MODEL_CODE_FILE)],
        "signature": signature,
        # Explicit requirements: inferring them would load the model in a subprocess (and so sleep
        # through slow_load's delay); a model server in KServe does not install them anyway.
        "pip_requirements": reqs,
        "metadata": {METADATA_KEY: {**asdict(spec), "base_model_uri": base_model_uri}},
    }


def _emit(result: dict[str, Any], output: str | None) -> None:
    if output:
        Path(output).write_text(json.dumps(result, indent=2))
    print(_RESULT_PREFIX + json.dumps(result), flush=True)


def _spec_from(args: argparse.Namespace) -> FaultSpec:
    spec = FaultSpec(args.kind, p=args.p, q=args.q, delay_s=args.delay_s, load_delay_s=args.load_delay_s,
                     shift=args.shift)
    if spec.kind == "wrong" and spec.p == 0.0:
        spec = FaultSpec("wrong", p=1.0)
    return spec.validate()


def _cmd_log(args: argparse.Namespace) -> dict[str, Any]:
    import mlflow

    spec = _spec_from(args)
    started = time.monotonic()
    mlflow.set_tracking_uri(args.tracking_uri)
    mlflow.set_experiment(args.experiment_name)
    kwargs = _model_kwargs(spec, args.base_model_uri)
    with mlflow.start_run(run_name=f"faulty-{spec.kind}") as run:
        mlflow.set_tags({f"{METADATA_KEY}.kind": spec.kind, f"{METADATA_KEY}.spec": spec.describe(),
                         f"{METADATA_KEY}.base_model_uri": args.base_model_uri})
        mlflow.log_params({f"fault_{k}": v for k, v in asdict(spec).items()})
        # Not "model": KServe 0.14's S3 storage initializer flattens every object whose file name
        # starts with the storageUri's last path component, so a wrapper that nests its base
        # model (artifacts/model.pkl) under ".../model" arrives broken (model.pkl at the top).
        info = mlflow.pyfunc.log_model(artifact_path=CANARY_ARTIFACT_PATH,
                                       registered_model_name=args.registered_model_name, **kwargs)
        version = info.registered_model_version
        if version is not None:
            client = mlflow.MlflowClient()
            client.set_model_version_tag(args.registered_model_name, str(version), f"{METADATA_KEY}.kind", spec.kind)
            client.set_model_version_tag(args.registered_model_name, str(version), f"{METADATA_KEY}.spec",
                                         spec.describe())
        return {"spec": asdict(spec), "base_model_uri": args.base_model_uri,
                "model_uri": f"runs:/{run.info.run_id}/{CANARY_ARTIFACT_PATH}", "run_id": run.info.run_id,
                "artifact_uri": f"{run.info.artifact_uri}/{CANARY_ARTIFACT_PATH}",
                "registered_model_name": args.registered_model_name,
                "registered_model_version": None if version is None else str(version),
                "mlflow_version": mlflow.__version__, "seconds": round(time.monotonic() - started, 3)}


def _no_default_file_store(mlflow: Any) -> None:
    """mlflow 2.17 sets up its tracing exporter while saving a PythonModel, which opens the default
    tracking store: with no tracking URI set, that makes ./mlruns in the caller's folder. Point
    such saves at a throw-away file store instead."""
    if not os.environ.get("MLFLOW_TRACKING_URI"):
        import atexit
        import shutil

        scratch = tempfile.mkdtemp(prefix="seamcheck-faults-mlruns-")
        atexit.register(shutil.rmtree, scratch, True)
        mlflow.set_tracking_uri(Path(scratch).as_uri())


def _cmd_save(args: argparse.Namespace) -> dict[str, Any]:
    import shutil

    import mlflow

    _no_default_file_store(mlflow)
    spec = _spec_from(args)
    started = time.monotonic()
    out = Path(args.out)
    if out.exists():
        shutil.rmtree(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    mlflow.pyfunc.save_model(str(out), **_model_kwargs(spec, args.base_model_uri))
    return {"spec": asdict(spec), "base_model_uri": args.base_model_uri, "model_uri": str(out),
            "local_path": str(out), "mlflow_version": mlflow.__version__,
            "seconds": round(time.monotonic() - started, 3)}


def _cmd_save_many(args: argparse.Namespace) -> dict[str, Any]:
    models = {}
    for item in json.loads(args.specs_json):
        spec = FaultSpec(**item["spec"])
        sub = argparse.Namespace(base_model_uri=args.base_model_uri, out=str(Path(args.out_root) / item["name"]),
                                 kind=spec.kind, p=spec.p, q=spec.q, delay_s=spec.delay_s,
                                 load_delay_s=spec.load_delay_s, shift=spec.shift)
        models[item["name"]] = _cmd_save(sub)
    return {"models": models}


def _cmd_base(args: argparse.Namespace) -> dict[str, Any]:
    import shutil

    import mlflow
    import mlflow.sklearn
    import sklearn
    from mlflow.models import infer_signature
    from sklearn.ensemble import GradientBoostingClassifier

    from harness.pipeline.dataset import LABEL, make_dataset

    started = time.monotonic()
    frame = make_dataset(args.rows, args.seed)
    X, y = frame.drop(columns=[LABEL]), frame[LABEL]
    clf = GradientBoostingClassifier(n_estimators=30, max_depth=3, random_state=42).fit(X, y)
    out = Path(args.out)
    if out.exists():
        shutil.rmtree(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    import cloudpickle
    import numpy

    # Explicit requirements: inferring them re-loads the model in a subprocess (seconds).
    reqs = [f"mlflow=={mlflow.__version__}", f"scikit-learn=={sklearn.__version__}", f"numpy=={numpy.__version__}",
            f"cloudpickle=={cloudpickle.__version__}"]
    mlflow.sklearn.save_model(clf, str(out), signature=infer_signature(X, clf.predict(X)),
                              input_example=X.head(3), pip_requirements=reqs)
    return {"path": str(out), "mlflow_version": mlflow.__version__, "sklearn_version": sklearn.__version__,
            "train_accuracy": float((clf.predict(X) == y).mean()), "seconds": round(time.monotonic() - started, 3)}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m harness.faults.models", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    def fault_args(p: argparse.ArgumentParser) -> None:
        p.add_argument("--kind", required=True, choices=FAULT_KINDS)
        p.add_argument("--p", type=float, default=0.0, help="error: failure probability; wrong: flip probability "
                                                             "(default 1.0)")
        p.add_argument("--q", type=float, default=0.0, help="tail_latency: fraction of slowed requests")
        p.add_argument("--delay-s", type=float, default=0.0, help="latency / tail_latency: added seconds")
        p.add_argument("--load-delay-s", type=float, default=0.0, help="slow_load: seconds to sleep in load_context")
        p.add_argument("--shift", type=float, default=0.0, help="proba: added to every probability")
        p.add_argument("--base-model-uri", required=True, help="models:/name/version, runs:/..., or a local folder")
        p.add_argument("--output", help="also write the result JSON here")

    log = sub.add_parser("log", help="log + register a faulty model against a tracking server")
    fault_args(log)
    log.add_argument("--registered-model-name", required=True)
    log.add_argument("--tracking-uri", default=os.environ.get("MLFLOW_TRACKING_URI"), required=
                     not os.environ.get("MLFLOW_TRACKING_URI"))
    log.add_argument("--experiment-name", default="seamcheck-faults")
    log.set_defaults(func=_cmd_log)

    save = sub.add_parser("save", help="save a faulty model to a local folder (no tracking server)")
    fault_args(save)
    save.add_argument("--out", required=True)
    save.set_defaults(func=_cmd_save)

    many = sub.add_parser("save-many", help="save several faulty models over one base (one mlflow import)")
    many.add_argument("--base-model-uri", required=True)
    many.add_argument("--out-root", required=True)
    many.add_argument("--specs-json", required=True, help='[{"name": "err", "spec": {"kind": "error", "p": 0.1}}]')
    many.add_argument("--output")
    many.set_defaults(func=_cmd_save_many)

    base = sub.add_parser("base", help="save a small real base model (tests)")
    base.add_argument("--out", required=True)
    base.add_argument("--rows", type=int, default=600)
    base.add_argument("--seed", type=int, default=7)
    base.add_argument("--output")
    base.set_defaults(func=_cmd_base)
    return parser


def main(argv: list[str] | None = None) -> int:
    # SIGTERM (the harness stopping this, or the reaper after a killed session) unwinds like an
    # exit, so the atexit removal of the scratch store below still runs.
    signal.signal(signal.SIGTERM, lambda signum, _frame: sys.exit(128 + signum))
    args = _parser().parse_args(argv)
    try:
        result = args.func(args)
    except ValueError as exc:  # a bad FaultSpec: say so plainly
        print(f"error: {exc}", file=sys.stderr)
        return 2
    _emit(result, args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
