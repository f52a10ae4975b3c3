"""The matrix suite's parametrisation and its one session object (the lab).

Rows: every row of the matrix file, or the ones --matrix-row names (comma list; `all`). Upgrade
steps: each row's upgrade_from whose both ends are among them. Every row but the default one, and
every upgrade step, is marked `slow` (a nightly target): `pytest -m "matrix and not slow"` checks
the default row only. The lab is planned from the tests that are actually selected, so a run does
only the work its selected cells need.
"""
from __future__ import annotations

import atexit
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from harness.matrix import MATRIX_CHECKS, UPGRADE_CHECKS, Matrix
from harness.matrixcheck.lab import MatrixLab
from harness.matrixcheck.outcome import Cell
from harness.report.summary import MATRIX_CELL_PROPERTY
from harness.settings import REPORT_KEY, SETTINGS_KEY
from harness.terminal import progress_printer


def _rows(config: pytest.Config) -> list[Any]:
    settings = config.stash[SETTINGS_KEY]
    return list(settings.rows) if settings.rows is not None else list(settings.matrix.rows.values())


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    config = metafunc.config
    if SETTINGS_KEY not in config.stash:
        return
    matrix: Matrix = config.stash[SETTINGS_KEY].matrix
    rows = _rows(config)
    if "row_check" in metafunc.fixturenames:
        params = []
        for row in rows:
            marks = [] if row.name == matrix.default_row else [pytest.mark.slow]
            params += [pytest.param((row.name, check), marks=marks, id=f"{row.name}:{check}")
                       for check in MATRIX_CHECKS]
        metafunc.parametrize("row_check", params)
    if "upgrade_check" in metafunc.fixturenames:
        params = [pytest.param((old.name, new.name, check), marks=[pytest.mark.slow],
                               id=f"{old.name}->{new.name}:{check}")
                  for old, new in matrix.upgrade_pairs(rows) for check in UPGRADE_CHECKS]
        metafunc.parametrize("upgrade_check", params)


def _planned(session: pytest.Session, matrix: Matrix) -> tuple[list[Any], list[Any]]:
    rows: dict[str, Any] = {}
    pairs: dict[tuple[str, str], Any] = {}
    for item in session.items:
        params = getattr(getattr(item, "callspec", None), "params", {})
        if "row_check" in params:
            rows.setdefault(params["row_check"][0], matrix.rows[params["row_check"][0]])
        if "upgrade_check" in params:
            old, new, _check = params["upgrade_check"]
            pairs.setdefault((old, new), (matrix.rows[old], matrix.rows[new]))
    return list(rows.values()), list(pairs.values())


@pytest.fixture(scope="session")
def matrix_lab(request: pytest.FixtureRequest) -> Iterator[MatrixLab]:
    config = request.config
    matrix: Matrix = config.stash[SETTINGS_KEY].matrix
    stack_config = config.stash[SETTINGS_KEY].stack
    rows, pairs = _planned(request.session, matrix)
    lab = MatrixLab(matrix, rows, pairs, cache=stack_config.env_cache, progress=progress_printer(config),
                    keep=stack_config.keep_stack)
    atexit.register(lab.close)  # belt and braces: an exit that skips fixture teardown
    try:
        yield lab
    finally:
        config.stash[REPORT_KEY].timings.update({f"matrix_{k}": v for k, v in lab.timings.items()})
        lab.close()
        atexit.unregister(lab.close)


@pytest.fixture
def record_cell(request: pytest.FixtureRequest) -> Callable[[Cell], None]:
    """Add a cell to the matrix table: it travels with the test's report (xdist included)."""
    def record(cell: Cell) -> None:
        request.node.user_properties.append((MATRIX_CELL_PROPERTY, cell.as_dict()))

    return record
