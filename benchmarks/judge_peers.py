"""Side by side in simulation: the seed, sequential, Flagger, Argo Rollouts and Kayenta judges on the
same simulated canaries, per scenario, traffic level and check interval.

    .venv/bin/python benchmarks/judge_peers.py [--points 70:80:3:75,...] [--runs 2000] [--judges ...]

A point is RATE:PERCENT:INTERVAL:DEADLINE (total req/s, canary percent, seconds between checks,
deadline). Stable error rate 0.5 %. Scenarios and their right decisions:

* healthy: canary as good as the stable (A/A): promote. Any rollback is a false rollback.
* 2x errors: canary at 1 %, the relative rule's boundary: not promote (the sequential judge's beta).
* 5x errors: 2.5 %: roll back. A promotion is a miss.
* tail latency: 5 % of canary requests take ~1 s (p99 over 500 ms): roll back; a promotion is a miss.
* dead canary: the canary never exports a series and the router (its counts on every reading, as
  the local HAProxy's) gets no answer from it: not promote (a promotion is a miss).
* too little traffic: the total rate that gives the canary 50 requests (half of min_requests) over
  the deadline: inconclusive; a promotion is a miss, a rollback a false rollback.

Each row: decision shares, median and p90 time to decision over all runs (an undecided run counts
at the deadline; "*" marks a median at the deadline), the false-rollback and miss rates with 95 %
Clopper-Pearson intervals (scipy.stats), and the peer's median time over the sequential judge's on
the same scenario. That ratio is only a like-for-like speed comparison where the peer's
false-rollback rate on the point's healthy canary is at or above the sequential judge's; the "fr"
column marks it "ok" there and "LOWER" where the peer buys its time with fewer false rollbacks
(judged on the intervals: LOWER only when the peer's upper bound is under the sequential's rate).
The closing lines check the issue's done-when on the 5x canary: the sequential judge at least 5x
faster than Flagger's and Kayenta's defaults at no higher false-rollback rate. "No higher" is Fisher's
exact test (one-sided, scipy.stats): the sequential judge's healthy false rollbacks not significantly
more than the peer's at 5 %. A peer whose median is at the deadline never decided in most runs:
its ratio is a lower bound, marked ">=".
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

import numpy as np
from scipy import stats

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from harness.judges.base import Decision, JudgeConfig
from harness.judges.external import load_judge
from harness.judges.simulate import LatencyModel, Scenario, SimOutcome, simulate_many

STABLE_ERROR = 0.005
TAIL = LatencyModel(tail_fraction=0.05, tail_median_s=1.0)
DEFAULT_POINTS = "2:20:60:900,20:20:60:900,2:20:5:900,20:20:5:900,70:50:3:45,70:80:3:75"
JUDGES = "seed,sequential,flagger,argo,kayenta"
# scenario -> (decisions that are a false rollback, decisions that are a miss)
WRONG = {"healthy": ({Decision.ROLLBACK}, set()),
         "2x errors": (set(), {Decision.PROMOTE}),
         "5x errors": (set(), {Decision.PROMOTE}),
         "tail latency": (set(), {Decision.PROMOTE}),
         "dead canary": (set(), {Decision.PROMOTE}),
         "too little traffic": ({Decision.ROLLBACK}, {Decision.PROMOTE})}


def scenarios(rate: float, percent: float, deadline: float, min_requests: int) -> list[Scenario]:
    base = Scenario(rate_rps=rate, canary_percent=percent, stable_error_rate=STABLE_ERROR,
                    canary_error_rate=STABLE_ERROR)
    trickle = min_requests / 2 / (deadline * percent / 100.0)
    return [dataclasses.replace(base, name="healthy"),
            dataclasses.replace(base, name="2x errors", canary_error_rate=2 * STABLE_ERROR),
            dataclasses.replace(base, name="5x errors", canary_error_rate=5 * STABLE_ERROR),
            dataclasses.replace(base, name="tail latency", canary_latency=TAIL),
            dataclasses.replace(base, name="dead canary", canary_has_metrics=False, router_counts=True),
            dataclasses.replace(base, name="too little traffic", rate_rps=trickle)]


def interval95(k: int, n: int) -> tuple[float, float]:
    ci = stats.binomtest(k, n).proportion_ci(confidence_level=0.95, method="exact")
    return float(ci.low), float(ci.high)


@dataclasses.dataclass
class Row:
    scenario: str
    judge: str
    n: int
    shares: dict[str, float]
    median_s: float
    p90_s: float
    false_rb: int | None
    miss: int | None


def summarise(scenario: str, judge: str, outcomes: list[SimOutcome]) -> Row:
    n = len(outcomes)
    t = np.array([o.time_to_decision_s for o in outcomes])
    shares = {d.value: sum(o.decision is d for o in outcomes) / n
              for d in (Decision.PROMOTE, Decision.ROLLBACK, Decision.INCONCLUSIVE)}
    fr_set, miss_set = WRONG[scenario]
    return Row(scenario, judge, n, shares, float(np.median(t)), float(np.percentile(t, 90)),
               sum(o.decision in fr_set for o in outcomes) if fr_set else None,
               sum(o.decision in miss_set for o in outcomes) if miss_set else None)


def rate_text(k: int | None, n: int) -> str:
    if k is None:
        return "-"
    lo, hi = interval95(k, n)
    return f"{k / n:6.1%} [{lo:4.1%},{hi:5.1%}]"


def parse_points(text: str) -> list[tuple[float, float, float, float]]:
    points = []
    for item in text.split(","):
        parts = [float(x) for x in item.split(":")]
        if len(parts) != 4:
            raise SystemExit(f"point {item!r}: expected RATE:PERCENT:INTERVAL:DEADLINE, e.g. 70:80:3:75")
        points.append((parts[0], parts[1], parts[2], parts[3]))
    return points


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--points", default=DEFAULT_POINTS, help="RATE:PERCENT:INTERVAL:DEADLINE,...")
    parser.add_argument("--runs", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=20261201)
    parser.add_argument("--judges", default=JUDGES, help="judge specs (external.load_judge), comma-separated")
    args = parser.parse_args()
    started = time.monotonic()
    names = args.judges.split(",")
    print(f"{args.runs} simulated canaries per row, every judge on the same runs; stable error rate "
          f"{STABLE_ERROR:.1%}; judges: {', '.join(names)} (each with its project's documented defaults)")
    head = (f"{'scenario':18} {'judge':10} | {'promote':>7} {'rollbk':>7} {'inconc':>7} | {'median s':>8} "
            f"{'p90 s':>6} | {'false rollback [95%]':>21} {'miss [95%]':>21} | {'x seq':>6} {'fr':>5}")
    done_when: list[str] = []
    for point_no, (rate, percent, interval, deadline) in enumerate(parse_points(args.points)):
        cfg = JudgeConfig(interval_s=interval, observation_s=deadline)
        print(f"\n== {rate:g} req/s, canary {percent:g} %, checks every {interval:g} s, deadline {deadline:g} s ==")
        print(head)
        print("-" * len(head))
        rows: dict[str, dict[str, Row]] = {}
        for i, sc in enumerate(scenarios(rate, percent, deadline, cfg.min_requests)):
            judges = {name: load_judge(name, cfg) for name in names}
            out = simulate_many(judges, sc, cfg, runs=args.runs, seed=args.seed + 100 * point_no + i)
            rows[sc.name] = {name: summarise(sc.name, name, outcomes) for name, outcomes in out.items()}
        healthy = rows["healthy"]
        for name_sc, by_judge in rows.items():
            seq = by_judge.get("sequential")
            for name, r in by_judge.items():
                ratio = fr_mark = ""
                if seq is not None and name != "sequential":
                    ratio = f"{r.median_s / seq.median_s:6.2f}" if seq.median_s > 0 else ""
                    peer_fr, seq_fr = healthy[name].false_rb or 0, healthy["sequential"].false_rb or 0
                    fr_mark = "LOWER" if interval95(peer_fr, r.n)[1] < seq_fr / r.n else "ok"
                mark = "*" if r.median_s >= deadline else " "
                print(f"{name_sc:18} {name:10} | {r.shares['promote']:7.1%} {r.shares['rollback']:7.1%} "
                      f"{r.shares['inconclusive']:7.1%} | {r.median_s:7.0f}{mark} {r.p90_s:6.0f} | "
                      f"{rate_text(r.false_rb, r.n):>21} {rate_text(r.miss, r.n):>21} | {ratio:>6} {fr_mark:>5}")
        five, seq5 = rows["5x errors"], rows["5x errors"].get("sequential")
        if seq5 is not None:
            for peer in ("flagger", "kayenta"):
                if peer not in five:
                    continue
                ratio = five[peer].median_s / seq5.median_s
                seq_fr, peer_fr = healthy["sequential"].false_rb or 0, healthy[peer].false_rb or 0
                n = seq5.n
                p_more = float(stats.fisher_exact([[seq_fr, n - seq_fr], [peer_fr, n - peer_fr]],
                                                  alternative="greater").pvalue)
                no_higher = p_more >= 0.05
                bound = ">=" if five[peer].median_s >= deadline else ""
                done_when.append(
                    f"{rate:g}:{percent:g}:{interval:g}:{deadline:g} 5x vs {peer}: {bound}{ratio:.1f}x faster "
                    f"(median {seq5.median_s:.0f} s vs {five[peer].median_s:.0f} s), healthy false rollback "
                    f"{seq_fr / seq5.n:.1%} vs {peer_fr / seq5.n:.1%} (Fisher p {p_more:.2f}), 5x miss {(seq5.miss or 0) / seq5.n:.1%} vs "
                    f"{(five[peer].miss or 0) / seq5.n:.1%}: {'met' if ratio >= 5 and no_higher else 'NOT met'}")
    if done_when:
        print("\ndone-when (sequential >= 5x faster than Flagger's and Kayenta's defaults on the 5x canary at no "
              "higher false-rollback rate):")
        for line in done_when:
            print("  " + line)
    print(f"(wall time {time.monotonic() - started:.1f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
