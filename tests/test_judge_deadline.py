"""The sequential judge's deadline: an undecided test has not shown the canary bad, so the terminal
rule is inconclusive and a rollout policy turns that into an action; at the canary suite's
recommended setting (70 req/s, 80 % canary, 3 s checks, 75 s deadline) a healthy canary is promoted
and a 5x one rolled back in at least 90 % of simulated runs, while the promotion mixture keeps a 2x
canary's promotions under beta."""
from __future__ import annotations

import dataclasses

import pytest

from harness.judges.base import Decision, JudgeConfig, Reading, RevisionReading, RoutedWindow, Verdict
from harness.judges.policy import Action, DeadlinePolicy
from harness.judges.sequential import SequentialJudge
from harness.judges.simulate import Scenario, simulate_many

SUITE = JudgeConfig(interval_s=3.0, observation_s=75.0)
SUITE_CANARY = Scenario(rate_rps=70.0, canary_percent=80.0, stable_error_rate=0.005, canary_error_rate=0.005)


def _share(sc: Scenario, cfg: JudgeConfig, decision: Decision, runs: int, seed: int) -> float:
    out = simulate_many({"sequential": SequentialJudge(cfg)}, sc, cfg, runs=runs, seed=seed)["sequential"]
    return sum(o.decision is decision for o in out) / runs


def test_at_the_suites_setting_healthy_is_promoted_and_5x_rolled_back_nine_times_in_ten() -> None:
    assert _share(SUITE_CANARY, SUITE, Decision.PROMOTE, runs=300, seed=41) >= 0.9
    five = dataclasses.replace(SUITE_CANARY, canary_error_rate=0.025)
    assert _share(five, SUITE, Decision.ROLLBACK, runs=300, seed=42) >= 0.9


def test_an_undecided_healthy_canary_is_never_rolled_back_at_the_deadline() -> None:
    """2 req/s, 20 % canary, 900 s: far too little traffic to promote; no run ends in a rollback it did
    not earn on evidence, and the old rule rolled nearly all of them back."""
    trickle = dataclasses.replace(SUITE_CANARY, rate_rps=2.0, canary_percent=20.0)
    cfg = JudgeConfig()
    out = simulate_many({"new": SequentialJudge(cfg),
                         "old": SequentialJudge(dataclasses.replace(cfg, deadline_decision="rollback"))},
                        trickle, cfg, runs=200, seed=43)
    at_deadline = [o for o in out["new"] if o.time_to_decision_s == cfg.observation_s]
    assert at_deadline and all(o.decision is Decision.INCONCLUSIVE for o in at_deadline)
    assert "not shown bad" in at_deadline[0].verdict.reasons[0]
    assert sum(o.decision is Decision.ROLLBACK for o in out["old"]) > 0.9 * 200


def test_the_promotion_mixture_keeps_a_2x_canary_under_beta_where_both_tests_sit_on_their_boundary() -> None:
    # stable exactly at the floor: the relative and the floor SPRTs both have the 2x canary at their H1
    at_floor = Scenario(rate_rps=50.0, canary_percent=20.0, stable_error_rate=0.005, canary_error_rate=0.01)
    assert _share(at_floor, JudgeConfig(), Decision.PROMOTE, runs=400, seed=44) <= JudgeConfig().beta


def test_a_canary_dead_from_its_first_request_is_rolled_back_on_the_routers_counts() -> None:
    judge = SequentialJudge(SUITE)
    stable = RevisionReading(40.0, 0.0, 0.05, 40.0, 0.0)
    verdicts = []
    for k in range(1, 4):  # the router sent the canary its share and got nothing back
        routed = {"canary": RoutedWindow(160.0, 0.0), "stable": RoutedWindow(40.0, 40.0)}
        verdicts.append(judge.observe(Reading(3.0 * k, RevisionReading(None, None, None, None, None),
                                              dataclasses.replace(stable, requests=40.0 * k), True, routed=routed)))
    assert [v.decision for v in verdicts] == [Decision.CONTINUE, Decision.CONTINUE, Decision.ROLLBACK]
    assert "got 0 answers back" in verdicts[-1].reasons[0]


def test_policy_maps_inconclusive_to_rollback_by_default_and_extends_when_asked() -> None:
    inconclusive = Verdict(Decision.INCONCLUSIVE, ["deadline"], 75.0)
    assert DeadlinePolicy().action(inconclusive) is Action.ROLLBACK
    assert DeadlinePolicy().action(Verdict(Decision.PROMOTE, [], 30.0)) is Action.PROMOTE
    extend = DeadlinePolicy(on_inconclusive=Action.HOLD, max_extensions=1)
    assert [extend.action(inconclusive, done) for done in (0, 1)] == [Action.EXTEND, Action.HOLD]
    with pytest.raises(ValueError, match="continue is not final"):
        DeadlinePolicy().action(Verdict(Decision.CONTINUE, [], 3.0))
    with pytest.raises(ValueError, match="on_inconclusive=Action.EXTEND"):
        DeadlinePolicy(on_inconclusive=Action.EXTEND)
