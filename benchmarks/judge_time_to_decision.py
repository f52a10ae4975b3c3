"""Time to decision of the canary judges on simulated canaries, beside Wald's SPRT bound for the
same hypotheses, with the wrong-decision rate of every point (false rollback or miss).

    .venv/bin/python benchmarks/judge_time_to_decision.py [--points 2:20:60,20:20:60,...] [--runs 2000]

A point is RATE:PERCENT:INTERVAL[:DEADLINE]: total request rate (req/s), canary percent, seconds
between checks and the overall deadline (default the seed's 900 s). The default points are the
seed's 60 s checks and 5 s checks at 2 and 20 req/s with a 20 % canary, the live scenarios' old
setting (70 req/s, 50 %, 3 s checks, 45 s deadline) and the recommended one (70 req/s, 80 %, 3 s
checks, 75 s deadline, docs/judges.md). Stable error rate 0.5 %. `--judges` takes any judge spec
(external.load_judge), e.g. seed,sequential,flagger,argo,kayenta.

The bound ("Wald s") is Wald's expected sample size, overshoot ignored,
E[N|H1] = [(1-b) ln((1-b)/a) + b ln(b/(1-a))] / KL(p1||p0) (E[N|H0] with KL(p0||p1) for a
healthy canary, which is promoted by accepting H0), at the judge's alpha and beta, for the test the
sequential judge runs on that scenario, converted to seconds at the point's traffic (for the healthy
canary the faster of its two promotion tests, the relative one and the floor one):

* errors: the relative test conditioned on 5xx events. Each event comes from the canary with
  probability theta(r) = w r / (w r + 1 - w) (w = canary share, r = canary/stable error ratio);
  H0 is r = 1 (p0 = w). H1 is r = 5, the judge's severe_factor, for the 5x canary (the judge's
  rollback statistic holds exactly that SPRT, mixed half and half with the 2x one); r = 2 (the
  promotion test) for the healthy canary; the true r = 20 for the 10 % canary (the judge only has
  2x and 5x: the bound is then an information bound, not its own SPRT). N counts error events;
  seconds = N / (events per second) at the point's rate.
* floor (healthy canary): the one-sample SPRT H0 p = error_floor vs H1 p = 2 x error_floor on the
  canary's own requests, E[N|H0] in canary requests.
* "stable known" (reference only): the one-sample SPRT p0 = stable's rate, p1 = canary's rate.
  It needs the stable's rate as a known constant; a judge that measures the stable live cannot
  reach it (at a 50 % split the conditional test has about a third of its information per request).
* tail latency: the one-sample SPRT on the share of canary requests slower than the p99 limit.
  The judge runs it with H1 p = 1 % (p99 at the limit) vs H0 p = 0.5 %; the bound is the SPRT from
  the same H0 to the true share (as for the 10 % canary: an information bound, the judge's own H1
  being 1 %).

"@check" rounds the bound up to the first check at or after it: a judge polled every interval
cannot decide between checks, so where the bound is under one interval the ratio to the raw bound
mostly measures the polling. Wrong decisions: "false rb" = rollbacks of the healthy canary (in
brackets: early ones, on evidence; the rest are deadline rollbacks, which the sequential judge no
longer makes: undecided at the deadline it is inconclusive, column "inconc"), "miss" = promotions
of a bad canary (for the 2x canary, beta's bound); "<=" is the 95 % Clopper-Pearson upper bound
over the runs (scipy.stats). The summary lines print, per point, the healthy canary's promotion
share and the 5x canary's rollback share (the issue's 90 % / 90 % target).
"""
from __future__ import annotations

import argparse
import dataclasses
import math
import sys
import time
from pathlib import Path

import numpy as np
from scipy import stats

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from harness.judges.base import Decision, JudgeConfig
from harness.judges.external import load_judge
from harness.judges.sequential import slow_share_hypotheses
from harness.judges.simulate import LatencyModel, Scenario, simulate_many
from harness.judges.sprt import asn_h0, asn_h1, canary_share

STABLE_ERROR = 0.005
TAIL = LatencyModel(tail_fraction=0.05, tail_median_s=1.0)
DEFAULT_POINTS = "2:20:60,20:20:60,2:20:5,20:20:5,70:50:3:45,70:80:3:75"


@dataclasses.dataclass(frozen=True)
class Bound:
    seconds: float
    hypotheses: str
    known_stable_s: float | None = None


def scenarios(rate: float, percent: float) -> list[Scenario]:
    base = Scenario(rate_rps=rate, canary_percent=percent, stable_error_rate=STABLE_ERROR,
                    canary_error_rate=STABLE_ERROR)
    return [dataclasses.replace(base, name="healthy"),
            dataclasses.replace(base, name="2x stable errors", canary_error_rate=2 * STABLE_ERROR),
            dataclasses.replace(base, name="5x stable errors", canary_error_rate=5 * STABLE_ERROR),
            dataclasses.replace(base, name="10% errors", canary_error_rate=0.10),
            dataclasses.replace(base, name="tail latency", canary_latency=TAIL)]


def bound(sc: Scenario, cfg: JudgeConfig) -> Bound:
    a, b = cfg.alpha, cfg.beta
    w = sc.canary_percent / 100.0
    ps, pc = sc.stable_error_rate, sc.canary_error_rate
    if sc.canary_latency != sc.stable_latency:
        slow = 1.0 - sc.canary_latency.cdf(cfg.p99_threshold_s)
        p0, _p1 = slow_share_hypotheses(cfg)
        return Bound(asn_h1(p0, slow, a, b) / sc.canary_rps,
                     f"slow share H0 {p0:.1%} vs {slow:.1%} (true share; one-sample, per canary request)")
    events_per_s = sc.rate_rps * (w * pc + (1 - w) * ps)
    ratio = pc / ps
    if ratio <= 1:
        r1 = cfg.relative_factor
        n = asn_h0(w, canary_share(w, r1), a, b)
        known = asn_h0(ps, r1 * ps, a, b) / sc.canary_rps
        floor_s = asn_h0(cfg.error_floor, r1 * cfg.error_floor, a, b) / sc.canary_rps
        return Bound(min(n / events_per_s, floor_s),
                     (f"min(E[N|H0] theta {w:.2f} (r=1) vs {canary_share(w, r1):.2f} (r={r1:g}): "
                      f"{n / events_per_s:.0f} s, floor p {cfg.error_floor:.1%} vs {r1 * cfg.error_floor:.1%}: "
                      f"{floor_s:.0f} s)"), known)
    note = "" if math.isclose(ratio, cfg.severe_factor) else ", true r"
    n = asn_h1(w, canary_share(w, ratio), a, b)
    return Bound(n / events_per_s,
                 f"E[N|H1] theta {w:.2f} (r=1) vs {canary_share(w, ratio):.2f} (r={ratio:g}{note})",
                 asn_h1(ps, pc, a, b) / sc.canary_rps)


def at_check(seconds: float, interval_s: float) -> float:
    return max(1, math.ceil(seconds / interval_s - 1e-9)) * interval_s


def upper95(k: int, n: int) -> float:
    return interval95(k, n)[1]


def interval95(k: int, n: int) -> tuple[float, float]:
    ci = stats.binomtest(k, n).proportion_ci(confidence_level=0.95, method="exact")
    return float(ci.low), float(ci.high)


def parse_points(text: str) -> list[tuple[float, float, float, float]]:
    points = []
    for item in text.split(","):
        parts = [float(x) for x in item.split(":")]
        if len(parts) not in (3, 4):
            raise SystemExit(f"point {item!r}: expected RATE:PERCENT:INTERVAL[:DEADLINE]")
        points.append((parts[0], parts[1], parts[2], parts[3] if len(parts) == 4 else 900.0))
    return points


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--points", default=DEFAULT_POINTS, help="RATE:PERCENT:INTERVAL[:DEADLINE],...")
    parser.add_argument("--runs", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=20261128)
    parser.add_argument("--judges", default="seed,sequential")
    args = parser.parse_args()
    started = time.monotonic()
    base = JudgeConfig()
    print(f"alpha {base.alpha:g}, beta {base.beta:g}; sequential judge: relative factor {base.relative_factor:g} "
          f"(promotion), rollback on the mixture of the {base.relative_factor:g}x and {base.severe_factor:g}x SPRTs; "
          f"stable error rate {STABLE_ERROR:.1%}; {args.runs} simulated runs per point, every judge on the same runs")
    head = (f"{'scenario':16} {'judge':10} {'req/s':>5} {'can%':>4} {'check':>5} {'deadl':>5} | {'promote':>7} "
            f"{'rollbk':>7} {'inconc':>7} | {'wrong decisions':28} | {'median s':>8} {'p90 s':>6} | {'Wald s':>7} {'@check':>6} "
            f"{'ratio':>6} {'r@chk':>6} | {'stable known s':>14} | Wald bound's hypotheses")
    print(head)
    print("-" * len(head))
    targets: list[str] = []
    for point_no, (rate, percent, interval, deadline) in enumerate(parse_points(args.points)):
        cfg = JudgeConfig(interval_s=interval, observation_s=deadline)
        for i, sc in enumerate(scenarios(rate, percent)):
            judges = {name: load_judge(name, cfg) for name in args.judges.split(",")}
            out = simulate_many(judges, sc, cfg, runs=args.runs, seed=args.seed + 100 * point_no + i)
            bd = bound(sc, cfg)
            for name, outcomes in out.items():
                n = len(outcomes)
                t = np.array([o.time_to_decision_s for o in outcomes])
                promote = sum(o.decision is Decision.PROMOTE for o in outcomes)
                rollback = sum(o.decision is Decision.ROLLBACK for o in outcomes)
                inconc = sum(o.decision is Decision.INCONCLUSIVE for o in outcomes)
                if name == "sequential" and sc.name in ("healthy", "5x stable errors"):
                    share, what = (promote, "healthy promoted") if sc.name == "healthy" else (rollback, "5x rolled back")
                    targets.append(f"{rate:g}:{percent:g}:{interval:g}:{deadline:g} {what} {share / n:.1%} "
                                   f"(95% [{interval95(share, n)[0]:.1%}, {interval95(share, n)[1]:.1%}])")
                if sc.name == "healthy":
                    early = sum(o.decision is Decision.ROLLBACK and o.time_to_decision_s < deadline for o in outcomes)
                    wrong = f"false rb {rollback / n:5.1%} ({early / n:4.1%}<={upper95(early, n):4.1%})"
                else:
                    wrong = f"miss {promote / n:5.1%} <={upper95(promote, n):5.1%}"
                med, p90 = float(np.median(t)), float(np.percentile(t, 90))
                mark = "*" if med >= deadline else " "  # censored: most runs undecided at the deadline
                chk = at_check(bd.seconds, interval)
                known = f"{bd.known_stable_s:14.0f}" if bd.known_stable_s is not None else f"{'-':>14}"
                print(f"{sc.name:16} {name:10} {rate:5g} {percent:4g} {interval:5g} {deadline:5g} | "
                      f"{promote / n:7.1%} {rollback / n:7.1%} {inconc / n:7.1%} | {wrong:28} | {med:8.0f} {p90:6.0f} | "
                      f"{bd.seconds:7.1f} {chk:6.0f} {med / bd.seconds:5.2f}{mark} {med / chk:5.2f}{mark} | {known} | "
                      f"{bd.hypotheses}")
        print()
    print("ratio = median / Wald s; r@chk = median / @check; *: median at the deadline (most runs undecided): "
          "the ratio is only a lower bound.")
    if targets:
        print("sequential judge, target >= 90% each:")
        for line in targets:
            print("  " + line)
    print(f"(wall time {time.monotonic() - started:.1f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
