"""Scenario 1: the pipeline's tasks lose their path to MLflow (the seed's NetworkPolicy case)."""
from __future__ import annotations

import subprocess

import pytest

from harness.chaos.runner import run_scenario
from harness.fixtures.chaos import mlflow_runs_and_versions
from harness.local.netns import netns_available

pytestmark = [pytest.mark.chaos, pytest.mark.stack]



# DROP waits out the client's timeouts (about a minute more): nightly, REJECT in every CI run.
@pytest.mark.parametrize("mode", ["REJECT", pytest.param("DROP", marks=pytest.mark.slow)])
def test_pipeline_cannot_reach_mlflow(chaos_control, journal_dir, mode: str, seam) -> None:
    reason = netns_available()
    if reason:
        pytest.skip(reason)
    journal = run_scenario("pipeline-cannot-reach-mlflow", journal_dir, variables={"cut_mode": mode},
                           journal_name=f"pipeline-cannot-reach-mlflow-{mode}")

    cut = journal.output("cut-pipeline-path-to-mlflow")
    assert f"-j {mode}" in cut["rule"] and any(f"-j {mode}" in r for r in cut["rules"]), cut

    swallow = journal.output("swallowing-component-run")
    with seam.check("netns-swallowing-component", case=mode.lower(), description=
                    "a component that swallows the logging error: pipeline green, MLflow run missing") as ev:
        ev.update(state=swallow["state"], mlflow=swallow["mlflow"], log=swallow["log_excerpt"][-3:])
        assert swallow["cross_system"] == "pipeline green, MLflow run missing", swallow["cross_system"]
        assert any("could not log to MLflow" in line for line in swallow["log_excerpt"]), swallow["log_excerpt"]
    assert journal.output("harness-path-during-cut") is True, "the cut must not touch the harness's own path"

    fixed = journal.output("fixed-component-run")
    expected = "Connection refused" if mode == "REJECT" else "timed out"
    with seam.check("netns-fixed-component", case=mode.lower(), description=
                    "the fixed component (bounded retries) turns the pipeline red with the ConnectionError") as ev:
        ev.update(state=fixed["state"], error=fixed["error"][-600:], seconds=fixed["seconds"], mlflow=fixed["mlflow"])
        assert fixed["state"] == "FAILED", fixed["state"]
        assert "Max retries exceeded" in fixed["error"] and expected in fixed["error"], fixed["error"][-600:]
        assert fixed["mlflow"]["runs"] == [] and fixed["mlflow"]["versions"] == [], fixed["mlflow"]

    retry = journal.output("retry-after-lift")
    assert journal.output("lift-the-cut")["rules"] == [], "the rule is still there after the lift"
    # Independent evidence: the harness's own MLflow client, not the experiment's probes.
    with seam.check("netns-retry-after-lift", case=mode.lower(), description=
                    "after the fault is lifted a retry succeeds; exactly one run and one model version") as ev:
        runs, versions = mlflow_runs_and_versions(chaos_control.profile.tracking_uri,
                                                  retry["params"]["mlflow_experiment"], retry["params"]["model_name"])
        ev.update(state=retry["state"], runs=[r.info.run_id for r in runs], versions=[v.version for v in versions],
                  train=retry["train_outputs"])
        assert retry["state"] == "SUCCEEDED", retry["error"]
        assert len(runs) == 1 and len(versions) == 1, (len(runs), len(versions))
        assert runs[0].info.run_id == retry["train_outputs"].get("mlflow_run_id")
    # Nothing of the fault remains in the namespace (the rollback ran too).
    rules = subprocess.run(["ip", "netns", "exec", cut["namespace"], "iptables", "-S", "OUTPUT"],
                           check=False, capture_output=True, text=True, timeout=20).stdout
    assert "-j REJECT" not in rules and "-j DROP" not in rules, rules
