"""What each KFP task on a cluster really produced and imported, printed into its own log.

The cluster counterpart of harness/pipeline/task_import_probe.py: the harness puts this file, as
``sitecustomize.py``, into a Secret that the submitted pipeline mounts in every task container
(the Kubernetes platform spec's ``secretAsVolume``, what kfp-kubernetes' use_secret_as_volume
emits) and points PYTHONPATH at it (``secretAsEnv``). Python imports sitecustomize in every
interpreter, so the component code and task command stay exactly as compiled. At exit of the
interpreter that ran the component (``--executor_input`` on its command line) it prints ONE line:

    SEAMCHECK_TASK_RESULT {"function": "train_model", "pod": ..., "executor_output": {...},
                           "modules": {...}, "error": ..., "seconds": ...}

Why a log line: a KFP 2.3 backend keeps output parameters and artifact metadata only in ML
Metadata (gRPC); the REST API gives states and artifact ids. The pod log is reachable through
the Kubernetes API the harness already uses. Standard library only; it runs in any task image.
"""

import atexit
import json
import os
import sys
import time
import traceback

__all__ = ["MARKER", "MODULES", "install", "parse_marker_lines"]

MARKER = "SEAMCHECK_TASK_RESULT "
MODULES = ["kfp", "kfp_pipeline_spec", "mlflow", "sklearn", "pandas", "numpy", "pyarrow",
           "kubernetes", "boto3", "google.protobuf"]


def _arg(name):
    argv = sys.argv
    for i, arg in enumerate(argv[:-1]):
        if arg == name:
            return argv[i + 1]
    return None


def _executor_output():
    raw = _arg("--executor_input")
    if raw is None:
        return None, None
    try:
        output_file = json.loads(raw)["outputs"]["outputFile"]
    except (ValueError, KeyError, TypeError):
        return None, None
    try:
        with open(output_file) as fh:
            return output_file, json.load(fh)
    except (OSError, ValueError):
        return output_file, None


def install():
    if _arg("--executor_input") is None:
        return  # pip, the launcher's helpers: not a component interpreter
    started = time.monotonic()
    state = {"error": None, "traceback": None}
    previous_hook = sys.excepthook

    def excepthook(exc_type, exc, tb):
        state["error"] = f"{exc_type.__name__}: {exc}"
        state["traceback"] = "".join(traceback.format_exception(exc_type, exc, tb))[-4000:]
        previous_hook(exc_type, exc, tb)

    def record():
        output_file, output = _executor_output()
        modules = {}
        for name in MODULES:
            mod = sys.modules.get(name)
            if mod is not None:
                modules[name] = {"version": getattr(mod, "__version__", None)}
        report = {
            "function": _arg("--function_to_execute"),
            "pod": os.environ.get("KFP_POD_NAME"),
            "python_version": sys.version.split()[0],
            "seconds": round(time.monotonic() - started, 3),
            "output_file": output_file,
            "executor_output": output,
            "modules": modules,
            **state,
        }
        try:
            sys.stdout.write(MARKER + json.dumps(report, sort_keys=True, default=str) + "\n")
            sys.stdout.flush()
        except (OSError, ValueError):
            pass  # never turn a task result into a probe failure

    sys.excepthook = excepthook
    atexit.register(record)


def parse_marker_lines(log_text):
    """Every probe report in a pod log (normally one)."""
    reports = []
    for line in (log_text or "").splitlines():
        idx = line.find(MARKER)
        if idx < 0:
            continue
        try:
            reports.append(json.loads(line[idx + len(MARKER):]))
        except ValueError:
            continue
    return reports
