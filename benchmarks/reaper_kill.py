"""How long after a SIGKILL the reaper leaves nothing behind: runs the killed-session cases of
tests/test_killed_session.py (while the stack starts, once it is up, during a network cut) a few
times each and prints, per case, the seconds from the kill to the last resource gone.

    .venv/bin/python benchmarks/reaper_kill.py [--repeat 3] [--canary]

`--canary` adds the nightly case (a canary judgement with Locust running; ~95 s of setup each).
Needs root (network namespaces) and the stack's binaries, like the tests.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests import test_killed_session as cases  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(prog="benchmarks/reaper_kill.py")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--canary", action="store_true")
    args = parser.parse_args()
    runs = {"stack starting": cases.test_killed_while_the_stack_starts,
            "stack up": cases.test_killed_once_the_stack_is_up,
            "network cut in place": cases.test_killed_during_a_chaos_fault_with_a_rule_in_place}
    if args.canary:
        runs["canary judgement, Locust running"] = cases.test_killed_during_a_canary_judgement_with_locust_running
    seconds: dict[str, list[float]] = {name: [] for name in runs}
    original = cases._assert_clean

    for name, case in runs.items():
        for _ in range(args.repeat):
            def record(result: dict, *, at_least: int, _name: str = name) -> None:
                original(result, at_least=at_least)  # the test's own checks: nothing left
                seconds[_name].append(result["seconds"])

            cases._assert_clean = record
            with tempfile.TemporaryDirectory(prefix="reaper-bench-") as tmp:
                case(Path(tmp))
    cases._assert_clean = original
    print(f"{'killed':<36} {'n':>2} {'min s':>7} {'median s':>9} {'max s':>7}")
    for name, values in seconds.items():
        print(f"{name:<36} {len(values):>2} {min(values):>7.2f} {statistics.median(values):>9.2f} {max(values):>7.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
