"""A run's report data as the plugin writes it (summary.json), made without a stack: a failed and
passed seam check in each suite, a canary scenario judged by two judges with the sequential
judge's path, a chaos experiment whose journal and Locust event log are written to disk and read
back by the real timeline code, an alert that fired during its fault, and a matrix table."""
from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from harness.report.timeline import chaos_timeline

T0 = 1_796_000_000.0  # the experiment's start, epoch seconds


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat()


def _check(name: str, outcome: str, message: str = "", **evidence: Any) -> dict[str, Any]:
    return {"test": f"scenarios/{name.split(':')[0]}/test_x.py::test_{name.split(':')[1]}", "name": name,
            "description": f"what {name} checks", "outcome": outcome, "evidence": evidence, "message": message,
            "seconds": 1.5}


def canary_sample(name: str = "errors-10pct", *, decide_at: float = 12.0) -> dict[str, Any]:
    readings, path = [], []
    for i in range(1, 16):
        t = 3.0 * i
        bad = i >= 2
        readings.append({"t_s": t, "source_ok": True,
                         "canary": {"requests": 105.0 * i, "errors": 10.0 * i if bad else 0.0, "p99_s": 0.04,
                                    "window_requests": 105.0, "window_errors": 10.0 if bad else 0.0, "slow": 0.0},
                         "stable": {"requests": 104.0 * i, "errors": 0.0, "p99_s": 0.035, "window_requests": 104.0,
                                    "window_errors": 0.0, "slow": 0.0}})
        path.append({"t_s": t, "llr_rollback": 0.9 * i, "llr_absolute": 0.7 * i, "llr_promote": -0.2 * i,
                     "llr_slow": -0.1 * i, "llr_relative": 0.8 * i})
    return {"kind": "canary", "name": name, "service": "rc-canary", "canary": "rc-canary-predictor-00002",
            "stable": "rc-canary-predictor-00001", "expect": ["rollback"], "action": "rollback", "split_percent": 50,
            "split_after": {"rc-canary-predictor-00001": 100}, "interval_s": 3.0, "readings": readings,
            "judges": {"seed": {"decision": "rollback", "at_s": 6.0, "right": True, "known_wrong": "",
                                "reasons": ["error rate 9.5% > 3x 2%"]},
                       "sequential": {"decision": "rollback", "at_s": decide_at, "right": True, "known_wrong": "",
                                      "reasons": ["canary error rate worse than 2 x max(stable, 0.005)"]}},
            "sequential": {"path": path, "rollback_bound": math.log(0.9 / 0.05), "promote_bound": math.log(0.1 / 0.95)},
            "fault": {"what": "model fault error (from the start)", "at_s": 0.0}, "phases_s": {"judgement": 12.1},
            "load_totals": {"requests": 3000}, "judged_from": T0 + 100.0,
            # the dashboard's alerts for the service, seconds after the judgement's start (the errors
            # scenario's canary-vs-stable alert; nothing for the healthy one)
            "alerts": [] if name == "healthy" else [
                {"alertname": "SeamcheckCanaryErrorAboveStable", "state": "pending", "from": 3.1, "to": 4.1,
                 "labels": {"dialect": "mlserver", "isvc": "rc-canary", "revision": "rc-canary-predictor-00002"}},
                {"alertname": "SeamcheckCanaryErrorAboveStable", "state": "firing", "from": 5.1, "to": None,
                 "labels": {"dialect": "mlserver", "isvc": "rc-canary", "revision": "rc-canary-predictor-00002"}}]}


def chaos_sample(folder: Path, key: str = "rollback-to-scaled-to-zero-seed") -> dict[str, Any]:
    """A journal whose load got 503s after its rollback, written and read back as the suite does."""
    folder.mkdir(parents=True, exist_ok=True)
    events = folder / f"{key}-events.jsonl"
    lines = [json.dumps({"event": "start", "t": T0 + 5})]
    for i in range(40 * 30):
        t = T0 + 5 + i / 30
        status = 503 if 12 <= t - T0 < 30 and i % 7 else (0 if i % 97 == 0 else 200)
        lines.append(json.dumps({"t": t, "end": t + 0.02, "status": status, "ms": 20.0, "ok": status == 200,
                                 "served_by": "chaos-cold-seed-predictor-00002-r0" if status == 200 else None}))
    events.write_text("\n".join(lines) + "\n")

    def entry(name: str, func: str, start: float, end: float, output: Any = None) -> dict[str, Any]:
        return {"activity": {"type": "action", "name": name, "provider": {"type": "python", "func": func}},
                "status": "succeeded", "start": _iso(T0 + start), "end": _iso(T0 + end), "output": output}

    journal = {"experiment": {"title": "Rollback to a revision scaled to zero"}, "status": "completed",
               "deviated": False, "start": _iso(T0), "end": _iso(T0 + 50),
               "steady_states": {"before": {"probes": [entry("pipeline-service-answers", "service_answers", 0, 1)]}},
               "run": [entry("deploy-canary", "deploy_service", 1, 4),
                       entry("start-load", "start_load", 4, 5, {"load_id": "chaos-cold-seed", "events": str(events)}),
                       entry("kill-one-replica", "kill_replicas", 11, 11.2),
                       entry("roll-back", "roll_back", 12, 12.5),
                       entry("restore-artifact-store", "restore_component", 30, 31)],
               "rollbacks": [entry("delete-service", "delete_service", 46, 47)]}
    (folder / f"chaos-journal-{key}.json").write_text(json.dumps(journal))
    alerts = [{"alertname": "SeamcheckServingErrorRate", "state": "firing", "from": T0 + 16, "to": T0 + 33,
               "labels": {"isvc": "chaos-cold-seed", "namespace": "model-serving", "dialect": "haproxy"}}]
    return chaos_timeline(key, journal, alerts=alerts, journal_file=f"chaos-journal-{key}.json")


def summary_sample(folder: Path, *, run_id: str = "20261202T010000Z-abc123", failing: bool = True) -> dict[str, Any]:
    checks = [
        _check("conformance:predictions-match", "passed", rows=50),
        _check("conformance:storage-uri-holds-mlmodel", "failed" if failing else "passed",
               "storageUri s3://x/run has no MLmodel" if failing else "", listing=["a.txt"]),
        _check("canary:judge-decides:errors-10pct-sequential", "passed", decision="rollback"),
        _check("canary:judge-decides:canary-killed-seed", "xfailed", "known wrong: the seed reads no data as 0"),
        _check("chaos:replica-killed-error-rate", "passed", failed=3, requests=900),
        _check("chaos:dashboard-alert:serving-error-seed", "passed", fired=["SeamcheckServingErrorRate"]),
    ]
    tests = [{"nodeid": c["test"], "outcome": "failed" if c["outcome"] == "failed" else "passed", "seconds": 2.0,
              "message": ""} for c in checks]
    matrix = {"row_checks": ["env-build", "served"], "upgrade_checks": ["registry-reads"], "rows": ["r1", "r2"],
              "upgrade_steps": ["r1->r2"], "gate": {"enabled": False, "failures": []},
              "cells": [{"subject": "r1", "check": "env-build", "label": "compatible", "summary": "built"},
                        {"subject": "r1", "check": "served", "label": "incompatible", "summary": "no route"},
                        {"subject": "r2", "check": "env-build", "label": "cannot-build", "summary": "uv: no"},
                        {"subject": "r1->r2", "check": "registry-reads", "label": "accepted", "summary": "known"}]}
    folder.mkdir(parents=True, exist_ok=True)
    timelines = [canary_sample(), canary_sample("healthy", decide_at=30.0), chaos_sample(folder)]
    artifacts = [p.name for p in sorted(folder.iterdir())]
    counts = {"passed": sum(t["outcome"] == "passed" for t in tests), "failed": sum(t["outcome"] == "failed" for t in tests),
              "skipped": 0, "error": 0, "xfailed": 0, "xpassed": 0}
    return {"run_id": run_id, "profile": "local", "started": "2026-12-02T01:00:00+00:00", "seconds": 812.5,
            "outcome": "failed" if failing else "passed", "exitstatus": 1 if failing else 0, "counts": counts,
            "versions": {"row": "kfp2.9-mlflow2.17-kserve0.14", "kfp_backend": "2.3.0", "mlflow": "2.17.2",
                         "kserve": "0.14.1", "kubernetes": ["1.30"], "roles": {"serving": ["mlserver==1.6.1"]}},
            "checks": checks, "tests": tests, "timings": {"stack-start": 41.2}, "artifacts": artifacts,
            "suites": {"conformance": 120.0, "canary": 430.0, "chaos": 480.0}, "timelines": timelines,
            "matrix": matrix}
