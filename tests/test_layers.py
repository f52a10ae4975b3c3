"""The import layers of the harness: a module imports only from its own floor or below, so no
import runs back up (a profile never imports an engine, support never imports a profile). The
floors, bottom up, are the package's architecture in one table; a new module must be placed."""
from __future__ import annotations

import ast
from pathlib import Path

from tests.inner import REPO_ROOT

FLOORS: dict[str, int] = {
    # facts every layer may use
    "harness": 0, "errors": 0, "paths": 0,
    "ledger": 1, "matrix": 1, "ports": 1, "binaries": 1, "seams": 1, "terminal": 1, "hookspecs": 1,
    "item_order": 1,
    "procs": 2, "metrics": 2,
    # operations every profile uses, and the code that runs inside role environments
    "envs": 3, "judges": 3, "load": 3, "serving": 3, "pipeline": 3, "faults": 3, "locustfiles": 3,
    # what stands the stack up: the local stand-ins, cluster support, the host cluster, the matrix suite's lab
    "local": 4, "cluster": 4, "host": 4,
    "matrixcheck": 5,
    "report": 6, "options": 6,
    "settings": 7,
    "profiles": 8,
    # the engines that drive a stack
    "canary": 9, "chaos": 9,
    "fixtures": 10,
    "plugin": 11,
}


def _group(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def _imports(path: Path) -> list[tuple[int, str]]:
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "harness":
            if node.module == "harness":
                found += [(node.lineno, f"harness.{a.name}") for a in node.names]
            else:
                found.append((node.lineno, node.module))
        elif isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names if a.name.split(".")[0] == "harness"]
    return found


def test_no_import_runs_back_up() -> None:
    up, unplaced = [], set()
    for path in sorted((REPO_ROOT / "harness").rglob("*.py")):
        rel = path.relative_to(REPO_ROOT).with_suffix("")
        module = ".".join(rel.parts[:-1] if rel.name == "__init__" else rel.parts)
        mine = _group(module)
        if mine not in FLOORS:
            unplaced.add(mine)
            continue
        for line, imported in _imports(path):
            theirs = _group(imported)
            if theirs not in FLOORS:
                unplaced.add(theirs)
            elif FLOORS[theirs] > FLOORS[mine]:
                up.append(f"{rel}.py:{line} ({mine}, floor {FLOORS[mine]}) imports {imported} "
                          f"({theirs}, floor {FLOORS[theirs]})")
    assert not unplaced, f"place these in FLOORS: {sorted(unplaced)}"
    assert up == [], "\n".join(up)
