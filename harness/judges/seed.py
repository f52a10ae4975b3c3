"""The seed document's canary judgement (run_canary_judgment), kept faithful, flaws included, as the
baseline the other judges are measured against.

What is reproduced, line by line of the seed:
- `query_prometheus(...) or 0.0`: a query with no series reads as 0, so an error rate, a p99 or a
  request count that does not exist looks perfect (a canary without metrics looks healthy).
- The queries select only by service name and namespace, so they pool both revisions: this judge
  reads `Reading.combined` (what those queries return), or, when the driver did not fill it, sums
  the two revisions' counts and takes the larger p99. The larger p99 is an upper bound on the pooled
  quantile, the one liberty taken: it can only make this baseline stricter on latency, never laxer.
- The error rate is the windowed 5xx ratio: 0/0 over an empty window is NaN, which fails the check
  (NaN < threshold is false) without triggering the immediate rollback (NaN > 3x is false either).
- Request count below min_requests: the check is skipped, not passed, but it stays in the
  denominator (pass_ratio = passed / total_checks).
- Error rate above immediate_rollback_factor x threshold: rollback at once.
- After observation_s / interval_s checks: promote if passed / total >= pass_ratio, else rollback.
- Prometheus unreachable: the seed has no try/except around requests.get / resp.json(), so the
  script dies without deciding; here that is INCONCLUSIVE with the error as the reason.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from harness.judges.base import Decision, JudgeConfig, Reading, RevisionReading, Verdict

__all__ = ["SeedThresholdJudge", "pooled"]


def _sum(*values: float | None) -> float | None:
    present = [v for v in values if v is not None]
    return sum(present) if present else None


def pooled(reading: Reading) -> RevisionReading:
    """What the seed's service-wide queries return for this reading."""
    if reading.combined is not None:
        return reading.combined
    c, s = reading.canary, reading.stable
    p99s = [p for p in (c.p99_s, s.p99_s) if p is not None]
    return RevisionReading(requests=_sum(c.requests, s.requests), errors=_sum(c.errors, s.errors),
                           p99_s=max(p99s) if p99s else None,
                           window_requests=_sum(c.window_requests, s.window_requests),
                           window_errors=_sum(c.window_errors, s.window_errors))


def _seed_error_rate(window_errors: float | None, window_requests: float | None) -> float | None:
    """sum(rate(5xx)) / sum(rate(all)) as Prometheus evaluates it: no series on either side -> no
    result; 0/0 -> NaN."""
    if window_errors is None or window_requests is None:
        return None
    if window_requests == 0:
        return math.nan if window_errors == 0 else math.inf
    return window_errors / window_requests


@dataclass
class SeedThresholdJudge:
    config: JudgeConfig = field(default_factory=JudgeConfig)
    name: str = "seed"

    def __post_init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self._checks = 0
        self._passed = 0
        self._results: list[dict[str, Any]] = []
        self._last_t = 0.0

    def _details(self) -> dict[str, Any]:
        total = self.config.total_checks
        return {"checks_done": self._checks, "checks_passed": self._passed, "total_checks": total,
                "pass_ratio": self._passed / max(total, 1), "reading_scope": "combined (both revisions pooled)"}

    def _verdict(self, decision: Decision, reasons: list[str], at_s: float) -> Verdict:
        return Verdict(decision, reasons, at_s, observations_used=list(self._results), details=self._details())

    def evaluate(self, reading: Reading) -> dict[str, Any]:
        """The seed's evaluate_canary on one reading (its `or 0.0` included)."""
        cfg = self.config
        pool = pooled(reading)
        error_rate = _seed_error_rate(pool.window_errors, pool.window_requests) or 0.0
        p99 = pool.p99_s or 0.0
        count = pool.requests or 0
        return {"t_s": reading.t_s, "error_rate": error_rate, "p99_s": p99, "request_count": count,
                "error_rate_ok": error_rate < cfg.error_threshold, "latency_ok": p99 < cfg.p99_threshold_s,
                "sufficient_traffic": count >= cfg.min_requests}

    def observe(self, reading: Reading) -> Verdict:
        cfg = self.config
        total = cfg.total_checks
        self._last_t = reading.t_s
        if self._checks >= total:
            return self._final(reading.t_s, [f"all {total} checks were already done"])
        if not reading.source_ok:
            return self._verdict(Decision.INCONCLUSIVE, [
                (f"Prometheus query failed ({reading.source_error or 'unreachable'}): the seed script has no "
                "error handling there, so it would crash without a decision")], reading.t_s)
        result = self.evaluate(reading)
        self._results.append(result)
        self._checks += 1
        head = (f"check {self._checks}/{total}: error rate {result['error_rate']:.4g}, "
                f"p99 {result['p99_s'] * 1000:.0f} ms, {result['request_count']:.0f} requests")
        if not result["sufficient_traffic"]:
            reasons = [f"{head}: insufficient traffic (< {cfg.min_requests}), check skipped but still counted"]
        elif result["error_rate_ok"] and result["latency_ok"]:
            self._passed += 1
            reasons = [f"{head}: passed ({self._passed} so far)"]
        else:
            immediate = cfg.error_threshold * cfg.immediate_rollback_factor
            if result["error_rate"] > immediate:
                return self._verdict(Decision.ROLLBACK, [
                    (f"{head}: immediate rollback, error rate {result['error_rate']:.4g} > "
                    f"{cfg.immediate_rollback_factor:g} x {cfg.error_threshold:g}")], reading.t_s)
            failed = [name for name, ok in (("error rate", result["error_rate_ok"]), ("p99", result["latency_ok"]))
                      if not ok]
            reasons = [f"{head}: failed on {' and '.join(failed)}"]
        if self._checks >= total:
            return self._final(reading.t_s, reasons)
        return self._verdict(Decision.CONTINUE, reasons, reading.t_s)

    def _final(self, at_s: float, reasons: list[str]) -> Verdict:
        cfg = self.config
        total = cfg.total_checks
        ratio = self._passed / max(total, 1)
        decision = Decision.PROMOTE if ratio >= cfg.pass_ratio else Decision.ROLLBACK
        return self._verdict(decision, reasons + [
            (f"{decision.value}: {self._passed}/{total} checks passed = {ratio:.2f} "
            f"({'>=' if decision is Decision.PROMOTE else '<'} {cfg.pass_ratio:g})")], at_s)

    def finish(self, reading: Reading | None) -> Verdict:
        """The driver's deadline came before the seed's own schedule ended: decide as the seed would
        at its end, the checks not made counting as not passed."""
        at = reading.t_s if reading is not None else self._last_t
        done = f"deadline after {self._checks} of {self.config.total_checks} checks"
        return self._final(at, [done])
