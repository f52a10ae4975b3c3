"""Flagger's canary analysis as a seamcheck judge: per analysis tick the builtin request-success-rate
and request-duration checks, a failed-check counter against `threshold`, promotion once the weight
progression's analyses have all passed.

Ported from fluxcd/flagger at tag v1.44.0 (code, then docs):
- pkg/controller/scheduler.go, advanceCanary: at the start of every tick, a Progressing canary
  whose FailedChecks >= threshold is rolled back *before* that tick's analysis runs; otherwise the
  analysis runs, a failed analysis increments FailedChecks and halts advancement (the weight stays),
  a passed one lets runCanary step the weight up or, at maxWeight, promote. FailedChecks is never
  reset during an analysis (only a new revision restarts it).
- pkg/controller/scheduler_metrics.go, runBuiltinMetricChecks: request-success-rate first, then
  request-duration; the first failing metric ends the check. A query error counts exactly like a
  breach: `providers.ErrNoValuesFound` ("Halt advancement no values found ... probably ... is not
  receiving traffic") and any other Prometheus error ("Prometheus query failed") both return false,
  so no data and an unreachable Prometheus each add a failed check.
- pkg/metrics/providers/prometheus.go, RunQuery: an empty result vector or a NaN value (0/0 over a
  window without requests) is ErrNoValuesFound.
- pkg/metrics/observers/knative.go (KServe's provider): success rate = 100 * non-5xx / all over the
  metric's interval; duration = histogram_quantile(0.99, ...) read as whole milliseconds
  (time.Duration(int64(value)) * time.Millisecond, so 500.9 ms passes a 500 ms limit).
- pkg/apis/flagger/v1beta1/canary.go: interval defaults to 60 s and is raised to 10 s when set
  lower (GetAnalysisInterval); threshold 0 means 1 (GetAnalysisThreshold).
- docs/gitbook/tutorials/istio-progressive-delivery.md: the documented example analysis used as
  the defaults here: interval 1m, threshold 5, maxWeight 50, stepWeight 10, request-success-rate
  thresholdRange.min 99 (interval 1m), request-duration thresholdRange.max 500 ms (interval 30s).

Where docs and code disagree (code followed):
- docs/gitbook/usage/deployment-strategies.md gives the rollback time as `interval * threshold`;
  in scheduler.go the threshold is checked at the start of the tick *after* the threshold-th
  failure, so a canary failing every check is rolled back at tick threshold + 1.
- The same page gives the promotion time as `interval * (maxWeight / stepWeight)`; in scheduler.go
  the first tick (canary weight 0, no traffic yet) runs no analysis and only sets the first step, so
  Flagger itself needs one tick more.

Mapping onto seamcheck's fixed split (KServe's canaryTrafficPercent does not step): the canary serves
its share from the first reading, so the no-traffic first tick has no counterpart and every tick is
analysed; a weight step becomes "one more passing analysis": promotion at the analysis that passes
at maxWeight, i.e. after len(stepWeights) or ceil(maxWeight / stepWeight) passing analyses (5 for
10/50). With `iterations` set (Flagger's Blue/Green), runBlueGreen counts `iterations` passing
ticks, then one routing all traffic to the canary, then promotes: iterations + 1 analysed ticks
here, the unanalysed first tick again dropped. A tick happens on the first reading at least
max(interval, 10 s) after the previous one; the success rate covers the tick's span (from the
cumulative counts, the docs' metric interval = the analysis interval) and the p99 the reading's own
window (a metric window shorter than the tick, as the docs' 30 s p99 under 1 m ticks).
Flagger has no analysis deadline: at seamcheck's deadline an analysis still running is
INCONCLUSIVE, never a promotion.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from harness.judges.base import Decision, JudgeConfig, Reading, Verdict

__all__ = ["FlaggerConfig", "FlaggerJudge"]


@dataclass(frozen=True)
class FlaggerConfig:
    """A Flagger Canary's analysis block, defaults from the v1.44.0 Istio tutorial's example."""

    # analysis.interval; None = the harness's check interval (the docs' 1m at full scale).
    interval_s: float | None = None
    min_interval_s: float = 10.0  # canary.go GetAnalysisInterval: intervals under 10 s become 10 s
    threshold: int = 5  # analysis.threshold (tutorial: 5; canary.go: 0 means 1)
    max_weight: int = 50  # analysis.maxWeight (tutorial: 50)
    step_weight: int = 10  # analysis.stepWeight (tutorial: 10)
    step_weights: tuple[int, ...] = ()  # analysis.stepWeights: explicit steps instead of stepWeight
    iterations: int = 0  # analysis.iterations: > 0 is Flagger's Blue/Green (fixed split, N checks)
    success_rate_min: float = 99.0  # request-success-rate thresholdRange.min, percent (tutorial: 99)
    duration_max_ms: float = 500.0  # request-duration thresholdRange.max, ms of p99 (tutorial: 500)

    def __post_init__(self) -> None:
        problems = []
        if self.interval_s is not None and self.interval_s <= 0:
            problems.append(f"interval_s must be > 0 or None (the harness's interval), got {self.interval_s}")
        if self.threshold < 0:
            problems.append(f"threshold must be >= 0 (0 means 1, as in Flagger), got {self.threshold}")
        if not self.iterations and not self.step_weights and not 0 < self.step_weight <= self.max_weight:
            problems.append(f"need 0 < step_weight <= max_weight, got {self.step_weight} and {self.max_weight}; "
                            "or set step_weights or iterations")
        if any(b <= a for a, b in zip(self.step_weights, self.step_weights[1:])):
            problems.append(f"step_weights must increase, got {self.step_weights}")
        if self.iterations < 0:
            problems.append(f"iterations must be >= 0, got {self.iterations}")
        if problems:
            raise ValueError("FlaggerConfig: " + "; ".join(problems))

    @property
    def effective_threshold(self) -> int:
        return self.threshold if self.threshold > 0 else 1

    @property
    def passes_to_promote(self) -> int:
        """Passing analyses until Flagger promotes, the no-traffic first tick dropped (module docstring)."""
        if self.iterations:
            return self.iterations + 1
        if self.step_weights:
            return len(self.step_weights)
        return math.ceil(self.max_weight / self.step_weight)

    def tick_s(self, harness_interval_s: float) -> float:
        return max(self.interval_s if self.interval_s is not None else harness_interval_s, self.min_interval_s)


@dataclass
class FlaggerJudge:
    config: JudgeConfig = field(default_factory=JudgeConfig)
    flagger: FlaggerConfig = field(default_factory=FlaggerConfig)
    name: str = "flagger"

    def __post_init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self._failed = 0
        self._passed = 0
        self._ticks = 0
        self._last_tick_t = 0.0
        self._last_counts: tuple[float, float] = (0.0, 0.0)  # canary (requests, errors) at the last tick
        self._last_t: float | None = None
        self._log: list[dict[str, Any]] = []

    def _details(self) -> dict[str, Any]:
        fc = self.flagger
        return {"failed_checks": self._failed, "threshold": fc.effective_threshold, "passed_analyses": self._passed,
                "passes_to_promote": fc.passes_to_promote, "ticks": self._ticks,
                "tick_s": fc.tick_s(self.config.interval_s)}

    def _verdict(self, decision: Decision, reasons: list[str], at_s: float) -> Verdict:
        return Verdict(decision, reasons, at_s, observations_used=list(self._log), details=self._details())

    def _success_rate(self, reading: Reading) -> tuple[float | None, str]:
        """request-success-rate over the tick's span: (percent, "") or (None, why no value)."""
        if not reading.source_ok:
            return None, f"Prometheus query failed: {reading.source_error or 'unreachable'}"
        c = reading.canary
        if c.requests is None:
            return None, "no values found (no canary request series): probably not receiving traffic"
        n0, e0 = self._last_counts
        n = float(c.requests) - n0
        e = (0.0 if c.errors is None else float(c.errors)) - e0
        if n <= 0:
            return None, "no values found (0/0 over the tick: NaN): probably not receiving traffic"
        return 100.0 * (n - min(max(e, 0.0), n)) / n, ""

    def _duration_ms(self, reading: Reading) -> tuple[int | None, str]:
        p99 = reading.canary.p99_s
        if p99 is None or math.isnan(p99):
            return None, "no values found for request-duration (no p99 in the window)"
        return int(p99 * 1000.0), ""  # Flagger truncates the query's value to whole ms

    def _analyse(self, reading: Reading) -> tuple[bool, str]:
        fc = self.flagger
        rate, why = self._success_rate(reading)
        if rate is None:
            return False, f"Halt advancement: {why}"
        if rate < fc.success_rate_min:
            return False, f"Halt advancement success rate {rate:.2f}% < {fc.success_rate_min:g}%"
        ms, why = self._duration_ms(reading)
        if ms is None:
            return False, f"Halt advancement: {why}"
        if ms > fc.duration_max_ms:
            return False, f"Halt advancement request duration {ms}ms > {fc.duration_max_ms:g}ms"
        return True, f"success rate {rate:.2f}% >= {fc.success_rate_min:g}%, p99 {ms}ms <= {fc.duration_max_ms:g}ms"

    def observe(self, reading: Reading) -> Verdict:
        fc = self.flagger
        self._last_t = reading.t_s
        tick = fc.tick_s(self.config.interval_s)
        if reading.t_s - self._last_tick_t < tick - 1e-6:
            return self._verdict(Decision.CONTINUE, [f"t={reading.t_s:.0f}s: between Flagger ticks ({tick:g} s)"],
                                 reading.t_s)
        self._ticks += 1
        self._last_tick_t = reading.t_s
        # scheduler.go: the threshold is checked before this tick's analysis
        if self._failed >= fc.effective_threshold:
            return self._verdict(Decision.ROLLBACK, [
                f"Rolling back: failed checks threshold reached {self._failed} (threshold {fc.effective_threshold})"],
                reading.t_s)
        ok, why = self._analyse(reading)
        if reading.source_ok and reading.canary.requests is not None:
            self._last_counts = (float(reading.canary.requests), float(reading.canary.errors or 0.0))
        self._log.append({"t_s": reading.t_s, "passed": ok, "why": why})
        if not ok:
            self._failed += 1
            return self._verdict(Decision.CONTINUE, [
                f"t={reading.t_s:.0f}s: {why} (failed checks {self._failed}/{fc.effective_threshold})"], reading.t_s)
        self._passed += 1
        if self._passed >= fc.passes_to_promote:
            return self._verdict(Decision.PROMOTE, [
                (f"promotion: {self._passed} passing analyses reached maxWeight "
                 f"({fc.passes_to_promote} needed), {self._failed} failed checks; last: {why}")], reading.t_s)
        return self._verdict(Decision.CONTINUE, [
            f"t={reading.t_s:.0f}s: advance ({self._passed}/{fc.passes_to_promote} analyses passed): {why}"],
            reading.t_s)

    def finish(self, reading: Reading | None) -> Verdict:
        if reading is not None and reading.t_s != self._last_t:
            verdict = self.observe(reading)
            if verdict.final:
                return verdict
        at = self._last_t if self._last_t is not None else (reading.t_s if reading is not None else 0.0)
        fc = self.flagger
        return self._verdict(Decision.INCONCLUSIVE, [
            (f"deadline while Flagger's analysis was still running ({self._passed}/{fc.passes_to_promote} "
             f"analyses passed, {self._failed}/{fc.effective_threshold} failed checks): Flagger has no analysis "
             "deadline, so it neither promotes nor rolls back here")], at)
