"""Kayenta's NetflixACAJudge as a seamcheck judge: per metric a Mann-Whitney classification of the
canary's samples against the baseline's (High, Low or Pass), group scores, a weighted summary score
against the pass and marginal thresholds, judged by the standalone canary analysis' schedule.

Ported from spinnaker/kayenta at tag v2.46.0 (code, then docs):
- kayenta-judge/.../NetflixACAJudge.scala: MannWhitneyClassifier(tolerance = 0.25,
  confLevel = 0.98); per metric `direction` (code default "either"), `nanStrategy` (unknown or
  unset -> remove), effectSize.measure meanRatio with allowedIncrease / allowedDecrease 1.0,
  critical / mustHaveData false, outliers kept. A classification that throws is "Error".
- kayenta-judge/.../classifiers/metric/MannWhitneyClassifier.scala: no data on either side ->
  Nodata (remove) or Pass (replace); identical samples -> Pass; one distinct value in all -> Pass;
  both samples constant -> Gaussian noise of sd value * 1e-5 added (zero for zeros); else the test's
  confidence interval [lo, hi] and Hodges-Lehmann estimate of the shift canary - baseline: High
  when lo > tolerance * |estimate| (and meanRatio canary/baseline >= allowedIncrease, or NaN),
  Low when hi < -tolerance * |estimate| (and meanRatio <= allowedDecrease, or NaN), else Pass.
- kayenta-mannwhitney/.../MannWhitney.scala: the interval and estimate are the roots in mu of
  (dz - sign(dz) / 2) / sigma - z, dz = U(canary - mu, baseline) - n m / 2, sigma with the tie
  correction, z = +-Phi^-1((1 - confLevel) / 2) and 0, found by BrentSolver (absolute tolerance
  1e-4) between min(canary) - max(baseline) and max(canary) - min(baseline) (R's wilcox.test
  conf.int); sigma 0 throws. Here U comes from the same ranking scipy.stats.mannwhitneyu uses (its
  statistic is checked against this U in the tests) and the roots from scipy.optimize.brentq at
  the same tolerance; scipy.stats.mannwhitneyu's two-sided asymptotic p-value at mu = 0 goes into the
  reasons.
- kayenta-judge/.../scorers/WeightedSumScorer.scala: group score = 100 * Pass / (Pass + High + Low
  + NodataFailMetric) (Error and Nodata do not count; a group with none of those scores 100);
  groups without a weight share 100 - the given weights equally; a critical failure or >= 50 % of
  metrics Nodata scores 0; rounded to 2 decimals.
- kayenta-standalone-canary-analysis/.../SetupAndExecuteCanariesStage.java: judgements at
  i * analysisInterval for i = 1..lifetime / analysisInterval, each over a growing window from the
  start (lookbackMins 0); analysisIntervalMins omitted -> one judgement at the end of the lifetime.
  MonitorCanaryTask.java: a judgement scoring <= marginal ends the analysis (fail fast);
  GenerateCanaryAnalysisResultTask.java: the last score must be > marginal and >= pass.
- json-formats.md and the sample-config.json files: scoreThresholds pass 95, marginal 75.
- docs/canary-config.md: `direction` is required ("increase" for error counts), nanStrategy
  defaults to remove.

Where docs and code disagree (code followed): CanaryAnalysisExecutionRequest's description says every
judgement before the last "must meet or exceed the marginal score", but MonitorCanaryTask fails a
score equal to marginal (`canaryScore <= marginal`); CanaryClassifierThresholdsConfig says a score
"higher than" pass succeeds, ThresholdScoreClassifier and GenerateCanaryAnalysisResultTask pass a
score equal to it. docs/canary-config.md marks `direction` required; the code falls back to
"either", under which a canary with *fewer* errors than the baseline is Low and fails; the metrics
here set "increase", as the docs advise for error counts and latency.

What a sample is here: Kayenta fetches each metric as a time series at `step` resolution; one
seamcheck reading is one step, so a revision's samples are its per-window error rates (window 5xx /
window requests; an absent 5xx series with requests counted is 0, a window without requests is
NaN, which nanStrategy remove drops) and its per-window p99 (NaN without requests), canary against
stable. No request series (or Prometheus down) at a step gives no sample; Prometheus down at a
judgement makes that canary run fail, which fails the analysis.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from harness.judges.base import Decision, JudgeConfig, Reading, RevisionReading, Verdict

__all__ = ["KayentaConfig", "KayentaJudge", "KayentaMetric", "MannWhitneyResult", "classify", "mann_whitney",
           "score"]

PASS, HIGH, LOW, NODATA, NODATA_FAIL, ERROR = "Pass", "High", "Low", "Nodata", "NodataFailMetric", "Error"
_BRENT_TOLERANCE = 1e-4  # kayenta-mannwhitney BrentSolver.TOLERANCE (absolute)
NODATA_THRESHOLD = 50.0  # WeightedSumScorer: >= 50 % of metrics Nodata fails the canary


@dataclass(frozen=True)
class KayentaMetric:
    """One metric of the canary config with its analysisConfigurations.canary settings."""

    name: str
    sample: str  # "error-rate" or "p99" (seconds), one value per reading window
    group: str
    direction: str = "increase"  # docs: required; "increase" for error counts and latency
    nan_strategy: str = "remove"  # docs and code default
    allowed_increase: float = 1.0  # effectSize meanRatio default
    allowed_decrease: float = 1.0
    critical: bool = False
    must_have_data: bool = False

    def __post_init__(self) -> None:
        problems = []
        if self.sample not in ("error-rate", "p99"):
            problems.append(f"sample={self.sample!r}; use 'error-rate' or 'p99'")
        if self.direction not in ("increase", "decrease", "either"):
            problems.append(f"direction={self.direction!r}; use 'increase', 'decrease' or 'either'")
        if self.nan_strategy not in ("remove", "replace"):
            problems.append(f"nan_strategy={self.nan_strategy!r}; use 'remove' or 'replace'")
        if problems:
            raise ValueError("KayentaMetric: " + "; ".join(problems))


@dataclass(frozen=True)
class KayentaConfig:
    """NetflixACAJudge's fixed classifier settings, the canary config's metrics and thresholds, and the
    standalone analysis' schedule."""

    metrics: tuple[KayentaMetric, ...] = (KayentaMetric("error-rate", "error-rate", "errors"),
                                          KayentaMetric("p99-latency", "p99", "latency"))
    group_weights: tuple[tuple[str, float], ...] = ()  # () : groups share 100 equally
    pass_threshold: float = 95.0  # scoreThresholds.pass (json-formats.md)
    marginal_threshold: float = 75.0  # scoreThresholds.marginal
    confidence_level: float = 0.98  # NetflixACAJudge
    tolerance: float = 0.25  # NetflixACAJudge
    # analysisIntervalMins in seconds; None = lifetime: one judgement at the deadline (the default)
    judgement_interval_s: float | None = None
    lookback_s: float = 0.0  # lookbackMins: 0 = growing window from the start
    noise_seed: int = 0  # the Gaussian noise for constant samples (Kayenta's is unseeded)

    def __post_init__(self) -> None:
        problems = []
        if not self.metrics:
            problems.append("metrics must name at least one KayentaMetric")
        if not 0 < self.confidence_level < 1:
            problems.append(f"confidence_level must be in (0, 1), got {self.confidence_level}")
        if self.judgement_interval_s is not None and self.judgement_interval_s <= 0:
            problems.append(f"judgement_interval_s must be > 0 or None (one judgement), got {self.judgement_interval_s}")
        if self.marginal_threshold > self.pass_threshold:
            problems.append(f"marginal_threshold {self.marginal_threshold} > pass_threshold {self.pass_threshold}")
        if problems:
            raise ValueError("KayentaConfig: " + "; ".join(problems))


@dataclass(frozen=True)
class MannWhitneyResult:
    lower: float
    upper: float
    estimate: float
    p_value: float  # scipy.stats.mannwhitneyu, two-sided, asymptotic, at mu = 0 (reported only)


def _u_statistic(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """(U of x, tie term sum(t^3 - t)) of the pooled sample, average ranks for ties."""
    from scipy import stats  # here, not at the top: scipy takes a second and most sessions judge nothing

    pooled = np.concatenate([x, y])
    ranks = stats.rankdata(pooled)
    _, ties = np.unique(pooled, return_counts=True)
    return float(ranks[: len(x)].sum() - len(x) * (len(x) + 1) / 2), float((ties.astype(float) ** 3 - ties).sum())


def _wilcoxon_diff(mu: float, quantile: float, x: np.ndarray, y: np.ndarray) -> float:
    """MannWhitney.wilcoxonDiff: the standardised statistic of (x - mu, y), continuity-corrected, minus quantile."""
    nx, ny = len(x), len(y)
    u, tie_term = _u_statistic(x - mu, y)
    dz = u - nx * ny / 2
    sigma = math.sqrt(nx * ny / 12 * ((nx + ny + 1) - tie_term / ((nx + ny) * (nx + ny - 1))))
    if sigma == 0:
        raise ArithmeticError("cannot compute confidence interval when all observations are tied")
    return (dz - math.copysign(0.5, dz) * (dz != 0)) / sigma - quantile


def _brent(fn: Any, lo: float, hi: float, f_lo: float, f_hi: float) -> float:
    if f_lo == 0:
        return lo
    if f_hi == 0:
        return hi
    from scipy import optimize

    return float(optimize.brentq(fn, lo, hi, xtol=_BRENT_TOLERANCE, maxiter=1000))


def mann_whitney(x: np.ndarray, y: np.ndarray, confidence_level: float) -> MannWhitneyResult:
    """The confidence interval and Hodges-Lehmann estimate of the shift x - y (MannWhitney.scala)."""
    from scipy import stats

    alpha = 1 - confidence_level
    mu_min, mu_max = float(x.min() - y.max()), float(x.max() - y.min())
    z = float(stats.norm.ppf(alpha / 2))  # negative

    def root(quantile: float) -> float:
        f_lo, f_hi = _wilcoxon_diff(mu_min, quantile, x, y), _wilcoxon_diff(mu_max, quantile, x, y)
        if f_lo <= 0:
            return mu_min
        if f_hi >= 0:
            return mu_max
        return _brent(lambda m: _wilcoxon_diff(m, quantile, x, y), mu_min, mu_max, f_lo, f_hi)

    f_lo, f_hi = _wilcoxon_diff(mu_min, 0.0, x, y), _wilcoxon_diff(mu_max, 0.0, x, y)
    if f_lo * f_hi > 0:  # Kayenta's solver would wander; the estimate is then the nearer end
        estimate = mu_min if abs(f_lo) < abs(f_hi) else mu_max
    else:
        estimate = _brent(lambda m: _wilcoxon_diff(m, 0.0, x, y), mu_min, mu_max, f_lo, f_hi)
    p = float(stats.mannwhitneyu(x, y, alternative="two-sided", method="asymptotic").pvalue)
    return MannWhitneyResult(root(-z), root(z), estimate, p)


def _mean_ratio(control: np.ndarray, experiment: np.ndarray) -> float:
    c, e = float(control.mean()), float(experiment.mean())
    return math.nan if c == 0.0 or e == 0.0 else e / c


def classify(control: np.ndarray, experiment: np.ndarray, metric: KayentaMetric, cfg: KayentaConfig,
             rng: np.random.Generator) -> tuple[str, str, dict[str, Any]]:
    """MannWhitneyClassifier.classify with NetflixACAJudge's settings: (label, reason, numbers)."""
    experiment = experiment[~np.isnan(experiment)] if metric.nan_strategy == "remove" else np.nan_to_num(experiment)
    control = control[~np.isnan(control)] if metric.nan_strategy == "remove" else np.nan_to_num(control)
    if len(experiment) == 0 or len(control) == 0:
        if metric.nan_strategy == "remove":
            return (NODATA_FAIL if metric.must_have_data and not metric.critical else NODATA,
                    f"Missing data for {metric.name}", {})
        return PASS, "", {}
    if np.array_equal(np.sort(experiment), np.sort(control)):
        return PASS, f"The Canary and Baseline data are identical for {metric.name}", {}
    if len(np.unique(np.concatenate([experiment, control]))) == 1:
        return PASS, "", {}
    if len(np.unique(experiment)) == 1 and len(np.unique(control)) == 1:
        experiment = experiment + rng.normal(0.0, abs(experiment[0]) * 1e-5, len(experiment))
        control = control + rng.normal(0.0, abs(control[0]) * 1e-5, len(control))
    try:
        mw = mann_whitney(experiment, control, cfg.confidence_level)
    except ArithmeticError as exc:  # NetflixACAJudge catches the RuntimeException: "Error"
        return ERROR, f"Metric Classification Failed: {exc}", {}
    effect = _mean_ratio(control, experiment)
    critical_value = cfg.tolerance * abs(mw.estimate)
    numbers = {"lower": mw.lower, "upper": mw.upper, "estimate": mw.estimate, "mean_ratio": effect,
               "p_value": mw.p_value, "n_canary": len(experiment), "n_baseline": len(control)}
    high = (metric.direction in ("increase", "either") and mw.lower > critical_value
            and (math.isnan(effect) or effect >= metric.allowed_increase))
    low = (metric.direction in ("decrease", "either") and mw.upper < -critical_value
           and (math.isnan(effect) or effect <= metric.allowed_decrease))
    label = HIGH if high else LOW if low else PASS
    reason = (f"{metric.name}: {label}, shift {mw.estimate:+.4g} ({cfg.confidence_level:.0%} CI "
              f"[{mw.lower:+.4g}, {mw.upper:+.4g}], bound +-{critical_value:.3g}), mean ratio {effect:.3g}, "
              f"p {mw.p_value:.3g}, {len(experiment)} vs {len(control)} samples")
    return label, reason, numbers


def score(labels: dict[str, str], cfg: KayentaConfig) -> tuple[float, str]:
    """WeightedSumScorer: the summary score of the metrics' labels, and why it is 0 when it is forced."""
    metrics = {m.name: m for m in cfg.metrics}
    failures = [n for n, lab in labels.items() if metrics[n].critical and lab != PASS]
    if failures:
        return 0.0, f"Canary Failed: critical metric {failures[0]} was {labels[failures[0]]}"
    if sum(lab == NODATA for lab in labels.values()) / len(labels) * 100 >= NODATA_THRESHOLD:
        return 0.0, f"Canary Failed: {NODATA_THRESHOLD:g}% or more metrics returned NODATA"
    groups: dict[str, list[str]] = {}
    for name, lab in labels.items():
        groups.setdefault(metrics[name].group, []).append(lab)
    weights = dict(cfg.group_weights)
    unweighted = [g for g in groups if g not in weights]
    share = (100 - sum(weights.values())) / len(unweighted) if unweighted else 0.0
    total = 0.0
    for group, labs in groups.items():
        counted = [lab for lab in labs if lab in (PASS, HIGH, LOW, NODATA_FAIL)]
        group_score = 100.0 if not counted else 100.0 * counted.count(PASS) / len(counted)
        total += group_score * weights.get(group, share) / 100
    return round(total, 2), ""


def _samples(rev: RevisionReading, metric: KayentaMetric) -> float | None:
    """One step's sample of a revision: None = no point in the series, NaN = the query's 0/0."""
    if rev.requests is None:
        return None
    n = rev.window_requests
    if metric.sample == "error-rate":
        if not n:
            return math.nan
        return min(max(float(rev.window_errors or 0.0), 0.0), float(n)) / float(n)
    return math.nan if rev.p99_s is None else float(rev.p99_s)


@dataclass
class KayentaJudge:
    config: JudgeConfig = field(default_factory=JudgeConfig)
    kayenta: KayentaConfig = field(default_factory=KayentaConfig)
    name: str = "kayenta"

    def __post_init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self._points: list[tuple[float, dict[str, tuple[float | None, float | None]]]] = []
        self._scores: list[float] = []
        self._judged = 0
        self._last_t: float | None = None
        self._rng = np.random.default_rng(self.kayenta.noise_seed)

    def _judgement_times(self) -> list[float]:
        lifetime = self.config.observation_s
        step = self.kayenta.judgement_interval_s or lifetime
        step = min(step, lifetime)
        return [step * i for i in range(1, int(lifetime / step + 1e-9) + 1)]

    def _judge(self, at_s: float) -> tuple[float, list[str], dict[str, Any]]:
        start = at_s - self.kayenta.lookback_s if self.kayenta.lookback_s else -math.inf
        window = [p for t, p in self._points if start < t <= at_s + 1e-6]
        labels, reasons, numbers = {}, [], {}
        for metric in self.kayenta.metrics:
            canary = np.array([p[metric.name][0] for p in window if p[metric.name][0] is not None], dtype=float)
            stable = np.array([p[metric.name][1] for p in window if p[metric.name][1] is not None], dtype=float)
            label, why, nums = classify(stable, canary, metric, self.kayenta, self._rng)
            labels[metric.name] = label
            numbers[metric.name] = {"label": label, **nums}
            reasons.append(why or f"{metric.name}: {label}")
            if len(stable) < 50:
                reasons.append(f"{metric.name}: {len(stable)} baseline data points (< 50: Kayenta warns that this "
                               "reduces confidence in the score)")
        value, forced = score(labels, self.kayenta)
        return value, ([forced] if forced else []) + reasons, numbers

    def _details(self, extra: dict[str, Any] | None = None) -> dict[str, Any]:
        return {"scores": list(self._scores), "judgement_times_s": self._judgement_times(), **(extra or {})}

    def _run_judgement(self, at_s: float, final: bool, source_ok: bool) -> Verdict:
        k = self.kayenta
        self._judged += 1
        if not source_ok:  # the canary run's fetch fails: no successful judgement to aggregate
            return Verdict(Decision.ROLLBACK, [
                (f"judgement {self._judged} at t={at_s:.0f}s: metrics fetch failed (Prometheus unreachable), the canary "
                "run is TERMINAL: the analysis did not pass")], at_s, details=self._details())
        value, reasons, numbers = self._judge(at_s)
        self._scores.append(value)
        head = f"judgement {self._judged} at t={at_s:.0f}s: score {value:g}"
        details = self._details({"metrics": numbers})
        if value <= k.marginal_threshold:
            return Verdict(Decision.ROLLBACK, [f"{head} is not above the marginal threshold {k.marginal_threshold:g}"]
                           + reasons, at_s, details=details)
        if not final:
            return Verdict(Decision.CONTINUE, [f"{head} above marginal {k.marginal_threshold:g}: continue"] + reasons,
                           at_s, details=details)
        if value < k.pass_threshold:
            return Verdict(Decision.ROLLBACK, [f"{head} is below the pass threshold {k.pass_threshold:g}"] + reasons,
                           at_s, details=details)
        return Verdict(Decision.PROMOTE, [f"{head} met or exceeded the pass threshold {k.pass_threshold:g}"]
                       + reasons, at_s, details=details)

    def observe(self, reading: Reading) -> Verdict:
        self._last_t = reading.t_s
        if reading.source_ok:
            self._points.append((reading.t_s, {m.name: (_samples(reading.canary, m), _samples(reading.stable, m))
                                               for m in self.kayenta.metrics}))
        times = self._judgement_times()
        if self._judged < len(times) and reading.t_s >= times[self._judged] - 1e-6:
            return self._run_judgement(reading.t_s, final=self._judged + 1 == len(times), source_ok=reading.source_ok)
        return Verdict(Decision.CONTINUE, [f"t={reading.t_s:.0f}s: collecting ({len(self._points)} steps)"],
                       reading.t_s, details=self._details())

    def finish(self, reading: Reading | None) -> Verdict:
        if reading is not None and reading.t_s != self._last_t:
            verdict = self.observe(reading)
            if verdict.final:
                return verdict
        at = self._last_t if self._last_t is not None else (reading.t_s if reading is not None else 0.0)
        # the lifetime is over: the remaining judgement is the last one
        return self._run_judgement(at, final=True, source_ok=reading.source_ok if reading is not None else True)
