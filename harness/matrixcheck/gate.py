"""The matrix gate: which incompatibilities the matrix file accepts, and which fail the run.

A row's ``accept`` table names findings as ``"<check>"`` (every finding of that check) or
``"<check>/<facet>"`` (one), each with a why. Upgrade cells ("older -> newer") are judged by the
newer row's table: an upgrade is the newer row's to accept. A cannot-build cell is accepted only by
``env-build`` (or ``env-build/<role>`` for each role that failed) of the row that cannot be built.
"""
from __future__ import annotations

from collections.abc import Iterable

from harness.matrix import Matrix
from harness.matrixcheck.outcome import CANNOT_BUILD, COMPATIBLE, Cell

__all__ = ["apply_gate"]


def _accept_table(matrix: Matrix, cell: Cell) -> tuple[str, dict[str, str]]:
    row = cell.subject.split(" -> ")[-1] if cell.kind == "upgrade" else cell.subject
    return row, dict(matrix.rows[row].accept) if row in matrix.rows else {}


def apply_gate(cells: Iterable[Cell], matrix: Matrix) -> list[str]:
    """Fill each cell's `accepted`; return one line per finding no accept entry covers."""
    failures: list[str] = []
    seen_cannot_build: set[str] = set()
    for cell in cells:
        cell.accepted = {}
        if cell.outcome == COMPATIBLE:
            continue
        row, table = _accept_table(matrix, cell)
        for finding in cell.findings:
            if cell.outcome == CANNOT_BUILD:  # judged by the row that cannot be built
                failing, _sep, role = finding.facet.rpartition(":")
                row = failing or row
                table = dict(matrix.rows[row].accept) if row in matrix.rows else {}
                keys = ("env-build", f"env-build/{role}")
            else:
                keys = (cell.check, finding.key(cell.check))
            why = next((table[k] for k in keys if k in table), None)
            if why is not None:
                cell.accepted[finding.key(cell.check)] = why
                continue
            if cell.outcome == CANNOT_BUILD:
                label = f"{role}@{row}"
                if label in seen_cannot_build:
                    continue
                seen_cannot_build.add(label)
                failures.append(f"{row}: cannot-build ({role}): {finding.text} "
                                f"[accept with \"env-build\" in [rows.\"{row}\".accept]]")
            else:
                failures.append(f"{cell.subject}: {finding.key(cell.check)}: {finding.text} "
                                f"[accept with \"{finding.key(cell.check)}\" in [rows.\"{row}\".accept]]")
    return failures
