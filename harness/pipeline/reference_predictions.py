"""Run inside a role environment (`python -m harness.pipeline.reference_predictions ...`): load an MLflow model with
that environment's own mlflow and report its predictions, so the endpoint can be compared with
the registered model itself. Needs mlflow, pandas and pyarrow (in every model-bearing role)."""
from __future__ import annotations

import argparse
import json
import sys
import warnings

__all__ = ["main", "reference_predictions"]


def reference_predictions(python: str, model_uri: str, frame, *, workdir: str, env: dict[str, str]) -> dict:
    """Harness side: run this module in the environment of `python` on `frame` (a DataFrame) and
    return {"predictions", "mlflow", "warnings"}. Every profile computes reference predictions so."""
    import tempfile
    from pathlib import Path

    from harness.procs import run_checked

    work = Path(tempfile.mkdtemp(dir=workdir, prefix="modelcheck-"))
    frame.to_parquet(work / "input.parquet")
    run_checked([str(python), "-m", "harness.pipeline.reference_predictions", "--model-uri", model_uri,
                 "--input", str(work / "input.parquet"), "--output", str(work / "output.json")],
                what=f"predicting with {model_uri} in {python}'s environment", timeout=300, env=env, cwd=work)
    return json.loads((work / "output.json").read_text())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m harness.pipeline.reference_predictions")
    parser.add_argument("--model-uri", required=True)
    parser.add_argument("--input", required=True, help="a DataFrame as parquet (keeps the dtypes exactly)")
    parser.add_argument("--output", required=True)
    args = parser.parse_args(argv)

    import mlflow
    import pandas as pd

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = mlflow.pyfunc.load_model(args.model_uri)
        frame = pd.read_parquet(args.input)
        predictions = model.predict(frame)
    values = predictions.tolist() if hasattr(predictions, "tolist") else list(predictions)
    with open(args.output, "w") as fh:
        json.dump({"predictions": values, "mlflow": mlflow.__version__,
                   "warnings": [str(w.message)[:500] for w in caught]}, fh)
    return 0


if __name__ == "__main__":
    sys.exit(main())
