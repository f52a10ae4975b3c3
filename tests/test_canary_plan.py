"""The canary session's plan (harness/canary/plan.py), without a stack: services alternate, the
next canary is deployed only on the other service, beside scenarios get their own, and a scenario
that stops Prometheus waits for them."""
from __future__ import annotations

import pytest

from harness.canary.plan import CanaryScenario, During, ScenarioPlan

HEALTHY = CanaryScenario("healthy", None, frozenset())
ERRORS = CanaryScenario("errors", None, frozenset())
KILLED = CanaryScenario("killed", None, frozenset(), during="kill-canary")
STOPPED = CanaryScenario("stopped", None, frozenset(), during=During.STOP_PROMETHEUS)
LIGHT = CanaryScenario("light", None, frozenset(), rps=1.0, beside=True)


def test_main_scenarios_alternate_between_the_main_services() -> None:
    plan = ScenarioPlan((HEALTHY, LIGHT, ERRORS, KILLED), ("a", "b"), "side")
    assert [plan.service_for(s) for s in (HEALTHY, ERRORS, KILLED)] == ["a", "b", "a"]
    assert plan.service_for(LIGHT) == "side"
    assert plan.main == (HEALTHY, ERRORS, KILLED) and plan.beside == (LIGHT,)


def test_the_next_canary_is_prepared_and_deployed_ahead_on_the_other_service_only() -> None:
    plan = ScenarioPlan((HEALTHY, ERRORS, KILLED), ("a", "b"))
    assert plan.following(HEALTHY) is ERRORS and plan.deploy_during(HEALTHY) is ERRORS
    assert plan.following(KILLED) is None and plan.deploy_during(KILLED) is None
    one = ScenarioPlan((HEALTHY, ERRORS), ("a",))  # one service: never a new canary under a judgement
    assert one.following(HEALTHY) is ERRORS and one.deploy_during(HEALTHY) is None


def test_what_starts_at_once() -> None:
    plan = ScenarioPlan((LIGHT, HEALTHY, ERRORS), ("a", "b"), "side")
    assert plan.deploy_at_start() == (HEALTHY, LIGHT)
    assert ScenarioPlan((), ()).deploy_at_start() == ()


def test_an_unplanned_scenario_takes_the_first_main_service_and_prepares_nothing() -> None:
    plan = ScenarioPlan((HEALTHY,), ("a", "b"))
    assert plan.service_for(ERRORS) == "a" and plan.following(ERRORS) is None and plan.deploy_during(ERRORS) is None


def test_a_scenario_that_stops_prometheus_waits_for_the_beside_ones() -> None:
    plan = ScenarioPlan((STOPPED, LIGHT), ("a",), "side")
    assert plan.waits_for_beside(STOPPED) and not plan.waits_for_beside(HEALTHY)
    assert STOPPED.during == "stop-prometheus" and KILLED.during is During.KILL_CANARY


@pytest.mark.parametrize(("scenarios", "main", "beside", "message"), [
    ((LIGHT,), ("a",), None, "beside scenarios but no beside service"),
    ((HEALTHY,), (), None, "main scenarios but no main service"),
    ((HEALTHY, HEALTHY), ("a",), None, "planned twice"),
])
def test_a_plan_that_cannot_run_is_refused_when_made(scenarios, main, beside, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ScenarioPlan(scenarios, main, beside)


def test_an_unknown_fault_during_judgement_is_refused() -> None:
    with pytest.raises(ValueError, match="'stop-mlflow' is not a valid During"):
        CanaryScenario("x", None, frozenset(), during="stop-mlflow")
