"""The pre-apply lint reads the storage a manifest names, as KServe's storage initializer will."""
from __future__ import annotations

from pathlib import Path

from harness.serving.lint import lint_isvc


def manifest(uri: str, **predictor) -> dict:
    model = {"modelFormat": {"name": "mlflow"}, "protocolVersion": "v2", "storageUri": uri}
    return {"metadata": {"name": "m"}, "spec": {"predictor": {"model": model, **predictor}}}


def run_root(tmp_path: Path) -> Path:
    root = tmp_path / "artifacts"
    for folder in ("model", "copies/v2/model"):
        (root / folder).mkdir(parents=True)
        (root / folder / "MLmodel").write_text("flavors: {}\n")
    return root


def test_model_folder_passes(tmp_path: Path) -> None:
    assert lint_isvc(manifest(str(run_root(tmp_path) / "model")), {}) == []


def test_run_root_without_model_is_refused_with_the_fix(tmp_path: Path) -> None:
    root = run_root(tmp_path)
    problems = lint_isvc(manifest(str(root)), {})
    assert len(problems) == 1
    assert "holds no MLmodel at its root" in problems[0]
    assert f"{root}/model - use the run's artifact_uri" in problems[0]


def test_missing_protocol_and_bad_numbers(tmp_path: Path) -> None:
    m = manifest(str(run_root(tmp_path) / "model"), canaryTrafficPercent=120, minReplicas=3, maxReplicas=2)
    del m["spec"]["predictor"]["model"]["protocolVersion"]
    problems = " | ".join(lint_isvc(m, {}))
    assert "protocolVersion: v2" in problems and "canaryTrafficPercent 120" in problems
    assert "minReplicas 3 > maxReplicas 2" in problems


def test_unreachable_store_is_refused() -> None:
    env = {"AWS_ENDPOINT_URL": "http://127.0.0.1:9", "AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "y"}
    problems = lint_isvc(manifest("s3://bucket/run/artifacts/model"), env)
    assert len(problems) == 1 and problems[0].startswith("cannot list storageUri s3://bucket/run/artifacts/model")
