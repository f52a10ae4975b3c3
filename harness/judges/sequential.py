"""A canary judge that decides as soon as the evidence allows, with bounded error rates.

Errors: Wald SPRTs on the canary's 5xx, run on the cumulative counts at every check.

* Relative ("canary error rate > relative_factor x max(stable, floor) is bad"). Comparing with the
  stable's *observed* rate is a two-sample problem: plugging the stable's noisy estimate in as a
  known p0 inflates false rollbacks (early on the stable has seen a handful of errors). So the test
  conditions on error events instead. With the canary serving a share w of the requests and an error
  rate r times the stable's, each error comes from the canary with probability
  theta(r) = w r / (w r + 1 - w), whatever the stable's own rate is: the nuisance parameter drops
  out, and H0: r = 1 (the canary is as good as the stable) is a plain Bernoulli test on "which
  revision did this error come from" (conditioning Poisson counts on their sum, the idea behind
  Netflix's count tests: Lindon, Sanden and Shirikian, "Rapid Regression Detection in Software
  Deployments through Sequential Testing", KDD 2022). The floor enters as pseudo-errors: the stable counts
  max(errors, floor x requests), i.e. its rate is read as max(stable, floor); that only ever makes
  the canary look relatively better, so it cannot add false rollbacks.

  Two alternatives, because one SPRT is fast only at its own H1. The SPRT for H1: r =
  relative_factor (2x, the dashboard rule) is one of promotion's two components (below). But as a
  rollback rule it is slow on a clearly bad
  canary: at r = 5 its drift per error event is about two thirds of that of the SPRT built for
  r = 5, and with the cost of conditioning it took 3-4x Wald's bound to roll a 5x canary back. So
  *rollback* uses the equal mixture of the likelihood ratios for r = relative_factor and r =
  severe_factor (5x): a nonnegative martingale with mean one under H0, hence (Ville's inequality)
  P(it ever reaches A) <= 1/A = alpha / (1 - beta) however often it is looked at, and at r = 5 it
  needs at most ln 2 nats more than the lone 5x SPRT. A canary between 2x and 5x is still rolled
  back by the 2x component (ln 2 later than before).
* Absolute ("error rate > error_threshold is bad whatever the stable does"): a one-sample SPRT with
  p1 = error_threshold and p0 = error_threshold / relative_factor (the same indifference ratio as the
  relative rule). It is what catches a canary as bad as a bad stable.

* Floor ("the canary's own rate is under relative_factor x error_floor"): a one-sample SPRT on the
  canary's counts, H0 p = error_floor vs H1 p = relative_factor x error_floor. Being under
  relative_factor x floor is enough for the relative rule, since max(stable, floor) >= floor, and
  it uses every canary request rather than only the error events: where the stable sits at or under
  the floor (the usual case), a canary at the floor needs ~1300 requests instead of ~38 error events
  (Wald's E[N] at 0.5 % errors, 70 req/s, 50 % split: 37 s instead of 110 s; simulated medians 42 s
  and 72 s). It only promotes.

The relative mixture or the absolute SPRT crossing ln A = ln((1 - beta) / alpha) rolls back.
Relative promotion uses the equal mixture of the *inverse* likelihood ratios of the 2x relative
SPRT (counting the stable's real errors, without the floor's pseudo-errors) and the floor SPRT
(each L(good) / L(bad)), promoting when it reaches ln(1 / B) =
ln((1 - alpha) / beta). Under any canary at the bad boundary, canary = relative_factor x
max(stable, floor), one component is a martingale and the other a supermartingale (the truth is at
or beyond its H1), so the mixture is a nonnegative supermartingale with mean <= 1: by Ville's
inequality a canary at 2x is promoted with probability <= B ~ beta however often it is looked at,
where either test alone (or promoting on whichever accepts first) would not give that bound.
Promotion needs that mixture and the absolute SPRT (below ln B) *at the same check* (an acceptance
that later drifts back up does not count), plus min_requests canary requests and healthy latency.
Each rollback statistic keeps its own false rollback rate at or under about alpha; the two only add up when the canary sits on both null boundaries at once (stable
at threshold/factor). benchmarks/judge_time_to_decision.py and judge_error_rates.py measure both
the times (beside Wald's bound for the same hypotheses) and the error rates.

Latency, two rules:
* Slow requests (when the reading counts them: the dialect's histogram has a bucket bound at
  p99_threshold_s). "p99 <= limit" is "at most 1 % of requests slower than the limit", so this is a
  one-sample SPRT on the canary's cumulative slow share, H1 p = 1 % (p99 at the limit) vs H0 p =
  1 % / relative_factor (the errors' indifference ratio): crossing ln A rolls back, ln B lets
  latency promote. Counts, not windows, so it works at any traffic: a window rule alone never
  promoted (nor caught a tail) when each check saw fewer than min_window_requests canary requests.
* Windows: a window *qualifies* when the canary served at least min_window_requests in it (fewer
  and p99 is essentially the maximum) and p99 is present. It *breaches* when the canary p99 exceeds
  p99_threshold_s, or relative_factor x max(stable p99, latency_floor_s) in the same window (the
  relative rule, which the one-sample count cannot express). latency_windows consecutive breaching
  qualifying windows roll back (non-qualifying windows neither break nor extend a streak).
Promotion needs the slow-request SPRT accepted and the last qualifying window clean (no breach
streak under way); without slow-request counts, the last latency_windows qualifying windows all
clean. With counts, one noisy window must not hold promotion for latency_windows windows: the p99
of ~100 requests is their maximum, and live, under load on two cores, a healthy canary (0 of 1619
requests slow) breached every other window against the stable and was never promoted.

Availability: a canary that served before and then answers nothing for latency_windows windows
while the stable keeps serving rolls back (dead or crash-looping replicas): that absence is
evidence, because the stable's series show the metrics pipeline is alive. Where the reading carries
the router's own counts, a window is dark only if the router got no answer from the canary either:
the router answering for it while Prometheus shows nothing is missing metrics, not a dead canary,
and the reasons say which of the two was observed. A window is also dark for a canary that never
served when the router counts requests sent to it and no answers: without that, a canary dead from
its first request was held to the deadline (Flagger and Argo roll it back). "The stable keeps
serving" is min_window_requests in its window, or that many expected on the canary from the split
(at an 80 % canary the stable's 3 s window holds ~42 requests).

Missing data never promotes:
* source_ok False, or no canary series: nothing is updated, the verdict is CONTINUE.
* A canary 5xx series that does not exist while its request series does is 0 errors (Prometheus
  client libraries create the 5xx child at the first 5xx; that absence is the healthy normal).
* No stable series: the relative test is not updated and promotion waits for it.
* At the deadline (finish): INCONCLUSIVE if no reading ever carried canary requests (the judge
  cannot tell a dead canary from missing metrics: not a promotion, not evidence against the model).

Correctness (readings that carry a ProbeTally: the same labelled held-out rows sent to canary and
stable through their tagged routes): harness.judges.probes, a one-sample SPRT on the rate of rows
the canary answers otherwise than the stable, at the same alpha, beta and bounds. Its ln A rolls
back whatever Prometheus says (the probes do not go through it); until it accepts, and while probe
rounds fail or a reading comes without a tally, promotion waits. A judgement with no probes is
judged as before.

The terminal rule: a test that has not decided by the deadline has not shown the canary bad (no
rollback statistic reached ln A) nor good. The judge then says INCONCLUSIVE, its reasons naming what
is still open, and the rollout policy (harness.judges.policy) maps that to hold, extend or roll
back; JudgeConfig.deadline_decision = "rollback" restores the old rule (every undecided canary
rolled back, so at low traffic nearly every healthy one). The terminal rule itself never promotes
and never rolls back, so it adds nothing to the false-rollback or the 2x-promotion rate; what it
costs, the share of canaries left undecided, is printed per scenario by the benchmarks.
"""
from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from harness.judges.base import Decision, JudgeConfig, Reading, RevisionReading, Verdict
from harness.judges.probes import ProbeTest
from harness.judges.sprt import bernoulli_llr, log_mixture, relative_llr, wald_log_bounds

__all__ = ["SLOW_SHARE_LIMIT", "SequentialJudge", "clean_canary_requests_to_promote", "slow_share_hypotheses"]

#: p99 within the limit means at most this share of requests slower than it.
SLOW_SHARE_LIMIT = 0.01


def slow_share_hypotheses(config: JudgeConfig) -> tuple[float, float]:
    """(p0, p1) of the slow-request SPRT: H1 the p99 at the limit, H0 the errors' indifference ratio below."""
    return SLOW_SHARE_LIMIT / config.relative_factor, SLOW_SHARE_LIMIT


def _router_words(reading: Reading) -> str:
    """What the router itself saw of the canary in this window, for a reason line."""
    routed = reading.routed or {}
    canary, stable = routed.get("canary"), routed.get("stable")
    if canary is None:
        return "the profile has no router counts, so a dead canary and missing metrics look alike here"
    total = canary.sent + (stable.sent if stable is not None else 0.0)
    return (f"the router sent it {canary.sent:.0f} of {total:.0f} requests in the last window and got "
            f"{canary.ok:.0f} answers back")


def _missing_canary(reading: Reading) -> str:
    """No canary series in Prometheus: name what the router observed, so "no metrics for the
    canary" and "the canary stopped serving" are different findings."""
    routed = (reading.routed or {}).get("canary")
    if routed is None:
        return "no canary request series (dead canary or metrics missing: the profile has no router counts)"
    if routed.ok > 0:
        return (f"no metrics for the canary: Prometheus has no canary series, but the router got {routed.ok:.0f} "
                f"answers from it in the last window ({_router_words(reading)})")
    if routed.sent > 0:
        return f"the canary is not answering: {_router_words(reading)}; Prometheus has no canary series"
    return f"the canary received no traffic: {_router_words(reading)}; Prometheus has no canary series"


def _counts(rev: RevisionReading) -> tuple[float, float] | None:
    """(requests, errors) since judgement start, or None without a request series."""
    if rev.requests is None:
        return None
    n = max(float(rev.requests), 0.0)
    e = 0.0 if rev.errors is None else min(max(float(rev.errors), 0.0), n)
    return n, e


def clean_canary_requests_to_promote(config: JudgeConfig, canary_percent: float) -> float:
    """Canary requests the judge needs before it can promote when neither revision has any 5xx:
    the point where both SPRTs reach their promote bound (and min_requests). It sizes load tests:
    with no errors at all, the only evidence is volume. Latency needs as many requests with none
    slow (without slow-request counts: latency_windows windows of min_window_requests each)."""
    cfg = config
    log_b, _ = wald_log_bounds(cfg.alpha, cfg.beta)
    p1 = cfg.error_threshold
    absolute = log_b / math.log((1 - p1) / (1 - p1 / cfg.relative_factor))
    slow_p0, slow_p1 = slow_share_hypotheses(cfg)
    latency = log_b / math.log((1 - slow_p1) / (1 - slow_p0))
    # Per clean canary request, -LLR of each promotion component grows linearly: the relative one
    # not at all (its stable counts real errors only, and there are none), the floor one through
    # the canary's own requests. The mixture crosses -ln B where ln(mean(exp(n * rate))) = -ln B;
    # it is increasing in n, so bisect.
    rates = (0.0, -math.log((1 - cfg.relative_factor * cfg.error_floor) / (1 - cfg.error_floor)))
    lo, hi = 0.0, -log_b / max(rates)  # a single component at full weight would need hi
    hi += math.log(len(rates)) / max(rates)  # the mixture's cost: at most ln 2 more
    for _ in range(100):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if log_mixture(*(mid * r for r in rates)) < -log_b else (lo, mid)
    return max(absolute, latency, hi, float(cfg.min_requests))


@dataclass
class SequentialJudge:
    config: JudgeConfig = field(default_factory=JudgeConfig)
    name: str = "sequential"

    def __post_init__(self) -> None:
        self._log_b, self._log_a = wald_log_bounds(self.config.alpha, self.config.beta)
        self.reset()

    def reset(self) -> None:
        self._canary: tuple[float, float] | None = None
        self._stable: tuple[float, float] | None = None  # last stable counts seen (for reasons and details)
        self._llr_rel = 0.0  # relative SPRT, H1 r = relative_factor: with the floor SPRT, decides promotion
        self._llr_severe = 0.0  # relative SPRT, H1 r = severe_factor
        self._llr_rollback = 0.0  # ln(mixture of the two): decides relative rollback
        self._llr_abs = 0.0
        self._llr_rel_plain = 0.0  # the same SPRT on the stable's real errors (no floor): promotion's component
        self._llr_floor = 0.0  # one-sample SPRT on the canary, H1 rate relative_factor x error_floor
        self._llr_promote = 0.0  # ln(mixture of L(good)/L(bad) of the 2x relative and floor SPRTs)
        self._streak = 0  # consecutive breaching qualifying windows
        self._recent: deque[bool] = deque(maxlen=self.config.latency_windows)  # qualifying windows: breached?
        self._latency_seen = False
        self._llr_slow = 0.0  # slow-request SPRT, H1 slow share = SLOW_SHARE_LIMIT
        self._slow: float | None = None  # cumulative slow canary requests, once a reading carried them
        self._snapshots: list[dict[str, Any]] = []
        self._readings = 0
        self._last_t: float | None = None
        self._dark = 0  # consecutive windows the canary served nothing while the stable was busy
        self._probe = ProbeTest(self.config)  # the correctness probes' SPRT (gates promotion once it has run)

    # -- evidence ---------------------------------------------------------------------------------

    def _update_errors(self, canary: tuple[float, float], stable: tuple[float, float] | None) -> None:
        cfg = self.config
        n_c, e_c = canary
        self._llr_abs = bernoulli_llr(e_c, n_c, cfg.error_threshold / cfg.relative_factor, cfg.error_threshold)
        self._llr_floor = bernoulli_llr(e_c, n_c, cfg.error_floor, cfg.relative_factor * cfg.error_floor)
        self._update_relative(canary, stable)
        self._llr_promote = log_mixture(-self._llr_rel_plain, -self._llr_floor)

    def _update_relative(self, canary: tuple[float, float], stable: tuple[float, float] | None) -> None:
        cfg = self.config
        n_c, e_c = canary
        if stable is None or n_c + stable[0] <= 0:
            return  # the relative test keeps its last value: both counts must come from one reading
        n_s, e_s = stable
        # The split from cumulative counts: exact while canaryTrafficPercent stays put during the
        # judgement (KServe does not step it); cumulative totals also shrug off increase()'s
        # extrapolation noise, which per-window increments would accumulate.
        w = n_c / (n_c + n_s)
        if w <= 0 or w >= 1:  # all traffic on one side: no comparison yet
            self._llr_rel = self._llr_rel_plain = self._llr_severe = self._llr_rollback = 0.0
            return
        e_s_eff = max(e_s, cfg.error_floor * n_s)
        self._llr_rel = relative_llr(e_c, e_s_eff, w, cfg.relative_factor)
        # Promotion's relative component counts the stable's real errors: the floor SPRT is what
        # lets a canary through beside a clean stable now, and pseudo-errors would make this
        # component accept a 2x canary more often than its martingale bound allows (measured: 10.2 %
        # of 2x canaries promoted at 20 req/s, 20 %, 5 s checks with them, against beta 10 %).
        self._llr_rel_plain = relative_llr(e_c, e_s, w, cfg.relative_factor)
        self._llr_severe = relative_llr(e_c, e_s_eff, w, cfg.severe_factor)
        self._llr_rollback = log_mixture(self._llr_rel, self._llr_severe)

    def _update_latency(self, canary: RevisionReading, stable: RevisionReading) -> str | None:
        cfg = self.config
        if canary.p99_s is None or (canary.window_requests or 0) < cfg.min_window_requests:
            return None
        limit = cfg.p99_threshold_s
        why = None
        if canary.p99_s > limit:
            why = f"canary p99 {canary.p99_s * 1000:.0f} ms > {limit * 1000:.0f} ms"
        elif stable.p99_s is not None and (stable.window_requests or 0) >= cfg.min_window_requests:
            rel_limit = cfg.relative_factor * max(stable.p99_s, cfg.latency_floor_s)
            if canary.p99_s > rel_limit:
                why = (f"canary p99 {canary.p99_s * 1000:.0f} ms > {cfg.relative_factor:g} x "
                       f"max(stable {stable.p99_s * 1000:.0f} ms, floor {cfg.latency_floor_s * 1000:.0f} ms)")
        self._latency_seen = True
        self._recent.append(why is not None)
        self._streak = self._streak + 1 if why else 0
        return why

    def _update_slow(self, canary: RevisionReading, n_c: float) -> None:
        if canary.slow is None:
            return  # keeps its last value: no bucket at the limit, or the series is not there yet
        self._slow = min(max(float(canary.slow), 0.0), n_c)  # increase() extrapolates a little either way
        p0, p1 = slow_share_hypotheses(self.config)
        self._llr_slow = bernoulli_llr(self._slow, n_c, p0, p1)

    def _slow_line(self) -> str:
        n_c = self._canary[0] if self._canary else 0.0
        return (f"{self._slow or 0:.0f} of {n_c:.0f} canary requests slower than "
                f"{self.config.p99_threshold_s * 1000:.0f} ms (slow LLR {self._llr_slow:+.2f}, H1 "
                f"{SLOW_SHARE_LIMIT:.0%} slow)")

    def _stable_busy(self, stable_window: float) -> bool:
        """The stable served enough in the window that a canary serving its share could not have got
        nothing: min_window_requests on the stable, or that many expected on the canary from the
        split so far (at an 80 % canary split the stable's own window is small)."""
        cfg = self.config
        expected = 0.0
        if self._canary is not None and self._stable is not None and self._stable[0] > 0:
            expected = stable_window * self._canary[0] / self._stable[0]
        return stable_window >= cfg.min_window_requests or (stable_window > 0 and expected >= cfg.min_window_requests)

    # -- verdicts ---------------------------------------------------------------------------------

    def _details(self) -> dict[str, Any]:
        cfg = self.config
        return {
            "llr_relative": self._llr_rel, "llr_severe": self._llr_severe, "llr_rollback": self._llr_rollback,
            "llr_absolute": self._llr_abs, "llr_relative_plain": self._llr_rel_plain, "llr_floor": self._llr_floor, "llr_promote": self._llr_promote,
            "log_rollback_bound": self._log_a, "log_promote_bound": self._log_b,
            "canary_requests": self._canary[0] if self._canary else None,
            "canary_errors": self._canary[1] if self._canary else None,
            "stable_requests": self._stable[0] if self._stable else None,
            "stable_errors": self._stable[1] if self._stable else None,
            "latency_breach_streak": self._streak, "latency_recent_windows": list(self._recent),
            "llr_slow": self._llr_slow, "canary_slow_requests": self._slow,
            "relative": (f"H0 r=1 vs H1 r={cfg.relative_factor:g} (promotion) and the mixture of H1 "
                         f"r={cfg.relative_factor:g} and r={cfg.severe_factor:g} (rollback); "
                         f"r = canary/max(stable, {cfg.error_floor:g})"),
            "absolute": f"H0 p={cfg.error_threshold / cfg.relative_factor:g} vs H1 p={cfg.error_threshold:g}",
            "floor": (f"H0 p={cfg.error_floor:g} vs H1 p={cfg.relative_factor * cfg.error_floor:g} (canary alone); "
                      f"promotion on the mixture of 1/LR of the relative and floor SPRTs >= {-self._log_b:.2f}"),
            **self._probe.details(),
        }

    def _verdict(self, decision: Decision, reasons: list[str], at_s: float) -> Verdict:
        return Verdict(decision, reasons, at_s, observations_used=list(self._snapshots), details=self._details())

    def _counts_line(self) -> str:
        (n_c, e_c), (n_s, e_s) = self._canary or (0, 0), self._stable or (0, 0)
        return f"{e_c:.0f}/{n_c:.0f} canary vs {e_s:.0f}/{n_s:.0f} stable requests failed"

    def _evidence(self) -> str:
        cfg = self.config
        return (f"relative LLR {self._llr_rel:+.2f} (H1 {cfg.relative_factor:g}x), rollback mixture "
                f"{self._llr_rollback:+.2f} (H1 {cfg.relative_factor:g}x or {cfg.severe_factor:g}x), absolute LLR "
                f"{self._llr_abs:+.2f} (rollback >= {self._log_a:.2f}, promote <= {self._log_b:.2f}), floor LLR "
                f"{self._llr_floor:+.2f}, promotion mixture {self._llr_promote:+.2f} (promote >= {-self._log_b:.2f})")

    def observe(self, reading: Reading) -> Verdict:
        cfg = self.config
        self._readings += 1
        self._last_t = reading.t_s
        snap: dict[str, Any] = {"t_s": reading.t_s, "source_ok": reading.source_ok}
        self._snapshots.append(snap)
        # Correctness first: the probes do not go through Prometheus, so their evidence counts even
        # when its readings are missing.
        self._probe.update(reading.probes)
        if reading.probes is not None:
            snap["probes"] = reading.probes.to_dict()
        if self._probe.rejects:
            return self._verdict(Decision.ROLLBACK, [
                "canary answers differ from the stable's on held-out rows: " + self._probe.line()], reading.t_s)
        if not reading.source_ok:
            snap["used"] = False
            return self._verdict(Decision.CONTINUE, [
                (f"t={reading.t_s:.0f}s: metrics source unreachable ({reading.source_error or 'no detail'}); "
                "holding, never promoting on missing data")], reading.t_s)
        canary, stable = _counts(reading.canary), _counts(reading.stable)
        snap.update(canary=reading.canary.to_dict(), stable=reading.stable.to_dict())
        # Availability: a canary that served before and now answers nothing (its replicas dead or
        # crash-looping, its series gone) while the stable is busy is not serving its share of
        # traffic. That is evidence against it, not missing data: roll back after as many windows
        # as the latency rule needs.
        stable_window = reading.stable.window_requests or 0.0
        routed = reading.routed.get("canary") if reading.routed else None
        if (reading.canary.window_requests or 0.0) > 0 or (routed is not None and routed.ok > 0):
            self._dark = 0
        elif ((routed is not None and routed.sent > 0)  # the router's own count: sent it requests, none answered
              or (self._canary is not None and self._stable_busy(stable_window))):
            self._dark += 1
            if self._dark >= cfg.latency_windows:
                return self._verdict(Decision.ROLLBACK, [
                    (f"canary stopped serving: no canary requests in {self._dark} consecutive windows while the "
                     f"stable served {stable_window:.0f} in the last one (replicas dead or not ready); "
                     + _router_words(reading))], reading.t_s)
        if canary is None:
            snap["used"] = False
            return self._verdict(Decision.CONTINUE, [f"t={reading.t_s:.0f}s: " + _missing_canary(reading) + "; holding"],
                                 reading.t_s)
        gap = (routed is not None and routed.ok > 0 and not (reading.canary.window_requests or 0.0) > 0)
        snap["used"] = True
        self._canary = canary
        if stable is not None:
            self._stable = stable
        self._update_errors(canary, stable)
        breach = self._update_latency(reading.canary, reading.stable)
        self._update_slow(reading.canary, canary[0])
        # Each statistic's value after this reading, so a report can draw its path against the
        # bounds (read here, never read back: the decisions below are the same without it).
        snap["llr"] = {k: v for k, v in self._details().items() if k.startswith("llr_")}

        if self._llr_rollback >= self._log_a:
            return self._verdict(Decision.ROLLBACK, [
                (f"canary error rate worse than {cfg.relative_factor:g} x max(stable, {cfg.error_floor:g}): "
                f"{self._counts_line()}; {self._evidence()}")], reading.t_s)
        if self._llr_abs >= self._log_a:
            return self._verdict(Decision.ROLLBACK, [
                f"canary error rate above {cfg.error_threshold:g}: {canary[1]:.0f}/{canary[0]:.0f}; "
                + self._evidence()], reading.t_s)
        if self._streak >= cfg.latency_windows:
            return self._verdict(Decision.ROLLBACK, [
                f"latency breached on {self._streak} consecutive windows, last: {breach}"], reading.t_s)
        if self._llr_slow >= self._log_a:
            return self._verdict(Decision.ROLLBACK, [
                (f"canary p99 above {cfg.p99_threshold_s * 1000:.0f} ms: {self._slow_line()} "
                 f"(rollback >= {self._log_a:.2f})")], reading.t_s)

        waiting = []
        if gap:  # not a dark window (the router got answers), but not one the metrics saw either
            waiting.append(f"no metrics for the canary's last window: {_router_words(reading)}")
        if stable is None:
            waiting.append("no stable request series in this reading")
        probe_hold = self._probe.holds_promotion()
        if probe_hold:
            waiting.append(probe_hold)
        if canary[0] < cfg.min_requests:
            waiting.append(f"{canary[0]:.0f} canary requests < min_requests {cfg.min_requests}")
        if self._llr_promote < -self._log_b or self._llr_abs > self._log_b:
            waiting.append("error evidence not yet conclusive: " + self._evidence())
        if cfg.require_latency and self._slow is not None:
            if self._llr_slow > self._log_b:
                waiting.append(f"latency not yet conclusive: {self._slow_line()} (promote <= {self._log_b:.2f})")
            if self._streak:
                waiting.append(f"latency: the last {self._streak} qualifying window(s) breached")
        elif cfg.require_latency:
            clean = len(self._recent) == cfg.latency_windows and not any(self._recent)
            if not clean:
                n_ok = len(self._recent) - sum(self._recent)
                waiting.append(f"latency: {n_ok} of the last {cfg.latency_windows} qualifying windows clean "
                               f"(a window qualifies with >= {cfg.min_window_requests} canary requests and a p99)")
        if waiting:
            return self._verdict(Decision.CONTINUE, [f"t={reading.t_s:.0f}s: " + "; ".join(waiting)], reading.t_s)
        reasons = [(f"canary error rate acceptable vs stable and vs {cfg.error_threshold:g}: "
                   f"{self._counts_line()}; {self._evidence()}")]
        if cfg.require_latency and self._slow is not None:
            reasons.append(f"latency: p99 within {cfg.p99_threshold_s * 1000:.0f} ms: {self._slow_line()}"
                           + ("; the last qualifying window within limits" if self._recent else ""))
        elif cfg.require_latency:
            reasons.append(f"latency: last {cfg.latency_windows} qualifying windows within limits")
        elif self._latency_seen:
            reasons.append(f"latency: {self._streak} consecutive breaching windows (< {cfg.latency_windows}); "
                           "clean windows not required (require_latency is off)")
        else:
            reasons.append("latency not judged: no qualifying window (require_latency is off)")
        if self._probe.expected:
            reasons.append("correctness: answers as the stable's on held-out rows: " + self._probe.line())
        return self._verdict(Decision.PROMOTE, reasons, reading.t_s)

    def finish(self, reading: Reading | None) -> Verdict:
        if reading is not None and reading.t_s != self._last_t:
            verdict = self.observe(reading)
            if verdict.final:
                return verdict
        at = self._last_t if self._last_t is not None else (reading.t_s if reading is not None else 0.0)
        if self._canary is None:
            return self._verdict(Decision.INCONCLUSIVE, [
                (f"deadline: none of {self._readings} readings carried canary requests (metrics source down, "
                "canary dead or not exporting); cannot judge, not promoting")], at)
        last = self.undecided_because()
        if self._canary[0] < self.config.min_requests:
            # Too little traffic to judge at all: say so rather than roll back a canary nobody
            # has measured (the evidence neither condemns nor clears it). Never a promote.
            return self._verdict(Decision.INCONCLUSIVE, [
                f"deadline with too little traffic to judge, not promoting: {last}"], at)
        if self.config.deadline_decision == "rollback":
            return self._verdict(Decision.ROLLBACK, [f"deadline without a decision, rolling back: {last}"], at)
        return self._verdict(Decision.INCONCLUSIVE, [
            (f"deadline without a decision: not shown bad (no rollback statistic reached {self._log_a:.2f}) and not "
             f"shown good; the rollout policy decides: {last}")], at)

    def undecided_because(self) -> str:
        """One line on why the judge has not decided (also the deadline's reason)."""
        cfg = self.config
        parts = [self._evidence()]
        if self._canary is not None and self._canary[0] < cfg.min_requests:
            parts.append(f"only {self._canary[0]:.0f} canary requests (< {cfg.min_requests})")
        if self._stable is None:
            parts.append("no stable data to compare with")
        if cfg.require_latency and self._slow is not None and self._llr_slow > self._log_b:
            parts.append(f"latency not conclusive: {self._slow_line()}")
        if cfg.require_latency and self._slow is not None and self._streak:
            parts.append(f"latency: the last {self._streak} qualifying window(s) breached")
        elif cfg.require_latency and self._slow is None and not self._latency_seen:
            parts.append("no latency window qualified and no slow-request counts")
        probe_hold = self._probe.holds_promotion()
        if probe_hold:
            parts.append(probe_hold)
        return "; ".join(parts)
