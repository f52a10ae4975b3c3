"""False-rollback and miss rates of the canary judges over simulated canaries.

    .venv/bin/python benchmarks/judge_error_rates.py [--runs 2000] [--rates 2,10,50] [--multiples 1,2,3,5,10]

Stable error rate 0.5 %; the canary's is a multiple of it (1x = an A/A test, the canary as good as the
stable); canary 20 % of the traffic; full-scale JudgeConfig (60 s checks, 900 s deadline). Both
judges see the same simulated readings in each run. Columns:

* promote / rollback early / rollback at 900 s / inconclusive: shares of the runs. "Early" means a
  decision on evidence before the deadline (the seed's immediate rollback, the sequential judge's
  SPRT or latency rule); at 900 s the seed applies its pass ratio, and the sequential judge, still
  undecided, is inconclusive (its terminal rule: not shown bad is not a rollback; before
  2026-12-01 it rolled back by rule, which `JudgeConfig(deadline_decision="rollback")` restores).
* false rollback = any rollback of a 1x canary; the sequential judge's alpha bounds the early part
  (and with the inconclusive terminal rule there is no other part).
* miss = promotion of a canary at 3x or worse; at 2x (the relative rule's boundary, "bad" is > 2x)
  the sequential judge's beta bounds the promotions.

Extra A/A rows at stable 1 % check alpha where it is tightest: above the relative rule's floor
(0.5 %), so the floor adds no margin, and exactly on the absolute test's null (threshold / factor),
so both SPRTs sit on their null boundary at once. (An A/A at 2 % is not in the table: 2 % is bad by
the absolute rule, and rolling that canary back is correct.) "<=" gives the 95 % Clopper-Pearson
upper bound (scipy.stats) of the early false rollback and of the miss rate over the runs.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
from scipy import stats

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from harness.judges.base import Decision, JudgeConfig
from harness.judges.seed import SeedThresholdJudge
from harness.judges.sequential import SequentialJudge
from harness.judges.simulate import Scenario, SimOutcome, simulate_many

STABLE_ERROR = 0.005


def shares(outcomes: list[SimOutcome], deadline_s: float) -> dict[str, float]:
    n = len(outcomes)
    count = {"promote": 0, "early": 0, "deadline": 0, "inconclusive": 0}
    for o in outcomes:
        if o.decision is Decision.PROMOTE:
            count["promote"] += 1
        elif o.decision is Decision.ROLLBACK:
            count["early" if o.time_to_decision_s < deadline_s else "deadline"] += 1
        else:
            count["inconclusive"] += 1
    out = {k: v / n for k, v in count.items()}
    out["median_s"] = float(np.median([o.time_to_decision_s for o in outcomes]))
    return out


def upper95(rate: float, n: int) -> float:
    k = round(rate * n)
    return float(stats.binomtest(k, n).proportion_ci(confidence_level=0.95, method="exact").high)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=2000)
    parser.add_argument("--rates", default="2,10,50", help="total request rates, req/s")
    parser.add_argument("--multiples", default="1,2,3,5,10", help="canary error rate as multiples of the stable's")
    parser.add_argument("--canary-percent", type=float, default=20.0)
    parser.add_argument("--seed", type=int, default=20261128)
    parser.add_argument("--interval", type=float, default=60.0, help="seconds between checks (deadline 900 s)")
    args = parser.parse_args()
    cfg = JudgeConfig(interval_s=args.interval)
    rates = [float(r) for r in args.rates.split(",")]
    points = [(rate, STABLE_ERROR, float(m)) for rate in rates for m in args.multiples.split(",")]
    points += [(rate, 0.01, 1.0) for rate in rates]
    started = time.monotonic()
    results: dict[str, list[tuple[float, float, float, dict[str, float]]]] = {"seed": [], "sequential": []}
    for i, (rate, stable, mult) in enumerate(points):
        sc = Scenario(name=f"{mult:g}x", rate_rps=rate, canary_percent=args.canary_percent, stable_error_rate=stable,
                      canary_error_rate=stable * mult)
        out = simulate_many({"seed": SeedThresholdJudge(cfg), "sequential": SequentialJudge(cfg)}, sc, cfg,
                            runs=args.runs, seed=args.seed + i)
        for name, outcomes in out.items():
            results[name].append((rate, stable, mult, shares(outcomes, cfg.observation_s)))
    print(f"{args.runs} simulated canaries per row; canary {args.canary_percent:g} % of traffic; "
          f"checks every {cfg.interval_s:g} s, deadline {cfg.observation_s:g} s; sequential alpha {cfg.alpha:g}, "
          f"beta {cfg.beta:g} (bad = canary errors > {cfg.relative_factor:g} x stable, or > {cfg.error_threshold:.0%})")
    for name, rows in results.items():
        print(f"\n== {name} judge ==")
        head = (f"{'req/s':>5} {'stable':>6} {'canary':>10} {'promote':>8} {'rb early':>8} {'rb @900s':>8} "
                f"{'inconc':>7} {'median s':>8} | {'false rollback (early <=95%)':>28} {'miss <=95%':>16}")
        print(head)
        print("-" * len(head))
        for rate, stable, mult, s in rows:
            n = args.runs
            false_rb = (f"{s['early'] + s['deadline']:6.1%} ({s['early']:4.1%} <={upper95(s['early'], n):4.1%})"
                        if mult == 1 else "")
            miss = (f"{s['promote']:6.1%} <={upper95(s['promote'], n):5.1%}" if mult >= 3 else
                    (f"({s['promote']:4.1%} <={upper95(s['promote'], n):4.1%})" if mult == 2 else ""))
            canary = f"{mult:g}x={stable * mult:.2%}"
            print(f"{rate:5g} {stable:6.1%} {canary:>10} {s['promote']:8.1%} {s['early']:8.1%} {s['deadline']:8.1%} "
                  f"{s['inconclusive']:7.1%} {s['median_s']:8.0f} | {false_rb:>28} {miss:>16}")
    print("\nfalse rollback: all rollbacks of a 1x canary (in brackets: the early ones, on evidence); "
          "miss: promotions of a canary at >= 3x (in brackets at 2x, the rule's boundary)")
    worst = max(s["early"] for _, _, m, s in results["sequential"] if m == 1)
    worst_miss = max(s["promote"] for _, _, m, s in results["sequential"] if m == 2)
    print(f"sequential judge, worst early false-rollback rate over all A/A rows: {worst:.2%} "
          f"(95% upper bound {upper95(worst, args.runs):.2%}; alpha {cfg.alpha:.0%}); worst promotion rate at 2x: "
          f"{worst_miss:.2%} (95% upper bound {upper95(worst_miss, args.runs):.2%}; beta {cfg.beta:.0%})")
    print(f"(wall time {time.monotonic() - started:.1f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
