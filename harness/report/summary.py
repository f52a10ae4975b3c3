"""The run's report: reports/<run-id>/summary.json (everything, machine-readable) and summary.md."""
from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jinja2

from harness.report.recorder import CheckRecord

__all__ = ["MATRIX_CELL_PROPERTY", "RunReport", "new_run_id"]

#: The user_properties key a matrix table cell travels under (as a dict).
MATRIX_CELL_PROPERTY = "seamcheck.matrix_cell"


def new_run_id() -> str:
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ") + "-" + uuid.uuid4().hex[:6]


@dataclass
class RunReport:
    run_id: str
    directory: Path
    profile: str
    versions: dict[str, Any] = field(default_factory=dict)
    checks: list[CheckRecord] = field(default_factory=list)
    tests: list[dict[str, Any]] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    artifacts: list[str] = field(default_factory=list)
    #: The matrix suite's table cells (harness.matrixcheck.outcome.Cell), and the rendered table
    #: (harness/report/matrix_table.py fills it: {"markdown", "rows", "cells", "gate", ...}).
    matrix_cells: list[Any] = field(default_factory=list)
    matrix: dict[str, Any] = field(default_factory=dict)
    #: Whether the pipeline's model was served, and why not: {"deployed": bool, "why": str}.
    deployed: dict[str, Any] = field(default_factory=dict)
    #: The HTML report's canary and chaos timelines (harness/report/timeline.py), as plain data.
    timelines: list[dict[str, Any]] = field(default_factory=list)
    #: Wall seconds per suite: its tests' setup, call and teardown added up (collector.py).
    suites: dict[str, float] = field(default_factory=dict)
    started_monotonic: float = field(default_factory=time.monotonic)
    started: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))

    def add_artifact(self, name: str, content: str | bytes) -> Path:
        path = self.directory / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content if isinstance(content, bytes) else content.encode())
        if name not in self.artifacts:
            self.artifacts.append(name)
        return path

    def add_timeline(self, timeline: dict[str, Any]) -> None:
        """One canary scenario's or chaos experiment's timeline; a second one of the same kind and
        name replaces the first (a fixture torn down and set up again records it again)."""
        self.timelines = [t for t in self.timelines
                          if (t.get("kind"), t.get("name")) != (timeline.get("kind"), timeline.get("name"))]
        self.timelines.append(timeline)

    def add_cell_dict(self, data: dict[str, Any]) -> None:
        from harness.matrixcheck.outcome import Cell

        self.matrix_cells.append(Cell.from_dict(data))

    def export(self) -> dict[str, Any]:
        """What an xdist worker alone knows, for the controller's ``merge`` (the tests and checks
        travel in the test reports themselves)."""
        return {"versions": self.versions, "timings": self.timings, "artifacts": self.artifacts,
                "deployed": self.deployed, "timelines": self.timelines}

    def merge(self, part: dict[str, Any]) -> None:
        for key, value in (part.get("versions") or {}).items():
            self.versions.setdefault(key, value)
        self.timings.update(part.get("timings") or {})
        self.artifacts += [a for a in part.get("artifacts") or [] if a not in self.artifacts]
        if part.get("deployed") and not self.deployed:
            self.deployed = dict(part["deployed"])
        for timeline in part.get("timelines") or []:
            self.add_timeline(timeline)

    def as_dict(self, exitstatus: int | None = None) -> dict[str, Any]:
        counts = {k: 0 for k in ("passed", "failed", "skipped", "error", "xfailed", "xpassed")}
        for t in self.tests:
            counts[t["outcome"]] = counts.get(t["outcome"], 0) + 1
        bad = counts["failed"] + counts["error"] + sum(1 for c in self.checks if c.outcome not in ("passed", "xfailed"))
        return {
            "run_id": self.run_id,
            "profile": self.profile,
            "started": self.started,
            "seconds": round(time.monotonic() - self.started_monotonic, 2),
            "outcome": "failed" if bad or (exitstatus not in (0, None, 5)) else "passed",
            "exitstatus": exitstatus,
            "counts": counts,
            "versions": self.versions or {"row": "?", "kfp_backend": "?", "mlflow": "?", "kserve": "?",
                                          "kubernetes": [], "roles": {}},
            "checks": [c.as_dict() for c in self.checks],
            "tests": self.tests,
            "timings": {k: round(v, 3) for k, v in self.timings.items()},
            "artifacts": self.artifacts,
            "suites": {k: round(v, 3) for k, v in self.suites.items()},
            "timelines": self.timelines,
            **({"deployed": self.deployed} if self.deployed else {}),
            **({"matrix": self.matrix} if self.matrix else {}),
        }

    def write(self, exitstatus: int | None = None) -> Path:
        self.directory.mkdir(parents=True, exist_ok=True)
        data = self.as_dict(exitstatus)
        (self.directory / "summary.json").write_text(json.dumps(data, indent=2, default=str))
        env = jinja2.Environment(loader=jinja2.PackageLoader("harness.report", "templates"),
                                 autoescape=False, keep_trailing_newline=True)
        env.filters["json"] = lambda value: json.dumps(value, indent=2, default=str)
        (self.directory / "summary.md").write_text(env.get_template("summary.md.j2").render(run=data))
        return self.directory
