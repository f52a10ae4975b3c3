"""The faulty canary's model class, shipped INSIDE each faulty model (MLflow `code_paths`).

This file is copied into the model as ``code/seamcheck_fault_model.py``; when a model server loads
the model, MLflow puts ``code/`` on ``sys.path`` before unpickling ``python_model.pkl``. The pickle
therefore holds only a reference to ``seamcheck_fault_model.FaultyModel`` plus a dict of plain
numbers and strings, never the class by value: nothing depends on cloudpickle reproducing a class
across the MLflow/cloudpickle versions of the logging environment (mlflow 2.17) and the serving
runtime (mlflow 2.10 in KServe 0.14's MLServer 1.5 image).

Keep this module self-contained: standard library at import time; mlflow, numpy and pandas only
inside methods (they exist wherever the model is loaded). Do not import it as part of the
``harness`` package when logging (the pickle would then name ``harness.faults...``, which a model
server cannot import): harness/faults/models.py imports it as the top-level module it is here.
"""
from __future__ import annotations

import os
import random
import time

import mlflow.pyfunc

__all__ = ["FAULT_KINDS", "FaultyModel"]

FAULT_KINDS = ("error", "latency", "tail_latency", "wrong", "slow_load", "proba")


class InjectedFault(RuntimeError):
    """The deliberate failure of an `error` canary (MLServer answers it with HTTP 500)."""


class FaultyModel(mlflow.pyfunc.PythonModel):
    """A real base model (artifact ``base``) with one injected behaviour.

    kind          behaviour
    error         raise InjectedFault with probability ``p`` per request
    latency       sleep ``delay_s`` on every request
    tail_latency  sleep ``delay_s`` on a fraction ``q`` of requests only (p99 up, median not)
    wrong         flip each predicted label with probability ``p`` (1.0: every label)
    slow_load     sleep ``load_delay_s`` in load_context (the model becomes ready late)
    proba         answer the positive class' probability (the base classifier's predict_proba)
                  plus ``shift``, clipped to [0, 1] (shift 0: the base's own probabilities)

    Random draws come from the OS entropy pool (``random.SystemRandom``) on every request: no seed,
    so neither "every request fails" nor "none does" can come from a fixed seed, and every server
    worker process draws independently.
    """

    def __init__(self, kind: str, p: float = 0.0, q: float = 0.0, delay_s: float = 0.0,
                 load_delay_s: float = 0.0, shift: float = 0.0) -> None:
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {kind!r}; choose one of {', '.join(FAULT_KINDS)}")
        # Plain values only: this dict is all that is pickled besides the class reference.
        self.fault = {"kind": kind, "p": float(p), "q": float(q), "delay_s": float(delay_s),
                      "load_delay_s": float(load_delay_s), "shift": float(shift)}

    # -------------------------------------------------------------------- loading
    def load_context(self, context) -> None:
        started = time.monotonic()
        if self.fault["kind"] == "slow_load" and self.fault["load_delay_s"] > 0:
            time.sleep(self.fault["load_delay_s"])
        self._random = random.SystemRandom()
        base_path = context.artifacts["base"]
        self._base = mlflow.pyfunc.load_model(base_path)
        self._classes = None
        self._estimator = None
        try:  # a classifier's own label set, so a "wrong" label is still a valid label
            from mlflow import sklearn as mlflow_sklearn  # not `import mlflow.sklearn`: no local `mlflow`

            if "sklearn" in self._base.metadata.flavors:
                est = mlflow_sklearn.load_model(base_path)
                self._estimator = est
                classes = getattr(est, "classes_", None)
                if classes is not None and len(classes) >= 2:
                    self._classes = list(classes)
        except Exception:  # noqa: BLE001 - not a sklearn classifier: fall back below
            self._classes = None
        if self.fault["kind"] == "proba" and not hasattr(self._estimator, "predict_proba"):
            # Fail the load (the revision fails, with this in its log), not every request later.
            raise RuntimeError(f"seamcheck fault proba: the base model at {base_path} is not a scikit-learn "
                               "classifier with predict_proba")
        self.loaded_in_s = time.monotonic() - started
        self.loaded_pid = os.getpid()

    # -------------------------------------------------------------------- serving
    def predict(self, context, model_input, params=None):
        kind, fault = self.fault["kind"], self.fault
        if kind == "error" and self._random.random() < fault["p"]:
            raise InjectedFault(f"seamcheck injected fault: error (p={fault['p']})")
        if kind == "latency" and fault["delay_s"] > 0:
            time.sleep(fault["delay_s"])
        if kind == "tail_latency" and fault["delay_s"] > 0 and self._random.random() < fault["q"]:
            time.sleep(fault["delay_s"])
        if kind == "proba":
            return self._probabilities(model_input, fault.get("shift", 0.0))
        predictions = self._base.predict(model_input)
        if kind == "wrong":
            predictions = self._flip(predictions, fault["p"])
        return predictions

    def _probabilities(self, model_input, shift: float):
        import numpy as np

        est = self._estimator
        names = getattr(est, "feature_names_in_", None)
        frame = model_input[list(names)] if names is not None and hasattr(model_input, "columns") else model_input
        positive = np.asarray(est.predict_proba(frame), dtype=np.float64)[:, -1]  # the last class: 1 of {0, 1}
        return np.clip(positive + shift, 0.0, 1.0)

    def _flip(self, predictions, p: float):
        import numpy as np
        import pandas as pd

        values = predictions.to_numpy() if isinstance(predictions, (pd.Series, pd.DataFrame)) else predictions
        arr = np.array(values, copy=True)
        flat = arr.reshape(-1)
        for i in range(flat.shape[0]):
            if p >= 1.0 or self._random.random() < p:
                flat[i] = self._wrong_label(flat[i])
        out = flat.reshape(arr.shape)
        if isinstance(predictions, pd.Series):
            return pd.Series(out, index=predictions.index, name=predictions.name)
        if isinstance(predictions, pd.DataFrame):
            return pd.DataFrame(out, index=predictions.index, columns=predictions.columns)
        return out

    def _wrong_label(self, value):
        if self._classes is not None:
            try:
                i = self._classes.index(value)
            except ValueError:
                return self._classes[0]
            return self._classes[(i + 1) % len(self._classes)]  # binary: 0 <-> 1
        if value in (0, 1):
            return 1 - value
        return -value if value != 0 else 1
