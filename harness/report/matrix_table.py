"""The matrix table of a run: reports/<run-id>/matrix.md and matrix.json (row x check, and
upgrade step x check), each cell compatible, incompatible with its evidence (accepted or not by
the matrix file), or cannot-build with uv's own line."""
from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

import jinja2

from harness.matrix import MATRIX_CHECKS, UPGRADE_CHECKS, Matrix

__all__ = ["matrix_data", "write_matrix_report"]

_ICONS = {"compatible": "✅", "incompatible": "❌", "accepted": "⚠️", "cannot-build": "⛔"}


def _label(cell: Any) -> str:
    if cell.outcome == "compatible":
        return "compatible"
    unaccepted = [f for f in cell.findings if f.key(cell.check) not in cell.accepted]
    return cell.outcome if unaccepted else "accepted"


def _short(text: str, limit: int = 140) -> str:
    text = " ".join(str(text).split()).replace("|", "\\|")
    return text if len(text) <= limit else text[: limit - 1] + "…"


def matrix_data(cells: Iterable[Any], matrix: Matrix, *, failures: list[str], gate_enabled: bool) -> dict[str, Any]:
    cells = list(cells)
    row_names = [r for r in matrix.rows if any(c.kind == "row" and c.subject == r for c in cells)]
    pair_names = list(dict.fromkeys(c.subject for c in cells if c.kind == "upgrade"))
    grid: dict[tuple[str, str], Any] = {(c.subject, c.check): c for c in cells}

    def table(subjects: list[str], columns: tuple[str, ...]) -> list[dict[str, Any]]:
        out = []
        for subject in subjects:
            entries = {}
            for check in columns:
                cell = grid.get((subject, check))
                if cell is None:
                    entries[check] = {"label": "not run", "icon": "·", "short": ""}
                else:
                    label = _label(cell)
                    entries[check] = {"label": label, "icon": _ICONS[label], "short": _short(cell.summary)}
            out.append({"subject": subject, "cells": entries})
        return out

    rows_table = table(row_names, MATRIX_CHECKS)
    pairs_table = table(pair_names, UPGRADE_CHECKS)
    env = jinja2.Environment(loader=jinja2.PackageLoader("harness.report", "templates"), autoescape=False,
                             keep_trailing_newline=True)
    env.filters["json"] = lambda value: json.dumps(value, indent=2, default=str)
    context = {"rows_table": rows_table, "pairs_table": pairs_table, "row_checks": MATRIX_CHECKS,
               "upgrade_checks": UPGRADE_CHECKS,
               "cells": [{"c": c, "label": _label(c), "icon": _ICONS[_label(c)]} for c in cells],
               "icons": _ICONS, "failures": failures, "gate_enabled": gate_enabled, "matrix": matrix,
               "kinds": {name: matrix.rows[name].kind for name in row_names}}
    tables = env.get_template("matrix_tables.md.j2").render(**context)
    return {
        "row_checks": list(MATRIX_CHECKS),
        "upgrade_checks": list(UPGRADE_CHECKS),
        "rows": row_names,
        "upgrade_steps": pair_names,
        "cells": [{**c.as_dict(), "label": _label(c)} for c in cells],
        "gate": {"enabled": gate_enabled, "failures": failures, "passed": not failures},
        "markdown_tables": tables,
        "markdown": env.get_template("matrix.md.j2").render(tables=tables, **context),
    }


def write_matrix_report(report: Any, cells: Iterable[Any], matrix: Matrix, *, failures: list[str],
                        gate_enabled: bool) -> dict[str, Any]:
    data = matrix_data(cells, matrix, failures=failures, gate_enabled=gate_enabled)
    report.matrix = {k: v for k, v in data.items() if k not in ("markdown",)}
    report.add_artifact("matrix.md", data["markdown"])
    report.add_artifact("matrix.json", json.dumps({k: v for k, v in data.items()
                                                   if k not in ("markdown", "markdown_tables")},
                                                  indent=2, default=str))
    return data
