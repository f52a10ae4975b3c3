"""Records, inside each locally executed KFP task, what that task really imported.

run_local copies this file as ``sitecustomize.py`` (plus a call to ``install()``) into a
directory that is the task subprocess's only PYTHONPATH entry. Python imports
sitecustomize at start-up in every interpreter, so the probe runs in the task without
touching the component code or the task command. At exit it writes
``seamcheck_task.json`` next to the task's executor_output.json:

    {"python": ..., "python_version": ..., "seconds": ...,
     "modules": {"kfp": {"version", "file"}, "mlflow": ..., ...},   # only those imported
     "error": "ExcType: message" | null, "traceback": str | null}

Why: the runner and the components live in different environments (kfp 2.17.3 vs the row's
kfp 2.9.0); the feasibility notes saw the runner's kfp leak into tasks. This is the evidence
of which kfp executed the component, and the task's own exception text for result.json.
Standard library only: it runs under whatever interpreter the task uses.
"""

import atexit
import json
import os
import sys
import time
import traceback

__all__ = ["MODULES", "PROBE_FILE", "install"]

PROBE_FILE = "seamcheck_task.json"
# The packages whose versions matter for conformance (the row's pins).
MODULES = ["kfp", "kfp_pipeline_spec", "mlflow", "sklearn", "pandas", "numpy", "pyarrow",
           "kubernetes", "boto3", "google.protobuf"]


def _task_dir():
    # The executor input (argv after --executor_input) names this task's output file; its
    # directory is the task's directory under the pipeline root.
    argv = sys.argv
    for i, arg in enumerate(argv[:-1]):
        if arg == "--executor_input":
            try:
                output_file = json.loads(argv[i + 1])["outputs"]["outputFile"]
            except (ValueError, KeyError, TypeError):
                return None
            return os.path.dirname(output_file)
    return None


def install():
    started = time.monotonic()
    started_at = time.time()
    state = {"error": None, "traceback": None}
    previous_hook = sys.excepthook

    def excepthook(exc_type, exc, tb):
        state["error"] = f"{exc_type.__name__}: {exc}"
        state["traceback"] = "".join(traceback.format_exception(exc_type, exc, tb))[-8000:]
        previous_hook(exc_type, exc, tb)

    def record():
        task_dir = _task_dir()
        if not task_dir:
            return  # not a KFP task (e.g. a helper interpreter): nothing to record
        modules = {}
        for name in MODULES:
            mod = sys.modules.get(name)
            if mod is not None:
                modules[name] = {"version": getattr(mod, "__version__", None),
                                 "file": getattr(mod, "__file__", None)}
        report = {
            "python": sys.executable,
            "python_version": sys.version.split()[0],
            "prefix": sys.prefix,
            "seconds": round(time.monotonic() - started, 3),
            "started_at": started_at,
            "ended_at": time.time(),
            "modules": modules,
            **state,
        }
        try:
            # The local runner creates a task's directory only when an output is written
            # there; a task with parameter outputs that fails leaves none, so make it.
            os.makedirs(task_dir, exist_ok=True)
            with open(os.path.join(task_dir, PROBE_FILE), "w") as fh:
                json.dump(report, fh, indent=2)
        except OSError:
            pass  # never turn a task result into a probe failure

    sys.excepthook = excepthook
    atexit.register(record)
