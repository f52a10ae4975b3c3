"""The dashboard's alerts beside a canary scenario's judgement: the windows the canary suite reads
the session's alert log over (scenarios/canary/test_dashboard_alerts.py), and the alerts its
timeline lists (harness/fixtures/timelines.py).

The rules, at harness scale (harness/metrics/alerts.py HARNESS), rate over a 10 s window and hold
2 s; Prometheus evaluates them every scrape and the log polls /api/v1/alerts as often. An alert
the canary's traffic causes therefore fires at most about ALERT_LAG_S after that traffic's first
request (the canary's model fault acts from its first request: the errors and the slow tail start
there), and an alert the judged traffic causes shows up to ALERT_LAG_S after the judgement ends.
"""
from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from harness.metrics.alerts import HARNESS
from harness.metrics.cadence import CADENCE

__all__ = ["ALERT_LAG_S", "fire_by", "firing_window", "quiet_window", "relative_to", "timeline_alerts"]


def _seconds(duration: str) -> float:
    match = re.fullmatch(r"(\d+(?:\.\d+)?)(ms|s|m)", duration)
    if match is None:
        raise ValueError(f"not a Prometheus duration this module reads: {duration!r}")
    value, unit = float(match.group(1)), match.group(2)
    return value / 1000 if unit == "ms" else value * 60 if unit == "m" else value


#: The rules' window and hold, plus three scrapes: rate() needs two samples of the new traffic, one
#: evaluation to go pending and one to fire after the hold, one poll of the log (15 s).
ALERT_LAG_S = _seconds(HARNESS.window) + _seconds(HARNESS.hold) + 3 * CADENCE.scrape_s


def _judged(outcome: Any) -> tuple[float, float]:
    if outcome.judged_from is None or outcome.judged_to is None:
        raise ValueError(f"scenario {outcome.scenario.name}: its outcome has no judgement on the epoch clock")
    return outcome.judged_from, outcome.judged_to


def fire_by(outcome: Any) -> float:
    """When an alert the canary's traffic causes must fire by (epoch): ALERT_LAG_S after the
    canary's first answered request (the judgement's start where no router named the revision)."""
    start, _end = _judged(outcome)
    first = outcome.canary_traffic_from if outcome.canary_traffic_from is not None else start
    return first + ALERT_LAG_S


def firing_window(outcome: Any) -> tuple[float, float]:
    """Where an alert the scenario's fault causes is looked for: from the judgement's start to its
    end, or to fire_by where the judges decided sooner than the rules could."""
    start, end = _judged(outcome)
    return start, max(end, fire_by(outcome))


def quiet_window(outcome: Any) -> tuple[float, float]:
    """Where a healthy scenario must raise nothing: the judgement, and ALERT_LAG_S after it (what
    its last windows of traffic could still cause)."""
    start, end = _judged(outcome)
    return start, end + ALERT_LAG_S


def relative_to(alerts: Iterable[Mapping[str, Any]], t0: float) -> list[dict[str, Any]]:
    """Alert intervals (AlertLog's dicts) with ``from``/``to`` in seconds after t0, and Prometheus'
    activeAt kept as it is."""
    return [{**a, "from": round(a["from"] - t0, 1), "to": round(a["to"] - t0, 1) if a.get("to") is not None else None}
            for a in alerts]


def timeline_alerts(alerts: Iterable[Mapping[str, Any]], outcome: Any) -> list[dict[str, Any]]:
    """The alerts for the scenario's service active in its quiet window, in seconds after the
    judgement's start (the readings' clock); [] for an outcome without a judgement on the epoch
    clock. Other services' alerts (a scenario judged beside) belong to their own timelines."""
    if outcome.judged_from is None or outcome.judged_to is None:
        return []
    start, end = quiet_window(outcome)
    found = []
    for alert in alerts:
        until = alert.get("to") if alert.get("to") is not None else float("inf")
        if alert["from"] <= end and until >= start and (alert.get("labels") or {}).get("isvc") == outcome.service:
            found.append(alert)
    return relative_to(sorted(found, key=lambda a: a["from"]), start)
