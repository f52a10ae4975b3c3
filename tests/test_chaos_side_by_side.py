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

SIDE_BY_SIDE = ("test_one_of_two_stable_replicas_killed", "test_rollback_to_scaled_to_zero.py")
ALONE = ("test_out_of_bounds_refused_and_rollbacks_run", "test_mlflow_down_in_the_middle_of_a_pipeline_run",
         "test_artifact_store_down_at_deploy")


def _group(test_id: str) -> int:
    if any(name in test_id for name in ALONE):
        return 2
    return 1 if any(name in test_id for name in SIDE_BY_SIDE) else 0


def test_chaos_tests_run_shared_nothing_first_then_side_by_side_then_alone() -> None:
    """The real suite, collected as `pytest -m chaos` collects it (nothing is started)."""
    ids = collected_ids("-m", "chaos", "scenarios/chaos")
    groups = [_group(test_id) for test_id in ids]
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
