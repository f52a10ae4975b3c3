"""The correctness probes' disagreement SPRT over simulated canaries, at the canary suite's setting.

    .venv/bin/python benchmarks/probe_sprt.py [--runs 2000] [--batch 20] [--interval 1] [--deadline 75]
                                              [--rates 0,0.005,0.01,0.02,0.03,0.05,0.1,0.2] [--seed 20261202]

Each run feeds harness.judges.probes.ProbeTest (the sequential judge's own) one cumulative tally per
probe round: ``batch`` rows a round, each disagreeing with the stable with probability d, a round
every ``interval`` s until ``deadline``. The judge keeps testing after the probes first accept (it
promotes only once its error and latency tests accept too), so per d two worst cases:
"accept" = the probes accepted before any rollback (the most the judge could promote), "rollback"
= the statistic reached ln A at some round before the deadline (the most it could roll back,
accepted meanwhile or not; the two may overlap), "open" = neither by the deadline. Then the median
and p90 rows (and seconds) to the first decision, Wald's expected rows for the same hypotheses
(harness.judges.probes.rows_to_decide), and the 95 % Clopper-Pearson upper bound of the error that
matters at that d: a rollback at or below H0's rate (alpha / (1 - beta)'s bound, Ville's
inequality), an acceptance at or above H1's (beta / (1 - alpha), Wald's). Numeric answers reduce to the same test: d is the share of rows whose answers differ by
more than the tolerance (a probability shifted by less than it never disagrees).
"""
from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np
from scipy import stats

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from harness.judges.base import JudgeConfig, ProbeTally
from harness.judges.probes import ProbeTest, rows_to_decide


def upper95(k: int, n: int) -> float:
    return 1.0 if k == n else float(stats.beta.ppf(0.975, k + 1, n - k))


def run(rate: float, *, runs: int, batch: int, rounds: int, config: JudgeConfig, rng: np.random.Generator
        ) -> tuple[list[tuple[bool, bool]], list[int]]:
    """Each run's (accepted before any rollback, rolled back by the deadline) and the rows to its
    first decision (all rows when neither)."""
    flips = rng.binomial(batch, rate, size=(runs, rounds)).cumsum(axis=1)
    outcomes, rows_used = [], []
    test = ProbeTest(config)
    for run_flips in flips:
        test.reset()
        accepted = rolled = False
        used = rounds * batch
        for i, differ in enumerate(run_flips, start=1):
            test.update(ProbeTally(rounds=i, failed=0, rows=i * batch, disagreements=int(differ), last_ok=True,
                                   output="label"))
            if test.rejects:
                rolled, used = True, min(used, i * batch)
                break
            if not accepted and test.holds_promotion() is None:
                accepted, used = True, i * batch
        outcomes.append((accepted, rolled))
        rows_used.append(used)
    return outcomes, rows_used


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=2000)
    parser.add_argument("--batch", type=int, default=20)
    parser.add_argument("--interval", type=float, default=1.0)
    parser.add_argument("--deadline", type=float, default=75.0)
    parser.add_argument("--rates", default="0,0.005,0.01,0.02,0.03,0.05,0.1,0.2")
    parser.add_argument("--seed", type=int, default=20261202)
    args = parser.parse_args()
    config = JudgeConfig()
    rounds = int(args.deadline / args.interval)
    rng = np.random.default_rng(args.seed)
    started = time.monotonic()
    print(f"probe SPRT: H0 d={config.probe_disagreement_ok:g} vs H1 d={config.probe_disagreement_bad:g}, "
          f"alpha {config.alpha:g}, beta {config.beta:g}; {args.batch} rows a round every {args.interval:g} s, "
          f"deadline {args.deadline:g} s ({rounds} rounds, {rounds * args.batch} rows); {args.runs} runs a row")
    print(f"{'d':>6} | {'rollback':>8} {'accept':>7} {'open':>6} | {'rows p50':>8} {'p90':>5} | {'s p50':>5} {'p90':>4} "
          f"| {'Wald rows':>9} | error that matters [95% upper]")
    for rate in (float(r) for r in args.rates.split(",")):
        outcomes, used = run(rate, runs=args.runs, batch=args.batch, rounds=rounds, config=config, rng=rng)
        n = len(outcomes)
        accepts, rollbacks = sum(a for a, _ in outcomes), sum(r for _, r in outcomes)
        share = {"accept": accepts / n, "rollback": rollbacks / n, "open": sum(not (a or r) for a, r in outcomes) / n}
        decided = [u for u, (a, r) in zip(used, outcomes, strict=True) if a or r] or [rounds * args.batch]
        p50, p90 = np.percentile(decided, 50), np.percentile(decided, 90)
        wald = rows_to_decide(config, rate)
        if rate <= config.probe_disagreement_ok:
            matters = f"false rollback {rollbacks / n:.2%} [{upper95(rollbacks, n):.2%}]"
        elif rate >= config.probe_disagreement_bad:
            matters = f"accepted {accepts / n:.2%} [{upper95(accepts, n):.2%}]"
        else:
            matters = "indifference zone"
        print(f"{rate:>6g} | {share['rollback']:>8.1%} {share['accept']:>7.1%} {share['open']:>6.1%} | {p50:>8.0f} "
              f"{p90:>5.0f} | {math.ceil(p50 / args.batch) * args.interval:>5.0f} "
              f"{math.ceil(p90 / args.batch) * args.interval:>4.0f} | {wald:>9.1f} | {matters}")
    print(f"({time.monotonic() - started:.1f} s)")


if __name__ == "__main__":
    main()
