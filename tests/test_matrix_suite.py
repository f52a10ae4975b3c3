"""The matrix suite end to end where it is fast: a row that cannot be built (a pin that does not
exist: uv fails at resolve) is reported with uv's own error line while the other rows still run,
the gate turns that into the exit status, and bad input is a one-line usage error."""
from __future__ import annotations

import json
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from harness.matrix import DEFAULT_MATRIX_PATH
from tests.inner import REPO_ROOT, inner_env

BOGUS_PIN = "mlflow==9.9.9"


def _matrix_with_bogus_row(tmp_path: Path, *, accept: bool = False) -> Path:
    """The shipped default row (its environments are cached by any earlier run) plus a copy whose
    tracking role pins an mlflow that does not exist."""
    text = DEFAULT_MATRIX_PATH.read_text()
    default = tomllib.loads(text)["default_row"]
    start = text.index(f'[rows."{default}"]')
    end = text.index("\n# ----", start)
    block = text[start:end].replace(f'"{default}"', '"bogus"').replace('kind = "seed"', 'kind = "candidate"')
    block = re.sub(r'upgrade_from = "[^"]*"\n', "", block)
    block = re.sub(r'\[rows\."bogus"\.accept\]\n(?:"[^\n]*\n)*', "", block)  # its own accept, if any, below
    block = block.replace('pins = ["mlflow==2.17.2", "sqlalchemy==2.0.36", "boto3==1.35.0"]',
                          f'pins = ["{BOGUS_PIN}", "sqlalchemy==2.0.36", "boto3==1.35.0"]', 1)
    assert BOGUS_PIN in block
    if accept:
        block += '\n[rows."bogus".accept]\n"env-build" = "test: a row we know cannot be built yet"\n'
    head = text[:re.search(r"^\[rows\.", text, re.MULTILINE).start()]
    body = head + text[start:end].replace('upgrade_from = "kfp2.2-mlflow2.15-kserve0.13"\n', "") + "\n" + block
    path = tmp_path / "matrix.toml"
    path.write_text(body)
    return path


def _run(tmp_path: Path, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q",
                           "--reports-dir", str(tmp_path / "reports"), "scenarios/matrix", *args],
                          check=False, cwd=REPO_ROOT, env=inner_env(), capture_output=True, text=True,
                          timeout=timeout)


def _matrix_json(tmp_path: Path) -> dict:
    (path,) = (tmp_path / "reports").glob("*/matrix.json")
    return json.loads(path.read_text())


def test_a_row_that_cannot_be_built_is_reported_with_uvs_line_and_the_others_still_run(tmp_path: Path) -> None:
    matrix = _matrix_with_bogus_row(tmp_path)
    # env-build of every row, and the upgrade step the bogus candidate implies (default -> bogus).
    result = _run(tmp_path, "--matrix-file", str(matrix), "-m", "matrix", "-k", "env-build or new-client")
    output = result.stdout + result.stderr
    assert result.returncode == 0, output  # every check established its outcome
    assert "3 passed" in output, output
    data = _matrix_json(tmp_path)
    cells = {(c["subject"], c["check"]): c for c in data["cells"]}
    bogus = cells[("bogus", "env-build")]
    assert bogus["outcome"] == "cannot-build"
    assert re.match(r"tracking: (×|error:) No solution found when resolving dependencies.* Because there is no "
                    r"version of mlflow==9\.9\.9", bogus["summary"]), bogus
    default = tomllib.loads(matrix.read_text())["default_row"]
    assert cells[(default, "env-build")]["outcome"] == "compatible"
    step = cells[(f"{default} -> bogus", "new-client-reads-old-registry")]
    assert step["outcome"] == "cannot-build" and BOGUS_PIN in step["summary"]
    assert data["gate"]["enabled"] is False and len(data["gate"]["failures"]) == 1
    assert "gate off" in output and "bogus: cannot-build (tracking)" in output
    md = next((tmp_path / "reports").glob("*/matrix.md")).read_text()
    assert "| `bogus` (candidate) | ⛔ cannot-build: tracking: " in md and "No solution found" in md


def test_the_gate_fails_the_run_on_what_the_file_does_not_accept(tmp_path: Path) -> None:
    matrix = _matrix_with_bogus_row(tmp_path)
    result = _run(tmp_path, "--matrix-file", str(matrix), "--matrix-row", "bogus", "-m", "matrix", "-k",
                  "env-build", "--matrix-gate")
    assert result.returncode == pytest.ExitCode.TESTS_FAILED, result.stdout + result.stderr
    assert "1 passed" in result.stdout and "gate on" in result.stdout
    summary = json.loads(next((tmp_path / "reports").glob("*/summary.json")).read_text())
    assert summary["outcome"] == "failed" and summary["matrix"]["gate"]["passed"] is False


def test_an_accepted_cannot_build_row_passes_the_gate(tmp_path: Path) -> None:
    matrix = _matrix_with_bogus_row(tmp_path, accept=True)
    result = _run(tmp_path, "--matrix-file", str(matrix), "--matrix-row", "bogus", "-m", "matrix", "-k",
                  "env-build", "--matrix-gate")
    assert result.returncode == 0, result.stdout + result.stderr
    assert _matrix_json(tmp_path)["cells"][0]["accepted"] == {
        "env-build/tracking": "test: a row we know cannot be built yet"}


def _assert_usage_error(result: subprocess.CompletedProcess[str], text: str) -> None:
    output = result.stdout + result.stderr
    assert result.returncode == pytest.ExitCode.USAGE_ERROR, output
    lines = [ln for ln in output.splitlines() if ln.startswith("ERROR: seamcheck:")]
    assert len(lines) == 1 and text in lines[0], output
    assert "[seamcheck] matrix" not in output and "Traceback" not in output, output


def test_unknown_row_in_a_row_list_is_a_usage_error(tmp_path: Path) -> None:
    _assert_usage_error(_run(tmp_path, "-m", "matrix", "--matrix-row", "kfp2.3-mlflow2.17-kserve0.14,kfp9.9"),
                        "unknown matrix row 'kfp9.9'")


def test_malformed_row_is_a_usage_error(tmp_path: Path) -> None:
    bad = tmp_path / "matrix.toml"
    bad.write_text(DEFAULT_MATRIX_PATH.read_text().replace(
        'upgrade_from = "kfp2.2-mlflow2.15-kserve0.13"', 'upgrade_from = "kfp1.0"', 1))
    _assert_usage_error(_run(tmp_path, "-m", "matrix", "--matrix-file", str(bad)),
                        "upgrade_from = 'kfp1.0' names no row")


def test_several_rows_with_the_stack_suites_is_a_usage_error(tmp_path: Path) -> None:
    (tmp_path / "test_inner.py").write_text("def test_uses_stack(stack):\n    pass\n")
    result = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "--reports-dir",
                             str(tmp_path / "reports"), str(tmp_path / "test_inner.py"), "--matrix-row",
                             "kfp2.3-mlflow2.17-kserve0.14,candidate-mlflow3"],
                            check=False, cwd=tmp_path, env=inner_env(), capture_output=True, text=True,
                            timeout=120)
    _assert_usage_error(result, "--matrix-row names 2 rows")
