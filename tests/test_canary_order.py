"""The canary suite's order: the split test first (the runner's first canary deploys overlap it),
then the judgement tests, each naming the scenario it reads."""
from __future__ import annotations

import subprocess
import sys

from tests.inner import REPO_ROOT, inner_env


def _collected(*args: str) -> list[str]:
    result = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--collect-only", "-q",
                             *args], check=False, cwd=REPO_ROOT, env=inner_env(), capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    return [line for line in result.stdout.splitlines() if "::" in line]


def test_split_test_runs_before_the_judgement_tests() -> None:
    ids = _collected("-m", "canary", "scenarios/canary")
    assert ids[0].endswith("test_canary_percent_promote_and_rollback_at_the_router"), ids[:3]
    assert all("test_judgement.py" in i for i in ids[1:]) and len(ids) > 10, ids


def test_every_judgement_test_names_its_scenario() -> None:
    """A judgement test without a canary_scenario mark would be played unprepared (or not at all
    ahead): `--strict-markers` knows the mark, and every test of the module carries one."""
    marked = set(_collected("-m", "canary_scenario", "scenarios/canary/test_judgement.py"))
    every = set(_collected("scenarios/canary/test_judgement.py"))
    assert marked == every and every, every - marked
