"""The chaos suite's side-by-side runs: the order its tests run in (what may overlap the
background runs and what must wait for them), and a cancelled background run still rolls back."""
from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest

from harness.chaos.runner import Cancelled, run_scenarios_side_by_side
from tests.inner import collected_ids

def test_chaos_tests_run_shared_nothing_first_then_side_by_side_then_alone() -> None:
    """The real suite, collected as `pytest -m chaos` collects it (nothing is started); the groups
    come from the tests' own marks, so a renamed test cannot slip out of its group."""
    ids = collected_ids("-m", "chaos", "scenarios/chaos")
    alone = set(collected_ids("-m", "chaos and chaos_alone", "scenarios/chaos"))
    beside = set(collected_ids("-m", "chaos and chaos_side_by_side", "scenarios/chaos"))
    groups = [2 if test_id in alone else 1 if test_id in beside else 0 for test_id in ids]
    assert groups == sorted(groups), list(zip(groups, ids))
    assert set(groups) == {0, 1, 2}, ids  # each group has tests: the suite still overlaps something
    module = [i for i in ids if "test_storage_uri_without_model.py" in i]
    assert module and ids[ids.index(module[0]):ids.index(module[0]) + len(module)] == module, \
        "a module's tests of one group stay together (its module fixture runs once)"


def _experiment(path: Path, marker: Path) -> None:
    """Sleeps in its method; its rollback writes `marker`."""
    path.write_text(json.dumps({
        "title": "sleeps until interrupted", "description": "seamcheck's cancellation test",
        "method": [{"type": "action", "name": "sleep", "provider": {"type": "process", "path": "sleep",
                                                                     "arguments": "120"}}],
        "rollbacks": [{"type": "action", "name": "mark-rolled-back",
                       "provider": {"type": "process", "path": "touch", "arguments": str(marker)}}],
    }))


def test_cancelled_background_runs_are_interrupted_and_roll_back(tmp_path: Path) -> None:
    experiments, journals = tmp_path / "experiments", tmp_path / "journals"
    experiments.mkdir()
    markers = {key: tmp_path / f"{key}.rolled-back" for key in ("first", "second")}
    for key, marker in markers.items():
        _experiment(experiments / f"{key}.json", marker)
    cancel = threading.Event()
    outcome: dict[str, BaseException | object] = {}

    def background() -> None:
        try:
            outcome["result"] = run_scenarios_side_by_side({k: (k, {}) for k in markers}, journals, at_once=2,
                                                           cancel=cancel, experiments_dir=experiments)
        except BaseException as exc:  # noqa: BLE001 - what the thread ended with is the test's evidence
            outcome["error"] = exc

    thread = threading.Thread(target=background)
    thread.start()
    deadline = time.monotonic() + 60
    while not all((journals / "runs" / f"{k}.log").exists() and
                  "sleep" in (journals / "runs" / f"{k}.log").read_text() for k in markers):
        assert time.monotonic() < deadline and thread.is_alive(), f"the runs did not start: {outcome}"
        time.sleep(0.2)
    cancel.set()
    thread.join(timeout=90)
    assert not thread.is_alive(), "cancelled runs were still waited for after 90 s"
    assert isinstance(outcome.get("error"), Cancelled), outcome
    assert all(marker.exists() for marker in markers.values()), "a cancelled run's rollbacks did not run"
    for key in markers:
        journal = json.loads((journals / f"{key}.json").read_text())
        assert journal["status"] == "interrupted", journal["status"]


@pytest.mark.parametrize("bad", [0, -1])
def test_side_by_side_needs_at_least_one_at_once(tmp_path: Path, bad: int) -> None:
    with pytest.raises(ValueError, match="at_once"):
        run_scenarios_side_by_side({}, tmp_path, at_once=bad)
