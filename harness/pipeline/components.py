"""The pipeline's KFP v2 lightweight Python components, from the seed document, bugs fixed.

The function bodies below are plain functions; ``make_components`` turns them into KFP
components. One body serves two uses, so what we test locally is what we compile:

* cluster: ``packages_to_install`` = the matrix row's pipeline pins on python:3.11-slim,
  exactly what a KFP 2.3 cluster would pip into the task container;
* local: ``packages=None`` -> no pip at all (``packages_to_install=[]``,
  ``install_kfp_package=False``). The local runner executes the tasks with the pipeline
  role's interpreter, which already holds those pins, like the image would.

KFP copies each function's *source* into the task command, so every body must be
self-contained: imports inside, no module globals, no helpers from this package. That is
why a few lines (MLflow client setup) repeat between components.

Fixes against the seed, each marked "seed fix" in the bodies:
* train: the KFP Metrics carry numbers only (the seed logged the run id string as a metric);
  the model is logged with a signature and an input example; ``model_output.uri`` is NOT
  overridden with ``runs:/...`` (KFP 2.3.0's launcher, backend/src/v2/component/launcher_v2.go,
  cannot map that URI to a bucket: the consuming task fails with "failed to parse bucketConfig
  for output artifact ... unrecognized uri format" before its code runs): the MLflow
  coordinates travel as artifact metadata and as output parameters instead, and a small JSON
  pointer file is written to ``model_output.path`` so the artifact really exists.
* gate: the seed only had an absolute F1 threshold; we also refuse a regression against the
  version holding the production alias (the document's own recommendation).
* deploy: the seed's MlflowClient had no tracking URI (it would have asked localhost:5000),
  ``load_incluster_config`` had no fallback for running outside a cluster, and KServe 0.14
  finds no serving runtime for ``modelFormat: mlflow`` without ``protocolVersion: v2``.
"""

from typing import NamedTuple

from kfp import dsl
from kfp.dsl import Dataset, Input, Metrics, Model, Output

__all__ = [
    "BASE_IMAGE",
    "Components",
    "deploy_to_kserve",
    "make_components",
    "preprocess_data",
    "quality_gate",
    "train_model",
    "validate_data",
]

# The seed's image for every component.
BASE_IMAGE = "python:3.11-slim"


def validate_data(
    data_path: str,
    validated_data: Output[Dataset],
    min_rows: int = 100,
) -> NamedTuple("Outputs", [("row_count", int), ("feature_count", int)]):
    """Checks that ``data_path`` is readable parquet with a ``label`` column, no nulls and at
    least ``min_rows`` rows, then hands the rows on as a Dataset artifact.

    ``data_path`` is a local path/directory, ``file://...`` or ``s3://bucket/key-or-prefix``
    (read with boto3, which honours AWS_ENDPOINT_URL, so a local S3 works). The seed's
    ``gs://`` default is not readable without gcsfs, which the row's pins do not include.
    """
    import os
    import tempfile
    from collections import namedtuple

    import pandas as pd

    def fail(message):
        # One clear line in the task log; KFP marks the task failed on any exception.
        raise ValueError(f"validate_data: {message} (data_path={data_path!r})")

    source = data_path
    if data_path.startswith("file://"):
        source = data_path[len("file://"):]
    elif data_path.startswith("s3://"):
        import boto3

        bucket, _, key = data_path[len("s3://"):].partition("/")
        s3 = boto3.client("s3")
        # One object (key ends in .parquet) or a "directory" of part files, like the seed's
        # dated data_path.
        keys = [key] if key.endswith(".parquet") else []
        if not keys:
            prefix = key.rstrip("/") + "/" if key else ""
            listing = s3.list_objects_v2(Bucket=bucket, Prefix=prefix)
            keys = [o["Key"] for o in listing.get("Contents", []) if o["Key"].endswith(".parquet")]
            if not keys:
                fail("no .parquet objects under the prefix")
        source = tempfile.mkdtemp(prefix="validate-")
        for i, k in enumerate(sorted(keys)):
            s3.download_file(bucket, k, os.path.join(source, f"part-{i:05d}.parquet"))
    elif "://" in data_path:
        fail("unsupported scheme; use a local path, file:// or s3://")

    if not os.path.exists(source):
        fail("path does not exist")
    try:
        df = pd.read_parquet(source)
    except Exception as exc:  # noqa: BLE001  pyarrow raises several types; all mean "not parquet"
        fail(f"not readable as parquet: {type(exc).__name__}: {exc}")
    if "label" not in df.columns:
        fail(f"no 'label' column; columns are {list(df.columns)}")
    nulls = df.isna().sum()
    nulls = nulls[nulls > 0]
    if len(nulls):
        fail(f"null values in columns { {c: int(n) for c, n in nulls.items()} }")
    if len(df) < min_rows:
        fail(f"{len(df)} rows, fewer than min_rows={min_rows}")

    df.to_parquet(validated_data.path, index=False)
    validated_data.metadata["row_count"] = len(df)
    validated_data.metadata["source"] = data_path
    outputs = namedtuple("Outputs", ["row_count", "feature_count"])
    return outputs(len(df), int(df.shape[1] - 1))


def preprocess_data(
    raw_data: Input[Dataset],
    processed_data: Output[Dataset],
):
    """Normalises types and drops exact duplicate rows.

    Deliberately no scaling or encoding: the served model receives raw feature rows from
    clients, so anything done here would have to be repeated at serving time. Only changes
    that leave the request schema alone belong here (features -> float64, label -> int64,
    a stable column order that the MLflow signature then records).
    """
    import pandas as pd

    df = pd.read_parquet(raw_data.path)
    rows_in = len(df)
    features = [c for c in df.columns if c != "label"]
    non_numeric = [c for c in features if not pd.api.types.is_numeric_dtype(df[c])]
    if non_numeric:
        raise ValueError(f"preprocess_data: non-numeric feature columns {non_numeric}")
    df = df[features + ["label"]].astype({**{c: "float64" for c in features}, "label": "int64"})
    df = df.drop_duplicates().reset_index(drop=True)

    df.to_parquet(processed_data.path, index=False)
    processed_data.metadata["rows_in"] = rows_in
    processed_data.metadata["rows_out"] = len(df)
    processed_data.metadata["features"] = ",".join(features)


def train_model(
    training_data: Input[Dataset],
    model_output: Output[Model],
    metrics_output: Output[Metrics],
    mlflow_tracking_uri: str,
    mlflow_experiment_name: str,
    model_name: str = "recommendation-classifier",
    n_estimators: int = 200,
    max_depth: int = 10,
    learning_rate: float = 0.1,
    mlflow_failure_policy: str = "raise",
) -> NamedTuple(
    "Outputs",
    [("mlflow_run_id", str), ("model_uri", str), ("artifact_uri", str), ("model_version", str)],
):
    """The seed's training step: 5-fold CV F1, fit, log + register in MLflow, mirror to KFP.

    ``mlflow_failure_policy`` says what an unreachable MLflow does to the task (the chaos suite
    runs all three; the pipeline's default is "raise"):
    * "raise": MLflow's own client behaviour (its default retries, then the error fails the task);
    * "bounded-retry": the fix for the seed's NetworkPolicy case: a few quick retries with a short
      timeout, then the ConnectionError fails the task, so the pipeline goes red within seconds;
    * "swallow": the anti-pattern: the error is printed and the task succeeds without a run, so
      the pipeline is green while MLflow has nothing (the harness's cross-system check finds it).
      It gives up as quickly as "bounded-retry" (MLflow's default retries and 120 s timeout
      would hold a task for about 16 minutes when packets are dropped).
    """
    import json
    import os
    from collections import namedtuple

    if mlflow_failure_policy not in ("raise", "bounded-retry", "swallow"):
        raise ValueError(f"train_model: mlflow_failure_policy must be raise, bounded-retry or swallow, "
                         f"not {mlflow_failure_policy!r}")
    if mlflow_failure_policy in ("bounded-retry", "swallow"):
        # MLflow reads these per request: 2 retries, 5 s connect/read timeout, 1 s backoff base.
        os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] = "2"
        os.environ["MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR"] = "1"
        os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] = "5"

    import mlflow
    import mlflow.sklearn
    import pandas as pd
    from mlflow.models import infer_signature
    from sklearn.ensemble import GradientBoostingClassifier
    from sklearn.model_selection import cross_val_score

    df = pd.read_parquet(training_data.path)
    X = df.drop(columns=["label"])
    y = df["label"]

    clf = GradientBoostingClassifier(
        n_estimators=n_estimators,
        max_depth=max_depth,
        learning_rate=learning_rate,
        random_state=42,
    )
    cv_scores = cross_val_score(clf, X, y, cv=5, scoring="f1_weighted")
    clf.fit(X, y)
    cv_f1_mean = float(cv_scores.mean())
    cv_f1_std = float(cv_scores.std())

    def log_to_mlflow():
        mlflow.set_tracking_uri(mlflow_tracking_uri)
        mlflow.set_experiment(mlflow_experiment_name)
        with mlflow.start_run() as run:
            mlflow.log_params({
                "n_estimators": n_estimators,
                "max_depth": max_depth,
                "learning_rate": learning_rate,
                "feature_count": X.shape[1],
                "training_rows": X.shape[0],
            })
            mlflow.log_metrics({"cv_f1_mean": cv_f1_mean, "cv_f1_std": cv_f1_std})
            # Seed fix: a signature (and an example) so servers can check requests; the seed
            # logged neither.
            signature = infer_signature(X, clf.predict(X))
            info = mlflow.sklearn.log_model(
                clf,
                artifact_path="model",
                registered_model_name=model_name,
                signature=signature,
                input_example=X.head(5),
            )
            return run.info.run_id, run.info.artifact_uri, str(info.registered_model_version or "")

    try:
        run_id, artifact_uri, model_version = log_to_mlflow()
    except Exception as exc:
        if mlflow_failure_policy != "swallow":
            raise
        print(f"WARNING: train_model: could not log to MLflow, continuing without it: "
              f"{type(exc).__name__}: {exc}")
        run_id, artifact_uri, model_version = "", "", ""
    model_uri = f"runs:/{run_id}/model" if run_id else ""

    # Seed fix: numbers only in KFP Metrics (the UI and MLMD expect floats).
    metrics_output.log_metric("cv_f1_mean", cv_f1_mean)
    metrics_output.log_metric("cv_f1_std", cv_f1_std)

    # Seed fix: keep KFP's own URI for the artifact (a runs:/ URI breaks the KFP 2.3 launcher
    # of every consuming task); the MLflow coordinates go into metadata and parameters.
    pointer = {
        "mlflow_tracking_uri": mlflow_tracking_uri,
        "mlflow_run_id": run_id,
        "model_uri": model_uri,
        "artifact_uri": artifact_uri,
        "registered_model_name": model_name,
        "registered_model_version": model_version,
    }
    for key, value in pointer.items():
        model_output.metadata[key] = value
    model_output.metadata["cv_f1_mean"] = cv_f1_mean
    # The artifact must exist at its path (a cluster launcher uploads it); a JSON pointer,
    # not a pickle, so nothing downstream ever unpickles a KFP artifact.
    with open(model_output.path, "w") as fh:
        json.dump(pointer, fh, indent=2, sort_keys=True)

    outputs = namedtuple("Outputs", ["mlflow_run_id", "model_uri", "artifact_uri", "model_version"])
    return outputs(run_id, model_uri, artifact_uri, model_version)


def quality_gate(
    metrics: Input[Metrics],
    mlflow_tracking_uri: str,
    model_name: str = "recommendation-classifier",
    f1_threshold: float = 0.80,
    regression_delta: float = 0.02,
    production_alias: str = "production",
) -> NamedTuple(
    "Outputs", [("passed", str), ("reason", str), ("candidate_f1", float), ("baseline_f1", float)],
):
    """passed == "true" when the candidate's cv_f1_mean >= f1_threshold AND it is not worse
    than (cv_f1_mean of the version holding ``production_alias``) - regression_delta.

    With no version holding the alias (first deployment) only the absolute rule applies.
    "true"/"false" strings as in the seed, because the pipeline's condition compares strings.
    ``baseline_f1`` is -1.0 when there is no baseline (KFP float outputs cannot be null).
    Any other MLflow error (server unreachable...) fails the task: a gate that cannot see
    the baseline must not wave the candidate through.
    """
    from collections import namedtuple

    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    outputs = namedtuple("Outputs", ["passed", "reason", "candidate_f1", "baseline_f1"])
    if "cv_f1_mean" not in metrics.metadata:
        raise ValueError(f"quality_gate: metrics artifact has no cv_f1_mean: {dict(metrics.metadata)}")
    candidate = float(metrics.metadata["cv_f1_mean"])

    client = MlflowClient(tracking_uri=mlflow_tracking_uri)
    baseline = None
    baseline_desc = f"no version of {model_name!r} holds alias {production_alias!r}"
    try:
        holder = client.get_model_version_by_alias(model_name, production_alias)
    except MlflowException as exc:
        # "No baseline yet" looks like this on MLflow 2.x servers: unknown model ->
        # RESOURCE_DOES_NOT_EXIST; unknown alias -> INVALID_PARAMETER_VALUE "Registered model
        # alias <a> not found." (sqlalchemy_store). Anything else (bad alias name, server
        # error) is re-raised.
        unknown_model = exc.error_code == "RESOURCE_DOES_NOT_EXIST"
        unknown_alias = exc.error_code == "INVALID_PARAMETER_VALUE" and "not found" in exc.message
        if not (unknown_model or unknown_alias):
            raise
        holder = None
    if holder is not None:
        run_metrics = client.get_run(holder.run_id).data.metrics
        if "cv_f1_mean" not in run_metrics:
            raise ValueError(
                f"quality_gate: {model_name} v{holder.version} (alias {production_alias!r}) has no "
                f"cv_f1_mean on run {holder.run_id}"
            )
        baseline = float(run_metrics["cv_f1_mean"])
        baseline_desc = f"{production_alias!r} is v{holder.version} with cv_f1_mean={baseline:.4f}"

    reasons = []
    if candidate < f1_threshold:
        reasons.append(f"cv_f1_mean={candidate:.4f} < threshold {f1_threshold}")
    if baseline is not None and candidate < baseline - regression_delta:
        reasons.append(
            f"cv_f1_mean={candidate:.4f} < baseline {baseline:.4f} - {regression_delta} (regression)"
        )
    passed = not reasons
    if passed:
        reason = f"cv_f1_mean={candidate:.4f} >= threshold {f1_threshold}; {baseline_desc}"
    else:
        reason = "; ".join(reasons) + f"; {baseline_desc}"
    print(f"quality_gate: passed={passed}: {reason}")
    return outputs("true" if passed else "false", reason, candidate, -1.0 if baseline is None else baseline)


def deploy_to_kserve(
    model: Input[Model],
    mlflow_tracking_uri: str,
    serving_namespace: str,
    isvc_name: str = "recommendation-classifier",
    canary_traffic_percent: int = 20,
    predictor_requests: str = "",
) -> NamedTuple("Outputs", [("storage_uri", str), ("isvc_name", str)]):
    """Creates or patches the KServe InferenceService that serves the MLflow model.

    predictor_requests: "" keeps the seed's requests (1 CPU, 2Gi); else a JSON object such as
    {"cpu": "250m", "memory": "1Gi"} replaces them (the limits stay the seed's): a kind node is a
    share of a CI runner, where the seed's whole CPU per pod does not fit the suite's services.

    storageUri = the run's artifact_uri + "/model" (the document's fix for "Could not find an
    MLmodel configuration file"). Cluster credentials: in-cluster service account, else the
    kubeconfig named by KUBECONFIG (the harness points that at its local API emulation).
    """
    import json
    from collections import namedtuple

    from kubernetes import client, config
    from mlflow.tracking import MlflowClient

    try:
        config.load_incluster_config()
    except config.ConfigException:
        config.load_kube_config()
    api = client.CustomObjectsApi()

    mlflow_run_id = model.metadata.get("mlflow_run_id")
    if not mlflow_run_id:
        raise ValueError(f"deploy_to_kserve: model artifact has no mlflow_run_id: {dict(model.metadata)}")

    # Seed fix: the seed built MlflowClient() without a tracking URI.
    run = MlflowClient(tracking_uri=mlflow_tracking_uri).get_run(mlflow_run_id)
    artifact_uri = run.info.artifact_uri
    storage_uri = f"{artifact_uri}/model"

    inference_service = {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": {
            "name": isvc_name,
            "namespace": serving_namespace,
            "labels": {
                "mlflow-run-id": mlflow_run_id,
                "pipeline": "recommendation-training",
            },
            "annotations": {
                "serving.kserve.io/deploymentMode": "Serverless",
                "serving.kserve.io/autoscalerClass": "hpa",
                "serving.kserve.io/metrics": "cpu",
                "serving.kserve.io/targetUtilizationPercentage": "70",
            },
        },
        "spec": {
            "predictor": {
                "canaryTrafficPercent": canary_traffic_percent,
                "minReplicas": 2,
                "maxReplicas": 10,
                "model": {
                    "modelFormat": {"name": "mlflow"},
                    # Seed fix: KServe 0.14 matches no ClusterServingRuntime for mlflow
                    # without the v2 protocol.
                    "protocolVersion": "v2",
                    "storageUri": storage_uri,
                    "resources": {
                        "requests": json.loads(predictor_requests) if predictor_requests
                        else {"cpu": "1", "memory": "2Gi"},
                        "limits": {"cpu": "2", "memory": "4Gi"},
                    },
                },
            },
        },
    }

    kwargs = {"group": "serving.kserve.io", "version": "v1beta1", "namespace": serving_namespace,
                  "plural": "inferenceservices"}
    try:
        api.patch_namespaced_custom_object(name=isvc_name, body=inference_service, **kwargs)
        print(f"Updated InferenceService {serving_namespace}/{isvc_name} with canary "
              f"{canary_traffic_percent}%, storageUri={storage_uri}")
    except client.exceptions.ApiException as exc:
        if exc.status != 404:
            raise
        api.create_namespaced_custom_object(body=inference_service, **kwargs)
        print(f"Created InferenceService {serving_namespace}/{isvc_name}, storageUri={storage_uri}")

    outputs = namedtuple("Outputs", ["storage_uri", "isvc_name"])
    return outputs(storage_uri, isvc_name)


class Components(NamedTuple):
    """The five KFP components, built for one use (cluster or local)."""

    validate_data: object
    preprocess_data: object
    train_model: object
    quality_gate: object
    deploy_to_kserve: object


def make_components(packages: "list[str] | None") -> Components:
    """Wraps the bodies above as KFP components.

    ``packages``: the matrix row's pipeline pins for a cluster compile; ``None`` for local
    execution (no pip: the executing interpreter already holds the pins). When the pins
    include ``kfp==...`` that pin is the row's SDK for the task container, so KFP's own
    "install the compiling SDK's version" step is turned off rather than pinning kfp twice.
    """
    if packages is None:
        options = {"packages_to_install": [], "install_kfp_package": False}
    else:
        pins_kfp = any(p.replace(" ", "").lower().startswith(("kfp==", "kfp>", "kfp<", "kfp~", "kfp["))
                       for p in packages)
        options = {"packages_to_install": list(packages), "install_kfp_package": not pins_kfp}

    def build(func):
        return dsl.component(func, base_image=BASE_IMAGE, **options)

    return Components(
        validate_data=build(validate_data),
        preprocess_data=build(preprocess_data),
        train_model=build(train_model),
        quality_gate=build(quality_gate),
        deploy_to_kserve=build(deploy_to_kserve),
    )
