"""The run's report is collected where pytest-xdist delivers results, so `pytest -n 2` writes the
same report as a run without workers: the same tests and outcomes, the same seam checks with their
evidence, the matrix cells and what each worker alone knew (timings, artifacts)."""
from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

SUITE = textwrap.dedent('''
    import pytest
    from harness.matrixcheck.outcome import Cell, Finding

    pytestmark = pytest.mark.conformance

    @pytest.mark.parametrize("n", range(4))
    def test_check(seam, n, run_report):
        run_report.timings[f"t{n}"] = float(n)
        run_report.add_artifact(f"artifact-{n}.txt", f"from test {n}")
        with seam.check("numbered", f"check {n}", case=str(n)) as ev:
            ev["n"] = n
            assert n != 3, "three fails on purpose"

    def test_cell(request):
        cell = Cell("row", "r1", "env-build", "incompatible", "it broke", [Finding("pins", "uv said no")])
        from harness.report.summary import MATRIX_CELL_PROPERTY
        request.node.user_properties.append((MATRIX_CELL_PROPERTY, cell.as_dict()))
''')


def _report(pytester: pytest.Pytester, *args: str) -> dict:
    reports = pytester.path / f"reports{len(list(pytester.path.glob('reports*')))}"
    result = pytester.runpytest_subprocess("--reports-dir", str(reports), "-p", "no:cacheprovider", *args)
    assert result.ret == pytest.ExitCode.TESTS_FAILED, result.stdout.str()[-3000:]
    (summary,) = reports.glob("*/summary.json")
    return json.loads(summary.read_text())


def _comparable(data: dict) -> dict:
    return {"tests": sorted((t["nodeid"], t["outcome"]) for t in data["tests"]),
            "checks": sorted((c["name"], c["outcome"], json.dumps(c["evidence"], sort_keys=True), c["message"][:40])
                             for c in data["checks"]),
            "outcome": data["outcome"], "counts": data["counts"],
            "timings": {k: v for k, v in data["timings"].items() if k.startswith("t")},
            "artifacts": sorted(data["artifacts"])}


def test_n2_writes_the_same_report_as_no_workers(pytester: pytest.Pytester, monkeypatch) -> None:
    monkeypatch.setenv("PYTHONPATH", str(Path(__file__).resolve().parent.parent))
    pytester.makepyfile(test_suite=SUITE)
    alone = _report(pytester)
    spread = _report(pytester, "-n", "2")
    assert _comparable(spread) == _comparable(alone)
    assert len(alone["checks"]) == 4 and {c["outcome"] for c in alone["checks"]} == {"passed", "failed"}
    assert alone["checks"][0]["name"].startswith("conformance:numbered:")
    assert len([a for a in alone["artifacts"] if a.startswith("artifact-")]) == 4 and alone["timings"]["t3"] == 3.0
    assert (pytester.path / "reports1").is_dir()
    matrix = next((pytester.path / "reports1").glob("*/matrix.json"))
    assert "uv said no" in matrix.read_text(), "the matrix cell did not reach the controller"
