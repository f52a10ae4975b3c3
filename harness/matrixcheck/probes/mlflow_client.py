"""The row's MLflow client at work, run by a role environment's interpreter (pipeline or skew):

    python -m harness.matrixcheck.probes.mlflow_client register --tracking-uri URI --model-name NAME \
        --input holdout.parquet --workdir DIR
    python -m harness.matrixcheck.probes.mlflow_client read --tracking-uri URI --model-name NAME --alias A \
        --input holdout.parquet
    python -m harness.matrixcheck.probes.mlflow_client train-save --out DIR --input holdout.parquet

``register`` does what a training step does against the row's tracking server and records each
step's outcome (ok, the error text, the warnings it emitted): a run with params and metrics; a model
logged WITH a signature (``signed``) and one WITHOUT (``unsigned``, logged with
MLFLOW_MODEL_SIGNATURE_ENFORCEMENT=true in the environment: the seed's claim), each in its own run
and registered; an alias set and resolved through ``models:/<name>@<alias>``; a stage transition and
``models:/<name>/Staging``; the model version's source and download URI next to the run's
artifact_uri; and the model's own predictions on the hold-out rows (what the endpoint must equal).
``read`` is a newer client against an older server's registry. ``train-save`` pickles a model with
this environment's scikit-learn into a local folder (the library-skew probe).
Each prints one ``SEAMCHECK_PROBE {json}`` line last.
"""
import argparse
import inspect
import json
import logging
import os
import signal
import sys
import time
import traceback
import warnings
from contextlib import contextmanager

__all__ = ["main"]

SIGNATURE_ENV = "MLFLOW_MODEL_SIGNATURE_ENFORCEMENT"
_LOG_RECORDS = []


class _Collect(logging.Handler):
    def emit(self, record):
        if record.levelno >= logging.WARNING:
            _LOG_RECORDS.append(f"{record.name}: {record.getMessage()}"[:600])


@contextmanager
def _step(results, name):
    """Run one step; record ok, its error (type: message) and every warning it emitted."""
    entry = {"ok": False, "error": "", "warnings": [], "seconds": 0.0}
    results[name] = entry
    started, mark = time.monotonic(), len(_LOG_RECORDS)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            yield entry
            entry["ok"] = True
        except Exception as exc:  # noqa: BLE001 - the component's own error is the evidence
            entry["error"] = f"{type(exc).__name__}: {exc}"[:1500]
            entry["traceback"] = traceback.format_exc(limit=4)[-1500:]
    seen = [f"{w.category.__name__}: {w.message}"[:600] for w in caught]
    entry["warnings"] = list(dict.fromkeys(seen + _LOG_RECORDS[mark:]))[:12]
    entry["seconds"] = round(time.monotonic() - started, 3)


def _collect_logs():
    """mlflow's own logger does not propagate to the root logger: listen on both."""
    handler = _Collect()
    for name in ("", "mlflow"):
        logging.getLogger(name).addHandler(handler)


def _versions():
    from importlib import metadata

    out = {}
    for name in ("mlflow", "mlflow-skinny", "scikit-learn", "numpy", "pandas", "kfp", "cloudpickle", "skops"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def _predict(model_uri, frame):
    import mlflow.pyfunc

    preds = mlflow.pyfunc.load_model(model_uri).predict(frame)
    return [v.item() if hasattr(v, "item") else v for v in (preds.tolist() if hasattr(preds, "tolist")
                                                            else list(preds))]


def _train(rows=600, seed=7):
    from sklearn.ensemble import GradientBoostingClassifier

    from harness.pipeline.dataset import LABEL, make_dataset

    frame = make_dataset(rows, seed)
    X, y = frame.drop(columns=[LABEL]), frame[LABEL]
    clf = GradientBoostingClassifier(n_estimators=20, max_depth=3, random_state=42).fit(X, y)
    return clf, X, y


def _log_kwargs(log_model, path):
    """mlflow 3 names the model (`name=`; `artifact_path` is deprecated), mlflow 2 gives a path."""
    params = inspect.signature(log_model).parameters
    return {"name": path} if "name" in params else {"artifact_path": path}


def _signature_env_known():
    """Is MLFLOW_MODEL_SIGNATURE_ENFORCEMENT mentioned anywhere in the installed mlflow package?"""
    import mlflow

    root = os.path.dirname(mlflow.__file__)
    hits = []
    for base, _dirs, files in os.walk(root):
        for name in files:
            if name.endswith(".py"):
                path = os.path.join(base, name)
                try:
                    with open(path, encoding="utf-8", errors="replace") as fh:
                        if SIGNATURE_ENV in fh.read():
                            hits.append(os.path.relpath(path, root))
                except OSError:
                    continue
    return hits


def cmd_register(args):
    os.environ[SIGNATURE_ENV] = "true"  # the seed's switch, set for the whole client
    _collect_logs()
    import mlflow
    import mlflow.sklearn
    import pandas as pd
    from mlflow.models import infer_signature
    from mlflow.tracking import MlflowClient

    mlflow.set_tracking_uri(args.tracking_uri)
    client = MlflowClient(args.tracking_uri)
    holdout = pd.read_parquet(args.input)
    steps = {}
    out = {"versions": _versions(), "steps": steps, "models": {}}
    clf, X, _y = _train()
    with _step(steps, "experiment"):
        mlflow.set_experiment("seamcheck-matrix")
    for label, signed in (("signed", True), ("unsigned", False)):
        model = {"signed": signed}
        out["models"][label] = model
        with _step(steps, f"run[{label}]") as st:
            with mlflow.start_run(run_name=f"matrix-{label}") as run:
                mlflow.log_params({"n_estimators": 20, "max_depth": 3, "signed": signed})
                mlflow.log_metrics({"train_accuracy": float((clf.predict(X) == _y).mean())})
                model["run_id"] = run.info.run_id
                kwargs = _log_kwargs(mlflow.sklearn.log_model, "model")
                if signed:
                    kwargs.update(signature=infer_signature(X, clf.predict(X)), input_example=X.head(3))
                with _step(steps, f"log-model[{label}]") as lm:
                    lm["kwargs"] = sorted(kwargs)
                    info = mlflow.sklearn.log_model(clf, registered_model_name=args.model_name, **kwargs)
                if not lm["ok"] and "serialization_format" in inspect.signature(mlflow.sklearn.log_model).parameters:
                    # The default failed (mlflow 3.x: skops refuses the tree types): the remedy a user
                    # would try next, so the rest of the checks still run on this row.
                    with _step(steps, f"log-model-cloudpickle[{label}]") as lm:
                        lm["kwargs"] = [*sorted(kwargs), "serialization_format"]
                        info = mlflow.sklearn.log_model(clf, registered_model_name=args.model_name,
                                                        serialization_format="cloudpickle", **kwargs)
                if lm["ok"]:
                    model["model_uri"] = info.model_uri
                    model["logged_with"] = lm["kwargs"]
                    model["registered_version"] = str(getattr(info, "registered_model_version", "") or "")
            st["run_id"] = model.get("run_id")
        if "run_id" not in model:
            continue
        with _step(steps, f"params-metrics[{label}]") as pm:
            data = client.get_run(model["run_id"]).data
            pm["params"], pm["metrics"] = dict(data.params), dict(data.metrics)
            assert data.params.get("n_estimators") == "20" and "train_accuracy" in data.metrics, pm
        with _step(steps, f"register[{label}]") as rg:
            versions = client.search_model_versions(f"name='{args.model_name}'")
            mine = [v for v in versions if v.run_id == model["run_id"]]
            assert len(mine) == 1, f"expected one version from run {model['run_id']}, found {len(mine)}"
            mv = mine[0]
            model.update(version=str(mv.version), source=mv.source, status=mv.status,
                         artifact_uri=client.get_run(model["run_id"]).info.artifact_uri)
            rg.update(version=model["version"], source=mv.source, status=mv.status)
        if "version" not in model:
            continue
        with _step(steps, f"download-uri[{label}]") as du:
            model["download_uri"] = client.get_model_version_download_uri(args.model_name, model["version"])
            du["download_uri"] = model["download_uri"]
        with _step(steps, f"predict[{label}]") as pr:
            model["predictions"] = _predict(f"models:/{args.model_name}/{model['version']}", holdout)
            pr["n"] = len(model["predictions"])
    signed = out["models"].get("signed", {})
    if "version" in signed:
        with _step(steps, "alias") as al:
            client.set_registered_model_alias(args.model_name, args.alias, signed["version"])
            mv = client.get_model_version_by_alias(args.model_name, args.alias)
            al["resolved_version"] = str(mv.version)
            assert str(mv.version) == signed["version"], (mv.version, signed["version"])
            al["predictions"] = _predict(f"models:/{args.model_name}@{args.alias}", holdout)
            assert al["predictions"] == signed.get("predictions"), "models:/name@alias predicts differently"
        with _step(steps, "stages") as sg:
            client.transition_model_version_stage(args.model_name, signed["version"], "Staging")
            sg["predictions"] = _predict(f"models:/{args.model_name}/Staging", holdout)
            assert sg["predictions"] == signed.get("predictions"), "models:/name/Staging predicts differently"
    with _step(steps, "signature-env-known") as se:
        se["files"] = _signature_env_known()
    return out


def cmd_read(args):
    _collect_logs()
    import mlflow
    import pandas as pd
    from mlflow.tracking import MlflowClient

    mlflow.set_tracking_uri(args.tracking_uri)
    client = MlflowClient(args.tracking_uri)
    holdout = pd.read_parquet(args.input)
    steps = {}
    out = {"versions": _versions(), "steps": steps}
    with _step(steps, "search") as se:
        se["versions"] = sorted(str(v.version) for v in client.search_model_versions(f"name='{args.model_name}'"))
    with _step(steps, "alias") as al:
        mv = client.get_model_version_by_alias(args.model_name, args.alias)
        al.update(version=str(mv.version), source=mv.source, run_id=mv.run_id)
    with _step(steps, "download-uri") as du:
        du["download_uri"] = client.get_model_version_download_uri(args.model_name, steps["alias"]["version"])
    with _step(steps, "predict") as pr:
        pr["predictions"] = _predict(f"models:/{args.model_name}@{args.alias}", holdout)
    return out


def cmd_train_save(args):
    _collect_logs()
    import shutil
    import tempfile

    import mlflow
    import mlflow.sklearn
    import pandas as pd
    from mlflow.models import infer_signature

    # Saving may open the default tracking store (./mlruns): keep it in a scratch folder, gone
    # when the probe is (it outlived every run before).
    with tempfile.TemporaryDirectory(prefix="seamcheck-mlruns-") as scratch:
        mlflow.set_tracking_uri("file://" + scratch)
        holdout = pd.read_parquet(args.input)
        steps = {}
        out = {"versions": _versions(), "steps": steps}
        clf, X, _y = _train()
        with _step(steps, "save") as sv:
            shutil.rmtree(args.out, ignore_errors=True)
            mlflow.sklearn.save_model(clf, args.out, signature=infer_signature(X, clf.predict(X)))
            sv["files"] = sorted(os.listdir(args.out))
        with _step(steps, "predict") as pr:
            pr["predictions"] = _predict(args.out, holdout)
        out["path"] = args.out
        return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m harness.matrixcheck.probes.mlflow_client")
    sub = parser.add_subparsers(dest="command", required=True)
    reg = sub.add_parser("register")
    reg.add_argument("--tracking-uri", required=True)
    reg.add_argument("--model-name", required=True)
    reg.add_argument("--alias", default="champion")
    reg.add_argument("--input", required=True)
    reg.set_defaults(func=cmd_register)
    read = sub.add_parser("read")
    read.add_argument("--tracking-uri", required=True)
    read.add_argument("--model-name", required=True)
    read.add_argument("--alias", default="champion")
    read.add_argument("--input", required=True)
    read.set_defaults(func=cmd_read)
    ts = sub.add_parser("train-save")
    ts.add_argument("--out", required=True)
    ts.add_argument("--input", required=True)
    ts.set_defaults(func=cmd_train_save)
    args = parser.parse_args(argv)
    # SIGTERM (the harness, or the reaper after a killed session) unwinds like an exit, so the
    # scratch TemporaryDirectory is removed.
    signal.signal(signal.SIGTERM, lambda signum, _frame: sys.exit(128 + signum))
    result = args.func(args)
    print("SEAMCHECK_PROBE " + json.dumps(result, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
