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


def test_a_scenario_with_a_baseline_runs_last_on_its_service() -> None:
    """Its service then serves the baseline (probabilities, say): a later canary there without one
    would be compared with that, not with the trained model's lineage."""
    proba = CanaryScenario("proba", None, frozenset(), baseline="a probability model")
    assert ScenarioPlan((HEALTHY, ERRORS, proba), ("a", "b")).service_for(proba) == "a"
    ScenarioPlan((proba, ERRORS), ("a", "b"))  # ERRORS runs on the other service
    with pytest.raises(ValueError, match="'killed' follows 'proba' on service a, which then serves 'proba'"):
        ScenarioPlan((proba, ERRORS, KILLED), ("a", "b"))
    again = CanaryScenario("proba-again", None, frozenset(), baseline="a probability model")
    ScenarioPlan((proba, ERRORS, again), ("a", "b"))  # rolls its own baseline out first
    assert HEALTHY.probes and HEALTHY.baseline is None
