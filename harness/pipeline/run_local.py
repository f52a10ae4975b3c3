"""Run the pipeline with KFP's local runner, tasks executed by the pipeline role's python.

CLI, run by the RUNNER ROLE's interpreter (kfp >= 2.16: earlier local runners reject dsl.If)
with PYTHONPATH=<repo root>:

    python -m harness.pipeline.run_local --component-python /path/to/pipeline-role/bin/python \\
        --pipeline-root DIR --params params.json --result result.json

params.json: the pipeline arguments, e.g. {"data_path": ..., "mlflow_tracking_uri": ...};
unknown names are a harness error. Each task's log goes to this process's stdout (kfp prints
it there); capture it if you want it.

Exit status: 0 when the pipeline ran, whether it SUCCEEDED or FAILED (result.json says
which); 2 for harness errors (bad arguments, runner kfp too old, component python unusable).

result.json:
    {"state": "SUCCEEDED" | "FAILED",
     "error": null | "Pipeline ... Inner task failed: 'deploy-to-kserve' ... | deploy-to-kserve: <exc>",
     "runner_kfp": "2.17.3", "component_python": ..., "run_dir": DIR/<pipeline>-<timestamp>,
     "wall_seconds": float, "kfp_local_patches": [...],
     "tasks": {task_name: {
         "state": "SUCCEEDED" | "FAILED" | "SKIPPED" | "NOT_RUN",
         "parameters": {out_name: value},
         "artifacts": {out_name: {"type": schema_title, "uri": ..., "path": local path|null,
                                  "metadata": {...}}},
         "imports": {"kfp": {"version", "file"}, ...} | null,   # what the task imported
         "python": ..., "seconds": float | null, "error": null | "ExcType: message"}}}

Task states. SUCCEEDED / FAILED: the task ran, and kfp logged that status for it (fallback
when no log line was seen: executor_output.json present or not). SKIPPED: never started
although every upstream task SUCCEEDED, i.e. its condition was false. NOT_RUN: never started
because an upstream task did not succeed. Every task of the pipeline is listed, so a skipped
deploy is present, never absent. Paths in params.json must be absolute (tasks run in an empty
working directory).
"""

import argparse
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

__all__ = ["MIN_RUNNER_KFP", "collect_results", "main"]

# dsl.If/dsl.Condition run locally from kfp 2.16 on: kfp 2.9-2.15 raise "NotImplementedError:
# 'dsl.Condition' is not supported by local pipeline execution" (kfp/local/pipeline_orchestrator.py).
MIN_RUNNER_KFP = (2, 16)
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


class HarnessError(Exception):
    """A problem with the harness set-up, not with the pipeline: exit status 2."""


def _version_tuple(text: str) -> tuple:
    return tuple(int(p) for p in re.findall(r"\d+", text)[:2])


def _prepare_task_environment(seam_dir: str) -> str:
    """Makes the task subprocesses import only from the component interpreter's own env.

    Tasks inherit this process's environment and working directory (kfp passes os.environ).
    So: PYTHONPATH is replaced by a directory holding only the task probe (this process's
    PYTHONPATH points at the repo, which tasks must not need); PYTHONHOME is dropped; user
    site-packages are off; PYTHONSAFEPATH stops ``python -m`` from putting the working
    directory on sys.path (3.11+), and the working directory is an empty one anyway (older
    interpreters). Everything else (KUBECONFIG, MLFLOW_*, AWS_*) passes through on purpose.
    Returns the empty working directory.
    """
    from harness.pipeline import task_import_probe

    site_dir = os.path.join(seam_dir, "site")
    work_dir = os.path.join(seam_dir, "cwd")
    os.makedirs(site_dir, exist_ok=True)
    os.makedirs(work_dir, exist_ok=True)
    with open(task_import_probe.__file__) as fh:
        probe = fh.read()
    with open(os.path.join(site_dir, "sitecustomize.py"), "w") as fh:
        fh.write(probe + "\n\ninstall()\n")
    os.environ["PYTHONPATH"] = site_dir
    os.environ.pop("PYTHONHOME", None)
    os.environ["PYTHONNOUSERSITE"] = "1"
    os.environ["PYTHONSAFEPATH"] = "1"
    return work_dir


def _check_component_python(python: str, env_cwd: str) -> dict:
    """Fails early (harness error) if the component interpreter cannot import kfp."""
    if not (os.path.isfile(python) and os.access(python, os.X_OK)):
        raise HarnessError(f"--component-python {python!r} is not an executable file")
    code = ("import json, sys, kfp; "
            "print(json.dumps({'kfp': kfp.__version__, 'python': sys.version.split()[0]}))")
    try:
        out = subprocess.run([python, "-c", code], capture_output=True, text=True, timeout=60, cwd=env_cwd,
                             check=False)
    except subprocess.TimeoutExpired as exc:
        raise HarnessError(f"{python} -c 'import kfp' timed out") from exc
    if out.returncode != 0:
        raise HarnessError(f"{python} cannot import kfp: {out.stderr.strip()[-500:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


class _RunnerLog(logging.Filter):
    """Keeps kfp.local's own status lines: "Executing task 'x'", "Task 'x' finished with
    status SUCCESS|FAILURE" and "Pipeline ... finished with status FAILURE. Inner task
    failed: ...". kfp.local swaps the root logger's handlers while it runs, not its filters,
    and logs through the root logger."""

    _EXECUTING = re.compile(r"^Executing task '([^']+)'")
    _FINISHED = re.compile(r"^Task '([^']+)' finished with status (\w+)")

    def __init__(self):
        super().__init__()
        self.task_status = {}
        self.failures = []

    def filter(self, record):
        message = _ANSI.sub("", record.getMessage())
        if m := self._EXECUTING.match(message):
            self.task_status.setdefault(m.group(1), "RUNNING")
        elif m := self._FINISHED.match(message):
            self.task_status[m.group(1)] = m.group(2)
        elif record.levelno >= logging.ERROR and "finished with status FAILURE" in message:
            self.failures.append(message)
        return True


def _read_json(path: str):
    try:
        with open(path) as fh:
            return json.load(fh)
    except (OSError, ValueError):
        return None


def collect_results(run_dir: "str | None", spec: dict, runner_status: "dict | None" = None) -> dict:
    """Per-task results from the local runner's files.

    Layout (kfp 2.17.3 local runner): <pipeline_root>/<pipeline-name>-<timestamp>/<task-name>/
    holds executor_output.json (written by the task's executor on success:
    {"parameterValues": {...}, "artifacts": {name: {"artifacts": [{"name","uri","metadata"}]}}})
    and one file or directory per output artifact; the probe adds seamcheck_task.json.
    ``spec`` is inspect_compiled() of the same pipeline (task list, dependencies, output types).
    ``runner_status``: {task: "SUCCESS"|"FAILURE"|"RUNNING"} from kfp's log lines; it wins
    over the file-based guess, which remains the fallback.
    """
    from harness.pipeline.task_import_probe import PROBE_FILE

    tasks = {}
    pending = dict(spec["tasks"])
    # Topological order so that SKIPPED / NOT_RUN can look at upstream states.
    while pending:
        ready = [n for n, t in pending.items()
                 if all(d in tasks or d not in spec["tasks"] for d in t["depends_on"])]
        if not ready:
            raise HarnessError(f"dependency cycle among {sorted(pending)}")
        for name in sorted(ready):
            task_spec = pending.pop(name)
            task_dir = os.path.join(run_dir, name) if run_dir else None
            entry = {"state": None, "parameters": {}, "artifacts": {}, "imports": None,
                     "python": None, "seconds": None, "error": None}
            logged = (runner_status or {}).get(name)
            if logged or (task_dir and os.path.isdir(task_dir)):
                executor_output = probe = None
                if task_dir:
                    executor_output = _read_json(os.path.join(task_dir, "executor_output.json"))
                    probe = _read_json(os.path.join(task_dir, PROBE_FILE))
                if logged in ("SUCCESS", "FAILURE"):
                    entry["state"] = "SUCCEEDED" if logged == "SUCCESS" else "FAILED"
                else:
                    entry["state"] = "SUCCEEDED" if executor_output is not None else "FAILED"
                if probe:
                    entry.update(imports=probe.get("modules"), python=probe.get("python"),
                                 seconds=probe.get("seconds"), error=probe.get("error"),
                                 started_at=probe.get("started_at"), ended_at=probe.get("ended_at"))
                if executor_output is not None and entry["state"] == "SUCCEEDED":
                    entry["parameters"] = executor_output.get("parameterValues", {})
                    types = task_spec["outputs"]["artifacts"]
                    for out_name, holder in executor_output.get("artifacts", {}).items():
                        for art in holder.get("artifacts", [])[:1]:
                            uri = art.get("uri")
                            entry["artifacts"][out_name] = {
                                "type": types.get(out_name),
                                "uri": uri,
                                "path": uri if uri and os.path.isabs(uri) and os.path.exists(uri) else None,
                                "metadata": art.get("metadata", {}),
                            }
                if entry["state"] == "FAILED" and entry["error"] is None:
                    entry["error"] = "task failed; no exception recorded (see the task log)"
            else:
                upstream_ok = all(tasks.get(d, {}).get("state") == "SUCCEEDED"
                                  for d in task_spec["depends_on"])
                entry["state"] = "SKIPPED" if upstream_ok else "NOT_RUN"
            tasks[name] = entry
    return tasks


def _new_run_dir(pipeline_root: str, before: set, pipeline_name: str) -> "str | None":
    created = [d for d in os.listdir(pipeline_root)
               if d not in before and d.startswith(pipeline_name)
               and os.path.isdir(os.path.join(pipeline_root, d))]
    if not created:
        return None
    return os.path.join(pipeline_root, max(created))  # names end in a timestamp


def run(component_python: str, pipeline_root: str, params: dict, stages: str = "all") -> dict:
    import kfp
    from kfp import compiler, local

    from harness.pipeline.compile import inspect_compiled
    from harness.pipeline.kfp_local_seams import named_output_conditions, tasks_run_with
    from harness.pipeline.pipeline import (
        PIPELINE_NAME,
        TRAINING_PIPELINE_NAME,
        build_pipeline,
        build_training_pipeline,
    )

    if _version_tuple(kfp.__version__) < MIN_RUNNER_KFP:
        raise HarnessError(f"runner kfp {kfp.__version__} cannot run dsl.If locally; need >= "
                           f"{'.'.join(map(str, MIN_RUNNER_KFP))}")
    pipeline_root = os.path.abspath(pipeline_root)
    os.makedirs(pipeline_root, exist_ok=True)
    component_python = os.path.abspath(component_python)

    if stages not in ("all", "train"):
        raise HarnessError(f"--stages must be all or train, not {stages!r}")
    pipeline_func = build_pipeline(None) if stages == "all" else build_training_pipeline(None)
    pipeline_name = PIPELINE_NAME if stages == "all" else TRAINING_PIPELINE_NAME
    # The task list, dependencies and output types come from the compiled spec itself.
    with tempfile.TemporaryDirectory() as tmp:
        spec_path = os.path.join(tmp, "pipeline.yaml")
        compiler.Compiler().compile(pipeline_func=pipeline_func, package_path=spec_path)
        with open(spec_path) as fh:
            spec = inspect_compiled(fh.read())
    unknown = sorted(set(params) - set(spec["parameters"]))
    if unknown:
        raise HarnessError(f"unknown pipeline parameters {unknown}; known: {sorted(spec['parameters'])}")

    seam_dir = os.path.join(pipeline_root, ".seamcheck")
    work_dir = _prepare_task_environment(seam_dir)
    component_info = _check_component_python(component_python, work_dir)
    os.chdir(work_dir)

    before = set(os.listdir(pipeline_root))
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=pipeline_root,
               raise_on_error=False)
    capture = _RunnerLog()
    root_logger = logging.getLogger()
    root_logger.addFilter(capture)
    raised = None
    patches = []
    started = time.monotonic()
    try:
        with tasks_run_with(component_python), named_output_conditions() as patched:
            if patched:
                patches.append("named-output-condition-resolver")
            try:
                pipeline_func(**params)
            except Exception as exc:  # noqa: BLE001  kfp's orchestrator itself failed: the run FAILED
                raised = f"{type(exc).__name__}: {exc}"
    finally:
        root_logger.removeFilter(capture)
    wall = time.monotonic() - started

    run_dir = _new_run_dir(pipeline_root, before, pipeline_name)
    tasks = collect_results(run_dir, spec, capture.task_status)
    failed = [n for n, t in tasks.items() if t["state"] == "FAILED"]
    kfp_failure = capture.failures
    state = "FAILED" if (raised or failed or kfp_failure) else "SUCCEEDED"
    error = None
    if state == "FAILED":
        parts = kfp_failure[-1:] + ([raised] if raised else [])
        parts += [f"{n}: {tasks[n]['error']}" for n in failed]
        error = " | ".join(parts) or "pipeline failed (no message from kfp)"
    return {
        "state": state,
        "error": error,
        "runner_kfp": kfp.__version__,
        "component_python": component_python,
        "component_kfp": component_info["kfp"],
        "run_dir": run_dir,
        "wall_seconds": round(wall, 3),
        "kfp_local_patches": patches,
        "tasks": tasks,
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m harness.pipeline.run_local",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--component-python", required=True,
                        help="interpreter of the pipeline role env that executes every task")
    parser.add_argument("--pipeline-root", required=True, help="kfp.local pipeline_root (created)")
    parser.add_argument("--params", required=True, help="JSON file: pipeline arguments")
    parser.add_argument("--result", required=True, help="JSON file to write")
    parser.add_argument("--stages", default="all", choices=("all", "train"),
                        help="all: the whole pipeline; train: validate -> preprocess -> train only")
    args = parser.parse_args(argv)
    result_path = os.path.abspath(args.result)
    try:
        with open(args.params) as fh:
            params = json.load(fh)
        if not isinstance(params, dict):
            raise HarnessError("--params must hold a JSON object")
        result = run(args.component_python, args.pipeline_root, params, args.stages)
    except (HarnessError, OSError, ValueError) as exc:
        print(f"run_local: harness error: {exc}", file=sys.stderr)
        return 2
    tmp = result_path + ".tmp"
    with open(tmp, "w") as fh:
        json.dump(result, fh, indent=2, sort_keys=True)
    shutil.move(tmp, result_path)
    print(f"run_local: pipeline {result['state']} in {result['wall_seconds']} s; result in {result_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
