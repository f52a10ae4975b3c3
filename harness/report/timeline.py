"""Timelines for the HTML report, as plain JSON data (they travel from pytest-xdist workers to the
controller in the worker's export, and sit in summary.json, so a page can be made again from it).

* a chaos timeline per experiment: the journal's activities on one clock (epoch seconds), each
  marked fault, lift, rollout, load, probe or rollback (the journal's rollbacks section), Locust's
  per-request outcomes per second (ok, 5xx, connection errors, other) from every load the
  experiment started, and the alerts that were active meanwhile;
* a canary timeline per judged scenario: built from the scenario's readings and verdicts by the
  fixture layer (harness/fixtures/timelines.py), checked here for the keys the page draws.
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

from harness.load import RequestEvent, read_events

__all__ = ["CANARY_KEYS", "activity_category", "chaos_timeline", "load_bins", "overlapping"]

#: What a canary timeline holds (harness/fixtures/timelines.py builds it).
CANARY_KEYS = ("kind", "name", "service", "canary", "stable", "readings", "judges", "split_percent")

#: Chaos activities by what they do to the stack (the provider's function name).
_FAULTS = {"stop_component", "kill_replicas", "cut_pipeline_to_mlflow"}
_LIFTS = {"restore_component", "restore_pipeline_to_mlflow", "restore_all"}
_ROLLOUTS = {"deploy_service", "set_canary", "roll_back", "delete_service", "scale_to_zero_after"}
_LOADS = {"start_load", "finish_load"}


def activity_category(func: str | None, phase: str) -> str:
    """fault | lift | rollout | load | probe | rollback (an entry of the journal's rollbacks)."""
    if phase == "rollbacks":
        return "rollback"
    if func in _FAULTS:
        return "fault"
    if func in _LIFTS:
        return "lift"
    if func in _ROLLOUTS:
        return "rollout"
    if func in _LOADS:
        return "load"
    return "probe"


def _epoch(stamp: str | None) -> float | None:
    if not stamp:
        return None
    try:
        return datetime.fromisoformat(stamp).timestamp()
    except ValueError:
        return None


def _outcome(event: RequestEvent) -> str:
    if event.ok:
        return "ok"
    if event.is_5xx:
        return "5xx"
    return "conn" if event.status == 0 else "other"


def load_bins(events: Iterable[RequestEvent], t0: float, bin_s: float = 1.0) -> list[dict[str, float]]:
    """Requests per ``bin_s`` by outcome, from the second they started, ``t`` seconds after t0."""
    bins: dict[int, dict[str, float]] = {}
    for event in events:
        index = math.floor((event.t - t0) / bin_s)
        row = bins.setdefault(index, {"t": round(index * bin_s, 3), "ok": 0, "5xx": 0, "conn": 0, "other": 0})
        row[_outcome(event)] += 1
    return [bins[i] for i in sorted(bins)]


def overlapping(alerts: Iterable[Mapping[str, Any]], start: float, end: float) -> list[dict[str, Any]]:
    """The alert intervals that overlap [start, end] (an interval still open has ``to`` None)."""
    out = []
    for alert in alerts:
        until = alert.get("to") if alert.get("to") is not None else math.inf
        if alert["from"] <= end and until >= start:
            out.append(dict(alert))
    return out


def _activities(journal: Mapping[str, Any]) -> list[dict[str, Any]]:
    found = []
    steady = journal.get("steady_states") or {}
    phases = [("before", ((steady.get("before") or {}).get("probes") or [])), ("method", journal.get("run") or []),
              ("after", ((steady.get("after") or {}).get("probes") or [])), ("rollbacks", journal.get("rollbacks") or [])]
    for phase, entries in phases:
        for entry in entries:
            activity = entry.get("activity") or {}
            func = (activity.get("provider") or {}).get("func")
            found.append({"name": activity.get("name", "?"), "func": func, "phase": phase,
                          "category": activity_category(func, phase), "status": entry.get("status", "?"),
                          "start": _epoch(entry.get("start")), "end": _epoch(entry.get("end"))})
    return found


def _load_files(journal: Mapping[str, Any]) -> dict[str, Path]:
    """load id -> its Locust event log, from the outputs of the activities that name one."""
    files: dict[str, Path] = {}
    for entry in (journal.get("run") or []) + (journal.get("rollbacks") or []):
        output = entry.get("output")
        if isinstance(output, dict) and isinstance(output.get("events"), str):
            files.setdefault(str(output.get("load_id") or output["events"]), Path(output["events"]))
    return files


def chaos_timeline(key: str, journal: Mapping[str, Any], *, alerts: Iterable[Mapping[str, Any]] = (),
                   journal_file: str | None = None) -> dict[str, Any]:
    """One experiment's timeline: its activities, its loads' outcomes per second and the alerts
    active while it ran (all times in seconds after the journal's start, ``start`` in epoch)."""
    start = _epoch(journal.get("start")) or 0.0
    end = _epoch(journal.get("end")) or start
    activities = _activities(journal)
    for activity in activities:
        for edge in ("start", "end"):
            if activity[edge] is not None:
                activity[edge] = round(activity[edge] - start, 3)
    loads = []
    for load_id, path in _load_files(journal).items():
        _meta, events, _stop = read_events(path)
        if not events:
            continue
        outcomes = {"ok": 0, "5xx": 0, "conn": 0, "other": 0}
        for event in events:
            outcomes[_outcome(event)] += 1
        loads.append({"load_id": load_id, "events": str(path), "requests": len(events), "outcomes": outcomes,
                      "bins": load_bins(events, start)})
    fired = []
    for alert in overlapping(alerts, start, end):
        fired.append({**alert, "from": round(alert["from"] - start, 3),
                      "to": round(alert["to"] - start, 3) if alert.get("to") is not None else None})
    experiment = journal.get("experiment") or {}
    return {"kind": "chaos", "name": key, "title": experiment.get("title", key), "status": journal.get("status"),
            "deviated": bool(journal.get("deviated")), "start": start, "seconds": round(end - start, 3),
            "activities": activities, "loads": loads, "alerts": fired, "journal": journal_file}
