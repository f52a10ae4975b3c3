"""reports/trend.html: the last N runs from the history (harness/report/history.py) on one page:
a grid of seam checks x runs, the flaky checks ranked (passed and failed within the window), the
canary judges' time to decision and the suites' wall times across the runs, and each run's
versions with a link to its own page.
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jinja2

from harness.report.history import RunRecord, recent_runs
from harness.report.plots import trend_figure

__all__ = ["TREND_FILE", "TREND_RUNS", "flaky_checks", "trend_context", "write_trend"]

TREND_FILE = "trend.html"
#: Runs the page shows: a month of nightlies.
TREND_RUNS = 30
_GOOD, _BAD = {"passed", "xfailed"}, {"failed", "error", "xpassed"}


def flaky_checks(runs: Sequence[RunRecord]) -> list[dict[str, Any]]:
    """Checks that both passed and failed within the runs, most flips (outcome changes from one run
    that recorded the check to the next) first, then most failures."""
    names = sorted({name for run in runs for name in run.checks})
    ranked = []
    for name in names:
        outcomes = [run.checks[name][0] for run in runs if name in run.checks]
        passed = sum(o in _GOOD for o in outcomes)
        failed = sum(o in _BAD for o in outcomes)
        if not (passed and failed):
            continue
        verdicts = [o in _GOOD for o in outcomes if o in _GOOD | _BAD]
        flips = sum(a != b for a, b in zip(verdicts, verdicts[1:]))
        ranked.append({"name": name, "passed": passed, "failed": failed, "flips": flips, "runs": len(outcomes),
                       "last": outcomes[-1]})
    return sorted(ranked, key=lambda r: (-r["flips"], -r["failed"], r["name"]))


def trend_context(runs: Sequence[RunRecord]) -> dict[str, Any]:
    ids = [run.run_id for run in runs]
    names = sorted({name for run in runs for name in run.checks})
    grid = [{"name": name, "cells": [run.checks.get(name, ("missing", None))[0] for run in runs]} for name in names]
    decisions = sorted({key for run in runs for key in run.decisions})
    ttd = {f"{scenario} / {judge}": [run.decisions.get((scenario, judge), (None, None, False))[1] for run in runs]
           for scenario, judge in decisions}
    suites = sorted({suite for run in runs for suite in run.suites})
    walls = {suite: [run.suites.get(suite) for run in runs] for suite in suites}
    walls["whole run"] = [run.seconds for run in runs]
    return {"runs": runs, "grid": grid, "flaky": flaky_checks(runs),
            "ttd_svg": trend_figure(ttd, ids, ylabel="seconds to decision",
                                    title="canary: time to decision per scenario and judge") if ttd else None,
            "suite_svg": trend_figure(walls, ids, ylabel="seconds", title="wall time per suite") if runs else None,
            "wrong": [{"run": run.run_id, "scenario": s, "judge": j, "decision": d}
                      for run in runs for (s, j), (d, _sec, right) in sorted(run.decisions.items()) if not right]}


def write_trend(reports_dir: Path, history: Path, limit: int = TREND_RUNS) -> Path:
    runs = recent_runs(history, limit)
    env = jinja2.Environment(loader=jinja2.PackageLoader("harness.report", "templates"),
                             autoescape=jinja2.select_autoescape(["html", "j2"]))
    env.filters["secs"] = lambda value: "-" if value is None else f"{float(value):.1f}"
    path = reports_dir / TREND_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(env.get_template("trend.html.j2").render(limit=limit, history=str(history),
                                                             **trend_context(runs)))
    return path
