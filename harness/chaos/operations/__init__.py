"""The chaos control's operations, in small modules by target; each operation is a function
whose first parameter is the control (harness/chaos/control.py) and whose other parameters are
what an experiment's activity passes (harness/chaos/actions.py and probes.py wrap each one
with the same signature: a test checks it).

* services: the InferenceServices experiments make, their rollouts and rollbacks;
* components: replicas killed, components stopped and restored;
* network: the pipeline's namespace cut from MLflow;
* pipeline: pipeline runs under a fault, and MLflow's inventory;
* load: Locust against a service.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

__all__ = ["MODULES", "operations"]

MODULES = ("services", "components", "network", "pipeline", "load")


def operations() -> dict[str, Callable[..., Any]]:
    """Every operation by name, from each module's ``__all__``."""
    import importlib

    found: dict[str, Callable[..., Any]] = {}
    for name in MODULES:
        module = importlib.import_module(f"harness.chaos.operations.{name}")
        for op in module.__all__:
            if op in found:
                raise RuntimeError(f"chaos operation {op!r} is defined twice (in {name} and before)")
            found[op] = getattr(module, op)
    return found
