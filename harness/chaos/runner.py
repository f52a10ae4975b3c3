"""Run an experiment file through chaoslib exactly as `chaos run` does, and read its journal.

Rollbacks run with the "always" strategy: a method that fails half-way (or a deviated steady
state) must still lift its faults; `chaos run --rollback-strategy always` is the by-hand twin.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

__all__ = ["EXPERIMENTS_DIR", "Journal", "experiment_files", "run_experiment_file", "run_scenario"]

EXPERIMENTS_DIR = Path(__file__).resolve().parents[2] / "scenarios" / "chaos"


class Journal(dict):
    """chaoslib's journal with lookups by activity name."""

    def activity(self, name: str, *, phase: str = "run") -> dict[str, Any]:
        entries = self.get("rollbacks" if phase == "rollbacks" else "run") or []
        if phase == "before" or phase == "after":
            entries = ((self.get("steady_states") or {}).get(phase) or {}).get("probes", [])
        for entry in entries:
            if entry["activity"]["name"] == name:
                return entry
        known = [e["activity"]["name"] for e in entries]
        raise KeyError(f"no activity {name!r} in the journal's {phase}: {known}")

    def output(self, name: str, *, phase: str = "run") -> Any:
        entry = self.activity(name, phase=phase)
        if entry["status"] != "succeeded":
            raise AssertionError(f"activity {name!r} {entry['status']}: {entry.get('exception')}")
        return entry["output"]

    def failures(self) -> list[str]:
        return [f"{e['activity']['name']}: {''.join(e.get('exception') or [])[-600:]}"
                for e in (self.get("run") or []) + (self.get("rollbacks") or []) if e["status"] != "succeeded"]


def experiment_files() -> list[Path]:
    return sorted(EXPERIMENTS_DIR.glob("*.json"))


def run_experiment_file(path: Path, *, variables: dict[str, Any] | None = None,
                        journal_path: Path | None = None) -> Journal:
    from chaoslib.experiment import run_experiment
    from chaoslib.loader import load_experiment

    settings: dict[str, Any] = {"runtime": {"rollbacks": {"strategy": "always"}}}
    experiment = load_experiment(str(path), settings)
    journal = Journal(run_experiment(experiment, settings=settings,
                                     experiment_vars=(dict(variables or {}), {})))
    if journal_path is not None:
        journal_path.parent.mkdir(parents=True, exist_ok=True)
        journal_path.write_text(json.dumps(journal, indent=2, default=str))
    if journal.get("status") == "interrupted":
        # chaoslib swallows Ctrl-C (after its rollbacks); the suite must still stop.
        raise KeyboardInterrupt(f"experiment {path.name} was interrupted")
    return journal


def run_scenario(name: str, journal_dir: Path, *, variables: dict[str, Any] | None = None,
                 journal_name: str | None = None) -> Journal:
    """Run scenarios/chaos/<name>.json, keep its journal, and require that it completed with its
    steady state held (what every scenario test needs before it looks at the evidence)."""
    journal = run_experiment_file(EXPERIMENTS_DIR / f"{name}.json", variables=variables,
                                  journal_path=journal_dir / f"{journal_name or name}.json")
    if journal.get("status") != "completed" or journal.get("deviated"):
        raise AssertionError(f"experiment {name}: status {journal.get('status')}, deviated "
                             f"{journal.get('deviated')}: {journal.failures()}")
    return journal
