"""Canary judgement under real Locust load, for every shipped judge (and a user's, with --judge).

Each scenario deploys a real canary revision (a registered MLflow model, faulty or not) at
CANARY_PERCENT of the traffic, drives Locust through the router, and feeds the same Prometheus
readings to every judge, with the correctness probes' tally (the same labelled held-out rows sent
to canary and stable through their tagged routes). The rollout follows the acting judge (the
sequential one); every judge, the peers ported from Flagger, Argo Rollouts and Kayenta included, is
graded on its own decision. After every rollback: 100% of traffic on stable, and a load window
afterwards with zero 5xx. The judge-conformance table goes into the run's report.

The scenarios are played by the session's runner (harness/canary/scenarios.py, started in
conftest.py): each test names its scenario with a ``canary_scenario`` mark, and the runner plays
the session's scenarios in the order their tests run, deploying each canary ahead.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import requests

from harness.canary.alerts import ALERT_LAG_S, fire_by, firing_window, quiet_window, relative_to
from harness.canary.scenarios import CONFIG, INTERVAL_S, CanaryScenario, ScenarioOutcome
from harness.faults.models import FaultSpec
from harness.judges.base import Decision
from harness.metrics.alertlog import AlertLog
from harness.metrics.alerts import LOCAL_GROUPS, MIN_RPS
from harness.metrics.cadence import CADENCE

pytestmark = [pytest.mark.canary, pytest.mark.stack]

NOT_PROMOTE = {Decision.ROLLBACK, Decision.INCONCLUSIVE}
#: Every judge graded on every scenario: the rollout follows the sequential one alone.
JUDGES = ("seed", "sequential", "flagger", "argo", "kayenta")
BLIND = ("the {judge} judge reads errors and latency only: a canary that answers every request with HTTP 200 and "
         "a wrong label looks as healthy as the stable")
LABEL_FLIPS = 0.10  # labels-flipped: the share of the canary's labels flipped
SHIFT = 0.02  # probabilities-shifted: added to every probability (within the probes' tolerance)


def _marks(scenario: CanaryScenario) -> list:
    # Every live judgement is nightly (`pytest -m canary` runs them all): on CI's two cores the
    # canary's one replica at 80 % of 70 req/s is too close to the 500 ms p99 line for a verdict
    # that does not follow the machine's load (2026-12-02, one CI run: a healthy canary promoted by
    # four judges of five; the next: 8 of its first 82 requests over 500 ms, rolled back by three,
    # and the latency alert fired). CI keeps the judges' simulations and the live traffic split.
    return [pytest.mark.canary_scenario(scenario), pytest.mark.slow]


# Each scenario costs its deadline (75 s) of judgement: the seed, Argo and Kayenta decide only then.
# CI (two cores) runs the promotion and the flipped labels (every peer's blind spot, the probes'
# rollback); the error, dead-canary, latency, traffic, Prometheus and probability scenarios run
# nightly and in every `pytest -m canary`. Too little traffic (1 req/s) is judged beside the
# others, on a service of its own, without probes (they would add to its traffic).
# probabilities-shifted goes last: its service then serves its probability baseline.
#
# Kayenta compares the canary's latency distribution with the stable's. At an 80 % split each
# revision has one replica, so the canary's serves four times the stable's load: live, on two cores,
# its latency is higher (healthy, 2026-12-02 CI: mean ratio 2.46, Mann-Whitney p 1e-7, "High",
# score 50 -> rollback), whatever the model. A dead canary leaves Kayenta the few windows it served
# before it died (3 there: score 100 -> promote).
HOT_REPLICA = ("kayenta compares latency distributions, and at an 80 % split the canary's one replica carries 4x "
               "the stable's load: how much slower it is, and so Kayenta's score, follows the machine's load")
SCENARIOS = [
    CanaryScenario("healthy", None, frozenset({Decision.PROMOTE}), sometimes_wrong={"kayenta": HOT_REPLICA}),
    CanaryScenario("tail-latency", FaultSpec.tail_latency(0.05, 1.0), frozenset({Decision.ROLLBACK}), nightly=True),
    CanaryScenario("too-little-traffic", None, frozenset({Decision.INCONCLUSIVE}), rps=1.0, nightly=True, beside=True,
             probes=False,
             known_wrong={"seed": "the seed keeps insufficient-traffic checks in the denominator, so a canary "
                                  "nobody measured is rolled back instead of reported inconclusive",
                          # Live 2026-12-02, as the simulation shows at 2 req/s (docs/judges.md): they
                          # count checks, not evidence.
                          "flagger": "flagger promotes after its passing analyses whatever the traffic: 5 "
                                     "passing analyses reached maxWeight",
                          "argo": "argo's AnalysisRun is Successful on the few requests it saw",
                          "kayenta": "kayenta scores the few windows it has: score 100"}),
    CanaryScenario("prometheus-stopped", None, frozenset(NOT_PROMOTE), during="stop-prometheus", nightly=True),
    CanaryScenario("canary-killed", None, frozenset({Decision.ROLLBACK}), during="kill-canary", nightly=True,
             known_wrong={"seed": "the seed reads a query with no data as 0 and pools revisions: a dead canary "
                                  "looks healthy"},
             sometimes_wrong={"kayenta": "kayenta judges the windows the canary served before it died (3 of them "
                                         "in the 2026-12-02 CI run, score 100): its dead windows are no data, not "
                                         "errors"}),
    CanaryScenario("errors-10pct", FaultSpec.error(0.10), frozenset({Decision.ROLLBACK}), nightly=True),
    CanaryScenario("labels-flipped", FaultSpec.wrong(LABEL_FLIPS), frozenset({Decision.ROLLBACK}),
                   known_wrong={j: BLIND.format(judge=j) for j in JUDGES if j not in ("sequential", "kayenta")},
                   sometimes_wrong={"kayenta": BLIND.format(judge="kayenta") + "; it may still roll back, for the "
                                               "wrong reason: " + HOT_REPLICA}),
    # Its stable answers probabilities too (the baseline, rolled out first): the probes compare
    # numbers within CONFIG.probe_tolerance, and a shift under it is the same model to a client.
    CanaryScenario("probabilities-shifted", FaultSpec.proba(SHIFT), frozenset({Decision.PROMOTE}),
                   baseline=FaultSpec.proba(), nightly=True, sometimes_wrong={"kayenta": HOT_REPLICA}),
]
BY_NAME = {s.name: s for s in SCENARIOS}


def _judge_cases():
    for scenario in SCENARIOS:
        for judge in JUDGES:
            marks = _marks(scenario)
            if judge in scenario.known_wrong:
                marks.append(pytest.mark.xfail(strict=True, reason=scenario.known_wrong[judge]))
            elif judge in scenario.sometimes_wrong:
                marks.append(pytest.mark.xfail(strict=False, reason=scenario.sometimes_wrong[judge]))
            yield pytest.param(scenario, judge, id=f"{scenario.name}-{judge}", marks=marks)


@pytest.mark.parametrize(("scenario", "judge"), list(_judge_cases()))
def test_judge_decides_right(runner, scenario: CanaryScenario, judge: str, seam) -> None:
    outcome = runner.run(scenario)
    verdict = outcome.verdicts[judge]
    with seam.check("judge-decides", case=f"{scenario.name}-{judge}", description=
                    f"the {judge} judge decides {'/'.join(sorted(d.value for d in scenario.expect))}",
                    known_wrong=scenario.wrong_reason(judge)) as ev:
        ev.update(decision=verdict.decision.value, seconds_to_decision=outcome.decided_at[judge],
                  reasons=verdict.reasons[:3], canary=outcome.canary, stable=outcome.stable,
                  load=outcome.load_totals, readings_tail=outcome.readings[-3:])
        assert verdict.decision in scenario.expect, verdict.reasons[:2]


@pytest.mark.parametrize("scenario", [pytest.param(s, id=s.name, marks=_marks(s))
                                      for s in SCENARIOS if Decision.PROMOTE not in s.expect])
def test_rollback_restores_stable(runner, scenario: CanaryScenario, seam) -> None:
    outcome = runner.run(scenario)
    with seam.check("rollback-settles", "after the rollback: 100% of traffic on stable and a load window with "
                                        "zero 5xx", case=scenario.name) as ev:
        ev.update(action=outcome.action, split_after=outcome.split_after, post_window=outcome.post_window)
        assert outcome.action == "rollback"
        assert outcome.split_after.get(outcome.stable) == 100, outcome.split_after
        assert outcome.post_window["requests"] > 0, "no load measured after the rollback"
        assert outcome.post_window["failures_5xx"] == 0, outcome.post_window


@pytest.mark.parametrize("scenario", [pytest.param(s, id=s.name, marks=_marks(s))
                                      for s in SCENARIOS if s.expect == {Decision.PROMOTE}])
def test_healthy_canary_is_promoted(runner, scenario: CanaryScenario, seam) -> None:
    outcome = runner.run(scenario)
    with seam.check("promotion", "the acting judge promotes a healthy canary: 100% on it", case=scenario.name) as ev:
        ev.update(action=outcome.action, split_after=outcome.split_after, post_window=outcome.post_window,
                  probes=outcome.probes)
        assert outcome.action == "promote"
        assert outcome.split_after == {outcome.canary: 100}
        assert outcome.post_window["failures_5xx"] == 0


def _probes_found(scenario: CanaryScenario, tally: dict) -> None:
    """What the probes must have measured of each probed scenario's canary, from its model alone."""
    rows, differ = tally["rows"], tally["disagreements"]
    if scenario.name == "labels-flipped":  # each label flipped with probability LABEL_FLIPS
        assert tally["output"] == "label" and differ > 0, tally
        assert tally["canary_correct"] < tally["stable_correct"], tally
    elif scenario.name == "probabilities-shifted":  # every probability moved by SHIFT at most (clipped)
        assert tally["output"] == "value" and differ == 0, tally
        assert tally["max_abs_diff"] <= SHIFT + 1e-9 and tally["max_abs_diff"] >= SHIFT / 2, tally
    else:  # a copy of the stable's model: the same answer on every row
        assert tally["output"] == "label" and differ == 0, tally
    assert rows >= 50, f"the probes compared only {rows} rows"


@pytest.mark.parametrize("scenario", [pytest.param(s, id=s.name, marks=_marks(s)) for s in SCENARIOS
                                      if s.probes and not s.during])  # a fault stops what the probes reach
def test_probes_compare_canary_and_stable(runner, scenario: CanaryScenario, seam) -> None:
    """The correctness probes reached each revision through its own tagged route (the local router
    names the replica that answered) and found what the canary's model does to its answers."""
    outcome = runner.run(scenario)
    tally, cost = outcome.probes["tally"], outcome.probes["cost"]
    with seam.check("correctness-probes", f"{CONFIG.probe_disagreement_ok:g}/{CONFIG.probe_disagreement_bad:g} "
                    "disagreement SPRT fed by held-out rows sent to both revisions through their tagged routes",
                    case=scenario.name) as ev:
        ev.update(tally=tally, cost=cost, canary=outcome.canary, stable=outcome.stable)
        assert cost["rounds"] > 0, cost
        if scenario.fault is None or scenario.fault.kind != "error":  # an error canary fails probes at its rate
            assert cost["failed"] <= CONFIG.probe_max_failed_share * cost["rounds"], cost
        if runner.stack.name == "local":  # the served-by header: which revision each tag reached
            assert set(cost["canary"]["served_by"]) == {outcome.canary}, cost
            assert set(cost["stable"]["served_by"]) == {outcome.stable}, cost
        _probes_found(scenario, tally)


SCRAPE_INTERVAL_S = CADENCE.scrape_s  # every profile's Prometheus scrape interval


def _slack(peak_per_s: int) -> float:
    """What increase() may add or miss: about one scrape interval of traffic at each end of a
    series inside the window (Prometheus extrapolates from the samples it has to the window's
    edges, or to where the counter would have been 0), plus a request or two of rounding."""
    return 2 * SCRAPE_INTERVAL_S * peak_per_s + 3


@pytest.mark.parametrize("scenario", [pytest.param(s, id=s.name, marks=_marks(s)) for s in SCENARIOS
                                      if not s.during])  # faults restart Prometheus or replicas mid-load
def test_dialect_queries_match_the_load(runner, scenario: CanaryScenario, seam) -> None:
    """The local dialect's queries (what the judges read), run against the live Prometheus over the
    whole load, give each revision's requests, 5xx and slow requests as Locust recorded them
    through the router: canary and stable apart, nothing pooled, nothing lost."""
    if runner.stack.name != "local":
        pytest.skip("Locust's per-revision counts come from the local router's served-by header; on a cluster "
                    "the judgement scenarios read the split per revision from Prometheus instead")
    outcome = runner.run(scenario)
    counts = outcome.metric_counts
    with seam.check("dialect-counts", "the dialect's request, 5xx and slow-request counts per revision match "
                                      "Locust's over the whole load", case=scenario.name) as ev:
        ev.update(counts)
        for revision in (outcome.canary, outcome.stable):
            prom, locust = counts["revisions"][revision]["prometheus"], counts["revisions"][revision]["locust"]
            probes = counts["revisions"][revision]["probes"]  # the probes' requests: the same metrics count them
            slack = _slack(locust["peak_per_s"] + 1)  # + the probes' one request a second
            assert prom["requests"] is not None and locust["requests"] > 0, (revision, prom, locust)
            assert abs(prom["requests"] - locust["requests"] - probes["requests"]) <= slack, (
                revision, slack, prom, locust, probes)
            # the 5xx series exists only after the first 5xx: no series is 0 here, as for the judges
            assert abs((prom["errors"] or 0.0) - locust["errors"] - probes["errors"]) <= _slack(
                locust["errors_peak_per_s"] + bool(probes["errors"])), (revision, prom, locust, probes)
            # the server's time is part of the client's: what it saw as slow, Locust saw as slow
            assert prom["slow"] is not None, (revision, prom)
            assert prom["slow"] <= locust["slow"] + probes["slow"] + _slack(
                locust["slow_peak_per_s"] + bool(probes["slow"])), (revision, prom, locust, probes)
        if scenario.fault is not None and scenario.fault.kind == "error":  # the 5xx are the canary's alone
            canary, stable = (counts["revisions"][r] for r in (outcome.canary, outcome.stable))
            assert canary["locust"]["errors"] > 0 and (stable["prometheus"]["errors"] or 0.0) == 0, counts
        if scenario.fault is not None and scenario.fault.kind == "tail_latency":
            canary = counts["revisions"][outcome.canary]
            assert canary["prometheus"]["slow"] >= 0.5 * canary["locust"]["slow"] > 0, canary


# -- the dashboard's alert rules, live ------------------------------------------------------------
# The local Prometheus evaluates the dashboard's rules (harness/metrics/rules/local.rules.yml: 10 s
# windows, held 2 s) and the session's alert log, started before the first judgement (conftest.py),
# records /api/v1/alerts every second. These tests come last in the module: they read outcomes the
# tests above played (runner.run returns a played scenario's outcome, never plays it again), so the
# scenarios play in the judgement tests' order. An alert the canary's model fault causes must fire
# within ALERT_LAG_S (the rules' window and hold, and three scrapes) of the canary's first answered
# request; a healthy judgement must raise nothing for its service, nor ALERT_LAG_S after it.


def _alerts_in_reach(runner) -> None:
    if runner.stack.name != "local":
        pytest.skip("the dashboard's rules at harness scale are loaded by the local profile's Prometheus "
                    "(harness/metrics/rules/local.rules.yml); a cluster's Prometheus loads them only where its "
                    "user applies the PrometheusRule, at seed scale")


def _alert_evidence(outcome: ScenarioOutcome, window: tuple[float, float], found: list[dict[str, Any]],
                    alert_log: AlertLog) -> dict[str, Any]:
    """What the check saw, in seconds after the judgement's start (the readings' clock)."""
    t0 = outcome.judged_from
    first = outcome.canary_traffic_from
    return {"service": outcome.service, "canary": outcome.canary, "stable": outcome.stable,
            "judged_from": t0, "judgement_s": round(outcome.judged_to - t0, 1),
            "canary_traffic_from_s": round(first - t0, 1) if first is not None else None,
            "window_s": [round(w - t0, 1) for w in window], "alerts": relative_to(found, t0),
            "log": alert_log.polls_between(*window), "log_session": alert_log.health()}


def _firing_check(runner, alert_log: AlertLog, scenario: CanaryScenario, seam, *, alertname: str, case: str,
                  description: str, labels: dict[str, str],
                  also: Callable[[ScenarioOutcome, tuple[float, float], dict[str, Any]], None] | None = None) -> None:
    """``alertname`` (mlserver dialect, the scenario's service, ``labels``) fires in the scenario's
    firing window, first by fire_by; ``also``: further assertions inside the same check."""
    outcome = runner.run(scenario)
    assert outcome.judged_from is not None and outcome.judged_to is not None, "no judgement on the epoch clock"
    window, deadline = firing_window(outcome), fire_by(outcome)
    found = alert_log.seen(start=window[0], end=window[1], alertname=alertname,
                           labels={"isvc": outcome.service, "dialect": "mlserver", **labels})
    with seam.check("dashboard-alert", description, case=case) as ev:
        ev.update(_alert_evidence(outcome, window, found, alert_log), alertname=alertname,
                  fire_by_s=round(deadline - outcome.judged_from, 1), lag_s=ALERT_LAG_S)
        firing = [a for a in found if a["state"] == "firing"]
        assert firing, (f"no {alertname} firing for {labels or outcome.service} between "
                        f"{ev['window_s'][0]} s and {ev['window_s'][1]} s of the judgement: {ev['alerts']}; "
                        f"log {ev['log']}")
        first = min(a["from"] for a in firing)
        ev["fired_at_s"] = round(first - outcome.judged_from, 1)
        assert first <= deadline, (f"{alertname} fired {ev['fired_at_s']} s into the judgement, after "
                                   f"{ev['fire_by_s']} s ({ALERT_LAG_S:g} s after the canary's first request)")
        if also is not None:
            also(outcome, window, ev)


ERRORS, TAIL, HEALTHY = BY_NAME["errors-10pct"], BY_NAME["tail-latency"], BY_NAME["healthy"]


@pytest.mark.parametrize("scenario", [pytest.param(ERRORS, id=ERRORS.name, marks=_marks(ERRORS))])
def test_canary_error_alert_fires_for_the_canary(runner, alert_log, scenario: CanaryScenario, seam) -> None:
    """A canary failing 10% of its requests beside a clean stable: the canary-vs-stable rule, in
    the model servers' dialect, names the canary revision (and never the stable)."""
    _alerts_in_reach(runner)
    outcome = runner.run(scenario)

    def never_the_stable(outcome: ScenarioOutcome, window: tuple[float, float], ev: dict[str, Any]) -> None:
        stable = alert_log.seen(start=window[0], end=window[1], alertname="SeamcheckCanaryErrorAboveStable",
                                labels={"isvc": outcome.service, "revision": outcome.stable})
        ev["alerts_for_stable"] = relative_to(stable, outcome.judged_from)
        assert stable == [], f"the stable revision {outcome.stable} flagged worse than the best revision: {stable}"

    _firing_check(runner, alert_log, scenario, seam, alertname="SeamcheckCanaryErrorAboveStable",
                  case="errors-10pct-canary-error", labels={"revision": outcome.canary}, also=never_the_stable,
                  description="SeamcheckCanaryErrorAboveStable fires for the canary revision (mlserver dialect) "
                              "while a canary failing 10% of its requests is judged")


@pytest.mark.parametrize("scenario", [pytest.param(TAIL, id=TAIL.name, marks=_marks(TAIL))])
def test_latency_alert_fires_for_the_service(runner, alert_log, scenario: CanaryScenario, seam) -> None:
    """5% of the canary's requests at +1 s, the canary at 80%: about 4% of the service's requests
    take over a second, so its p99 is over the dashboard's 500 ms."""
    _alerts_in_reach(runner)
    _firing_check(runner, alert_log, scenario, seam, alertname="SeamcheckServingLatencyP99", case="tail-latency-p99",
                  labels={}, description="SeamcheckServingLatencyP99 fires for the service while a canary with a "
                                         "slow 5% tail is judged")


@pytest.mark.parametrize("scenario", [pytest.param(HEALTHY, id=HEALTHY.name, marks=_marks(HEALTHY))])
def test_no_alert_while_a_healthy_canary_is_judged(runner, alert_log, scenario: CanaryScenario, seam) -> None:
    """The healthy canary's judgement, and the rules' lag after it: no alert fires for the service,
    while the log was answered throughout, the rules are loaded and healthy, and the readings (the
    same model-server series the rules read) carried traffic above the rules' minimum."""
    _alerts_in_reach(runner)
    outcome = runner.run(scenario)
    assert outcome.judged_from is not None and outcome.judged_to is not None, "no judgement on the epoch clock"
    window = quiet_window(outcome)
    found = alert_log.seen(start=window[0], end=window[1], labels={"isvc": outcome.service})
    groups = requests.get(f"{runner.stack.prometheus_url}/api/v1/rules", timeout=10).json()["data"]["groups"]
    loaded = {g["name"]: [(r["name"], r["health"]) for r in g["rules"]] for g in groups}
    peak_rps = max((((r["canary"].get("window_requests") or 0.0) + (r["stable"].get("window_requests") or 0.0))
                    / INTERVAL_S for r in outcome.readings if r["source_ok"]), default=0.0)
    with seam.check("dashboard-alert", "no dashboard alert fires for the service while a healthy canary is judged",
                    case="healthy-quiet") as ev:
        ev.update(_alert_evidence(outcome, window, found, alert_log), rules=loaded, peak_rps=round(peak_rps, 1))
        log = ev["log"]
        assert {f"seamcheck-dashboard-{d}" for d in LOCAL_GROUPS} <= set(loaded), loaded
        assert all(health == "ok" for rules in loaded.values() for _n, health in rules), loaded
        assert peak_rps > MIN_RPS, f"the rules would have seen no traffic: {peak_rps} req/s"
        assert log["polls"] >= log["seconds"] / (2 * alert_log.interval_s) and log["longest_gap_s"] <= 5, (
            f"the alert log did not watch the window: {log}")
        firing = [a for a in ev["alerts"] if a["state"] == "firing"]
        assert firing == [], firing
