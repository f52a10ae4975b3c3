"""Pre-upgrade version-matrix validation: every row x check, and every upgrade step x check.

A test passes when its check established an outcome with evidence - compatible, incompatible
(quoting the component), or cannot-build (quoting uv) - and fails only when the harness could not
(a probe crashed, a component never answered) or its evidence contradicts itself. Whether an
incompatibility is acceptable is the gate's question (--matrix-gate and the matrix file's accept
tables), not the test's. See harness/matrixcheck/outcome.py.
"""
from __future__ import annotations

import pytest

from harness.matrixcheck.outcome import OUTCOMES

pytestmark = [pytest.mark.matrix]

ROW_CHECKS = {
    "env-build": "the row's role environments build (uv) or the row is cannot-build with uv's own line",
    "tracking-client": "the row's client and server: run, params, metrics, log + register, alias, stages",
    "v2-predictions": "the row's models, with and without a signature, served by the row's runtime: V2 "
                      "predictions (with and without content_type) equal the pipeline env's own",
    "library-skew": "training vs serving scikit-learn: the row's skew, and a newer pickle probe, with the "
                    "runtime's own words",
    "storage-uri": "artifact_uri + /model holds MLmodel after KServe's storage initializer; the version's "
                   "download URI does too",
    "kfp-compile": "the row's kfp compiles the pipeline and keeps accelerator, resources and parameters",
    "signature-claim": "the seed's claim that MLflow >= 2.16 refuses unsigned models, tried on the row",
}
UPGRADE_CHECKS = {
    "old-model-in-new-runtime": "a model registered under the older row served by the newer row's runtime",
    "new-model-in-old-runtime": "a model registered under the newer row served by the older row's runtime",
    "new-client-reads-old-registry": "the newer row's MLflow client reads the older row's registry",
}


def _record(seam, record_cell, name: str, description: str, compute) -> None:
    with seam.check(name, description) as ev:
        cell = compute()
        record_cell(cell)
        ev.update(outcome=cell.outcome, summary=cell.summary,
                  findings=[{"key": f.key(cell.check), "text": f.text} for f in cell.findings],
                  evidence=cell.evidence)
        assert cell.outcome in OUTCOMES, cell.outcome
        assert cell.summary, f"{cell.subject} {cell.check}: no summary"


def test_row(row_check, matrix_lab, seam, record_cell) -> None:
    row, check = row_check
    _record(seam, record_cell, f"matrix {check} @ {row}", ROW_CHECKS[check],
            lambda: matrix_lab.row_cell(row, check))


def test_upgrade(upgrade_check, matrix_lab, seam, record_cell) -> None:
    old, new, check = upgrade_check
    _record(seam, record_cell, f"upgrade {check} @ {old} -> {new}", UPGRADE_CHECKS[check],
            lambda: matrix_lab.pair_cell(old, new, check))
