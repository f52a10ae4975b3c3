"""mlflow-down-mid-run.json: the MLflow server down in the middle of a pipeline run."""
from __future__ import annotations

import pytest

from harness.chaos.runner import run_scenario
from harness.fixtures.chaos import mlflow_runs_and_versions

pytestmark = [pytest.mark.chaos, pytest.mark.stack]


@pytest.mark.slow  # a pipeline run plus MLflow's restart: about 2 minutes; nightly
@pytest.mark.chaos_alone("stops MLflow, which every other run registers its models with")
def test_mlflow_down_in_the_middle_of_a_pipeline_run(chaos_control, journal_dir, seam) -> None:
    journal = run_scenario("mlflow-down-mid-run", journal_dir)
    stopped = journal.output("stop-mlflow")
    restored = journal.output("restore-mlflow")
    run = journal.output("pipeline-run-during-outage")
    runs, versions = mlflow_runs_and_versions(chaos_control.profile.tracking_uri, run["params"]["mlflow_experiment"],
                                              run["params"]["model_name"])
    with seam.check("mlflow-outage-mid-run", "MLflow down while the pipeline runs: the training task's client "
                                             "retries through the outage; green, one run, one version") as ev:
        ev.update(outage_s=round(restored["at"] - stopped["at"], 1), run_started=run["started"],
                  run_seconds=run["seconds"], state=run["state"], train_started_at=run["train_started_at"],
                  train_ended_at=run["train_ended_at"], stopped_at=stopped["at"], restored_at=restored["at"],
                  runs=[r.info.run_id for r in runs], versions=[v.version for v in versions])
        # The training task (the only one that talks to MLflow) was running while MLflow was down
        # and finished after it came back: its calls met the outage and were retried through it.
        assert run["train_started_at"] and run["train_started_at"] < restored["at"] < run["train_ended_at"], (
            "the training task did not overlap the outage")
        assert run["state"] == "SUCCEEDED", run["error"]
        assert len(runs) == 1 and len(versions) == 1, (len(runs), len(versions))
