"""The peer judges, ported from the tools users run, checked against their projects' documented
examples and their code's edge cases: Flagger's example analysis (threshold 5, maxWeight 50,
stepWeight 10), Argo Rollouts' success-rate AnalysisTemplate (failureLimit 3) and Kayenta's
NetflixACAJudge classifier on crafted samples."""
from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
from scipy import stats

from harness.judges.argo import ArgoConfig, ArgoJudge, ArgoMetric, Condition, evaluate
from harness.judges.base import NO_DATA, Decision, JudgeConfig, Reading, RevisionReading
from harness.judges.external import load_judge
from harness.judges.flagger import FlaggerConfig, FlaggerJudge
from harness.judges.kayenta import (
    HIGH,
    LOW,
    NODATA,
    PASS,
    KayentaConfig,
    KayentaJudge,
    KayentaMetric,
    _u_statistic,
    classify,
    mann_whitney,
    score,
)

MINUTE = JudgeConfig()  # 60 s checks, 900 s deadline: the docs' 1m interval as is


def canary_reading(t: float, n: float | None, e: float | None, p99: float | None = 0.1, *, wn: float | None = None,
                   we: float | None = None, ok: bool = True, stable_n: float = 1000.0) -> Reading:
    canary = RevisionReading(requests=n, errors=e, p99_s=p99, window_requests=wn, window_errors=we)
    stable = RevisionReading(requests=stable_n, errors=0.0, p99_s=0.1, window_requests=100.0, window_errors=0.0)
    if not ok:
        return Reading(t, NO_DATA, NO_DATA, source_ok=False, source_error="connection refused")
    return Reading(t, canary, stable, source_ok=True)


def cumulative(per_tick: list[tuple[float, float]], interval: float = 60.0, p99: float = 0.1) -> list[Reading]:
    """Readings whose canary serves `requests, errors` in each tick."""
    out, n, e = [], 0.0, 0.0
    for k, (dn, de) in enumerate(per_tick, start=1):
        n, e = n + dn, e + de
        out.append(canary_reading(k * interval, n, e, p99, wn=dn, we=de))
    return out


def decisions(judge, readings: list[Reading]) -> list[Decision]:
    judge.reset()
    return [judge.observe(r).decision for r in readings]


# -- Flagger ------------------------------------------------------------------------------------


def test_flagger_docs_example_promotes_after_five_passing_analyses() -> None:
    judge = load_judge("flagger", MINUTE)
    assert isinstance(judge, FlaggerJudge) and judge.flagger.passes_to_promote == 5  # maxWeight 50 / stepWeight 10
    d = decisions(judge, cumulative([(1000, 2)] * 6))  # 99.8 % success, p99 100 ms
    assert d[:5] == [Decision.CONTINUE] * 4 + [Decision.PROMOTE]
    judge.reset()
    verdicts = [judge.observe(r) for r in cumulative([(1000, 2)] * 5)]
    assert "5 passing analyses reached maxWeight" in verdicts[-1].reasons[0]


def test_flagger_rolls_back_at_the_tick_after_the_threshold_th_failure() -> None:
    """docs: interval * threshold (300 s); scheduler.go checks FailedChecks >= threshold at the start of
    the next tick, before analysing it: 360 s."""
    judge = FlaggerJudge(MINUTE)
    verdicts = [judge.observe(r) for r in cumulative([(1000, 50)] * 6)]  # 95 % success rate
    assert [v.decision for v in verdicts] == [Decision.CONTINUE] * 5 + [Decision.ROLLBACK]
    assert "Halt advancement success rate 95.00% < 99%" in verdicts[0].reasons[0]
    assert verdicts[-1].at_s == 360 and "failed checks threshold reached 5" in verdicts[-1].reasons[0]


def test_flagger_halts_advancement_on_a_failed_check_and_never_resets_the_counter() -> None:
    ticks = [(1000, 0)] * 4 + [(1000, 30)] + [(1000, 0)]
    assert decisions(FlaggerJudge(MINUTE), cumulative(ticks))[-1] is Decision.PROMOTE  # the 6th tick: 5th pass
    judge = FlaggerJudge(MINUTE)
    decisions(judge, cumulative([(1000, 30), (1000, 0)] * 2))
    assert judge._details()["failed_checks"] == 2  # passes in between do not reset it


def test_flagger_counts_no_data_and_an_unreachable_prometheus_as_failed_checks() -> None:
    judge = FlaggerJudge(MINUTE)
    no_series = judge.observe(canary_reading(60, None, None, None))
    assert "no values found (no canary request series)" in no_series.reasons[0]
    idle = judge.observe(canary_reading(120, 0.0, 0.0, None))  # a series, but 0/0 over the tick: NaN
    assert "0/0 over the tick: NaN" in idle.reasons[0]
    down = judge.observe(canary_reading(180, None, None, ok=False))
    assert "Prometheus query failed: connection refused" in down.reasons[0]
    assert judge._details()["failed_checks"] == 3


def test_flagger_reads_p99_in_whole_milliseconds_and_floors_the_interval_at_ten_seconds() -> None:
    assert decisions(FlaggerJudge(MINUTE), cumulative([(1000, 0)], p99=0.5009)) == [Decision.CONTINUE]
    judge = FlaggerJudge(MINUTE)
    judge.observe(cumulative([(1000, 0)], p99=0.5011)[0])
    assert judge._details()["failed_checks"] == 1
    fast = JudgeConfig(interval_s=3.0, observation_s=45.0)
    judge = FlaggerJudge(fast)
    reasons = [judge.observe(r).reasons[0] for r in cumulative([(100, 0)] * 8, interval=3.0)]
    assert [i for i, r in enumerate(reasons) if "between Flagger ticks" not in r] == [3, 7]  # ticks at 12 s, 24 s


def test_flagger_has_no_deadline_and_maps_iterations() -> None:
    judge = FlaggerJudge(MINUTE)
    decisions(judge, cumulative([(1000, 0)] * 2))
    final = judge.finish(None)
    assert final.decision is Decision.INCONCLUSIVE and "2/5 analyses passed" in final.reasons[0]
    assert FlaggerConfig(iterations=10).passes_to_promote == 11
    assert FlaggerConfig(step_weights=(1, 5, 10, 50)).passes_to_promote == 4
    with pytest.raises(ValueError, match="need 0 < step_weight <= max_weight"):
        FlaggerConfig(step_weight=0)


# -- Argo Rollouts ------------------------------------------------------------------------------


def test_argo_docs_template_fails_on_the_fourth_failed_measurement() -> None:
    """successCondition result[0] >= 0.95, failureLimit 3: failed (4) > failureLimit (3)."""
    judge = load_judge("argo", MINUTE)
    assert isinstance(judge, ArgoJudge)
    verdicts = [judge.observe(r) for r in cumulative([(1000, 60)] * 4)]  # 94 % success
    assert [v.decision for v in verdicts] == [Decision.CONTINUE] * 3 + [Decision.ROLLBACK]
    assert 'metric "success-rate" assessed Failed due to failed (4) > failureLimit (3)' in verdicts[-1].reasons


def test_argo_empty_vector_is_an_error_and_errors_do_not_count() -> None:
    judge = ArgoJudge(MINUTE)
    readings = [canary_reading(60 * k, None, None, None) for k in range(1, 6)]  # no canary series at all
    verdicts = [judge.observe(r) for r in readings]
    assert [v.decision for v in verdicts] == [Decision.CONTINUE] * 4 + [Decision.ROLLBACK]
    details = verdicts[-1].details["success-rate"]
    assert details["error"] == 5 and details["count"] == 0 and details["consecutive_error"] == 5
    assert any("consecutiveErrors (5) > consecutiveErrorLimit (4)" in r for r in verdicts[-1].reasons)
    # a counted measurement in between resets the streak
    judge.reset()
    mixed = readings[:4] + [canary_reading(300, 1000.0, 0.0, wn=1000, we=0)] + readings[:4]
    assert Decision.ROLLBACK not in [judge.observe(dataclasses.replace(r, t_s=60.0 * (i + 1)))
                                     for i, r in enumerate(mixed)]


def test_argo_nan_fails_under_the_docs_condition_and_background_analysis_promotes_at_the_end() -> None:
    judge = ArgoJudge(MINUTE)
    nan = judge.observe(canary_reading(60, 1000.0, 0.0, wn=0))  # the same count as last time: 0/0
    assert nan.details["success-rate"]["failed"] == 0  # first window: 1000 requests, fine
    judge.observe(canary_reading(120, 1000.0, 0.0, wn=0))  # nothing new: NaN >= 0.95 is false
    assert judge._results["success-rate"].failed == 1
    final = judge.finish(None)
    assert final.decision is Decision.PROMOTE and "background analysis terminated" in final.reasons[1]


def test_argo_inline_count_and_inconclusive() -> None:
    inline = ArgoJudge(MINUTE, ArgoConfig(count=5))
    assert decisions(inline, cumulative([(1000, 0)] * 5))[-1] is Decision.PROMOTE
    inline.reset()
    decisions(inline, cumulative([(1000, 0)] * 3))
    assert inline.finish(None).decision is Decision.INCONCLUSIVE
    between = ArgoMetric("success-rate", "success-rate", Condition("result[0] >= 0.99"), Condition("result[0] < 0.9"))
    judge = ArgoJudge(MINUTE, ArgoConfig(metrics=(between,)))
    verdict = judge.observe(cumulative([(1000, 50)])[0])  # 95 %: neither condition
    assert verdict.decision is Decision.INCONCLUSIVE and "paused for a human" in verdict.reasons[0]


def test_argo_evaluate_follows_evaluate_go() -> None:
    only_success = ArgoMetric("m", "success-rate", Condition("result[0] >= 0.95"))
    assert evaluate([0.96], only_success)[0] == "Successful"
    assert evaluate([0.90], only_success)[0] == "Failed"
    assert evaluate([math.nan], only_success)[0] == "Failed"
    assert evaluate([], only_success)[0] == "Error"
    only_failure = ArgoMetric("m", "success-rate", failure_condition=Condition("result[0] < 0.5"))
    assert evaluate([0.7], only_failure)[0] == "Successful"
    assert evaluate([0.7], ArgoMetric("m", "success-rate"))[0] == "Successful"  # no conditions at all
    with pytest.raises(ValueError, match="is not of the form 'result\\[0\\] >= 0.95'"):
        Condition("all(result, # < 1000)")


# -- Kayenta ------------------------------------------------------------------------------------


def test_kayenta_u_statistic_is_scipys_and_the_interval_inverts_its_test() -> None:
    rng = np.random.default_rng(7)
    x, y = rng.normal(10.0, 1.0, 30), rng.normal(9.0, 1.0, 30)
    assert _u_statistic(x, y)[0] == stats.mannwhitneyu(x, y).statistic
    mw = mann_whitney(x, y, 0.98)
    assert mw.lower < mw.estimate < mw.upper
    # the interval's ends are where scipy's two-sided asymptotic test crosses 1 - 0.98
    for end, inside in ((mw.lower, mw.lower + 0.05), (mw.upper, mw.upper - 0.05)):
        outside = end - (inside - end)
        assert stats.mannwhitneyu(x - inside, y, method="asymptotic").pvalue > 0.02
        assert stats.mannwhitneyu(x - outside, y, method="asymptotic").pvalue < 0.02
    # the estimate is the Hodges-Lehmann shift: the median of the pairwise differences
    assert mw.estimate == pytest.approx(np.median(x[:, None] - y[None, :]), abs=0.05)


def _classify(control, experiment, **metric) -> str:
    m = KayentaMetric("m", "p99", "g", **metric)
    return classify(np.asarray(control, float), np.asarray(experiment, float), m, KayentaConfig(),
                    np.random.default_rng(0))[0]


def test_kayenta_classifier_on_crafted_samples() -> None:
    rng = np.random.default_rng(3)
    base = rng.normal(0.10, 0.01, 20)
    assert _classify(base, rng.normal(0.10, 0.01, 20)) == PASS
    assert _classify(base, rng.normal(0.15, 0.01, 20)) == HIGH  # +50 %: CI far above 0.25 x estimate
    assert _classify(base, rng.normal(0.05, 0.01, 20), direction="either") == LOW
    assert _classify(base, rng.normal(0.05, 0.01, 20)) == PASS  # direction increase: lower is fine
    # a shift too small for its own interval: 0.25 x the estimate is the tolerance
    assert _classify(base, base + 0.0005) == PASS
    assert _classify(base, base) == PASS  # identical
    assert _classify([], base) == NODATA
    assert _classify([math.nan], base, nan_strategy="replace") == HIGH  # NaN read as 0, the canary is higher
    assert _classify([0.01] * 10, [0.02] * 10) == HIGH  # both constant: noise added, then the test


def test_kayenta_score_weights_groups_and_fails_equal_to_marginal() -> None:
    cfg = KayentaConfig()
    assert score({"error-rate": PASS, "p99-latency": PASS}, cfg) == (100.0, "")
    assert score({"error-rate": HIGH, "p99-latency": PASS}, cfg)[0] == 50.0
    forced = "Canary Failed: 50% or more metrics returned NODATA"
    assert score({"error-rate": NODATA, "p99-latency": PASS}, cfg) == (0.0, forced)
    assert score({"error-rate": "Error", "p99-latency": PASS}, cfg)[0] == 100.0  # Error does not count
    weighted = dataclasses.replace(cfg, group_weights=(("errors", 75.0),))
    assert score({"error-rate": PASS, "p99-latency": HIGH}, weighted)[0] == 75.0


def _kayenta_run(judge: KayentaJudge, cfg: JudgeConfig, canary_p99: float) -> list:
    judge.reset()
    rng = np.random.default_rng(11)
    out = []
    for k in range(1, cfg.total_checks + 1):
        c = RevisionReading(100.0 * k, 0.0, float(rng.normal(canary_p99, 0.01)), 100.0, 0.0)
        s = RevisionReading(100.0 * k, 0.0, float(rng.normal(0.1, 0.01)), 100.0, 0.0)
        out.append(judge.observe(Reading(k * cfg.interval_s, c, s, source_ok=True)))
    return out


def test_kayenta_judges_once_at_the_end_by_default_and_fails_fast_with_intervals() -> None:
    cfg = JudgeConfig(interval_s=60.0, observation_s=600.0)
    verdicts = _kayenta_run(KayentaJudge(cfg), cfg, canary_p99=0.1)
    assert [v.decision for v in verdicts] == [Decision.CONTINUE] * 9 + [Decision.PROMOTE]
    assert "met or exceeded the pass threshold 95" in verdicts[-1].reasons[0]
    slow = _kayenta_run(KayentaJudge(cfg), cfg, canary_p99=0.2)
    assert slow[-1].decision is Decision.ROLLBACK and "score 50 is not above the marginal threshold 75" \
        in slow[-1].reasons[0]
    early = KayentaJudge(cfg, KayentaConfig(judgement_interval_s=300.0))
    assert [v.decision for v in _kayenta_run(early, cfg, canary_p99=0.2)][4] is Decision.ROLLBACK  # at 300 s
    # a score equal to marginal fails (MonitorCanaryTask: <=), though the request's docs say "meet or exceed"
    at_marginal = KayentaJudge(cfg, KayentaConfig(group_weights=(("errors", 75.0),)))
    assert _kayenta_run(at_marginal, cfg, canary_p99=0.2)[-1].decision is Decision.ROLLBACK
    assert load_judge("kayenta", cfg).name == "kayenta"
