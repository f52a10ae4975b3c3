"""The run history: one record per run appended to an SQLite file (default
<reports-dir>/history.sqlite, ``--history`` elsewhere, so CI can restore it from a cache or an
artifact before the run and save it after).

Per run: its outcome, versions and wall time; per seam check its outcome and duration; per canary
scenario and judge the decision and the time to it; per suite its wall time. SQLite because the
file is one portable artifact, two sessions appending at once are serialised by its own locking,
and the trend page's queries (last N runs, one check across them) are plain SQL.
"""
from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator, Mapping
from contextlib import closing, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["HISTORY_FILE", "RunRecord", "append_run", "recent_runs"]

HISTORY_FILE = "history.sqlite"
#: Worse outcomes win when one check is recorded twice in a run (a rerun, a second row).
_SEVERITY = {"passed": 0, "xfailed": 1, "skipped": 1, "running": 2, "xpassed": 3, "failed": 4, "error": 4}

_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (run_id TEXT PRIMARY KEY, started TEXT NOT NULL, seconds REAL, outcome TEXT,
                                 profile TEXT, row TEXT, versions TEXT, report TEXT);
CREATE TABLE IF NOT EXISTS checks (run_id TEXT NOT NULL, name TEXT NOT NULL, outcome TEXT NOT NULL, seconds REAL,
                                   PRIMARY KEY (run_id, name));
CREATE TABLE IF NOT EXISTS decisions (run_id TEXT NOT NULL, scenario TEXT NOT NULL, judge TEXT NOT NULL,
                                      decision TEXT, seconds REAL, right INTEGER,
                                      PRIMARY KEY (run_id, scenario, judge));
CREATE TABLE IF NOT EXISTS suites (run_id TEXT NOT NULL, suite TEXT NOT NULL, seconds REAL,
                                   PRIMARY KEY (run_id, suite));
"""


@dataclass
class RunRecord:
    run_id: str
    started: str
    seconds: float | None
    outcome: str
    profile: str
    row: str
    versions: dict[str, Any]
    report: str  # the run's index.html, relative to the reports folder
    checks: dict[str, tuple[str, float | None]] = field(default_factory=dict)  # name -> (outcome, seconds)
    decisions: dict[tuple[str, str], tuple[str, float | None, bool]] = field(default_factory=dict)
    suites: dict[str, float] = field(default_factory=dict)


@contextmanager
def _connect(path: Path) -> Iterator[sqlite3.Connection]:
    path.parent.mkdir(parents=True, exist_ok=True)
    # A second session appending at the same moment waits for the first (SQLite's own lock).
    with closing(sqlite3.connect(path, timeout=30)) as db:
        db.executescript(_SCHEMA)
        with db:
            yield db


def _folded_checks(checks: list[Mapping[str, Any]]) -> dict[str, tuple[str, float]]:
    folded: dict[str, tuple[str, float]] = {}
    for check in checks:
        outcome, seconds = check["outcome"], float(check.get("seconds") or 0.0)
        if check["name"] in folded:
            before, spent = folded[check["name"]]
            outcome = max(outcome, before, key=lambda o: _SEVERITY.get(o, 2))
            seconds += spent
        folded[check["name"]] = (outcome, seconds)
    return folded


def append_run(path: Path, data: Mapping[str, Any], report: str) -> None:
    """Record one run (summary.json's data); a run id recorded before is replaced."""
    run_id = data["run_id"]
    versions = data.get("versions") or {}
    with _connect(path) as db:
        for table in ("runs", "checks", "decisions", "suites"):
            db.execute(f"DELETE FROM {table} WHERE run_id = ?", (run_id,))  # noqa: S608 (fixed names)
        db.execute("INSERT INTO runs VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                   (run_id, data["started"], data.get("seconds"), data.get("outcome"), data.get("profile"),
                    versions.get("row"), json.dumps(versions, default=str), report))
        db.executemany("INSERT INTO checks VALUES (?, ?, ?, ?)",
                       [(run_id, name, o, s) for name, (o, s) in _folded_checks(data.get("checks", [])).items()])
        for timeline in data.get("timelines", []):
            if timeline.get("kind") != "canary":
                continue
            db.executemany("INSERT OR REPLACE INTO decisions VALUES (?, ?, ?, ?, ?, ?)",
                           [(run_id, timeline["name"], judge, info.get("decision"), info.get("at_s"),
                             int(bool(info.get("right")))) for judge, info in timeline.get("judges", {}).items()])
        db.executemany("INSERT INTO suites VALUES (?, ?, ?)",
                       [(run_id, suite, seconds) for suite, seconds in (data.get("suites") or {}).items()])


def recent_runs(path: Path, limit: int) -> list[RunRecord]:
    """The last ``limit`` runs, oldest first; none when the file does not exist yet."""
    if not path.exists():
        return []
    with _connect(path) as db:
        rows = db.execute("SELECT run_id, started, seconds, outcome, profile, row, versions, report FROM runs "
                          "ORDER BY started DESC, run_id DESC LIMIT ?", (limit,)).fetchall()
        records = {r[0]: RunRecord(r[0], r[1], r[2], r[3] or "?", r[4] or "?", r[5] or "?",
                                   json.loads(r[6] or "{}"), r[7] or "") for r in rows}
        marks = ",".join("?" * len(records))
        ids = list(records)
        for run_id, name, outcome, seconds in db.execute(
                f"SELECT run_id, name, outcome, seconds FROM checks WHERE run_id IN ({marks})", ids):  # noqa: S608
            records[run_id].checks[name] = (outcome, seconds)
        for run_id, scenario, judge, decision, seconds, right in db.execute(
                f"SELECT * FROM decisions WHERE run_id IN ({marks})", ids):  # noqa: S608
            records[run_id].decisions[(scenario, judge)] = (decision, seconds, bool(right))
        for run_id, suite, seconds in db.execute(f"SELECT * FROM suites WHERE run_id IN ({marks})", ids):  # noqa: S608
            records[run_id].suites[suite] = seconds
    return list(reversed(list(records.values())))
