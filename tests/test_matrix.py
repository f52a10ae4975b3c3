"""The version matrix file: the shipped one loads, and malformed ones fail with messages that say what to fix."""
from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from harness.matrix import DEFAULT_MATRIX_PATH, ROLES, MatrixError, load_matrix

SEED_ROWS = {"kfp2.3-mlflow2.17-kserve0.14", "kfp2.2-mlflow2.15-kserve0.13", "kfp2.1-mlflow2.12-kserve0.12"}


def test_shipped_matrix_has_the_seed_rows_with_every_role_pinned_exactly() -> None:
    matrix = load_matrix(DEFAULT_MATRIX_PATH)
    assert SEED_ROWS <= set(matrix.rows)
    assert matrix.default_row == "kfp2.3-mlflow2.17-kserve0.14"
    row = matrix.row(None)
    assert (row.kfp_backend, row.mlflow, row.kserve) == ("2.3.0", "2.17.2", "0.14.1")
    for role in ROLES:
        assert all("==" in pin for pin in row.role(role).pins)
    assert "mlflow==2.17.2" in row.role("tracking").pins
    assert "kfp==2.9.0" in row.role("pipeline").pins
    assert row.role("serving").image == "docker.io/seldonio/mlserver:1.5.0"
    assert set(row.kind_node_images) == set(row.kubernetes)
    for name, other in matrix.rows.items():
        assert set(other.kind_node_images) == set(other.kubernetes), name
        assert all("@sha256:" in image for image in other.kind_node_images.values()), name
    assert {r.kind for r in matrix.rows.values()} == {"seed", "candidate"}


def _write(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "matrix.toml"
    path.write_text(textwrap.dedent(body))
    return path


GOOD_ROW = """
schema = 1
default_row = "r"
[rows.r]
kind = "seed"
description = "d"
python = "3.11"
kfp_backend = "2.3.0"
mlflow = "2.17.2"
kserve = "0.14.1"
kubernetes = ["1.30"]
[rows.r.roles.tracking]
pins = ["mlflow==2.17.2"]
[rows.r.roles.pipeline]
pins = ["kfp==2.9.0"]
[rows.r.roles.serving]
pins = ["mlserver==1.5.0"]
[rows.r.roles.storage]
pins = ["kserve[storage]==0.14.1"]
[rows.r.roles.runner]
pins = ["kfp==2.17.3"]
"""


def test_a_minimal_valid_file_loads(tmp_path: Path) -> None:
    assert load_matrix(_write(tmp_path, GOOD_ROW)).row("r").role("storage").pins == ("kserve[storage]==0.14.1",)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda s: s.replace('pins = ["kfp==2.9.0"]', 'pins = ["kfp>=2.9"]'), "is not an exact pin"),
        (lambda s: s.replace("[rows.r.roles.runner]\npins = [\"kfp==2.17.3\"]\n", ""), "missing role(s) ['runner']"),
        (lambda s: s.replace('kind = "seed"', 'kind = "nightly"'), 'kind must be "seed" or "candidate"'),
        (lambda s: s.replace('default_row = "r"', 'default_row = "x"'), "default_row = 'x' names no row"),
        (lambda s: s.replace("schema = 1", "schema = 2"), "expected `schema = 1`"),
        (lambda s: s.replace('kubernetes = ["1.30"]', 'kubernetes = "1.30"'), "`kubernetes` must be a list"),
        (lambda s: s.replace('python = "3.11"', 'python = "3.11"\ncolour = "red"'), "unknown key(s) ['colour']"),
        (lambda s: s + "\n[[broken", "is not valid TOML"),
    ],
)
def test_malformed_files_name_the_problem(tmp_path: Path, edit, message: str) -> None:
    with pytest.raises(MatrixError) as info:
        load_matrix(_write(tmp_path, edit(GOOD_ROW)))
    assert message in str(info.value)


def test_unknown_row_lists_the_known_ones(tmp_path: Path) -> None:
    with pytest.raises(MatrixError, match=r"unknown matrix row 'nope'.*known rows: r"):
        load_matrix(_write(tmp_path, GOOD_ROW)).row("nope")


def test_missing_file_says_so(tmp_path: Path) -> None:
    with pytest.raises(MatrixError, match="does not exist"):
        load_matrix(tmp_path / "absent.toml")


def test_a_failed_env_build_keeps_uvs_cause_lines() -> None:
    from harness.envs import _last_error_lines

    uv_output = "\n".join([
        "Resolved 40 packages in 1.2s",
        "  × Failed to build `scikit-learn==1.2.2`",
        "  ├─▶ The build backend returned an error",
        "  ╰─▶ Call to `setuptools.build_meta.build_wheel` failed (exit status: 1)",
        "      [stderr]",
        "      numpy/core/include not found",
        "      hint: This usually indicates a problem with the package or the build environment.",
        "  Caused by: no wheel for cp311 and the sdist needs Cython<3",
    ])
    kept = _last_error_lines(uv_output)
    assert "Caused by: no wheel for cp311" in kept
    assert "× Failed to build `scikit-learn==1.2.2`" in kept
    assert "Resolved 40 packages" not in kept
