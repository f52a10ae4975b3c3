"""The seed's pipeline: validate -> preprocess -> train -> gate -> (if passed) deploy.

``build_pipeline(packages)`` returns the ``@dsl.pipeline`` function built on components made
for one use (see components.make_components): a list of pins for a cluster compile, ``None``
for local execution. It imports with any kfp 2.x SDK: the compile runs under the pipeline
role's kfp 2.9.0, the local run under the runner's kfp 2.17.3.
"""

from kfp import dsl

from harness.pipeline.components import make_components

__all__ = [
    "DEFAULT_PACKAGES",
    "LOCAL_TRAINING_PARAMS",
    "PIPELINE_NAME",
    "SEED_TRAINING_PARAMS",
    "TRAINING_PIPELINE_NAME",
    "build_pipeline",
    "build_training_pipeline",
]

PIPELINE_NAME = "recommendation-training-pipeline"
# The pipeline's first three steps alone (validate -> preprocess -> train and register): the
# chaos suite cuts the tasks' path to MLflow, and only this seam should decide the outcome.
TRAINING_PIPELINE_NAME = "recommendation-training-only"

# The default matrix row's pipeline pins (KFP 2.3 backend era: kfp 2.9.0; MLflow 2.17.2; the
# seed's sklearn/pandas), i.e. what /tmp/scr/pipeline holds. A compile for another row passes
# that row's pins instead (compile.py --packages-json).
DEFAULT_PACKAGES = [
    "kfp==2.9.0",
    "mlflow==2.17.2",
    "scikit-learn==1.5.2",
    "pandas==2.2.3",
    "pyarrow==17.0.0",
    "boto3==1.35.0",
    "kubernetes==30.1.0",
]

# The seed's hyper-parameters: its cluster default. About 35 s of CV+fit per 2000 rows here.
SEED_TRAINING_PARAMS = {"n_estimators": 300, "max_depth": 8, "learning_rate": 0.05}
# What the pipeline parameters default to: about 2 s of CV+fit on 2 cores, same dataset gives
# cv f1_weighted about 0.88 (the seed's params reach about the same, 18x slower).
LOCAL_TRAINING_PARAMS = {"n_estimators": 50, "max_depth": 3, "learning_rate": 0.1}

# dsl.If is in both SDKs we run (2.9.0 compiles, 2.17.3 runs locally); dsl.Condition is its
# deprecated older name, kept as a fallback for older rows. Both compile to the same
# triggerPolicy.condition.
_IF = getattr(dsl, "If", None) or dsl.Condition


def _training_steps(c, data_path, mlflow_tracking_uri, mlflow_experiment, model_name, n_estimators, max_depth,
                    learning_rate, **train_options):
    """validate -> preprocess -> train, inside a pipeline function (both pipelines share them)."""
    validate_task = c.validate_data(data_path=data_path)
    preprocess_task = c.preprocess_data(raw_data=validate_task.outputs["validated_data"])
    train_task = c.train_model(
        training_data=preprocess_task.outputs["processed_data"],
        mlflow_tracking_uri=mlflow_tracking_uri,
        mlflow_experiment_name=mlflow_experiment,
        model_name=model_name,
        n_estimators=n_estimators,
        max_depth=max_depth,
        learning_rate=learning_rate,
        **train_options,
    )
    # The seed's resource request for training (a GPU node). Local runs ignore it; the
    # compiled YAML must carry it (tests/test_pipeline.py checks).
    train_task.set_cpu_limit("4").set_memory_limit("16Gi")
    train_task.set_accelerator_type("nvidia.com/gpu").set_accelerator_limit(1)
    return train_task


def build_pipeline(packages: "list[str] | None"):
    """Returns the pipeline function (a kfp GraphComponent) for cluster pins or local (None)."""
    c = make_components(packages)

    @dsl.pipeline(
        name=PIPELINE_NAME,
        description="data validation -> training -> model registration -> serving deployment",
    )
    def recommendation_training_pipeline(
        data_path: str = "gs://ml-data/recommendation/2026-03-04/",
        mlflow_tracking_uri: str = "http://mlflow.ml-platform.svc:5000",
        mlflow_experiment: str = "recommendation-v3",
        model_name: str = "recommendation-classifier",
        serving_namespace: str = "model-serving",
        isvc_name: str = "recommendation-classifier",
        canary_traffic_percent: int = 20,
        f1_threshold: float = 0.80,
        regression_delta: float = 0.02,
        production_alias: str = "production",
        n_estimators: int = LOCAL_TRAINING_PARAMS["n_estimators"],
        max_depth: int = LOCAL_TRAINING_PARAMS["max_depth"],
        learning_rate: float = LOCAL_TRAINING_PARAMS["learning_rate"],
        predictor_requests: str = "",
    ):
        train_task = _training_steps(c, data_path, mlflow_tracking_uri, mlflow_experiment, model_name,
                                     n_estimators, max_depth, learning_rate)

        gate_task = c.quality_gate(
            metrics=train_task.outputs["metrics_output"],
            mlflow_tracking_uri=mlflow_tracking_uri,
            model_name=model_name,
            f1_threshold=f1_threshold,
            regression_delta=regression_delta,
            production_alias=production_alias,
        )

        with _IF(gate_task.outputs["passed"] == "true"):
            c.deploy_to_kserve(
                model=train_task.outputs["model_output"],
                mlflow_tracking_uri=mlflow_tracking_uri,
                serving_namespace=serving_namespace,
                isvc_name=isvc_name,
                canary_traffic_percent=canary_traffic_percent,
                predictor_requests=predictor_requests,
            )

    return recommendation_training_pipeline


def build_training_pipeline(packages: "list[str] | None"):
    """validate -> preprocess -> train (log + register): the pipeline up to its MLflow seam, with
    the train step's ``mlflow_failure_policy`` as a pipeline parameter (see train_model)."""
    c = make_components(packages)

    @dsl.pipeline(name=TRAINING_PIPELINE_NAME,
                  description="data validation -> training -> model registration (no gate, no deploy)")
    def recommendation_training_only(
        data_path: str = "gs://ml-data/recommendation/2026-03-04/",
        mlflow_tracking_uri: str = "http://mlflow.ml-platform.svc:5000",
        mlflow_experiment: str = "recommendation-v3",
        model_name: str = "recommendation-classifier",
        mlflow_failure_policy: str = "raise",
        n_estimators: int = LOCAL_TRAINING_PARAMS["n_estimators"],
        max_depth: int = LOCAL_TRAINING_PARAMS["max_depth"],
        learning_rate: float = LOCAL_TRAINING_PARAMS["learning_rate"],
    ):
        _training_steps(c, data_path, mlflow_tracking_uri, mlflow_experiment, model_name,
                        n_estimators, max_depth, learning_rate, mlflow_failure_policy=mlflow_failure_policy)

    return recommendation_training_only
