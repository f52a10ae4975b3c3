"""Each seam check can see its seam break and says which side is which: the comparisons of
harness/seams.py fed with broken evidence on purpose, and the deployment fixture when the quality
gate blocked the deploy (every check that needs the served model fails at once, naming the gate's
decision and figures, and the report's outcome line says the model was not deployed and why).
The live counterparts run in the conformance suite (test_seams.py) and the pipeline tests."""
from __future__ import annotations

import json
import textwrap

import pytest

from harness.seams import ServedRevision, gate_blocked, metric_mismatches, mlmodel_run_id, served_run_problems
from tests.inner import REPO_ROOT

RUN_A, RUN_B = "a" * 32, "b" * 32
ARTIFACTS_A = f"s3://mlflow-artifacts/1/{RUN_A}/artifacts"
ARTIFACTS_B = f"s3://mlflow-artifacts/1/{RUN_B}/artifacts"


def _served(**changes) -> ServedRevision:
    fields = {"isvc_label_run_id": RUN_A, "serving": frozenset({"rc-predictor-00001"}),
              "latest_ready": "rc-predictor-00001", "storage_uri": f"{ARTIFACTS_A}/model", "loaded_run_id": RUN_A,
              "where": "replica r0's /mnt/models"}
    fields.update(changes)
    return ServedRevision(**fields)


def test_metric_mismatch_names_the_metric_and_whose_value_is_whose() -> None:
    kfp = {"cv_f1_mean": 0.9123, "cv_f1_std": 0.01}
    mlflow = {"cv_f1_mean": 0.9001, "cv_f1_std": 0.01}
    problems = metric_mismatches(kfp, mlflow, ["cv_f1_mean", "cv_f1_std"], run_id=RUN_A)
    assert problems == [(f"metric cv_f1_mean: KFP's Metrics artifact has 0.9123, MLflow run {RUN_A} has 0.9001 "
                         "(they must be the same number)")]
    assert metric_mismatches(kfp, {"cv_f1_std": 0.01}, ["cv_f1_mean"], run_id=RUN_A) == \
        [f"metric cv_f1_mean: missing from MLflow run {RUN_A}"]
    assert metric_mismatches({}, mlflow, ["cv_f1_mean"], run_id=RUN_A) == \
        ["metric cv_f1_mean: missing from KFP's Metrics artifact"]
    assert metric_mismatches(kfp, kfp, kfp, run_id=RUN_A) == []


def test_served_run_check_passes_only_when_every_source_agrees() -> None:
    assert served_run_problems(RUN_A, ARTIFACTS_A, f"{ARTIFACTS_A}/model", _served()) == []


@pytest.mark.parametrize(("change", "expected"), [
    ({"isvc_label_run_id": RUN_B}, f"label says run {RUN_B}, but the pipeline trained run {RUN_A}"),
    ({"serving": frozenset({"rc-predictor-00001", "rc-predictor-00002"})}, "not the latest ready revision"),
    ({"storage_uri": f"{ARTIFACTS_B}/model", "loaded_run_id": RUN_B},
     f"loads {ARTIFACTS_B}/model, which is not under run {RUN_A}'s artifact URI"),
    ({"storage_uri": f"{ARTIFACTS_A}/copy/model"}, f"but the version registered from run {RUN_A} points at"),
    ({"loaded_run_id": RUN_B}, f"was logged by run {RUN_B}, not by run {RUN_A}"),
], ids=["label", "traffic", "other-runs-storage", "not-the-registered-source", "loaded-model-run"])
def test_served_run_check_sees_each_way_the_seam_breaks(change: dict, expected: str) -> None:
    problems = served_run_problems(RUN_A, ARTIFACTS_A, f"{ARTIFACTS_A}/model", _served(**change))
    assert any(expected in p for p in problems), problems


def test_a_label_alone_cannot_pass_a_revision_serving_another_run() -> None:
    """The case the old check (label only) passed: right label, another run's model."""
    problems = served_run_problems(RUN_A, ARTIFACTS_A, f"{ARTIFACTS_A}/model",
                                   _served(storage_uri=f"{ARTIFACTS_B}/model", loaded_run_id=RUN_B))
    assert len(problems) == 3 and all(RUN_A in p and RUN_B in p or ARTIFACTS_B in p for p in problems), problems


def test_mlmodel_run_id_reads_mlflows_own_field() -> None:
    assert mlmodel_run_id(f"artifact_path: model\nflavors: {{}}\nrun_id: {RUN_A}\n") == RUN_A
    assert mlmodel_run_id("artifact_path: model\nflavors: {}\n") is None
    assert mlmodel_run_id(":\n  - [") is None


GATE_FALSE = {"quality-gate": {"state": "SUCCEEDED", "parameters": {
    "passed": "false", "reason": "cv_f1_mean=0.7100 < threshold 0.8; no version holds alias 'production'",
    "candidate_f1": 0.71, "baseline_f1": -1.0}}, "deploy-to-kserve": {"state": "SKIPPED"}}


def test_gate_blocked_names_the_decision_and_its_figures() -> None:
    text = gate_blocked(GATE_FALSE)
    assert text == ("the quality gate blocked the deploy (passed=false: cv_f1_mean=0.7100 < threshold 0.8; no version "
                    "holds alias 'production'; candidate_f1=0.7100, no production baseline), so no model was served")
    passed = {"quality-gate": {"parameters": {"passed": "true"}}}
    assert gate_blocked(passed) is None and gate_blocked({}) is None


def test_a_blocked_gate_fails_every_served_model_check_at_once_and_the_report_says_why(pytester,
                                                                                        monkeypatch) -> None:
    pytester.makeconftest(textwrap.dedent(f"""
        import pytest
        from harness.profiles import PipelineRun

        class Unreachable:
            def __getattr__(self, name):
                raise AssertionError("the deployment fixture must not wait for a service the gate blocked")

        @pytest.fixture(scope="session")
        def stack():
            return Unreachable()

        @pytest.fixture(scope="session")
        def pipeline_run():
            return PipelineRun(state="SUCCEEDED", error=None, tasks={GATE_FALSE!r}, params={{}},
                               compiled_yaml=None, log_path=None, seconds=1.0)
    """))
    pytester.makepyfile(textwrap.dedent("""
        def test_storage_uri(deployment):
            pass

        def test_predictions(deployment):
            pass
    """))
    monkeypatch.setenv("PYTHONPATH", str(REPO_ROOT))
    # -p: the fixtures plugin registers before the conftest, so the conftest's stand-ins win.
    result = pytester.runpytest_subprocess("-p", "harness.fixtures.pipeline", "--reports-dir", str(pytester.path / "reports"),
                                           "-p", "no:cacheprovider")
    result.assert_outcomes(errors=2)  # at setup, without touching the stack (it raises if asked)
    result.stdout.fnmatch_lines(["*the quality gate blocked the deploy (passed=false: cv_f1_mean=0.7100 < threshold*"])
    summary = next((pytester.path / "reports").glob("*/summary.md")).read_text()
    assert "**the model was not deployed**: the quality gate blocked the deploy" in summary.splitlines()[2], summary
    data = json.loads(next((pytester.path / "reports").glob("*/summary.json")).read_text())
    assert data["deployed"]["deployed"] is False
