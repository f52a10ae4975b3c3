"""The canary suite's order: the split test first (the runner's first canary deploys overlap it),
then the judgement tests, each naming the scenario it reads."""
from __future__ import annotations

from tests.inner import collected_ids


def test_split_test_runs_before_the_judgement_tests() -> None:
    ids = collected_ids("-m", "canary", "scenarios/canary")
    assert ids[0].endswith("test_canary_percent_promote_and_rollback_at_the_router"), ids[:3]
    assert all("test_judgement.py" in i for i in ids[1:]) and len(ids) > 10, ids


def test_every_judgement_test_names_its_scenario() -> None:
    """A judgement test without a canary_scenario mark would be played unprepared (or not at all
    ahead): `--strict-markers` knows the mark, and every test of the module carries one."""
    marked = set(collected_ids("-m", "canary_scenario", "scenarios/canary/test_judgement.py"))
    every = set(collected_ids("scenarios/canary/test_judgement.py"))
    assert marked == every and every, every - marked


def test_the_dashboard_alert_tests_come_last() -> None:
    """They read the outcomes of scenarios the judgement tests play: last in the module, they never
    change the order the session plays (and deploys ahead) its scenarios in."""
    ids = collected_ids("-m", "canary", "scenarios/canary/test_judgement.py")
    alerts = [i for i, test in enumerate(ids) if "alert" in test.split("::")[-1]]
    assert len(alerts) == 3 and alerts == list(range(len(ids) - 3, len(ids))), [ids[i] for i in alerts]
