"""Time to decision of the canary judges on simulated canaries, beside Wald's SPRT bound.

    .venv/bin/python benchmarks/judge_time_to_decision.py [--rates 2,20] [--canary-percent 20] [--runs 1000]

Per request rate, per scenario and judge: the share of promote / rollback / inconclusive, the median
and p90 simulated time to decision (full-scale JudgeConfig: checks every 60 s, 900 s deadline), and
two yardsticks, both in seconds at the canary's share of the traffic:

* "SPRT bound": Wald's expected sample size of the SPRT that knows the stable's error rate p0 and the
  canary's true rate p1, E[N|H1] = [(1-b) ln((1-b)/a) + b ln(b/(1-a))] / KL(p1||p0) (E[N|H0] with
  p1 = relative_factor x p0 for the healthy canary, which can only be promoted by accepting H0). No
  sequential test with these error bounds does better on average; "@check" rounds it up to the
  first check at or after it, since no judge polled every interval_s can decide between checks.
* "2-sample": the same bound for a test that does not know the stable's rate and must learn it from
  the stable's own errors in the window (the conditional test on error events the sequential judge
  runs, told the true ratio). The gap between the two is the price of comparing with a stable
  measured live rather than known.

Tail latency: the slow-request fraction above the p99 limit against 1 % (a p99 exactly at the limit).
"""
from __future__ import annotations

import argparse
import dataclasses
import math
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from harness.judges.base import Decision, JudgeConfig
from harness.judges.seed import SeedThresholdJudge
from harness.judges.sequential import SequentialJudge
from harness.judges.simulate import LatencyModel, Scenario, simulate_many
from harness.judges.sprt import asn_h0, asn_h1, canary_share

STABLE_ERROR = 0.005
TAIL = LatencyModel(tail_fraction=0.05, tail_median_s=1.0)


def scenarios(rate: float, percent: float) -> list[Scenario]:
    base = Scenario(rate_rps=rate, canary_percent=percent, stable_error_rate=STABLE_ERROR,
                    canary_error_rate=STABLE_ERROR)
    return [dataclasses.replace(base, name="healthy"),
            dataclasses.replace(base, name="5x stable errors", canary_error_rate=5 * STABLE_ERROR),
            dataclasses.replace(base, name="10% errors", canary_error_rate=0.10),
            dataclasses.replace(base, name="tail latency", canary_latency=TAIL)]


def bounds_s(sc: Scenario, cfg: JudgeConfig) -> tuple[float, float | None]:
    """(known-baseline SPRT bound, two-sample bound), seconds of canary traffic."""
    a, b, k = cfg.alpha, cfg.beta, cfg.relative_factor
    w = sc.canary_percent / 100.0
    ps, pc = sc.stable_error_rate, sc.canary_error_rate
    if sc.canary_latency != sc.stable_latency:
        slow = 1.0 - sc.canary_latency.cdf(cfg.p99_threshold_s)
        return asn_h1(0.01, slow, a, b) / sc.canary_rps, None
    # error events per canary request: the canary's own plus the stable's, scaled by the split
    events_per_canary_request = pc + ps * (1 - w) / w
    if pc <= ps:
        known = asn_h0(ps, k * ps, a, b)
        two = asn_h0(w, canary_share(w, k), a, b) / events_per_canary_request
    else:
        known = asn_h1(ps, pc, a, b)
        two = asn_h1(w, canary_share(w, pc / ps), a, b) / events_per_canary_request
    return known / sc.canary_rps, two / sc.canary_rps


def at_check(seconds: float, cfg: JudgeConfig) -> float:
    return max(1, math.ceil(seconds / cfg.interval_s - 1e-9)) * cfg.interval_s


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rates", default="2,20", help="total request rates, req/s, comma separated")
    parser.add_argument("--canary-percent", type=float, default=20.0)
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=20261128)
    parser.add_argument("--interval", type=float, default=None,
                        help="seconds between checks (default: the seed's 60 s); the SPRT bound assumes continuous looks")
    args = parser.parse_args()
    cfg = JudgeConfig(interval_s=args.interval) if args.interval else JudgeConfig()
    started = time.monotonic()
    print(f"JudgeConfig: checks every {cfg.interval_s:g} s, deadline {cfg.observation_s:g} s, alpha {cfg.alpha:g}, "
          f"beta {cfg.beta:g}, relative factor {cfg.relative_factor:g}; stable error rate {STABLE_ERROR:.1%}; "
          f"{args.runs} runs per row; canary {args.canary_percent:g} % of traffic")
    for rate in (float(r) for r in args.rates.split(",")):
        canary_rps = rate * args.canary_percent / 100
        print(f"\n== {rate:g} req/s total, {canary_rps:g} req/s to the canary ==")
        head = (f"{'scenario':18} {'judge':10} {'promote':>7} {'rollbk':>7} {'inconc':>7} {'median s':>8} "
                f"{'p90 s':>6} | {'SPRT bound s':>12} {'@check':>6} {'2-sample s':>10} | "
                f"{'med/bound':>9} {'med/@check':>10} {'med/2-sample':>12}")
        print(head)
        print("-" * len(head))
        for i, sc in enumerate(scenarios(rate, args.canary_percent)):
            judges = {"seed": SeedThresholdJudge(cfg), "sequential": SequentialJudge(cfg)}
            out = simulate_many(judges, sc, cfg, runs=args.runs, seed=args.seed + i)
            known, two = bounds_s(sc, cfg)
            for name, outcomes in out.items():
                t = np.array([o.time_to_decision_s for o in outcomes])
                share = {d: np.mean([o.decision is d for o in outcomes])
                         for d in (Decision.PROMOTE, Decision.ROLLBACK, Decision.INCONCLUSIVE)}
                med = float(np.median(t))
                # A median at the deadline is censored (most runs undecided): the ratio is a lower bound.
                mark = "*" if med >= cfg.observation_s else " "
                ratios = (f"{med / known:8.2f}{mark} {med / at_check(known, cfg):9.2f}{mark} "
                          + (f"{med / two:11.2f}{mark}" if two else f"{'-':>12}")) if name == "sequential" else ""
                print(f"{sc.name:18} {name:10} {share[Decision.PROMOTE]:7.1%} {share[Decision.ROLLBACK]:7.1%} "
                      f"{share[Decision.INCONCLUSIVE]:7.1%} {med:8.0f} {np.percentile(t, 90):6.0f} | "
                      f"{known:12.0f} {at_check(known, cfg):6.0f} {(f'{two:10.0f}' if two else f'{chr(45):>10}')} | "
                      + ratios)
    print("\n*: median at the deadline (most runs undecided until then): the ratio is only a lower bound.")
    print(f"(wall time {time.monotonic() - started:.1f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
