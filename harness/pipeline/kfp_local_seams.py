"""The two places where run_local leans on private details of ``kfp.local`` (kfp 2.17.3).

Kept here, small and version-checked, so that a kfp upgrade breaks one file loudly instead of
the run silently. Both are used only by the runner role (kfp >= 2.16, which runs dsl.If).

1. ``tasks_run_with(python)``: make every task run under another interpreter.
   ``SubprocessRunner(use_venv=False)`` replaces the word ``python3`` in each task command
   with ``sys.executable`` (kfp/local/subprocess_task_handler.py: ``environment()`` yields
   ``sys.executable``, ``replace_python_executable()`` substitutes it). There is no public
   option for the interpreter, so we point ``sys.executable`` at the pipeline role's python
   for the duration of the run. That is how the components get the row's pins (kfp 2.9.0,
   mlflow 2.17.2, ...) while the orchestration needs kfp 2.17.3.

2. ``named_output_conditions()``: kfp 2.17.3's local ConditionEvaluator cannot resolve a
   condition on a *named* task output. The compiler names the channel
   ``pipelinechannel--<task>-<output>`` (e.g. ``quality-gate-passed``), but
   ``_resolve_pipeline_channel`` only parses ``<task>-Output`` and ``<task>--<key>``, treats
   anything else as a parent input, fails, logs "Could not resolve CEL parameter" and
   evaluates the condition to False, so the guarded tasks are silently skipped. The seed's
   pipeline conditions on ``gate.outputs["passed"]``, i.e. exactly this case (deploy would
   never run locally). Upstream is reworking the evaluator (kubeflow/pipelines PR #13313,
   open). We self-test the installed evaluator first and patch only if it has the bug.
   Task names contain dashes but output names are Python identifiers (no dashes), so the
   last dash splits task from output unambiguously.
"""

import contextlib
import logging
import sys

__all__ = ["condition_bug_present", "named_output_conditions", "tasks_run_with"]

_CHANNEL_PREFIX = "pipelinechannel--"


@contextlib.contextmanager
def tasks_run_with(python: str):
    """While active, kfp.local's SubprocessRunner(use_venv=False) runs tasks with ``python``.

    Private detail: kfp substitutes ``sys.executable`` for ``python3`` in the task command.
    """
    original = sys.executable
    sys.executable = python
    try:
        yield python
    finally:
        sys.executable = original


def condition_bug_present() -> bool:
    """True when the installed local evaluator fails on a named-output condition."""
    from kfp.local import io
    from kfp.local.orchestrator.enhanced_dag_orchestrator import ConditionEvaluator

    store = io.IOStore()
    store.put_task_output("probe-task", "passed", "true")
    expr = "inputs.parameter_values['pipelinechannel--probe-task-passed'] == 'true'"
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # the buggy evaluator logs warnings while failing
    try:
        return not ConditionEvaluator.evaluate_condition(expr, store)
    finally:
        root.setLevel(level)


@contextlib.contextmanager
def named_output_conditions():
    """While active, local conditions on named task outputs resolve. Yields True when a
    patch was needed and applied, False when the installed kfp already handles them."""
    from kfp.local.orchestrator.enhanced_dag_orchestrator import ConditionEvaluator

    if not condition_bug_present():
        yield False
        return

    original = ConditionEvaluator.__dict__["_resolve_pipeline_channel"]  # the staticmethod
    original_func = original.__func__

    def resolve(channel_ref, io_store):
        name = channel_ref.removeprefix(_CHANNEL_PREFIX)
        task, dash, key = name.rpartition("-")
        if dash and task and "--" not in name and key != "Output":
            try:
                return io_store.get_task_output(task, key)
            except ValueError:
                pass  # not a task output: let kfp try parent inputs
        return original_func(channel_ref, io_store)

    ConditionEvaluator._resolve_pipeline_channel = staticmethod(resolve)
    try:
        if condition_bug_present():
            raise RuntimeError("kfp.local condition patch did not take effect; kfp internals changed")
        yield True
    finally:
        ConditionEvaluator._resolve_pipeline_channel = original
