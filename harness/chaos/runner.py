"""Run experiment files with Chaos Toolkit's own `chaos run`, in subprocesses, and read their
journals: the suite runs every experiment exactly as a user runs it by hand, against the
session's control (its URL and token in the environment).

Rollbacks run with the "always" strategy: a method that fails half-way (or a deviated steady
state) must still lift its faults. Each run is a process of its own session: a terminal's Ctrl-C
reaches it once, from us, so its rollbacks run; a SIGTERM to pytest does the same.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.paths import CHAOS_EXPERIMENTS
from harness.procs import spawn

__all__ = ["EXPERIMENTS_DIR", "Cancelled", "ChaosRun", "Journal", "experiment_files", "run_experiment_file",
           "run_scenario", "run_scenarios_side_by_side"]

EXPERIMENTS_DIR = CHAOS_EXPERIMENTS


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


#: How long an interrupted `chaos run` gets for its rollbacks before it is killed.
ROLLBACK_GRACE_S = 120.0
#: The longest an experiment may run (the scaled-to-zero ones take ~2 min on two busy cores).
EXPERIMENT_DEADLINE_S = 900.0


def chaos_cli() -> str:
    """Chaos Toolkit's own `chaos` command, from this interpreter's environment first."""
    beside = Path(sys.executable).parent / "chaos"
    found = str(beside) if beside.exists() else shutil.which("chaos")
    if not found:
        raise FileNotFoundError("the `chaos` command (chaostoolkit) is not installed: pip install -e '.[dev]'")
    return found


@dataclass
class ChaosRun:
    """One experiment run by `chaos run` in a subprocess of its own session."""

    key: str
    experiment: Path
    journal_path: Path
    log_path: Path
    process: subprocess.Popen
    _journal: Journal | None = field(default=None, repr=False)  # read once, after the run

    @classmethod
    def start(cls, key: str, experiment: Path, journal_dir: Path, variables: dict[str, Any]) -> ChaosRun:
        files = journal_dir / "runs"  # beside the journals, not among them (those go to the report)
        files.mkdir(parents=True, exist_ok=True)
        var_file = files / f"{key}.vars.json"
        # A JSON var file keeps the values' types; chaoslib reads only its "configuration" key
        # (and silently runs the defaults from a flat mapping).
        var_file.write_text(json.dumps({"configuration": variables}))
        journal, log = journal_dir / f"{key}.json", files / f"{key}.log"
        journal.unlink(missing_ok=True)
        argv = [chaos_cli(), "--no-version-check", "--log-file", str(log), "run", "--rollback-strategy", "always",
                "--var-file", str(var_file), "--journal-path", str(journal), str(experiment)]
        with open(files / f"{key}.out", "wb") as out:
            process = spawn(argv, what=f"chaos run {experiment.name}", stdout=out,
                            stderr=subprocess.STDOUT).popen
        return cls(key, experiment, journal, log, process)

    def running(self) -> bool:
        return self.process.poll() is None

    def interrupt(self) -> None:
        if self.running():
            os.killpg(self.process.pid, signal.SIGINT)  # chaos runs its rollbacks on Ctrl-C

    def stop(self) -> None:
        """Interrupt, give the rollbacks their grace period, then kill: never left running."""
        self.interrupt()
        try:
            self.process.wait(timeout=ROLLBACK_GRACE_S)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=30)

    def log_tail(self, chars: int = 2000) -> str:
        parts = []
        for path in (self.log_path, self.log_path.with_suffix(".out")):
            if path.exists():
                parts.append(f"--- {path.name}\n{path.read_text(errors='replace')[-chars:]}")
        return "\n".join(parts)

    def read_journal(self) -> Journal:
        """The journal as `chaos run` wrote it, whatever the experiment's outcome."""
        if self._journal is None:
            if not self.journal_path.exists():
                raise AssertionError(f"experiment {self.experiment.name} ({self.key}): `chaos run` exited "
                                     f"{self.process.returncode} without a journal\n{self.log_tail()}")
            self._journal = Journal(json.loads(self.journal_path.read_text()))
        return self._journal

    def journal(self) -> Journal:
        """The completed experiment's journal; its failures (with the log's tail) otherwise."""
        journal = self.read_journal()
        if journal.get("status") != "completed" or journal.get("deviated"):
            raise AssertionError(f"experiment {self.experiment.name} ({self.key}): status {journal.get('status')}, "
                                 f"deviated {journal.get('deviated')}: {journal.failures()}\n{self.log_tail()}")
        return journal


class Cancelled(Exception):
    """The runs were cancelled from another thread (the session ended while they ran)."""


def _run_all(runs: list[tuple[str, Path, dict[str, Any]]], journal_dir: Path, *, deadline_s: float,
             at_once: int, cancel: threading.Event | None = None) -> list[ChaosRun]:
    """Start the runs, at most ``at_once`` at a time, and wait for all, at most deadline_s.
    Interrupted (Ctrl-C, SIGTERM), cancelled (``cancel`` set: the runs are waited for in a thread
    that no signal reaches) or past the deadline, every run is interrupted so its rollbacks lift
    its faults; an experiment that `chaos run` reports interrupted stops the suite too."""
    if at_once < 1:
        raise ValueError("at_once must be >= 1")
    started: list[ChaosRun] = []
    waiting = list(runs)
    try:
        until = time.monotonic() + deadline_s
        while waiting or any(run.running() for run in started):
            while waiting and sum(run.running() for run in started) < at_once:
                key, experiment, variables = waiting.pop(0)
                started.append(ChaosRun.start(key, experiment, journal_dir, variables))
            if cancel is not None and cancel.is_set():  # the handler below interrupts and stops them
                raise Cancelled(f"experiments {[r.key for r in started if r.running()]} cancelled "
                                "(interrupted, rollbacks run)")
            if time.monotonic() > until:
                late = [run for run in started if run.running()]
                raise TimeoutError(f"experiments {[r.key for r in late]} still running after {deadline_s:.0f}s "
                                   f"(interrupted, rollbacks run):\n" + "\n".join(r.log_tail() for r in late))
            time.sleep(0.25)
    except BaseException:
        for run in started:
            run.interrupt()
        for run in started:
            run.stop()
        raise
    for run in started:
        if run.journal_path.exists() and run.read_journal().get("status") == "interrupted":
            raise KeyboardInterrupt(f"experiment {run.experiment.name} ({run.key}) was interrupted")
    return started


def run_experiment_file(path: Path, *, journal_path: Path, variables: dict[str, Any] | None = None,
                        deadline_s: float = EXPERIMENT_DEADLINE_S) -> Journal:
    """Run one experiment file with `chaos run` and return its journal, whatever its outcome."""
    (run,) = _run_all([(journal_path.stem, path, dict(variables or {}))], journal_path.parent,
                      deadline_s=deadline_s, at_once=1)
    return run.read_journal()


def run_scenario(name: str, journal_dir: Path, *, variables: dict[str, Any] | None = None,
                 journal_name: str | None = None) -> Journal:
    """Run scenarios/chaos/<name>.json, keep its journal, and require that it completed with its
    steady state held (what every scenario test needs before it looks at the evidence)."""
    (run,) = _run_all([(journal_name or name, EXPERIMENTS_DIR / f"{name}.json", dict(variables or {}))],
                      journal_dir, deadline_s=EXPERIMENT_DEADLINE_S, at_once=1)
    return run.journal()


def run_scenarios_side_by_side(runs: dict[str, tuple[str, dict[str, Any]]], journal_dir: Path, *,
                               deadline_s: float = EXPERIMENT_DEADLINE_S, at_once: int = 2,
                               cancel: threading.Event | None = None,
                               experiments_dir: Path = EXPERIMENTS_DIR) -> dict[str, Journal | AssertionError]:
    """Run experiments side by side (key -> (experiment name, variables)), at most ``at_once`` at
    a time; returns each key's completed journal, or the AssertionError that says why not.
    ``cancel``: set from another thread to stop them (each run's rollbacks still run).

    ``at_once``: each run is a stack's worth of model servers and a Locust; on two cores, four at
    once stretched cold starts and deploys past what the scenarios measure (two do not)."""
    started = _run_all([(key, experiments_dir / f"{name}.json", variables) for key, (name, variables) in runs.items()],
                       journal_dir, deadline_s=deadline_s, at_once=at_once, cancel=cancel)
    results: dict[str, Journal | AssertionError] = {}
    for run in started:
        try:
            results[run.key] = run.journal()
        except AssertionError as exc:
            results[run.key] = exc
    return results
