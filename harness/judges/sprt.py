"""Wald's sequential probability ratio test for Bernoulli events: the log-likelihood ratios the
sequential judge accumulates, its stopping bounds, and the expected sample sizes the benchmarks
compare the judges with (A. Wald, "Sequential Tests of Statistical Hypotheses", Annals of
Mathematical Statistics 16(2), 1945: bounds A = (1 - beta) / alpha, B = beta / (1 - alpha), and the
average sample number E[N | H1] = ((1 - beta) ln A + beta ln B) / E[z | H1]).
"""
from __future__ import annotations

import math

__all__ = ["asn_h0", "asn_h1", "bernoulli_llr", "canary_share", "kl_bernoulli", "log_mixture", "relative_llr",
           "wald_log_bounds"]


def kl_bernoulli(a: float, b: float) -> float:
    """KL(a || b) between Bernoulli(a) and Bernoulli(b), nats."""
    total = 0.0
    if a > 0:
        total += a * math.log(a / b)
    if a < 1:
        total += (1 - a) * math.log((1 - a) / (1 - b))
    return total


def wald_log_bounds(alpha: float, beta: float) -> tuple[float, float]:
    """(ln B, ln A): accept H0 at or below ln B = ln(beta / (1 - alpha)), reject H0 at or above
    ln A = ln((1 - beta) / alpha)."""
    return math.log(beta / (1 - alpha)), math.log((1 - beta) / alpha)


def bernoulli_llr(events: float, trials: float, p0: float, p1: float) -> float:
    """ln L(p1) / L(p0) for `events` successes in `trials` Bernoulli trials. Counts may be
    fractional: Prometheus' increase() extrapolates, and the ratio is still the right weight."""
    return events * math.log(p1 / p0) + (trials - events) * math.log((1 - p1) / (1 - p0))


def canary_share(weight: float, ratio: float) -> float:
    """Probability that an error event comes from the canary when it serves `weight` of the
    requests and its error rate is `ratio` times the stable's (Poisson thinning: the share is
    w*r / (w*r + 1 - w), whatever the stable's own rate is)."""
    return weight * ratio / (weight * ratio + 1 - weight)


def relative_llr(canary_errors: float, stable_errors: float, weight: float, ratio: float) -> float:
    """ln L(ratio) / L(1) of the test conditioned on error events: each of the
    canary_errors + stable_errors events came from the canary with probability
    canary_share(weight, ratio) under the alternative and `weight` under H0 (canary as good as the
    stable)."""
    theta0, theta1 = weight, canary_share(weight, ratio)
    return canary_errors * math.log(theta1 / theta0) + stable_errors * math.log((1 - theta1) / (1 - theta0))


def log_mixture(*llrs: float) -> float:
    """ln of the equal-weight mixture of likelihood ratios, ln(mean(exp(llr))), computed stably.
    Each ratio is a nonnegative martingale with mean 1 under H0, so their mean is one too: by
    Ville's inequality P(sup mixture >= A) <= 1/A, however often it is looked at."""
    top = max(llrs)
    return top + math.log(sum(math.exp(x - top) for x in llrs) / len(llrs))


def asn_h1(p0: float, p1: float, alpha: float, beta: float) -> float:
    """Wald's expected number of trials under H1 (overshoot ignored):
    [(1-b) ln((1-b)/a) + b ln(b/(1-a))] / KL(p1 || p0). It is also the information bound for any
    sequential test with these error rates, which is why the benchmark uses it as the yardstick."""
    return ((1 - beta) * math.log((1 - beta) / alpha) + beta * math.log(beta / (1 - alpha))) / kl_bernoulli(p1, p0)


def asn_h0(p0: float, p1: float, alpha: float, beta: float) -> float:
    """Wald's expected number of trials under H0: [(1-a) ln((1-a)/b) + a ln(a/(1-b))] / KL(p0 || p1)."""
    return ((1 - alpha) * math.log((1 - alpha) / beta) + alpha * math.log(alpha / (1 - beta))) / kl_bernoulli(p0, p1)
