"""The matrix suite's rules without processes: what each check concludes from what it observed,
when the harness must admit it could not establish an outcome, the gate, the matrix file's new
fields, and the table."""
from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from harness.matrix import MATRIX_CHECKS, MatrixError, load_matrix
from harness.matrixcheck import checks
from harness.matrixcheck.gate import apply_gate
from harness.matrixcheck.outcome import CANNOT_BUILD, COMPATIBLE, INCOMPATIBLE, Cell, Finding, NotEstablished
from harness.report.matrix_table import matrix_data
from tests.test_matrix import GOOD_ROW

UV_FAILURE = """  × No solution found when resolving dependencies:
  ╰─▶ Because there is no version of mlflow==9.9.9 and you require mlflow==9.9.9, we can conclude that your
      requirements are unsatisfiable."""


def _load(ok=True, answer="", lines=()):
    return {"ok": ok, "http_status": 200 if ok else 500, "answer": answer, "log_lines": list(lines)}


def _infer(preds=None, status=200, error=""):
    return {"ok": preds is not None, "http_status": status, "predictions": preds, "error": error}


def _reg(preds=(0, 1, 1)):
    steps = {name: {"ok": True, "error": "", "warnings": []} for name in (
        "run[signed]", "params-metrics[signed]", "log-model[signed]", "register[signed]", "stages",
        "log-model[unsigned]", "predict[unsigned]", "predict[signed]")}
    steps["alias"] = {"ok": True, "error": "", "warnings": [], "resolved_version": "1"}
    steps["signature-env-known"] = {"ok": True, "files": []}
    model = {"version": "1", "predictions": list(preds), "artifact_uri": "s3://b/1/r/artifacts",
             "download_uri": "s3://b/1/r/artifacts/model", "source": "s3://b/1/r/artifacts/model"}
    return {"versions": {"mlflow": "2.17.2", "scikit-learn": "1.4.1.post1"}, "steps": steps,
            "models": {"signed": dict(model), "unsigned": {**model, "version": "2"}}}


def test_uv_error_line_is_uvs_own_words() -> None:
    line = checks.uv_error_line(UV_FAILURE)
    assert line.startswith("× No solution found") and "no version of mlflow==9.9.9" in line
    cell = checks.build_cell("r", {"tracking": UV_FAILURE}, {})
    assert cell.outcome == CANNOT_BUILD and "mlflow==9.9.9" in cell.summary


def test_first_line_reads_mlservers_json_answer() -> None:
    answer = json.dumps({"error": "builtins.ModuleNotFoundError: No module named '_loss'"})
    assert checks.first_line(answer) == "builtins.ModuleNotFoundError: No module named '_loss'"
    assert checks.first_line("Traceback ...\n  File x\nOSError: No such file or directory: '/m/MLmodel'") == \
        "OSError: No such file or directory: '/m/MLmodel'"


def test_predictions_equal_in_every_case_is_compatible_and_one_difference_is_a_finding() -> None:
    good = {"load": _load(), "infer": {"content_type": _infer([0, 1, 1]), "no-content_type": _infer([0, 1, 1])}}
    cell = checks.v2_predictions_cell("r", _reg(), {"signed": good, "unsigned": good})
    assert cell.outcome == COMPATIBLE
    bad = {"load": _load(), "infer": {"content_type": _infer([0, 1, 1]),
                                      "no-content_type": _infer(None, 500, '{"error": "TypeError: float()"}')}}
    cell = checks.v2_predictions_cell("r", _reg(), {"signed": good, "unsigned": bad})
    assert cell.outcome == INCOMPATIBLE
    assert [f.facet for f in cell.findings] == ["unsigned+no-content_type"]
    assert "HTTP 500: TypeError: float()" in cell.findings[0].text
    wrong = {"load": _load(), "infer": {"content_type": _infer([1, 1, 1]), "no-content_type": _infer([0, 1, 1])}}
    cell = checks.v2_predictions_cell("r", _reg(), {"signed": wrong, "unsigned": good})
    assert "prediction 0: served 1, the model's own 0" in cell.summary


def test_a_loaded_model_that_was_never_asked_is_not_established() -> None:
    half = {"load": _load(), "infer": {"content_type": _infer([0, 1, 1])}}
    with pytest.raises(NotEstablished, match="no no-content_type request"):
        checks.v2_predictions_cell("r", _reg(), {"signed": half, "unsigned": half})


def test_library_skew_quotes_the_runtime_and_checks_the_probe_is_really_newer() -> None:
    serving = {"scikit-learn": "1.4.1.post1"}
    failed = _load(False, json.dumps({"error": "builtins.ModuleNotFoundError: No module named '_loss'"}))
    cell = checks.library_skew_cell("r", {"scikit-learn": "1.5.2"}, serving, failed, None)
    assert cell.outcome == INCOMPATIBLE and "No module named '_loss'" in cell.findings[0].text
    assert "1.5.2 (newer than the runtime's 1.4.1.post1)" in cell.findings[0].text
    probe = {"versions": {"scikit-learn": "1.5.2"}, "load": failed}
    cell = checks.library_skew_cell("r", {"scikit-learn": "1.4.1.post1"}, serving, _load(), probe)
    assert cell.outcome == COMPATIBLE and cell.evidence["probe"]["detected"] is True
    warned = _load(True, lines=["InconsistentVersionWarning: Trying to unpickle estimator from version 1.8.0"])
    cell = checks.library_skew_cell("r", {"scikit-learn": "1.7.0"}, {"scikit-learn": "1.7.0"}, _load(),
                                    {"versions": {"scikit-learn": "1.8.0"}, "load": warned})
    assert "Trying to unpickle" in cell.summary
    with pytest.raises(NotEstablished, match="not newer than the runtime"):
        checks.library_skew_cell("r", {"scikit-learn": "1.4.1.post1"}, serving, _load(),
                                 {"versions": {"scikit-learn": "1.4.0"}, "load": failed})


def test_storage_uri_rule_broken_names_the_download_uri_that_works() -> None:
    reg = _reg()
    signed = reg["models"]["signed"]
    signed.update(artifact_uri="s3://b/1/run/artifacts", download_uri="s3://b/1/models/m-1/artifacts",
                  source="models:/m-1")
    jobs = {"artifact_uri+/model": {"uri": "s3://b/1/run/artifacts/model", "ok": False, "files": [],
                                    "error": "RuntimeError: Failed to fetch model. No model found in s3://b/1/run"},
            "download_uri": {"uri": "s3://b/1/models/m-1/artifacts", "ok": True, "files": ["MLmodel", "model.pkl"]}}
    cell = checks.storage_uri_cell("r", reg, jobs)
    assert cell.outcome == INCOMPATIBLE
    assert {f.facet for f in cell.findings} == {"artifact_uri+/model", "remedy"}
    assert "No model found" in cell.summary and "m-1/artifacts" in cell.summary
    jobs["artifact_uri+/model"] = {"uri": "s3://elsewhere/model", "ok": True, "files": ["MLmodel"]}
    with pytest.raises(NotEstablished, match="no storage-initializer result"):
        checks.storage_uri_cell("r", reg, jobs)


def test_compile_parameters_come_from_the_pipeline_source() -> None:
    params = checks.expected_pipeline_parameters()
    assert params["mlflow_tracking_uri"] == "STRING" and params["canary_traffic_percent"] == "NUMBER_INTEGER"
    assert params["f1_threshold"] == "NUMBER_DOUBLE" and len(params) >= 10
    inspected = {"sdkVersion": "kfp-2.9.0", "parameters": {n: {"type": t} for n, t in params.items()},
                 "tasks": {"train-model": {"resources": {"accelerator_type": "nvidia.com/gpu", "accelerator_count": 1,
                                                         "cpu_limit": 4.0, "memory_limit_bytes": 16 * 2**30}}}}
    assert checks.kfp_compile_cell("r", "2.9.0", {"ok": True, "inspected": inspected}).outcome == COMPATIBLE
    inspected["parameters"].pop("f1_threshold")
    cell = checks.kfp_compile_cell("r", "2.9.0", {"ok": True, "inspected": inspected})
    assert cell.findings[0].facet == "parameters" and "f1_threshold None!=NUMBER_DOUBLE" in cell.summary


def test_signature_claim_records_what_happened() -> None:
    served = {"load": _load(), "infer": {}}
    cell = checks.signature_claim_cell("r", _reg(), served)
    assert cell.outcome == COMPATIBLE and cell.evidence["seed_claim_holds"] is False
    reg = _reg()
    reg["steps"]["log-model[unsigned]"] = {"ok": False, "error": "MlflowException: Model signature is missing",
                                           "warnings": []}
    cell = checks.signature_claim_cell("r", reg, served)
    assert cell.outcome == INCOMPATIBLE and cell.evidence["seed_claim_holds"] is True


def test_cells_refuse_self_contradicting_outcomes() -> None:
    with pytest.raises(NotEstablished):
        Cell("row", "r", "v2-predictions", COMPATIBLE, "s", [Finding("x", "y")])
    with pytest.raises(NotEstablished):
        Cell("row", "r", "v2-predictions", INCOMPATIBLE, "s", [])
    with pytest.raises(NotEstablished):
        Cell("row", "r", "v2-predictions", "maybe", "s", [])


ACCEPTING = GOOD_ROW + textwrap.dedent("""
    [rows.r.accept]
    "v2-predictions/unsigned+no-content_type" = "MLServer needs content_type for unsigned models"
    "storage-uri" = "the deploy step uses the download URI"
    [rows.c]
    kind = "candidate"
    description = "d"
    python = "3.11"
    kfp_backend = "2.3.0"
    mlflow = "3.17.2"
    kserve = "0.14.1"
    kubernetes = ["1.30"]
    [rows.c.roles.tracking]
    pins = ["mlflow==9.9.9"]
    [rows.c.roles.pipeline]
    pins = ["kfp==2.9.0"]
    [rows.c.roles.serving]
    pins = ["mlserver==1.5.0"]
    [rows.c.roles.storage]
    pins = ["kserve[storage]==0.14.1"]
    [rows.c.roles.runner]
    pins = ["kfp==2.17.3"]
    """)


def _write(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "matrix.toml"
    path.write_text(body)
    return path


def test_gate_accepts_by_check_or_facet_and_judges_upgrades_by_the_newer_row(tmp_path: Path) -> None:
    matrix = load_matrix(_write(tmp_path, ACCEPTING))
    assert matrix.row("c").upgrade_from == "r"  # a candidate upgrades from the default row
    assert [(o.name, n.name) for o, n in matrix.upgrade_pairs()] == [("r", "c")]
    cells = [
        Cell("row", "r", "v2-predictions", INCOMPATIBLE, "s", [Finding("unsigned+no-content_type", "HTTP 500")]),
        Cell("row", "r", "v2-predictions", INCOMPATIBLE, "s", [Finding("signed+content_type", "HTTP 500")]),
        Cell("row", "r", "storage-uri", INCOMPATIBLE, "s", [Finding("artifact_uri+/model", "no MLmodel")]),
        Cell("row", "c", "env-build", CANNOT_BUILD, "s", [Finding("tracking", "× No solution found")]),
        Cell("row", "c", "kfp-compile", CANNOT_BUILD, "s", [Finding("tracking", "× No solution found")]),
        Cell("upgrade", "r -> c", "new-client-reads-old-registry", CANNOT_BUILD, "s",
             [Finding("c:tracking", "× No solution found")]),
        Cell("row", "r", "kfp-compile", COMPATIBLE, "s"),
    ]
    failures = apply_gate(cells, matrix)
    assert cells[0].accepted and cells[2].accepted and not cells[1].accepted
    assert len(failures) == 2, failures  # signed+content_type, and c cannot-build once
    assert any("v2-predictions/signed+content_type" in f for f in failures)
    assert any(f.startswith("c: cannot-build (tracking)") for f in failures)
    accepted_build = ACCEPTING.replace('[rows.c.roles.tracking]', '[rows.c.accept]\n"env-build" = "waiting for '
                                       'mlflow 9.9.9 to be published"\n[rows.c.roles.tracking]')
    matrix = load_matrix(_write(tmp_path, accepted_build))
    assert len(apply_gate(cells, matrix)) == 1


@pytest.mark.parametrize(("edit", "message"), [
    (lambda s: s.replace('kubernetes = ["1.30"]', 'kubernetes = ["1.30"]\nupgrade_from = "nope"', 1),
     "upgrade_from = 'nope' names no row"),
    (lambda s: s.replace('kubernetes = ["1.30"]', 'kubernetes = ["1.30"]\nupgrade_from = "r"', 1),
     "upgrade_from names the row itself"),
    (lambda s: s + '\n[rows.r.accept]\n"colour" = "red"\n', "accept key 'colour' names no matrix check"),
    (lambda s: s + '\n[rows.r.accept]\n"storage-uri" = ""\n', "accept 'storage-uri' needs a non-empty why"),
    (lambda s: s + '\n[rows.r.roles.gpu]\npins = ["torch==2.0.0"]\n', "unknown role(s) ['gpu']"),
])
def test_new_matrix_fields_are_validated(tmp_path: Path, edit, message: str) -> None:
    with pytest.raises(MatrixError) as info:
        load_matrix(_write(tmp_path, edit(GOOD_ROW)))
    assert message in str(info.value)


def test_upgrade_cycles_are_refused(tmp_path: Path) -> None:
    body = ACCEPTING.replace('kubernetes = ["1.30"]\n[rows.r.roles', 'kubernetes = ["1.30"]\nupgrade_from = "c"\n'
                             '[rows.r.roles', 1)
    with pytest.raises(MatrixError, match="cycle"):
        load_matrix(_write(tmp_path, body))


def test_row_selection(tmp_path: Path) -> None:
    matrix = load_matrix(_write(tmp_path, ACCEPTING))
    assert [r.name for r in matrix.select("c, r")] == ["c", "r"]
    assert [r.name for r in matrix.select("all")] == ["r", "c"]
    with pytest.raises(MatrixError, match="unknown matrix row 'x'"):
        matrix.select("r,x")


def test_the_table_shows_every_outcome(tmp_path: Path) -> None:
    matrix = load_matrix(_write(tmp_path, ACCEPTING))
    cells = [
        Cell("row", "r", "v2-predictions", INCOMPATIBLE, "unsigned | HTTP 500",
             [Finding("unsigned+no-content_type", "HTTP 500")]),
        Cell("row", "r", "kfp-compile", INCOMPATIBLE, "parameters lost", [Finding("parameters", "lost")]),
        Cell("row", "r", "tracking-client", COMPATIBLE, "fine"),
        Cell("row", "c", "env-build", CANNOT_BUILD, "× No solution found", [Finding("tracking", "× No solution")]),
    ]
    failures = apply_gate(cells, matrix)
    data = matrix_data(cells, matrix, failures=failures, gate_enabled=True)
    table = data["markdown_tables"]
    assert "| `r` (seed) |" in table and "⚠️ accepted: unsigned \\| HTTP 500" in table
    assert "❌ incompatible: parameters lost" in table and "⛔ cannot-build" in table and "· not run" in table
    assert data["gate"] == {"enabled": True, "failures": failures, "passed": False}
    assert "the run FAILS on 2 finding(s)" in data["markdown"]
    assert set(data["row_checks"]) == set(MATRIX_CHECKS)


def test_signature_claim_is_not_blamed_for_other_failures_and_the_log_remedy_is_reported() -> None:
    reg = _reg()
    skops = "MlflowException: The saved sklearn model references untrusted types."
    reg["steps"]["log-model[unsigned]"] = {"ok": False, "error": skops, "warnings": []}
    reg["steps"]["log-model-cloudpickle[unsigned]"] = {"ok": True, "error": "", "warnings": []}
    served = {"load": _load(False, json.dumps({"error": "builtins.ModuleNotFoundError: No module named '_loss'"})),
              "infer": {}}
    cell = checks.signature_claim_cell("r", reg, served)
    assert cell.outcome == COMPATIBLE and cell.evidence["seed_claim_holds"] is False
    assert cell.evidence["other_failures"] == ["log-unsigned", "serve-unsigned"]
    assert "logged with serialization_format='cloudpickle'" in cell.summary
    reg["steps"]["log-model[signed]"] = {"ok": False, "error": skops, "warnings": []}
    reg["steps"]["log-model-cloudpickle[signed]"] = {"ok": True, "error": "", "warnings": []}
    cell = checks.tracking_client_cell("r", reg)
    assert cell.findings[0].facet == "log-model"
    assert cell.findings[0].text.endswith("with serialization_format='cloudpickle': logged")


def test_every_probe_the_lab_runs_is_a_module_of_the_probes_package() -> None:
    """The lab runs its probes by module name in the role environments (python -m ...), where a
    renamed module only fails as "No module named" at run time: each name is checked here."""
    import ast
    import importlib.util
    from pathlib import Path

    import harness.matrixcheck.lab as lab

    tree = ast.parse(Path(lab.__file__).read_text())
    names = {call.args[1].value for call in ast.walk(tree) if isinstance(call, ast.Call)
             and getattr(call.func, "id", None) == "_probe" and isinstance(call.args[1], ast.Constant)}
    assert names, "no _probe calls found: the lab changed how it runs probes"
    missing = [n for n in sorted(names) if importlib.util.find_spec(f"harness.matrixcheck.probes.{n}") is None]
    assert missing == [], missing
