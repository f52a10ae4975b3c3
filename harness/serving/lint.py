"""Pre-apply lint of an InferenceService manifest: the mistakes KServe accepts and then fails on.

The API server admits a `modelFormat: mlflow` predictor whose storageUri is the run's artifact
root (no "/model"): the revision then crash-loops and the InferenceService never turns Ready
(the seed's failure 2). A deploy step can see that before it applies anything, by looking at the
storage the way KServe's storage initializer will: the MLflow runtime needs `MLmodel` at the root
of what is copied into /mnt/models.
"""
from __future__ import annotations

from typing import Any

from harness.errors import SeamcheckError
from harness.serving.storage import list_storage

__all__ = ["LintError", "lint_isvc"]


class LintError(SeamcheckError, ValueError):
    """The manifest would be admitted by the API server and then fail; ``problems`` says why."""

    def __init__(self, name: str, problems: list[str]) -> None:
        self.problems = problems
        super().__init__(f"pre-apply lint refused InferenceService {name}: " + "; ".join(problems))


def lint_isvc(manifest: dict[str, Any], storage_env: dict[str, str]) -> list[str]:
    """Problems with ``manifest`` (empty when it may be applied). Reads the storage it names."""
    problems: list[str] = []
    predictor = (manifest.get("spec") or {}).get("predictor") or {}
    model = predictor.get("model") or {}
    fmt = (model.get("modelFormat") or {}).get("name")
    uri = model.get("storageUri") or ""
    pct = predictor.get("canaryTrafficPercent")
    if pct is not None and not (isinstance(pct, int) and 0 <= pct <= 100):
        problems.append(f"canaryTrafficPercent {pct!r} is not an integer in 0..100")
    lo, hi = predictor.get("minReplicas"), predictor.get("maxReplicas")
    if isinstance(lo, int) and isinstance(hi, int) and hi and lo > hi:
        problems.append(f"minReplicas {lo} > maxReplicas {hi}")
    if fmt == "mlflow":
        if model.get("protocolVersion") != "v2":
            problems.append("modelFormat mlflow needs protocolVersion: v2 (KServe 0.14 matches no runtime without it)")
        if not uri:
            problems.append("no storageUri")
        else:
            try:
                files = list_storage(uri, storage_env)
            except Exception as exc:  # noqa: BLE001  any storage error means "cannot be checked": refuse
                problems.append(f"cannot list storageUri {uri}: {type(exc).__name__}: {exc}")
            else:
                if "MLmodel" not in files:
                    # MLflow's own "model" folder first: the one artifact_uri + "/model" names.
                    nested = sorted((f for f in files if f.endswith("/MLmodel")),
                                    key=lambda f: (f != "model/MLmodel", f.count("/"), f))
                    hint = (f"; it is one level down at {uri.rstrip('/')}/{nested[0].rsplit('/', 1)[0]} - "
                            'use the run\'s artifact_uri + "/model"' if nested else "")
                    problems.append(f"storageUri {uri} holds no MLmodel at its root "
                                    f"({len(files)} object(s) there){hint}")
    return problems
