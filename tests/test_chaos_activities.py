"""The experiments' activities (harness/chaos/actions.py and probes.py) match the control's
operations (harness/chaos/operations/): a wrapper named like its operation has the operation's
signature (minus the control, plus chaoslib's ``configuration``), every operation an activity
calls exists and takes the keywords it passes, and every activity is documented (what
`chaos discover` shows)."""
from __future__ import annotations

import ast
import inspect

import pytest

from harness.chaos import actions, probes
from harness.chaos.operations import operations

OPERATIONS = {**operations(), "restore_all": None}
ACTIVITIES = [(module, name) for module in (actions, probes) for name in module.__all__]


def _calls(func) -> list[tuple[str, set[str]]]:
    """The (operation, keywords) of every `call(configuration, "<operation>", ...)` in ``func``."""
    tree = ast.parse(inspect.getsource(func).lstrip())
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "call":
            op = node.args[1].value  # type: ignore[attr-defined]
            found.append((op, {k.arg for k in node.keywords if k.arg}))
    return found


def _params(signature: inspect.Signature, drop: str) -> list[tuple[str, object, object]]:
    return [(p.name, p.default, p.kind) for p in signature.parameters.values() if p.name != drop]


@pytest.mark.parametrize(("module", "name"), ACTIVITIES, ids=[f"{m.__name__.rsplit('.', 1)[1]}.{n}" for m, n in ACTIVITIES])
def test_activity_matches_its_operations(module, name: str) -> None:
    func = getattr(module, name)
    assert inspect.getdoc(func), f"{module.__name__}.{name} has no docstring"
    calls = _calls(func)
    assert calls, f"{name} calls no operation"
    for op, keywords in calls:
        assert op in OPERATIONS, f"{name} calls unknown operation {op!r}"
        if OPERATIONS[op] is None:
            continue
        op_params = set(inspect.signature(OPERATIONS[op]).parameters) - {"control"}
        assert keywords <= op_params, f"{name} passes {keywords - op_params} that {op} does not take"
    if name in OPERATIONS and OPERATIONS[name] is not None:
        assert "configuration" in inspect.signature(func).parameters
        assert _params(inspect.signature(func), "configuration") == \
            _params(inspect.signature(OPERATIONS[name]), "control"), f"{name}: wrapper and operation differ"


def test_every_operation_is_reachable_from_an_activity() -> None:
    called = {op for module, name in ACTIVITIES for op, _ in _calls(getattr(module, name))}
    # describe and the service and load reads are probes' building blocks; all must be used.
    assert set(OPERATIONS) - called == set(), f"operations no experiment can reach: {set(OPERATIONS) - called}"
