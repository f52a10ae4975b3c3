"""reports/<run-id>/index.html: the run as one self-contained page (inline CSS and SVG plots, no
script, nothing fetched), made from the same data as summary.json, so it can be made again from
that file alone: ``python -m harness.report.html reports/<run-id>/summary.json``.

Sections, each with an id the browser test screenshots: the overview (outcome, failed checks),
the stack versions, one section per suite (its seam checks, failures first, each with its
evidence; the canary timelines and the judge-conformance table; the chaos timelines with their
activities and alerts; the version matrix), the tests, the timings and the raw artifacts.
"""
from __future__ import annotations

import json
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jinja2

from harness.report.plots import canary_figure, chaos_figure

__all__ = ["INDEX_FILE", "SUITE_ORDER", "page_context", "render_index", "write_index"]

INDEX_FILE = "index.html"
#: The suites' sections in page order; checks of any other suite go under "harness".
SUITE_ORDER = ("conformance", "canary", "chaos", "matrix", "harness")
_BAD = ("failed", "error", "xpassed")
_RANK = {"failed": 0, "error": 0, "xpassed": 1, "xfailed": 2, "running": 2, "passed": 3}


def _env() -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.PackageLoader("harness.report", "templates"),
                             autoescape=jinja2.select_autoescape(["html", "j2"]), keep_trailing_newline=True)
    env.filters["json"] = lambda value: json.dumps(value, indent=2, default=str)
    env.filters["secs"] = lambda value: "-" if value is None else f"{float(value):.1f}"
    return env


def _suite_of(name: str) -> str:
    suite = name.split(":", 1)[0]
    return suite if suite in SUITE_ORDER else "harness"


def _judge_table(canary: list[dict[str, Any]]) -> dict[str, Any]:
    """scenario x judge: decision, time to decision, right / wrong / known wrong (strict xfail)."""
    judges = sorted({j for t in canary for j in t.get("judges", {})}, key=lambda j: (j != "seed", j != "sequential", j))
    rows = []
    for timeline in canary:
        cells = {}
        for judge in judges:
            info = timeline.get("judges", {}).get(judge)
            if info is None:
                cells[judge] = None
                continue
            grade = "right" if info["right"] else ("known-wrong" if info.get("known_wrong") else "wrong")
            cells[judge] = {**info, "grade": grade}
        rows.append({"scenario": timeline["name"], "expect": timeline.get("expect", []), "cells": cells,
                     "action": timeline.get("action")})
    return {"judges": judges, "rows": rows}


def _matrix_table(matrix: Mapping[str, Any]) -> dict[str, Any]:
    cells = {(c["subject"], c["check"]): c for c in matrix.get("cells", [])}

    def table(subjects: list[str], checks: list[str]) -> list[dict[str, Any]]:
        return [{"subject": s, "cells": [cells.get((s, c)) for c in checks]} for s in subjects]

    return {"row_checks": matrix.get("row_checks", []), "upgrade_checks": matrix.get("upgrade_checks", []),
            "rows": table(matrix.get("rows", []), matrix.get("row_checks", [])),
            "steps": table(matrix.get("upgrade_steps", []), matrix.get("upgrade_checks", [])),
            "gate": matrix.get("gate", {})}


def page_context(data: Mapping[str, Any], directory: Path | None = None) -> dict[str, Any]:
    """What the template draws, from a summary.json's data (plots made here)."""
    checks = sorted(data.get("checks", []), key=lambda c: (_RANK.get(c["outcome"], 2), c["name"]))
    timelines = data.get("timelines", [])
    canary = [dict(t, svg=canary_figure(t)) for t in timelines if t.get("kind") == "canary"]
    chaos = [dict(t, svg=chaos_figure(t)) for t in timelines if t.get("kind") == "chaos"]
    suites = []
    for suite in SUITE_ORDER:
        mine = [c for c in checks if _suite_of(c["name"]) == suite]
        extra = {"canary": canary, "chaos": chaos}.get(suite, [])
        if mine or extra or (suite == "matrix" and data.get("matrix")):
            suites.append({"name": suite, "checks": mine, "failed": sum(c["outcome"] in _BAD for c in mine)})
    files = []
    for name in data.get("artifacts", []) + ["summary.json", "summary.md", "junit.xml"]:
        if name not in [f["name"] for f in files] and (directory is None or (directory / name).exists()):
            files.append({"name": name, "bytes": (directory / name).stat().st_size if directory else None})
    return {"run": data, "checks": checks, "failed": [c for c in checks if c["outcome"] in _BAD],
            "suites": suites, "canary": canary, "chaos": chaos, "judge_table": _judge_table(canary),
            "matrix": _matrix_table(data["matrix"]) if data.get("matrix") else None, "files": files}


def render_index(data: Mapping[str, Any], directory: Path | None = None) -> str:
    return _env().get_template("index.html.j2").render(**page_context(data, directory))


def write_index(directory: Path, data: Mapping[str, Any]) -> Path:
    path = directory / INDEX_FILE
    path.write_text(render_index(data, directory))
    return path


def main(argv: list[str] | None = None) -> int:
    """Make index.html again from a summary.json (beside it)."""
    args = argv if argv is not None else sys.argv[1:]
    if len(args) != 1:
        print("usage: python -m harness.report.html reports/<run-id>/summary.json", file=sys.stderr)
        return 2
    summary = Path(args[0])
    print(write_index(summary.parent, json.loads(summary.read_text())))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
