"""Compile the pipeline to KFP IR YAML, and read back what matters from such a YAML.

CLI, run by the PIPELINE ROLE's interpreter (its kfp is the row's SDK, e.g. 2.9.0, which is
what a user of that row compiles with) with PYTHONPATH=<repo root>:

    python -m harness.pipeline.compile --out FILE.yaml [--packages-json '["kfp==2.9.0", ...]']

``--packages-json`` defaults to pipeline.DEFAULT_PACKAGES; the JSON value ``null`` compiles the
local variant (no pip in the task command). Prints one JSON line to stdout:
``{"out": FILE, "sdkVersion": "kfp-2.9.0", "kfp": "2.9.0", "seconds": 1.2}``.

``inspect_compiled(yaml_text)`` needs only pyyaml, so the harness process (which has no kfp)
can check the compiled spec.
"""

import argparse
import json
import re
import sys
import time

__all__ = ["compile_pipeline", "inspect_compiled", "main"]


def compile_pipeline(out: str, packages: "list[str] | None") -> str:
    """Compiles build_pipeline(packages) to ``out``; returns the YAML's sdkVersion."""
    import yaml
    from kfp import compiler

    from harness.pipeline.pipeline import build_pipeline

    compiler.Compiler().compile(pipeline_func=build_pipeline(packages), package_path=out)
    with open(out) as fh:
        return _pipeline_doc(yaml.safe_load_all(fh.read())).get("sdkVersion", "")


def _pipeline_doc(docs) -> dict:
    # A compiled file holds the PipelineSpec and, when kubernetes-specific settings are used,
    # a second "platforms" document. We want the one with pipelineInfo.
    for doc in docs:
        if isinstance(doc, dict) and "pipelineInfo" in doc:
            return doc
    raise ValueError("no PipelineSpec document (with pipelineInfo) in the YAML")


_QUANTITY = {"": 1, "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "P": 10**15,
             "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "m": 1e-3}


def _quantity(text: str) -> float:
    """Kubernetes quantity ("16Gi", "500m", "4") -> number (bytes / cores)."""
    m = re.fullmatch(r"\s*([0-9.]+)\s*([kMGTP]i?|m)?\s*", str(text))
    if not m:
        raise ValueError(f"not a Kubernetes quantity: {text!r}")
    return float(m.group(1)) * _QUANTITY[m.group(2) or ""]


def _resources(res: dict) -> dict:
    """Normalises both SDK shapes of container.resources.

    kfp 2.9:  {accelerator: {count: '1', type: T}, cpuLimit: 4.0, memoryLimit: 17.179869184}
              (memoryLimit in decimal GB, converted by the SDK from "16Gi")
    kfp 2.17: the same keys plus resourceCpuLimit: '4', resourceMemoryLimit: '16Gi' and
              accelerator {resourceCount, resourceType} (the raw strings, which may also be
              pipeline-parameter placeholders).
    """
    acc = res.get("accelerator") or {}
    acc_type = acc.get("resourceType") or acc.get("type")
    acc_count = acc.get("resourceCount") or acc.get("count")
    cpu_raw = res.get("resourceCpuLimit") or res.get("cpuLimit")
    mem_raw = res.get("resourceMemoryLimit")
    cpu = mem = None
    if cpu_raw is not None:
        try:
            cpu = _quantity(cpu_raw)
        except ValueError:
            cpu = None  # a placeholder such as {{$.inputs...}}
    if mem_raw is not None:
        try:
            mem = round(_quantity(mem_raw))
        except ValueError:
            mem = None
    elif res.get("memoryLimit") is not None:
        mem = round(float(res["memoryLimit"]) * 10**9)
        mem_raw = res["memoryLimit"]
    try:
        count = int(acc_count) if acc_count is not None else None
    except ValueError:
        count = None
    return {
        "accelerator_type": acc_type,
        "accelerator_count": count,
        "cpu_limit": cpu,
        "memory_limit_bytes": mem,
        "cpu_limit_raw": cpu_raw,
        "memory_limit_raw": mem_raw,
        "cpu_request": res.get("cpuRequest"),
        "memory_request": res.get("memoryRequest"),
    }


def _pip_packages(container: dict) -> list:
    """The quoted requirement strings after `pip install` in the task command, i.e. what the
    task container would install at start (KFP's lightweight-component bootstrap)."""
    script = " ".join(container.get("command", []) + container.get("args", []))
    found = []
    for m in re.finditer(r"pip install ([^&|;]*)", script):
        found += re.findall(r"'([^']+)'", m.group(1))
    return list(dict.fromkeys(found))


def _outputs(component: dict) -> dict:
    """A component's declared outputs: {"parameters": {name: type}, "artifacts": {name: schemaTitle}}."""
    spec = component.get("outputDefinitions", {})
    return {
        "parameters": {n: p.get("parameterType") for n, p in spec.get("parameters", {}).items()},
        "artifacts": {n: a.get("artifactType", {}).get("schemaTitle")
                      for n, a in spec.get("artifacts", {}).items()},
    }


def inspect_compiled(yaml_text: str) -> dict:
    """Extracts from a compiled pipeline YAML:

    {"sdkVersion", "pipeline_name",
     "parameters": {name: {"type", "default" (absent when none), "optional"}},
     "tasks": {task_name: {"component", "executor", "image", "packages", "resources", "outputs",
                           "depends_on" (own + enclosing DAGs' upstream tasks),
                           "parent" (enclosing condition DAG or null),
                           "condition" (expression guarding it, or null)}},
     "conditions": [{"task": dag_task_name, "expression": ...}]}

    Only container tasks are listed under "tasks"; condition DAGs are walked into.
    """
    import yaml

    doc = _pipeline_doc(yaml.safe_load_all(yaml_text))
    components = doc.get("components", {})
    executors = doc.get("deploymentSpec", {}).get("executors", {})

    params = {}
    for name, spec in doc.get("root", {}).get("inputDefinitions", {}).get("parameters", {}).items():
        entry = {"type": spec.get("parameterType"), "optional": bool(spec.get("isOptional", False))}
        if "defaultValue" in spec:
            entry["default"] = spec["defaultValue"]
        params[name] = entry

    tasks, conditions = {}, []

    def walk(dag: dict, parent, guard, inherited):
        for name, task in dag.get("tasks", {}).items():
            # A task inside a condition DAG lists no dependencies of its own; it waits for
            # what the DAG task waits for (e.g. deploy -> condition-1 -> quality-gate).
            deps = list(dict.fromkeys(list(task.get("dependentTasks", [])) + inherited))
            comp_name = task.get("componentRef", {}).get("name")
            comp = components.get(comp_name, {})
            expr = task.get("triggerPolicy", {}).get("condition")
            if "dag" in comp:
                if expr:
                    conditions.append({"task": name, "expression": expr})
                walk(comp["dag"], name, expr or guard, deps)
                continue
            label = comp.get("executorLabel")
            container = executors.get(label, {}).get("container", {})
            tasks[name] = {
                "component": comp_name,
                "executor": label,
                "image": container.get("image"),
                "packages": _pip_packages(container),
                "resources": _resources(container.get("resources", {})),
                "depends_on": deps,
                "outputs": _outputs(comp),
                "parent": parent,
                "condition": expr or guard,
            }
            if expr:
                conditions.append({"task": name, "expression": expr})

    walk(doc.get("root", {}).get("dag", {}), None, None, [])
    return {
        "sdkVersion": doc.get("sdkVersion"),
        "pipeline_name": doc.get("pipelineInfo", {}).get("name"),
        "parameters": params,
        "tasks": tasks,
        "conditions": conditions,
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m harness.pipeline.compile",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--out", required=True, help="the YAML file to write")
    parser.add_argument("--packages-json", default=None,
                        help="JSON list of pins for the task containers; 'null' = local variant "
                             "(no pip); default: harness.pipeline.pipeline.DEFAULT_PACKAGES")
    args = parser.parse_args(argv)

    import kfp

    from harness.pipeline.pipeline import DEFAULT_PACKAGES

    packages = DEFAULT_PACKAGES if args.packages_json is None else json.loads(args.packages_json)
    is_list = isinstance(packages, list) and all(isinstance(p, str) for p in packages)
    if packages is not None and not is_list:
        parser.error("--packages-json must be a JSON list of strings or null")
    started = time.monotonic()
    sdk_version = compile_pipeline(args.out, packages)
    print(json.dumps({"out": args.out, "sdkVersion": sdk_version, "kfp": kfp.__version__,
                      "seconds": round(time.monotonic() - started, 3)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
