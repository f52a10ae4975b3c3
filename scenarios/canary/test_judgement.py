"""Canary judgement under real Locust load, for every shipped judge (and a user's, with --judge).

Each scenario deploys a real canary revision (a registered MLflow model, faulty or not) at
CANARY_PERCENT of the traffic, drives Locust through the router, and feeds the same Prometheus
readings to every judge. The rollout follows the acting judge (the sequential one); every judge is
graded on its own decision. After every rollback: 100% of traffic on stable, and a load window
afterwards with zero 5xx. The judge-conformance table goes into the run's report.

The scenarios are played by the session's runner (harness/canary/scenarios.py, started in
conftest.py): each test names its scenario with a ``canary_scenario`` mark, and the runner plays
the session's scenarios in the order their tests run, deploying each canary ahead.
"""
from __future__ import annotations

import pytest

from harness.canary.scenarios import CanaryScenario
from harness.faults.models import FaultSpec
from harness.judges.base import Decision
from harness.metrics.cadence import CADENCE

pytestmark = [pytest.mark.canary, pytest.mark.stack]

NOT_PROMOTE = {Decision.ROLLBACK, Decision.INCONCLUSIVE}


def _marks(scenario: CanaryScenario) -> list:
    return [pytest.mark.canary_scenario(scenario)] + ([pytest.mark.slow] if scenario.nightly else [])


# Each scenario costs about a minute of judgement; CI (under 25 minutes on two cores) runs the
# promotion, the error rollback and the dead canary (the seed's blind spot); the latency, traffic
# and Prometheus scenarios run nightly and in every `pytest -m canary`. errors-10pct is judged in
# seconds, so it goes last: the canary after it would not have finished deploying. Too little
# traffic (1 req/s) is judged beside the others, on a service of its own.
SCENARIOS = [
    CanaryScenario("healthy", None, frozenset({Decision.PROMOTE})),
    CanaryScenario("tail-latency", FaultSpec.tail_latency(0.05, 1.0), frozenset({Decision.ROLLBACK}), nightly=True),
    CanaryScenario("too-little-traffic", None, frozenset({Decision.INCONCLUSIVE}), rps=1.0, nightly=True, beside=True,
             known_wrong={"seed": "the seed keeps insufficient-traffic checks in the denominator, so a canary "
                                  "nobody measured is rolled back instead of reported inconclusive"}),
    CanaryScenario("prometheus-stopped", None, frozenset(NOT_PROMOTE), during="stop-prometheus", nightly=True),
    CanaryScenario("canary-killed", None, frozenset({Decision.ROLLBACK}), during="kill-canary",
             known_wrong={"seed": "the seed reads a query with no data as 0 and pools revisions: a dead canary "
                                  "looks healthy"}),
    CanaryScenario("errors-10pct", FaultSpec.error(0.10), frozenset({Decision.ROLLBACK})),
]


def _judge_cases():
    for scenario in SCENARIOS:
        for judge in ("seed", "sequential"):
            marks = _marks(scenario)
            if judge in scenario.known_wrong:
                marks.append(pytest.mark.xfail(strict=True, reason=scenario.known_wrong[judge]))
            yield pytest.param(scenario, judge, id=f"{scenario.name}-{judge}", marks=marks)


@pytest.mark.parametrize(("scenario", "judge"), list(_judge_cases()))
def test_judge_decides_right(runner, scenario: CanaryScenario, judge: str, seam) -> None:
    outcome = runner.run(scenario)
    verdict = outcome.verdicts[judge]
    with seam.check("judge-decides", case=f"{scenario.name}-{judge}", description=
                    f"the {judge} judge decides {'/'.join(sorted(d.value for d in scenario.expect))}",
                    known_wrong=scenario.known_wrong.get(judge, "")) as ev:
        ev.update(decision=verdict.decision.value, seconds_to_decision=outcome.decided_at[judge],
                  reasons=verdict.reasons[:3], canary=outcome.canary, stable=outcome.stable,
                  load=outcome.load_totals, readings_tail=outcome.readings[-3:])
        assert verdict.decision in scenario.expect, verdict.reasons[:2]


@pytest.mark.parametrize("scenario", [pytest.param(s, id=s.name, marks=_marks(s))
                                      for s in SCENARIOS if s.name != "healthy"])
def test_rollback_restores_stable(runner, scenario: CanaryScenario, seam) -> None:
    outcome = runner.run(scenario)
    with seam.check("rollback-settles", "after the rollback: 100% of traffic on stable and a load window with "
                                        "zero 5xx", case=scenario.name) as ev:
        ev.update(action=outcome.action, split_after=outcome.split_after, post_window=outcome.post_window)
        assert outcome.action == "rollback"
        assert outcome.split_after.get(outcome.stable) == 100, outcome.split_after
        assert outcome.post_window["requests"] > 0, "no load measured after the rollback"
        assert outcome.post_window["failures_5xx"] == 0, outcome.post_window


@pytest.mark.canary_scenario(SCENARIOS[0])
def test_healthy_canary_is_promoted(runner, seam) -> None:
    outcome = runner.run(SCENARIOS[0])
    with seam.check("promotion", "the acting judge promotes a healthy canary: 100% on it", case="healthy") as ev:
        ev.update(action=outcome.action, split_after=outcome.split_after, post_window=outcome.post_window)
        assert outcome.action == "promote"
        assert outcome.split_after == {outcome.canary: 100}
        assert outcome.post_window["failures_5xx"] == 0


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
            slack = _slack(locust["peak_per_s"])
            assert prom["requests"] is not None and locust["requests"] > 0, (revision, prom, locust)
            assert abs(prom["requests"] - locust["requests"]) <= slack, (revision, slack, prom, locust)
            # the 5xx series exists only after the first 5xx: no series is 0 here, as for the judges
            assert abs((prom["errors"] or 0.0) - locust["errors"]) <= _slack(locust["errors_peak_per_s"]), (
                revision, prom, locust)
            # the server's time is part of the client's: what it saw as slow, Locust saw as slow
            assert prom["slow"] is not None, (revision, prom)
            assert prom["slow"] <= locust["slow"] + _slack(locust["slow_peak_per_s"]), (revision, prom, locust)
        if scenario.fault is not None and scenario.fault.kind == "error":  # the 5xx are the canary's alone
            canary, stable = (counts["revisions"][r] for r in (outcome.canary, outcome.stable))
            assert canary["locust"]["errors"] > 0 and (stable["prometheus"]["errors"] or 0.0) == 0, counts
        if scenario.fault is not None and scenario.fault.kind == "tail_latency":
            canary = counts["revisions"][outcome.canary]
            assert canary["prometheus"]["slow"] >= 0.5 * canary["locust"]["slow"] > 0, canary
