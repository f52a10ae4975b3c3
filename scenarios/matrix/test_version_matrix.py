"""Pre-upgrade version-matrix validation: every row x check, and every upgrade step x check.

A test passes when its check established an outcome with evidence - compatible, incompatible
(quoting the component), or cannot-build (quoting uv) - and fails only when the harness could not
(a probe crashed, a component never answered) or its evidence contradicts itself. Whether an
incompatibility is acceptable is the gate's question (--matrix-gate and the matrix file's accept
tables), not the test's. See harness/matrixcheck/outcome.py.
"""
from __future__ import annotations

import pytest

from harness.matrix import MATRIX_CHECKS, UPGRADE_CHECKS
from harness.matrixcheck.outcome import OUTCOMES

pytestmark = [pytest.mark.matrix]

def _record(seam, record_cell, check: str, case: str, description: str, compute) -> None:
    with seam.check(check, description, case=case) as ev:
        cell = compute()
        record_cell(cell)
        ev.update(outcome=cell.outcome, summary=cell.summary,
                  findings=[{"key": f.key(cell.check), "text": f.text} for f in cell.findings],
                  evidence=cell.evidence)
        assert cell.outcome in OUTCOMES, cell.outcome
        assert cell.summary, f"{cell.subject} {cell.check}: no summary"


def test_row(row_check, matrix_lab, seam, record_cell) -> None:
    row, check = row_check
    _record(seam, record_cell, check, row, MATRIX_CHECKS[check], lambda: matrix_lab.row_cell(row, check))


def test_upgrade(upgrade_check, matrix_lab, seam, record_cell) -> None:
    old, new, check = upgrade_check
    _record(seam, record_cell, check, f"{old}-to-{new}", UPGRADE_CHECKS[check],
            lambda: matrix_lab.pair_cell(old, new, check))
