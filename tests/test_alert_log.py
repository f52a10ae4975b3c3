"""The session's alert log (harness/metrics/alertlog.py) on a scripted /api/v1/alerts, and the
windows the canary suite reads it over (harness/canary/alerts.py), without a stack."""
from __future__ import annotations

from typing import Any

import pytest
import requests

from harness.canary.alerts import ALERT_LAG_S, fire_by, firing_window, quiet_window, relative_to
from harness.canary.plan import CanaryScenario
from harness.canary.scenarios import ScenarioOutcome
from harness.judges.base import Decision
from harness.metrics import alertlog
from harness.metrics.alertlog import AlertLog

T0 = 1_796_000_000.0


class _Answer:
    def __init__(self, alerts: list[dict[str, Any]]) -> None:
        self.alerts = alerts

    def raise_for_status(self) -> None:
        pass

    def json(self) -> dict[str, Any]:
        return {"status": "success", "data": {"alerts": self.alerts}}


def _scripted(monkeypatch: pytest.MonkeyPatch, script: list[Any]) -> list[float]:
    """Each poll takes the next answer (a list of alerts, or an exception to raise) at the next
    second from T0; returns the clock."""
    clock = [T0 - 1]

    def fake_time() -> float:
        return clock[0]

    def fake_get(url: str, timeout: float) -> _Answer:
        assert url.endswith("/api/v1/alerts") and timeout > 0
        step = script.pop(0)
        if isinstance(step, Exception):
            raise step
        return _Answer(step)

    monkeypatch.setattr(alertlog.time, "time", fake_time)
    monkeypatch.setattr(alertlog.requests, "get", fake_get)
    return clock


def _alert(state: str, revision: str = "rc-2") -> dict[str, Any]:
    return {"labels": {"alertname": "SeamcheckCanaryErrorAboveStable", "isvc": "rc", "revision": revision,
                       "dialect": "mlserver"}, "state": state, "activeAt": "2026-12-02T00:00:00Z", "value": "0.1"}


def test_the_log_keeps_intervals_and_how_it_watched(monkeypatch: pytest.MonkeyPatch) -> None:
    """Pending then firing then gone, with a failed poll in the middle that ends nothing; the
    window's polls, failures and longest unanswered stretch."""
    script = [[], [_alert("pending")], [_alert("firing")], requests.ConnectionError("refused"), [_alert("firing")],
              [], []]
    clock = _scripted(monkeypatch, script)
    log = AlertLog("http://prometheus")
    for _ in range(7):
        clock[0] += 1
        log.poll()
    intervals = log.snapshot()
    assert [(i["state"], i["from"] - T0, i["to"] - T0) for i in intervals] == [("pending", 1, 1), ("firing", 2, 4)]
    assert log.seen(start=T0 + 3, end=T0 + 3, state="firing", labels={"revision": "rc-2"})
    assert log.seen(start=T0 + 5, end=T0 + 9) == []
    assert log.health() == {"polls": 7, "failed_polls": 1, "last_error": "ConnectionError: refused"}
    assert log.polls_between(T0, T0 + 6) == {"polls": 7, "failed": 1, "longest_gap_s": 2.0, "seconds": 6.0}
    # a window the log never answered in: its whole length is the gap
    assert log.polls_between(T0 + 20, T0 + 30) == {"polls": 0, "failed": 0, "longest_gap_s": 10.0, "seconds": 10.0}


def _outcome(**times: float | None) -> ScenarioOutcome:
    return ScenarioOutcome(scenario=CanaryScenario("errors-10pct", None, frozenset({Decision.ROLLBACK})), service="rc",
                           canary="rc-2", stable="rc-1", verdicts={}, decided_at={}, action="rollback",
                           split_after={"rc-1": 100}, post_window={}, load_totals={}, readings=[], **times)


def test_the_canary_suites_windows_follow_the_rules_lag() -> None:
    """The rules' 10 s window and 2 s hold and three scrapes; an alert the canary's traffic causes
    is due ALERT_LAG_S after its first request, looked for until the judgement's end (or then)."""
    assert ALERT_LAG_S == 15.0
    long = _outcome(judged_from=T0, judged_to=T0 + 75, canary_traffic_from=T0 - 2)
    assert fire_by(long) == T0 + 13 and firing_window(long) == (T0, T0 + 75)
    assert quiet_window(long) == (T0, T0 + 90)
    short = _outcome(judged_from=T0, judged_to=T0 + 6, canary_traffic_from=None)  # no router named the canary
    assert fire_by(short) == T0 + 15 and firing_window(short) == (T0, T0 + 15)
    with pytest.raises(ValueError, match="no judgement on the epoch clock"):
        firing_window(_outcome())
    assert relative_to([{"from": T0 + 5.04, "to": None, "state": "firing"}], T0) == [
        {"from": 5.0, "to": None, "state": "firing"}]
