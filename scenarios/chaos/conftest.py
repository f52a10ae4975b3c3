"""Fixtures of the chaos suite: the stack's control (what the experiments act through), built
on the model the pipeline trained and the service it deployed."""
from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.chaos.control import ChaosContext, ChaosControl
from harness.pipeline.dataset import holdout_rows
from harness.plugin import REPORT_KEY


def trained_version(pipeline_run) -> str:
    train = pipeline_run.tasks["train-model"]
    raw = (train["parameters"].get("registered_model_version")
           or train["artifacts"]["model_output"]["metadata"]["registered_model_version"])
    return str(int(float(raw)))


@pytest.fixture(scope="session")
def chaos_control(stack, deployment, dataset_path, tmp_path_factory) -> Iterator[ChaosControl]:
    if stack.name != "local":
        pytest.skip(f"the chaos suite's local actions need the local profile (this is {stack.name}); "
                    "cluster faults are in harness/cluster/faults.py")
    workdir: Path = tmp_path_factory.mktemp("chaos")
    rows = workdir / "rows.parquet"
    holdout_rows(200).to_parquet(rows)
    context = ChaosContext(base_storage_uri=deployment.isvc["spec"]["predictor"]["model"]["storageUri"],
                           model_name="recommendation-classifier", model_version=trained_version(deployment.run),
                           template=deployment.isvc, dataset_path=dataset_path, rows_path=rows)
    control = ChaosControl(stack, context, workdir)
    control.serve()
    saved = {k: os.environ.get(k) for k in control.environment()}
    os.environ.update(control.environment())
    try:
        yield control
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        control.close()


@pytest.fixture(scope="session")
def journal_dir(chaos_control, pytestconfig) -> Iterator[Path]:
    """Where each experiment's journal goes; every journal is attached to the run's report."""
    path = chaos_control.workdir / "journals"
    path.mkdir(exist_ok=True)
    yield path
    report = pytestconfig.stash.get(REPORT_KEY, None)
    if report is not None:
        for journal in sorted(path.glob("*.json")):
            report.add_artifact(f"chaos-journal-{journal.name}", journal.read_text())
