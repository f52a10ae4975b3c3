"""More faults, each with its expected outcome: a stable replica killed under load, the MLflow
server down in the middle of a pipeline run, the artifact store down at deploy."""
from __future__ import annotations

from pathlib import Path

import pytest

from fixtures.chaos import mlflow_runs_and_versions
from harness.chaos.runner import run_scenario
from harness.load import read_events
from harness.traffic.haproxy import revision_of

pytestmark = [pytest.mark.chaos, pytest.mark.stack]


@pytest.mark.chaos_side_by_side("stable-replica-killed", "stable-replica-killed", {})  # its own service
def test_one_of_two_stable_replicas_killed(chaos_control, side_by_side, seam) -> None:
    journal = side_by_side.journal("stable-replica-killed")
    killed = journal.output("kill-one-replica")
    load = journal.output("load-under-kill")
    _meta, events, _end = read_events(Path(load["events"]))
    after = [e for e in events if e.t >= killed["at"]]
    failed = [e for e in events if not e.ok]
    served_after = {e.served_by for e in after if e.served_by}
    rev = chaos_control.profile.emulation.revision(chaos_control.profile.namespace, "chaos-replicas",
                                                   killed["revision"])
    with seam.check("replica-killed-error-rate", "one of two stable replicas SIGKILLed under load: error rate "
                                                 "stays under 2%, the other replica serves, the dead one restarts") as ev:
        ev.update(killed=killed, requests=len(events), after_kill=len(after), failed=len(failed),
                  statuses=load["statuses"], served_after=sorted(served_after),
                  restarts={r.name: r.restarts for r in rev.replicas})
        assert killed["replicas_before"] == 2 and len(killed["killed"]) == 1, killed
        assert len(after) >= 300, f"too little load after the kill: {len(after)}"
        assert len(failed) / len(events) <= 0.02, f"{len(failed)} of {len(events)} failed"
        assert all(revision_of(s) == killed["revision"] for s in served_after), served_after
        assert sum(r.restarts for r in rev.replicas) >= 1, "the killed replica was not restarted"


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


@pytest.mark.slow  # about 2 minutes; nightly
@pytest.mark.chaos_alone("stops the artifact store, which every other run's replicas download their models from")
def test_artifact_store_down_at_deploy(chaos_control, journal_dir, seam) -> None:
    journal = run_scenario("artifact-store-down-at-deploy", journal_dir)
    lint = journal.activity("deploy-through-lint")
    failed = journal.output("new-revision-status")
    load = journal.output("load-during-outage")
    listing = journal.output("stable-model-still-stored")
    _meta, events, _end = read_events(Path(load["events"]))
    served = {revision_of(e.served_by) for e in events if e.served_by}
    info = failed["model_status"].get("lastFailureInfo", {})
    with seam.check("artifact-store-down-at-deploy", "store down at deploy: lint refuses, the applied revision fails "
                                                     "in the storage initializer, stable serves with zero failures, "
                                                     "the store comes back with its objects") as ev:
        ev.update(lint=("".join(lint.get("exception") or []))[-300:], failure=info, served=sorted(served),
                  statuses=load["statuses"], requests=len(events), listing=listing["files"][:5])
        assert lint["status"] == "failed" and "cannot list storageUri" in "".join(lint.get("exception") or [])
        assert info.get("message") and "Could not connect" in info["message"] or "Connect" in str(info), info
        assert failed["failed_revision"] not in served and len(events) >= 300, served
        assert all(e.ok for e in events), load["statuses"]
        assert listing["has_mlmodel"], listing
