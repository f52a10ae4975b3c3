"""Argo Rollouts' AnalysisRun with the Prometheus provider as a seamcheck judge: one measurement per
metric every `interval`, each Successful, Failed, Inconclusive or Error by its success and failure
conditions, metric phases from the counters against the limits, the run's phase the worst of them.

Ported from argoproj/argo-rollouts at tag v1.9.1 (code, then docs):
- utils/evaluate/evaluate.go, EvaluateResult: only successCondition set -> failed when it is false;
  only failureCondition -> successful when it is false; both -> neither true is Inconclusive; a
  condition that cannot be evaluated is an Error. `result[0]` on an empty vector (the query
  returned no series) is an index error, hence an Error measurement (master after v1.10.0-rc1
  words it "metric result is nil or empty: no data returned from the metric provider"); a NaN
  value (0/0 over a window without requests) compares false, hence Failed under
  `result[0] >= 0.95`.
- metricproviders/prometheus/prometheus.go, Run: a query error is an Error measurement; a vector
  result is passed on as the list of its sample values.
- analysis/analysis.go, runMeasurements: Successful, Failed and Inconclusive increment Count and
  reset ConsecutiveError; Error increments Error and ConsecutiveError only (not Count).
  assessMetricFailureInconclusiveOrError: Failed when failed > failureLimit (unless the limit is
  negative), Inconclusive when inconclusive > inconclusiveLimit, Error when consecutiveError >
  consecutiveErrorLimit (checked in that order, the later winning); assessMetricStatus: otherwise
  Successful once Count reaches `count`, Running without a count, Successful when the run is
  terminated. assessRunStatus: a Failed, Error or Inconclusive metric terminates the run
  (utils/analysis/helpers.go IsTerminating); the run's phase is the worst per analysisStatusOrder
  (Successful < Running < Pending < Inconclusive < Error < Failed).
- utils/defaults/defaults.go: consecutiveErrorLimit defaults to 4; failureLimit and
  inconclusiveLimit default to 0 (nil pointers read as 0 in analysis.go).
- pkg/apis/rollouts/v1alpha1/analysis_types.go, EffectiveCount: no count and no interval means
  one measurement; no count with an interval runs until the run is terminated.
- rollout/analysis.go: a Failed or Error run aborts the rollout, an Inconclusive one pauses it.
- docs/analysis/prometheus.md and docs/features/analysis.md: the example AnalysisTemplate used as
  the defaults: metric success-rate, interval 5m, successCondition `result[0] >= 0.95`,
  failureLimit 3, no count, run as background analysis beside the canary steps.

Where docs and code disagree (code followed): the status excerpts in docs/features/analysis.md
("NaN and Infinity") show `successful: 1` beside `phase: Failed` and `phase: Inconclusive`
measurements; runMeasurements increments `failed` / `inconclusive` there, never `successful`.

Mapping onto seamcheck: one reading is one measurement when at least `interval` passed since the
last (interval None = the harness's check interval, the docs' 5m scaled like the seed's minutes).
The docs' query is `sum(irate(non-5xx[5m])) / sum(irate(all[5m]))`; readings carry counts, not
scrape samples, so the measurement is the success ratio over the measurement's window from the
cumulative counts (rate() rather than irate()). Background analysis (no count, the docs' example)
ends when the rollout's steps do: here at the deadline, where finish() terminates the run, which
is then Successful unless a limit was violated, so the canary is promoted. With a count (inline
step analysis) the run completes after `count` counted measurements and a count not reached by the
deadline is INCONCLUSIVE (the rollout would still be waiting). The p99 metric (`result[0] <= 0.5`,
failureLimit 3) is seamcheck's addition in the docs' template form, because Argo ships no latency
template and the harness judges latency; set `metrics` to the success-rate metric alone for the
docs' template as written.
"""
from __future__ import annotations

import math
import operator
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from harness.judges.base import Decision, JudgeConfig, Reading, Verdict

__all__ = ["DOCS_LATENCY_METRIC", "DOCS_SUCCESS_RATE_METRIC", "ArgoConfig", "ArgoJudge", "ArgoMetric", "Condition",
           "Phase"]

SUCCESSFUL, FAILED, INCONCLUSIVE, ERROR, RUNNING = "Successful", "Failed", "Inconclusive", "Error", "Running"
Phase = str
# analysis helpers.go analysisStatusOrder, best to worst
_ORDER = (SUCCESSFUL, RUNNING, "Pending", INCONCLUSIVE, ERROR, FAILED)
_OPS: dict[str, Callable[[float, float], bool]] = {">=": operator.ge, "<=": operator.le, ">": operator.gt,
                                                   "<": operator.lt, "==": operator.eq, "!=": operator.ne}
_CONDITION = re.compile(r"^\s*result\[(\d+)\]\s*(>=|<=|==|!=|>|<)\s*([-+0-9.eE]+)\s*$")


@dataclass(frozen=True)
class Condition:
    """A success or failure condition of the form `result[i] OP number` (the docs' form); an index past
    the vector's end raises, as expr does, which makes the measurement an Error."""

    text: str

    def __post_init__(self) -> None:
        if not _CONDITION.match(self.text):
            raise ValueError(f"Condition: text={self.text!r} is not of the form 'result[0] >= 0.95'; write "
                             "result[INDEX] followed by one of >=, <=, >, <, ==, != and a number")

    def __call__(self, result: list[float]) -> bool:
        index, op, number = _CONDITION.match(self.text).groups()  # type: ignore[union-attr]
        return _OPS[op](result[int(index)], float(number))  # IndexError on an empty vector


@dataclass(frozen=True)
class ArgoMetric:
    """One metric of the AnalysisTemplate: what it queries and how its measurements are judged."""

    name: str
    query: str  # "success-rate" (non-5xx / all over the window) or "p99-latency" (seconds, the reading's window)
    success_condition: Condition | None = None
    failure_condition: Condition | None = None
    failure_limit: int = 0  # analysis.go: nil -> 0 (no failure tolerated); negative: not applicable
    inconclusive_limit: int = 0  # analysis.go: nil -> 0
    consecutive_error_limit: int = 4  # defaults.go DefaultConsecutiveErrorLimit

    def __post_init__(self) -> None:
        if self.query not in ("success-rate", "p99-latency"):
            raise ValueError(f"ArgoMetric: query={self.query!r}; use 'success-rate' or 'p99-latency'")


DOCS_SUCCESS_RATE_METRIC = ArgoMetric("success-rate", "success-rate", Condition("result[0] >= 0.95"), failure_limit=3)
DOCS_LATENCY_METRIC = ArgoMetric("p99-latency", "p99-latency", Condition("result[0] <= 0.5"), failure_limit=3)


@dataclass(frozen=True)
class ArgoConfig:
    """The AnalysisTemplate (docs' success-rate example, plus the p99 metric) and how it is run."""

    metrics: tuple[ArgoMetric, ...] = (DOCS_SUCCESS_RATE_METRIC, DOCS_LATENCY_METRIC)
    interval_s: float | None = None  # metric interval; None = the harness's check interval (docs: 5m)
    count: int | None = None  # None: background analysis until the rollout ends (docs' example)

    def __post_init__(self) -> None:
        problems = []
        if not self.metrics:
            problems.append("metrics must name at least one ArgoMetric")
        if self.interval_s is not None and self.interval_s <= 0:
            problems.append(f"interval_s must be > 0 or None (the harness's interval), got {self.interval_s}")
        if self.count is not None and self.count < 1:
            problems.append(f"count must be >= 1 or None (background analysis), got {self.count}; Argo does not "
                            "run an inline analysis with count 0")
        if problems:
            raise ValueError("ArgoConfig: " + "; ".join(problems))


def evaluate(result: list[float], metric: ArgoMetric) -> tuple[Phase, str]:
    """EvaluateResult: a measurement's phase from the conditions, and the error if one could not be evaluated."""
    success = fail = False
    try:
        if metric.success_condition is not None:
            success = metric.success_condition(result)
        if metric.failure_condition is not None:
            fail = metric.failure_condition(result)
    except IndexError:
        return ERROR, "could not evaluate the condition: metric result is nil or empty (no data returned)"
    if metric.success_condition is None and metric.failure_condition is None:
        return SUCCESSFUL, ""
    if metric.failure_condition is None:
        fail = not success
    elif metric.success_condition is None:
        success = not fail
    if fail:
        return FAILED, ""
    return (INCONCLUSIVE, "") if not success else (SUCCESSFUL, "")


@dataclass
class _MetricResult:
    count: int = 0
    successful: int = 0
    failed: int = 0
    inconclusive: int = 0
    error: int = 0
    consecutive_error: int = 0
    measurements: list[dict[str, Any]] = field(default_factory=list)

    def record(self, phase: Phase) -> None:
        if phase == ERROR:
            self.error += 1
            self.consecutive_error += 1
            return
        self.count += 1
        self.consecutive_error = 0
        if phase == SUCCESSFUL:
            self.successful += 1
        elif phase == FAILED:
            self.failed += 1
        else:
            self.inconclusive += 1


def _limit_phase(metric: ArgoMetric, res: _MetricResult) -> tuple[Phase, str]:
    """assessMetricFailureInconclusiveOrError: the later check wins, as in analysis.go."""
    phase, why = "", ""
    if metric.failure_limit >= 0 and res.failed > metric.failure_limit:
        phase, why = FAILED, f"failed ({res.failed}) > failureLimit ({metric.failure_limit})"
    if res.inconclusive > metric.inconclusive_limit:
        phase, why = INCONCLUSIVE, f"inconclusive ({res.inconclusive}) > inconclusiveLimit ({metric.inconclusive_limit})"
    if res.consecutive_error > metric.consecutive_error_limit:
        phase, why = ERROR, (f"consecutiveErrors ({res.consecutive_error}) > consecutiveErrorLimit "
                             f"({metric.consecutive_error_limit})")
    return phase, why


@dataclass
class ArgoJudge:
    config: JudgeConfig = field(default_factory=JudgeConfig)
    argo: ArgoConfig = field(default_factory=ArgoConfig)
    name: str = "argo"

    def __post_init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self._results = {m.name: _MetricResult() for m in self.argo.metrics}
        self._last_measured_t = 0.0
        self._last_counts: tuple[float, float] = (0.0, 0.0)  # canary (requests, errors) at the last measurement
        self._last_t: float | None = None

    def _interval(self) -> float:
        return self.argo.interval_s if self.argo.interval_s is not None else self.config.interval_s

    def _vector(self, metric: ArgoMetric, reading: Reading) -> list[float]:
        """What the metric's PromQL returns for the canary: [] for no series, [nan] for 0/0."""
        c = reading.canary
        if c.requests is None:
            return []
        if metric.query == "p99-latency":
            return [math.nan if c.p99_s is None else float(c.p99_s)]
        n_total, e_total = float(c.requests), float(c.errors or 0.0)
        if n_total - e_total <= 0:
            return []  # the non-5xx series was never created: the numerator is an empty vector
        n0, e0 = self._last_counts
        n, e = n_total - n0, e_total - e0
        return [math.nan] if n <= 0 else [(n - min(max(e, 0.0), n)) / n]

    def _metric_phase(self, metric: ArgoMetric, terminating: bool) -> tuple[Phase, str]:
        res = self._results[metric.name]
        phase, why = _limit_phase(metric, res)
        if phase:
            return phase, why
        if self.argo.count is not None and res.count >= self.argo.count:
            return SUCCESSFUL, f"count ({self.argo.count}) reached"
        if terminating:
            return SUCCESSFUL, "run terminated"
        return RUNNING, ""

    def _run_phase(self, terminate: bool) -> tuple[Phase, list[str]]:
        phases = {m.name: self._metric_phase(m, terminating=False) for m in self.argo.metrics}
        terminating = terminate or any(p in (FAILED, ERROR, INCONCLUSIVE) for p, _ in phases.values())
        if terminating:
            phases = {m.name: self._metric_phase(m, terminating=True) for m in self.argo.metrics}
        if not terminating and any(p == RUNNING for p, _ in phases.values()):
            return RUNNING, []
        worst = max((p for p, _ in phases.values()), key=_ORDER.index)
        return worst, [f'metric "{name}" assessed {p}' + (f" due to {why}" if why else "")
                       for name, (p, why) in phases.items()]

    def _details(self) -> dict[str, Any]:
        return {name: {k: v for k, v in vars(res).items() if k != "measurements"} for name, res in
                self._results.items()} | {"count": self.argo.count, "interval_s": self._interval()}

    def _verdict(self, decision: Decision, reasons: list[str], at_s: float) -> Verdict:
        used = [m for res in self._results.values() for m in res.measurements]
        return Verdict(decision, reasons, at_s, observations_used=used, details=self._details())

    def _decide(self, phase: Phase, lines: list[str], at_s: float) -> Verdict:
        if phase == SUCCESSFUL:
            return self._verdict(Decision.PROMOTE, ["AnalysisRun Successful: the rollout proceeds"] + lines, at_s)
        if phase in (FAILED, ERROR):
            return self._verdict(Decision.ROLLBACK, [f"AnalysisRun {phase}: the rollout is aborted"] + lines, at_s)
        return self._verdict(Decision.INCONCLUSIVE, [f"AnalysisRun {phase}: the rollout is paused for a human"]
                             + lines, at_s)

    def observe(self, reading: Reading) -> Verdict:
        self._last_t = reading.t_s
        if reading.t_s - self._last_measured_t < self._interval() - 1e-6:
            return self._verdict(Decision.CONTINUE, [f"t={reading.t_s:.0f}s: between measurements"], reading.t_s)
        self._last_measured_t = reading.t_s
        for metric in self.argo.metrics:
            res = self._results[metric.name]
            if not reading.source_ok:
                phase, why, value = ERROR, f"query failed: {reading.source_error or 'Prometheus unreachable'}", None
            else:
                value = self._vector(metric, reading)
                phase, why = evaluate(value, metric)
            res.record(phase)
            res.measurements.append({"metric": metric.name, "t_s": reading.t_s, "value": value, "phase": phase,
                                     "message": why})
        if reading.source_ok and reading.canary.requests is not None:
            self._last_counts = (float(reading.canary.requests), float(reading.canary.errors or 0.0))
        phase, lines = self._run_phase(terminate=False)
        if phase == RUNNING:
            return self._verdict(Decision.CONTINUE, [f"t={reading.t_s:.0f}s: AnalysisRun Running"], reading.t_s)
        return self._decide(phase, lines, reading.t_s)

    def finish(self, reading: Reading | None) -> Verdict:
        if reading is not None and reading.t_s != self._last_t:
            verdict = self.observe(reading)
            if verdict.final:
                return verdict
        at = self._last_t if self._last_t is not None else (reading.t_s if reading is not None else 0.0)
        if self.argo.count is not None:
            done = min(r.count for r in self._results.values())
            return self._verdict(Decision.INCONCLUSIVE, [
                (f"deadline with the step analysis still Running ({done} of count {self.argo.count} measurements): "
                 "Argo has no deadline of its own, the rollout would still be waiting")], at)
        # background analysis: the rollout's steps are over, the run is terminated
        phase, lines = self._run_phase(terminate=True)
        return self._decide(phase, ["deadline: the rollout's steps are over, background analysis terminated"]
                            + lines, at)
