"""The seams of train -> register -> serve, each a named check that passes only on what it observed.

One pipeline run (validate -> preprocess -> train -> gate -> deploy) per session, then every seam
between KFP, MLflow, KServe and Prometheus is checked against the real components.
"""
from __future__ import annotations

import os
import re
import time

import pytest
from mlflow.tracking import MlflowClient

from harness.faults.models import FaultSpec, log_faulty_model
from harness.metrics.dialects import DIALECTS, render
from harness.metrics.prometheus import wait_for_scalar
from harness.pipeline.compile import inspect_compiled
from harness.pipeline.dataset import holdout_rows, make_dataset
from harness.pipeline.params import MODEL_NAME, trained_version
from harness.seams import ServedRevision, metric_mismatches, mlmodel_run_id, served_run_problems
from harness.serving.isvc import (
    IsvcFailed,
    IsvcWaitTimeout,
    predictor_status,
    service_from_template,
    storage_uri_of,
)
from harness.serving.storage import list_storage
from harness.serving.v2 import infer, v2_outputs

pytestmark = [pytest.mark.conformance, pytest.mark.stack]

PIPELINE_TASKS = ("validate-data", "preprocess-data", "train-model", "quality-gate", "deploy-to-kserve")
LOGGED_PARAMS = ("n_estimators", "max_depth", "learning_rate", "feature_count", "training_rows")
LOGGED_METRICS = ("cv_f1_mean", "cv_f1_std")
# MLflow's own words for a model folder without MLmodel. The seed quotes the first, which newer
# MLflow raises (2.17.2 does); the MLflow 2.10.2 inside KServe 0.14's MLServer image raises the second.
SEED_MLMODEL_MESSAGE = 'Could not find an "MLmodel" configuration file'
MLMODEL_MISSING = re.compile(r'(Could not find an "MLmodel" configuration file at|'
                             r"No such file or directory: )['\"]?[^'\"]*/MLmodel")


@pytest.fixture(scope="module")
def mlflow_client(stack) -> MlflowClient:
    os.environ.update(stack.client_env())  # the harness's client reads artifacts from the same store
    return MlflowClient(tracking_uri=stack.tracking_uri)


@pytest.fixture(scope="module")
def train_outputs(pipeline_run) -> dict:
    return pipeline_run.task("train-model")


def _run_id(train_outputs: dict) -> str:
    return str(train_outputs["parameters"].get("mlflow_run_id")
               or train_outputs["artifacts"]["model_output"]["metadata"]["mlflow_run_id"])


def test_compiled_pipeline_keeps_resources_and_parameters(compiled_pipeline, stack, seam) -> None:
    with seam.check("compiled-yaml", "the row's kfp compiles the pipeline with GPU request, resources and "
                                     "the MLflow tracking URI parameter") as ev:
        info = inspect_compiled(compiled_pipeline.read_text())
        train = info["tasks"]["train-model"]["resources"]
        ev.update(sdk_version=info.get("sdkVersion"), train_resources=train, conditions=info["conditions"],
                  parameters=sorted(info.get("parameters", {})))
        assert train["accelerator_type"] == "nvidia.com/gpu" and train["accelerator_count"] == 1, train
        assert train["cpu_limit"] == 4.0, train
        assert train["memory_limit_bytes"] == 16 * 2**30, train  # 16Gi
        assert "mlflow_tracking_uri" in info["parameters"]
        assert info["sdkVersion"] == f"kfp-{stack.row.role('pipeline').pin_version('kfp')}", info["sdkVersion"]
        assert any("passed" in c["expression"] for c in info["conditions"]), info["conditions"]


def test_pipeline_run_succeeded_and_every_task_produced_outputs(pipeline_run, seam) -> None:
    with seam.check("pipeline-succeeded", "the KFP run succeeded and every task's outputs exist") as ev:
        ev.update(state=pipeline_run.state, error=pipeline_run.error, seconds=round(pipeline_run.seconds, 1),
                  tasks={t: v.get("state") for t, v in pipeline_run.tasks.items()},
                  task_kfp_versions={t: v.get("kfp_version") for t, v in pipeline_run.tasks.items()})
        assert pipeline_run.state == "SUCCEEDED", pipeline_run.error
        missing = []
        for name in PIPELINE_TASKS:
            task = pipeline_run.task(name)
            for art_name, art in (task.get("artifacts") or {}).items():
                path = art.get("path")
                if art.get("type", "").endswith("Metrics"):
                    if not art.get("metadata"):
                        missing.append(f"{name}.{art_name} (empty metrics)")
                elif not path or not os.path.exists(path):
                    missing.append(f"{name}.{art_name} ({path})")
        ev["missing_outputs"] = missing
        assert not missing, missing


def test_exactly_one_mlflow_run_with_params_and_metrics(pipeline_run, train_outputs, mlflow_client, seam,
                                                       dataset_path) -> None:
    with seam.check("mlflow-run-logged", "exactly one MLflow run with the logged params and metrics; "
                                         "KFP's metrics equal MLflow's") as ev:
        name = pipeline_run.params["mlflow_experiment"]  # the run's own (per-run name)
        ev["experiment"] = name
        experiment = mlflow_client.get_experiment_by_name(name)
        assert experiment is not None, f"experiment {name} does not exist in MLflow"
        runs = mlflow_client.search_runs([experiment.experiment_id])
        ev["runs"] = [r.info.run_id for r in runs]
        assert len(runs) == 1, f"expected exactly one run, found {len(runs)}"
        run = runs[0]
        assert run.info.run_id == _run_id(train_outputs)
        ev["params"], ev["metrics"] = run.data.params, run.data.metrics
        data = make_dataset()
        expected = {"n_estimators": str(pipeline_run.params.get("n_estimators", 50)),
                    "feature_count": str(data.shape[1] - 1), "training_rows": str(len(data))}
        for key in LOGGED_PARAMS:
            assert key in run.data.params, f"param {key} not logged"
        for key, value in expected.items():
            assert run.data.params[key] == value, (key, run.data.params[key], value)
        kfp_metrics = train_outputs["artifacts"]["metrics_output"]["metadata"]
        ev["kfp_metrics"] = kfp_metrics
        mismatches = metric_mismatches(kfp_metrics, run.data.metrics, LOGGED_METRICS, run_id=run.info.run_id)
        ev["metric_mismatches"] = mismatches
        assert not mismatches, "; ".join(mismatches)


def test_registered_version_comes_from_that_run(train_outputs, mlflow_client, seam) -> None:
    with seam.check("model-version-registered", "a registered model version whose source is that run") as ev:
        run_id = _run_id(train_outputs)
        versions = mlflow_client.search_model_versions(f"name='{MODEL_NAME}'")
        ev["versions"] = [{"version": v.version, "run_id": v.run_id, "source": v.source, "status": v.status}
                          for v in versions]
        mine = [v for v in versions if v.run_id == run_id]
        assert len(mine) == 1, f"expected one version from run {run_id}"
        run = mlflow_client.get_run(run_id)
        assert mine[0].source == f"{run.info.artifact_uri}/model", (mine[0].source, run.info.artifact_uri)
        assert mine[0].status == "READY"


def test_storage_uri_resolves_to_a_model_directory(deployment, train_outputs, mlflow_client, stack, seam) -> None:
    with seam.check("storage-uri-holds-mlmodel", "storageUri = artifact_uri + /model and it holds MLmodel") as ev:
        storage_uri = storage_uri_of(deployment.isvc)
        artifact_uri = mlflow_client.get_run(_run_id(train_outputs)).info.artifact_uri
        files = list_storage(storage_uri, stack.client_env())
        ev.update(storage_uri=storage_uri, artifact_uri=artifact_uri, files=files)
        assert storage_uri == artifact_uri + "/model"
        assert storage_uri.startswith("s3://") or stack.config.artifact_store == "files"
        assert "MLmodel" in files, files


def _served_revision(stack, isvc: dict) -> ServedRevision:
    """The serving revision as the stack records it: the label, the traffic, and what the revision
    itself loads (its storageUri and the run id in the MLmodel it holds)."""
    comp = predictor_status(isvc)
    latest = comp.get("latestReadyRevision")
    loaded = stack.revision_model(isvc["metadata"]["name"], latest)
    return ServedRevision(isvc_label_run_id=(isvc["metadata"].get("labels") or {}).get("mlflow-run-id"),
                          serving=frozenset(t["revisionName"] for t in comp.get("traffic") or [] if t["percent"] > 0),
                          latest_ready=latest, storage_uri=loaded.storage_uri,
                          loaded_run_id=mlmodel_run_id(loaded.mlmodel), where=loaded.where)


def _registered_source(mlflow_client: MlflowClient, run_id: str) -> str | None:
    mine = [v for v in mlflow_client.search_model_versions(f"name='{MODEL_NAME}'") if v.run_id == run_id]
    return mine[0].source if len(mine) == 1 else None


def test_served_revision_carries_the_run_id(deployment, train_outputs, mlflow_client, stack, seam) -> None:
    with seam.check("served-revision-run-id", "the revision serving traffic is labelled with the run id and loads "
                                              "that run's registered model (storageUri and MLmodel run_id)") as ev:
        run_id = _run_id(train_outputs)
        served = _served_revision(stack, deployment.isvc)
        artifact_uri = mlflow_client.get_run(run_id).info.artifact_uri
        source = _registered_source(mlflow_client, run_id)
        problems = served_run_problems(run_id, artifact_uri, source, served)
        ev.update(run_id=run_id, label_run_id=served.isvc_label_run_id, serving=sorted(served.serving),
                  latest_ready=served.latest_ready, revision_storage_uri=served.storage_uri,
                  loaded_model_run_id=served.loaded_run_id, loaded_from=served.where, artifact_uri=artifact_uri,
                  registered_source=source, problems=problems)
        assert source is not None, f"no single version registered from run {run_id}"
        assert not problems, "; ".join(problems)


def test_served_revision_check_names_both_runs_when_they_differ(deployment, train_outputs, mlflow_client, stack,
                                                                seam) -> None:
    """Negative seam: a service labelled with the pipeline's run that serves another run's model is
    caught by the check above, which names both runs (the label alone would have passed)."""
    with seam.check("served-revision-run-id-detects-mismatch", "a revision labelled with run A but loading run "
                                                                 "B's model fails the check, naming A and B") as ev:
        run_id = _run_id(train_outputs)
        other = log_faulty_model(stack.envs["pipeline"].python, FaultSpec.wrong(1.0),
                                 base_model_uri=f"models:/{MODEL_NAME}/{trained_version(deployment.run)}",
                                 registered_model_name=f"{MODEL_NAME}-other-run", tracking_uri=stack.tracking_uri,
                                 env=stack.client_env())
        name = f"{deployment.name}-mislabelled"
        manifest = service_from_template(deployment.isvc, name, other.artifact_uri)
        assert manifest["metadata"]["labels"]["mlflow-run-id"] == run_id  # the label still says run A
        stack.isvc.create_or_patch(manifest)
        try:
            isvc = stack.isvc.wait_ready(name, deadline_s=stack.config.isvc_deadline_s)
            served = _served_revision(stack, isvc)
            problems = served_run_problems(run_id, mlflow_client.get_run(run_id).info.artifact_uri,
                                           _registered_source(mlflow_client, run_id), served)
        finally:
            stack.isvc.delete(name)
        ev.update(label_run_id=served.isvc_label_run_id, other_run_id=other.run_id,
                  revision_storage_uri=served.storage_uri, loaded_model_run_id=served.loaded_run_id, problems=problems)
        assert served.isvc_label_run_id == run_id and served.loaded_run_id == other.run_id, ev
        assert problems, "the check passed a revision that serves another run's model"
        assert any(run_id in p and str(other.run_id) in p for p in problems), problems


def test_endpoint_predictions_equal_the_registered_model(deployment, train_outputs, stack, seam) -> None:
    with seam.check("predictions-match", "the endpoint's V2 predictions equal the registered model's own "
                                         "predictions on held-out rows") as ev:
        rows = holdout_rows(50)
        version = train_outputs["parameters"].get("registered_model_version") or \
            train_outputs["artifacts"]["model_output"]["metadata"].get("registered_model_version")
        model_uri = f"models:/{MODEL_NAME}/{int(float(version))}"
        reference = stack.reference_predictions(model_uri, rows)
        response = infer(stack.inference_base_url(deployment.name), deployment.name, rows)
        served = v2_outputs(response)
        ev.update(model_uri=model_uri, rows=len(rows), served_head=served[:10],
                  reference_head=reference["predictions"][:10], reference_mlflow=reference["mlflow"],
                  served_model_version=response.get("model_version"))
        assert [int(x) for x in served] == [int(x) for x in reference["predictions"]]


def test_prometheus_scraped_the_revision(deployment, stack, seam) -> None:
    with seam.check("prometheus-scraped", "Prometheus has scraped the serving revision's requests") as ev:
        revision = predictor_status(deployment.isvc)["latestReadyRevision"]
        rows = holdout_rows(5)
        sent = 20
        for _ in range(sent):
            infer(stack.inference_base_url(deployment.name), deployment.name, rows)
        query = ('sum(rest_server_requests_total{{isvc="{isvc}",revision="{revision}",path=~".*/infer"}})'
                 .format(isvc=deployment.name, revision=revision))
        value = wait_for_scalar(stack.prometheus_url, query, lambda v: v is not None and v >= sent,
                                what=f"{sent} inference requests counted for {revision}", deadline_s=30)
        ev.update(query=query, counted=value, sent_at_least=sent,
                  dialect_requests=render(DIALECTS[stack.metric_dialect].requests, isvc=deployment.name,
                                          revision=revision, window="5m"))
        assert value is not None and value >= sent


def test_broken_storage_uri_fails_with_mlflows_own_message(deployment, stack, seam) -> None:
    """Negative seam: storageUri without /model fails the revision with MLflow's error, not a timeout."""
    with seam.check("broken-seam-detected", "storageUri without /model fails the revision (status "
                                            "ModelLoadFailed) with MLflow's own missing-MLmodel error, not a "
                                            "timeout") as ev:
        name = f"{deployment.name}-broken"
        broken = service_from_template(deployment.isvc, name, storage_uri_of(deployment.isvc)[: -len("/model")])
        ev["storage_uri"] = storage_uri_of(broken)
        started = time.monotonic()
        stack.isvc.create_or_patch(broken)
        try:
            with pytest.raises(IsvcFailed) as failure:
                stack.isvc.wait_ready(name, deadline_s=stack.config.isvc_deadline_s)
        except IsvcWaitTimeout as exc:  # the wrong way to fail: say so
            pytest.fail(f"the broken deploy timed out instead of failing with MLflow's message: {exc}")
        finally:
            elapsed = time.monotonic() - started
        isvc = failure.value.isvc
        revision = predictor_status(isvc).get("latestCreatedRevision")
        logs = stack.revision_logs(name, revision)
        in_logs = {replica: bool(MLMODEL_MISSING.search(text)) for replica, text in logs.items()}
        mlflow_lines = [line.strip() for text in logs.values() for line in text.splitlines()
                        if MLMODEL_MISSING.search(line)][:2]
        ev.update(seconds_to_failure=round(elapsed, 1), status_failure=str(failure.value)[-1500:],
                  model_status=isvc.get("status", {}).get("modelStatus"), failed_revision=revision,
                  mlflow_error_in_replica_logs=in_logs, mlflow_error_lines=mlflow_lines,
                  # What KServe's status itself carries depends on the container's exit code: with exit 0
                  # Kubernetes keeps no termination message, so the cause is only in the pod's log.
                  status_carries_mlflow_message=bool(MLMODEL_MISSING.search(str(failure.value))),
                  seed_message_seen=any(SEED_MLMODEL_MESSAGE in line for line in mlflow_lines))
        assert "ModelLoadFailed" in str(failure.value), "the failure was not reported in the status"
        assert mlflow_lines, f"MLflow's message is in no replica log of {revision}: {list(logs)}"
        assert elapsed < stack.config.isvc_deadline_s
        traffic = predictor_status(stack.isvc.get(deployment.name)).get("traffic")
        ev["healthy_service_traffic_unchanged"] = traffic
        stack.isvc.delete(name)
