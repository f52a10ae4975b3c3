"""A server-less canary: Readings drawn from a traffic model, fed to a judge until it decides.

Each check interval draws, per revision, a Poisson number of requests split binomially by the canary
percent, binomial 5xx counts, and latencies as multinomial counts over Prometheus' default histogram
buckets; p99 is then computed the way `histogram_quantile` does (linear inside the bucket). The
readings mimic what harness.canary.observe reads from Prometheus, quirks included: a 5xx series does not
exist before the first 5xx (None, not 0), p99 over an empty window is None, a dead canary has no
series at all, and an outage gives source_ok=False. Windows are one interval long, as the driver's.
Slow-request counts (requests above the latency limit, cumulative) come from the same buckets, as
the dialects' slow_requests query reads them; None when the limit is not a bucket bound. With
`router_counts`, each reading also carries what a counting router (the local HAProxy) saw per
revision in the window: requests sent and 2xx answers, none from a dead canary.

Generation is vectorised over runs (numpy), so thousands of runs cost little; only the judge runs
per reading, as it does live. Everything is deterministic given the seed.
"""
from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np

from harness.judges.base import (
    NO_DATA,
    Decision,
    Judge,
    JudgeConfig,
    Reading,
    RevisionReading,
    RoutedWindow,
    Verdict,
)

__all__ = ["DEFAULT_BUCKETS_S", "LatencyModel", "Scenario", "SimOutcome", "Trace", "generate", "histogram_quantile",
           "run_judge", "simulate", "simulate_many"]

# prometheus_client's default Histogram buckets (seconds); +Inf is implicit.
DEFAULT_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0)


def _lognormal_cdf(x: float, median_s: float, sigma: float) -> float:
    return 0.5 * (1.0 + math.erf(math.log(x / median_s) / (sigma * math.sqrt(2.0))))


@dataclass(frozen=True)
class LatencyModel:
    """Lognormal latency, optionally mixed with a slow lognormal tail (`tail_fraction` of requests):
    the shape of a model that is fine on most inputs and pathological on some."""

    median_s: float = 0.05
    sigma: float = 0.5
    tail_fraction: float = 0.0
    tail_median_s: float = 1.0
    tail_sigma: float = 0.5

    def cdf(self, x_s: float) -> float:
        body = _lognormal_cdf(x_s, self.median_s, self.sigma)
        if not self.tail_fraction:
            return body
        tail = _lognormal_cdf(x_s, self.tail_median_s, self.tail_sigma)
        return (1 - self.tail_fraction) * body + self.tail_fraction * tail

    def bucket_probabilities(self, bounds: tuple[float, ...] = DEFAULT_BUCKETS_S) -> np.ndarray:
        cdf = np.array([self.cdf(b) for b in bounds] + [1.0])
        return np.diff(cdf, prepend=0.0)


@dataclass(frozen=True)
class Scenario:
    name: str = "healthy"
    rate_rps: float = 20.0  # total request rate into the InferenceService
    canary_percent: float = 20.0
    stable_error_rate: float = 0.005
    canary_error_rate: float = 0.005
    stable_latency: LatencyModel = field(default_factory=LatencyModel)
    canary_latency: LatencyModel = field(default_factory=LatencyModel)
    canary_has_metrics: bool = True  # False: a dead canary, its series never appear
    outage_s: tuple[float, float] | None = None  # Prometheus unreachable for checks with start <= t < end
    router_counts: bool = False  # readings carry the router's per-revision counts (Reading.routed)

    @property
    def canary_rps(self) -> float:
        return self.rate_rps * self.canary_percent / 100.0


def histogram_quantile(q: float, counts: np.ndarray, bounds: tuple[float, ...] = DEFAULT_BUCKETS_S) -> np.ndarray:
    """Prometheus' histogram_quantile over per-bucket counts (last axis, +Inf bucket last): the
    bucket holding rank q*total, interpolated linearly from its lower bound (0 for the first); in the
    +Inf bucket, the highest finite bound. NaN where the window is empty."""
    counts = np.asarray(counts, dtype=float)
    cum = np.cumsum(counts, axis=-1)
    total = cum[..., -1]
    rank = q * total
    idx = np.argmax(cum >= rank[..., None], axis=-1)
    upper_b = np.array(list(bounds) + [bounds[-1]])
    lower_b = np.array([0.0] + list(bounds))
    cum_before = np.where(idx > 0, np.take_along_axis(cum, np.maximum(idx - 1, 0)[..., None], -1)[..., 0], 0.0)
    in_bucket = np.take_along_axis(counts, idx[..., None], -1)[..., 0]
    lower, upper = lower_b[idx], upper_b[idx]
    frac = np.divide(rank - cum_before, in_bucket, out=np.ones_like(rank), where=in_bucket > 0)
    value = np.where(idx == len(bounds), bounds[-1], lower + (upper - lower) * frac)
    return np.where(total > 0, value, np.nan)


@dataclass
class Trace:
    """Per-window draws for `runs` runs: arrays shaped (runs, checks); index 0 = stable, 1 = canary."""

    scenario: Scenario
    times_s: np.ndarray  # (checks,)
    requests: np.ndarray  # (2, runs, checks) per window
    errors: np.ndarray  # (2, runs, checks) per window
    p99_s: np.ndarray  # (3, runs, checks): stable, canary, pooled; NaN = empty window
    slow: np.ndarray | None = None  # (2, runs, checks) per window: requests above the latency limit

    @property
    def runs(self) -> int:
        return self.requests.shape[1]

    def readings(self, run: int) -> Iterator[Reading]:
        sc = self.scenario
        cum_n = np.cumsum(self.requests[:, run], axis=-1)
        cum_e = np.cumsum(self.errors[:, run], axis=-1)
        cum_slow = None if self.slow is None else np.cumsum(self.slow[:, run], axis=-1)
        for k, t in enumerate(self.times_s):
            routed = self._routed(run, k) if sc.router_counts else None
            if sc.outage_s is not None and sc.outage_s[0] <= t < sc.outage_s[1]:
                yield Reading(float(t), NO_DATA, NO_DATA, source_ok=False,
                              source_error="simulated outage: Prometheus did not answer", routed=routed)
                continue
            revs = [self._revision(0, run, k, cum_n, cum_e, cum_slow)]
            revs.append(self._revision(1, run, k, cum_n, cum_e, cum_slow) if sc.canary_has_metrics else NO_DATA)
            yield Reading(float(t), canary=revs[1], stable=revs[0], source_ok=True,
                          combined=self._pooled(run, k, cum_n, cum_e), routed=routed)

    def _routed(self, run: int, k: int) -> dict[str, RoutedWindow]:
        # the router counts what it sent and the 2xx it got back; a dead canary answers nothing
        sent = self.requests[:, run, k].astype(float)
        ok = sent - self.errors[:, run, k]
        return {"stable": RoutedWindow(sent[0], ok[0]),
                "canary": RoutedWindow(sent[1], ok[1] if self.scenario.canary_has_metrics else 0.0)}

    def _revision(self, r: int, run: int, k: int, cum_n: np.ndarray, cum_e: np.ndarray,
                  cum_slow: np.ndarray | None) -> RevisionReading:
        p99 = float(self.p99_s[r, run, k])
        has_5xx = cum_e[r, k] > 0  # the 5xx series is created by the first 5xx
        return RevisionReading(requests=float(cum_n[r, k]), errors=float(cum_e[r, k]) if has_5xx else None,
                               p99_s=None if math.isnan(p99) else p99,
                               window_requests=float(self.requests[r, run, k]),
                               window_errors=float(self.errors[r, run, k]) if has_5xx else None,
                               slow=None if cum_slow is None else float(cum_slow[r, k]))

    def _pooled(self, run: int, k: int, cum_n: np.ndarray, cum_e: np.ndarray) -> RevisionReading:
        # What a service-wide query sees: a dead canary contributes no series, so only the stable.
        revs = (0, 1) if self.scenario.canary_has_metrics else (0,)
        e_cum = sum(float(cum_e[r, k]) for r in revs)
        p99 = float(self.p99_s[2 if len(revs) == 2 else 0, run, k])
        return RevisionReading(requests=sum(float(cum_n[r, k]) for r in revs), errors=e_cum if e_cum > 0 else None,
                               p99_s=None if math.isnan(p99) else p99,
                               window_requests=sum(float(self.requests[r, run, k]) for r in revs),
                               window_errors=sum(float(self.errors[r, run, k]) for r in revs) if e_cum > 0 else None)


def generate(scenario: Scenario, config: JudgeConfig, *, runs: int = 1, seed: int = 0) -> Trace:
    rng = np.random.default_rng(seed)
    checks = config.total_checks
    times = config.interval_s * np.arange(1, checks + 1)
    total = rng.poisson(scenario.rate_rps * config.interval_s, size=(runs, checks))
    canary = rng.binomial(total, scenario.canary_percent / 100.0)
    requests = np.stack([total - canary, canary])
    rates = np.array([scenario.stable_error_rate, scenario.canary_error_rate])[:, None, None]
    errors = rng.binomial(requests, rates)
    buckets = np.stack([rng.multinomial(requests[r], lat.bucket_probabilities())
                        for r, lat in enumerate((scenario.stable_latency, scenario.canary_latency))])
    p99 = np.stack([histogram_quantile(0.99, buckets[0]), histogram_quantile(0.99, buckets[1]),
                    histogram_quantile(0.99, buckets[0] + buckets[1])])
    slow = None
    if config.p99_threshold_s in DEFAULT_BUCKETS_S:  # the count above the bucket bound at the limit
        slow = buckets[..., DEFAULT_BUCKETS_S.index(config.p99_threshold_s) + 1:].sum(axis=-1)
    return Trace(scenario, times, requests, errors, p99, slow)


@dataclass
class SimOutcome:
    decision: Decision
    time_to_decision_s: float
    verdict: Verdict


def run_judge(judge: Judge, readings: Iterator[Reading] | list[Reading], config: JudgeConfig) -> SimOutcome:
    """Drive a judge as harness.canary.observe does: observe each reading until a final verdict, else
    finish at the deadline with the last reading."""
    judge.reset()
    last: Reading | None = None
    for reading in readings:
        last = reading
        verdict = judge.observe(reading)
        if verdict.decision is not Decision.CONTINUE:
            return SimOutcome(verdict.decision, reading.t_s, verdict)
    verdict = judge.finish(last)
    return SimOutcome(verdict.decision, config.observation_s, verdict)


def simulate(judge: Judge, scenario: Scenario, config: JudgeConfig, *, seed: int = 0) -> tuple[Decision, float]:
    """One simulated canary judged to the end: (decision, time to decision in seconds)."""
    outcome = run_judge(judge, generate(scenario, config, runs=1, seed=seed).readings(0), config)
    return outcome.decision, outcome.time_to_decision_s


def simulate_many(judges: dict[str, Judge], scenario: Scenario, config: JudgeConfig, *, runs: int,
                  seed: int = 0) -> dict[str, list[SimOutcome]]:
    """`runs` simulated canaries, every judge fed the same readings per run (a paired comparison:
    differences between judges are not sampling noise). Judges are reset before each run."""
    trace = generate(scenario, config, runs=runs, seed=seed)
    out: dict[str, list[SimOutcome]] = {name: [] for name in judges}
    for run in range(runs):
        readings = list(trace.readings(run))
        for name, judge in judges.items():
            out[name].append(run_judge(judge, readings, config))
    return out
