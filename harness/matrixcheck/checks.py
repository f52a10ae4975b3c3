"""The matrix checks as pure functions: observations in (what the probes and the runtime answered,
as plain dicts), one :class:`~harness.matrixcheck.outcome.Cell` out. No process is started here, so
every rule of what counts as compatible is testable on its own (tests/test_matrix_checks.py).
"""
from __future__ import annotations

import ast
import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from harness.matrixcheck.outcome import CANNOT_BUILD, COMPATIBLE, INCOMPATIBLE, Cell, Finding, NotEstablished

__all__ = [
    "CONTENT_TYPES",
    "build_cell",
    "client_reads_registry_cell",
    "expected_pipeline_parameters",
    "first_line",
    "kfp_compile_cell",
    "library_skew_cell",
    "model_in_runtime_cell",
    "same_predictions",
    "signature_claim_cell",
    "storage_uri_cell",
    "tracking_client_cell",
    "uv_error_line",
    "v2_predictions_cell",
    "version_tuple",
]

#: V2 request variants: MLServer's `content_type: pd` parameter, and none at all.
CONTENT_TYPES = {"content_type": "pd", "no-content_type": None}
PIPELINE_FILE = Path(__file__).resolve().parents[1] / "pipeline" / "pipeline.py"
_KFP_TYPES = {"str": "STRING", "int": "NUMBER_INTEGER", "float": "NUMBER_DOUBLE", "bool": "BOOLEAN"}


# ----------------------------------------------------------------------------------- helpers
def first_line(text: str, limit: int = 300) -> str:
    """The most telling line of an error text: its last `Xxx: message` line, else its first line.
    A JSON answer ({"error": ...}, {"detail": ...}, MLServer's and MLflow's shapes) gives its message."""
    try:
        data = json.loads(text)
    except (TypeError, ValueError):
        data = None
    if isinstance(data, dict):
        for key in ("error", "detail", "message"):
            if data.get(key):
                text = data[key] if isinstance(data[key], str) else json.dumps(data[key])
                break
    lines = [ln.strip() for ln in str(text).splitlines() if ln.strip()]
    if not lines:
        return ""
    named = [ln for ln in lines if re.match(r"^[\w.]+(Error|Exception|Warning)\b", ln)]
    return (named[-1] if named else lines[0])[:limit]


def uv_error_line(detail: str) -> str:
    """uv's own words for a failed resolve/install: its `error:` (or `×`) line and the first reason
    (`cause:` / `╰─▶`), as uv prints them without and with a terminal."""
    lines = [ln.strip() for ln in detail.splitlines() if ln.strip()]
    keyword = ("×", "error:", "╰", "cause:", "Caused by:", "hint:", "help:")
    heads = [ln for ln in lines if ln.startswith(("×", "error:"))][:1]
    reasons = []
    for i, ln in enumerate(lines):
        if ln.startswith(("╰", "cause:", "Caused by:")):
            reasons = [ln]
            for more in lines[i + 1:i + 4]:  # uv wraps a long reason over indented lines
                if more.startswith(keyword):
                    break
                reasons.append(more)
            break
    picked = heads + [" ".join(reasons)] if reasons else heads
    return " ".join(picked or lines[:1])[:500]


def version_tuple(text: str | None) -> tuple[int, ...]:
    nums = re.findall(r"\d+", (text or "").split("+")[0])
    return tuple(int(n) for n in nums[:3]) if nums else ()


def same_predictions(got: list[Any] | None, want: list[Any] | None) -> tuple[bool, str]:
    if got is None or want is None:
        return False, "no predictions"
    if len(got) != len(want):
        return False, f"{len(got)} predictions, expected {len(want)}"
    for i, (g, w) in enumerate(zip(got, want)):
        try:
            equal = float(g) == float(w)
        except (TypeError, ValueError):
            equal = str(g) == str(w)
        if not equal:
            return False, f"prediction {i}: served {g!r}, the model's own {w!r}"
    return True, f"{len(got)} predictions equal"


def _step(reg: Mapping[str, Any], name: str) -> dict[str, Any] | None:
    return (reg.get("steps") or {}).get(name)


def _step_text(step: Mapping[str, Any] | None) -> str:
    if step is None:
        return "not reached (an earlier step failed)"
    return first_line(step.get("error", "")) or "failed"


def _cell(kind: str, subject: str, check: str, findings: list[Finding], ok_summary: str,
          evidence: dict[str, Any], bad_prefix: str = "") -> Cell:
    if findings:
        summary = bad_prefix + "; ".join(f"{f.facet}: {f.text}" for f in findings)
        return Cell(kind, subject, check, INCOMPATIBLE, summary[:600], findings, evidence)
    return Cell(kind, subject, check, COMPATIBLE, ok_summary, [], evidence)


# ----------------------------------------------------------------------------------- row checks
def build_cell(row: str, errors: Mapping[str, str], seconds: Mapping[str, float]) -> Cell:
    """env-build: every role environment built (cached or fresh), or uv's own error line."""
    evidence = {"build_seconds": dict(seconds), "uv_errors": dict(errors)}
    if errors:
        findings = [Finding(role, uv_error_line(detail)) for role, detail in errors.items()]
        return Cell("row", row, "env-build", CANNOT_BUILD,
                    "; ".join(f"{f.facet}: {f.text}" for f in findings)[:600], findings, evidence)
    built = {r: s for r, s in seconds.items() if s > 0}
    what = (", ".join(f"{r} {s:.0f}s" for r, s in built.items()) + " built") if built else "all cached"
    return Cell("row", row, "env-build", COMPATIBLE, f"{len(seconds)} environments: {what}", [], evidence)


def tracking_client_cell(row: str, reg: Mapping[str, Any]) -> Cell:
    """tracking-client: run, params/metrics, log + register, alias set and resolved, stages."""
    facets = {"run": "run[signed]", "params-metrics": "params-metrics[signed]", "log-model": "log-model[signed]",
              "register": "register[signed]", "alias": "alias", "stages": "stages"}
    findings = []
    for facet, step_name in facets.items():
        step = _step(reg, step_name)
        if step is None or not step["ok"]:
            text = _step_text(step)
            remedy = _step(reg, "log-model-cloudpickle[signed]") if facet == "log-model" else None
            if remedy is not None:
                text += (" | with serialization_format='cloudpickle': " +
                         ("logged" if remedy["ok"] else _step_text(remedy)))
            findings.append(Finding(facet, text))
    signed = (reg.get("models") or {}).get("signed", {})
    stages = _step(reg, "stages") or {}
    stage_warn = [w for w in stages.get("warnings", []) if "deprecat" in w.lower()]
    alias = _step(reg, "alias") or {}
    if alias.get("ok") and alias.get("resolved_version") != signed.get("version"):
        raise NotEstablished(f"alias step passed but resolved {alias.get('resolved_version')} "
                             f"for version {signed.get('version')}")
    evidence = {"client_versions": reg.get("versions"), "steps": {k: reg["steps"].get(v) for k, v in facets.items()
                                                                  if reg.get("steps", {}).get(v) is not None},
                "model": {k: signed.get(k) for k in ("run_id", "version", "source", "artifact_uri", "model_uri")}}
    stage_note = ("supported, deprecated: " + first_line(stage_warn[0], 160)) if stage_warn else "supported"
    ok = (f"run + params/metrics, logged and registered v{signed.get('version')}, "
          f"models:/…@champion -> v{alias.get('resolved_version')}; stages {stage_note}")
    return _cell("row", row, "tracking-client", findings, ok, evidence)


def v2_predictions_cell(row: str, reg: Mapping[str, Any], served: Mapping[str, Any]) -> Cell:
    """v2-predictions: the row's models (with and without a signature) load in the row's runtime
    and answer V2 requests (with and without content_type) with the pipeline env's own predictions.

    ``served``: {"signed"|"unsigned": {"load": LoadResult dict, "infer": {variant: InferResult dict}}}"""
    findings, table = [], {}
    models = reg.get("models") or {}
    for label in ("signed", "unsigned"):
        want = models.get(label, {}).get("predictions")
        if want is None:
            findings.append(Finding(f"reference[{label}]", "no model/predictions from the pipeline env: "
                                    + _step_text(_step(reg, f"predict[{label}]"))))
            continue
        got = served.get(label)
        if got is None:
            findings.append(Finding(f"load[{label}]", "not served: the storage initializer did not deliver it"))
            continue
        load = got["load"]
        if not load["ok"]:
            findings.append(Finding(f"load[{label}]", f"HTTP {load['http_status']}: {first_line(load['answer'])}"))
            continue
        for variant in CONTENT_TYPES:
            res = got["infer"].get(variant)
            if res is None:
                raise NotEstablished(f"{row}: {label} model loaded but no {variant} request was made")
            if not res["ok"]:
                text = f"HTTP {res['http_status']}: {first_line(res['error'])}"
            else:
                equal, text = same_predictions(res["predictions"], want)
                if equal:
                    table[f"{label}+{variant}"] = text
                    continue
            table[f"{label}+{variant}"] = text
            findings.append(Finding(f"{label}+{variant}", text))
    evidence = {"cases": table, "served": served}
    return _cell("row", row, "v2-predictions", findings, "signed and unsigned, with and without content_type: "
                 "predictions equal the pipeline env's own", evidence)


def _runtime_words(load: Mapping[str, Any]) -> str:
    """What the runtime said about a load: its error answer, else a version/unpickle warning line."""
    if not load["ok"]:
        return first_line(load["answer"])
    hits = [ln for ln in load.get("log_lines", []) if re.search(r"unpickle|InconsistentVersion|version", ln)]
    return hits[0][:300] if hits else ""


def library_skew_cell(row: str, pipeline_versions: Mapping[str, Any], serving_versions: Mapping[str, Any],
                      row_load: Mapping[str, Any] | None, probe: Mapping[str, Any] | None) -> Cell:
    """library-skew: training vs serving scikit-learn. The row's own pipeline model is the row's
    skew (a finding when the versions differ, quoting the runtime); the skew role's model is a
    probe showing what this runtime says about a newer pickle (evidence, not a finding).

    ``probe``: {"versions": {...}, "load": LoadResult dict} or None when the row has no skew role."""
    train, serve = pipeline_versions.get("scikit-learn"), serving_versions.get("scikit-learn")
    if not train or not serve:
        raise NotEstablished(f"{row}: scikit-learn version unknown (pipeline {train}, serving {serve})")
    findings, evidence = [], {"pipeline_sklearn": train, "serving_sklearn": serve,
                              "pipeline_numpy": pipeline_versions.get("numpy"),
                              "serving_numpy": serving_versions.get("numpy")}
    parts = []
    if train != serve:
        if row_load is None:
            words = "the row's model was not served (see v2-predictions)"
        else:
            words = _runtime_words(row_load) or ("loaded; the runtime said nothing about the version "
                                                 "(silent skew)")
            evidence["row_load"] = row_load
        direction = "newer" if version_tuple(train) > version_tuple(serve) else "older"
        findings.append(Finding("row", f"pickled by scikit-learn {train} ({direction} than the runtime's "
                                       f"{serve}): {words}"))
    else:
        parts.append(f"row: none (scikit-learn {train} in both)")
    if probe is not None:
        p_train = (probe.get("versions") or {}).get("scikit-learn")
        if version_tuple(p_train) <= version_tuple(serve):
            raise NotEstablished(f"{row}: the skew role's scikit-learn {p_train} is not newer than the runtime's "
                                 f"{serve}; give roles.skew a newer scikit-learn")
        load = probe.get("load")
        if load is None:
            raise NotEstablished(f"{row}: the skew probe's model was never loaded")
        words = _runtime_words(load) or "loaded; the runtime said nothing about the version (silent skew)"
        detected = bool(_runtime_words(load))
        evidence["probe"] = {"trainer_sklearn": p_train, "load": load, "detected": detected,
                             "predictions_equal": probe.get("predictions_equal")}
        parts.append(f"probe: a scikit-learn {p_train} pickle -> {words}")
    ok = "; ".join(parts)
    evidence["probe_summary"] = ok
    cell = _cell("row", row, "library-skew", findings, ok, evidence)
    if findings and ok:
        cell.summary = f"{cell.summary}; {ok}"[:700]
    return cell


def storage_uri_cell(row: str, reg: Mapping[str, Any], jobs: Mapping[str, Any]) -> Cell:
    """storage-uri: `artifact_uri + "/model"` (the seed's storageUri) holds MLmodel after KServe's
    storage initializer ran; the model version's download URI does too.

    ``jobs``: {"artifact_uri+/model": job, "download_uri": job} from probes.storage."""
    signed = (reg.get("models") or {}).get("signed", {})
    if not signed.get("artifact_uri") or not signed.get("download_uri"):
        return _cell("row", row, "storage-uri", [Finding("prerequisite", "no registered model: " + _step_text(
            _step(reg, "register[signed]") or _step(reg, "log-model[signed]")))], "", {"model": signed})
    findings, said = [], {}
    for facet, uri in (("artifact_uri+/model", signed["artifact_uri"] + "/model"),
                       ("download_uri", signed["download_uri"])):
        job = jobs.get(facet)
        if job is None or job.get("uri") != uri:
            raise NotEstablished(f"{row}: no storage-initializer result for {facet} ({uri})")
        if not job["ok"]:
            text = f"{uri}: storage initializer failed: {first_line(job['error'])}"
        elif "MLmodel" not in job["files"]:
            text = f"{uri}: downloaded {len(job['files'])} file(s), no MLmodel at the top ({job['files'][:6]})"
        else:
            said[facet] = f"{uri} holds MLmodel"
            continue
        said[facet] = text
        findings.append(Finding(facet, text))
    evidence = {"source": signed.get("source"), "artifact_uri": signed["artifact_uri"],
                "download_uri": signed["download_uri"], "results": said, "jobs": dict(jobs),
                "source_is_artifact_uri_model": signed.get("source") == signed["artifact_uri"] + "/model"}
    if any(f.facet == "artifact_uri+/model" for f in findings) and "download_uri" not in {f.facet for f in findings}:
        findings.append(Finding("remedy", f"the model version's download URI works: {signed['download_uri']}"))
    ok = "artifact_uri + /model holds MLmodel (and so does the version's download URI)"
    return _cell("row", row, "storage-uri", findings, ok, evidence)


def expected_pipeline_parameters(pipeline_file: Path = PIPELINE_FILE) -> dict[str, str]:
    """The pipeline function's parameters and their KFP types, read from its source (no kfp needed)."""
    tree = ast.parse(pipeline_file.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef) and node.name == "recommendation_training_pipeline":
            return {a.arg: _KFP_TYPES.get(getattr(a.annotation, "id", ""), "?") for a in node.args.args}
    raise NotEstablished(f"no recommendation_training_pipeline function in {pipeline_file}")


def kfp_compile_cell(row: str, kfp_pin: str, compiled: Mapping[str, Any]) -> Cell:
    """kfp-compile: the row's kfp compiles the pipeline; the YAML keeps the accelerator request,
    the resources and every parameter with its type.

    ``compiled``: {"ok", "error", "sdk_version", "inspected": inspect_compiled(...) or None}"""
    if not compiled["ok"]:
        return _cell("row", row, "kfp-compile", [Finding("compile", first_line(compiled["error"]))], "",
                     {"error": compiled["error"][-3000:]})
    info = compiled["inspected"]
    findings = []
    if info.get("sdkVersion") != f"kfp-{kfp_pin}":
        findings.append(Finding("sdk-version", f"sdkVersion {info.get('sdkVersion')}, expected kfp-{kfp_pin}"))
    train = (info.get("tasks") or {}).get("train-model", {}).get("resources", {})
    if (train.get("accelerator_type"), train.get("accelerator_count")) != ("nvidia.com/gpu", 1):
        findings.append(Finding("accelerator", f"train-model accelerator {train.get('accelerator_type')} "
                                               f"x{train.get('accelerator_count')}, expected nvidia.com/gpu x1"))
    if train.get("cpu_limit") != 4.0 or train.get("memory_limit_bytes") != 16 * 2**30:
        findings.append(Finding("resources", f"train-model cpu {train.get('cpu_limit_raw')} memory "
                                             f"{train.get('memory_limit_raw')}, expected 4 and 16Gi"))
    expected = expected_pipeline_parameters()
    got = {name: p.get("type") for name, p in (info.get("parameters") or {}).items()}
    wrong = {n: (got.get(n), t) for n, t in expected.items() if got.get(n) != t}
    if wrong:
        findings.append(Finding("parameters", "parameters lost or retyped (got, expected): "
                                + ", ".join(f"{n} {g}!={t}" for n, (g, t) in sorted(wrong.items()))))
    evidence = {"sdkVersion": info.get("sdkVersion"), "train_resources": train, "parameters": got,
                "expected_parameters": expected, "conditions": info.get("conditions")}
    ok = (f"{info.get('sdkVersion')}: nvidia.com/gpu x1, cpu 4, memory 16Gi, "
          f"{len(expected)} parameters with their types")
    return _cell("row", row, "kfp-compile", findings, ok, evidence)


def signature_claim_cell(row: str, reg: Mapping[str, Any], served_unsigned: Mapping[str, Any] | None) -> Cell:
    """signature-claim: the seed says MLflow >= 2.16 refuses unsigned models
    (MLFLOW_MODEL_SIGNATURE_ENFORCEMENT). Tried here: log (with that variable set to true), load
    and predict with the row's client, serve in the row's runtime. What happened is recorded; a
    refusal is a finding (the claim holds there), acceptance everywhere is compatible."""
    log = _step(reg, "log-model[unsigned]")
    pred = _step(reg, "predict[unsigned]")
    env_files = (_step(reg, "signature-env-known") or {}).get("files")
    if env_files is None:
        raise NotEstablished(f"{row}: the client probe did not look for MLFLOW_MODEL_SIGNATURE_ENFORCEMENT")
    findings, happened, other = [], {}, []

    def failed(facet: str, text: str) -> None:
        # Only a refusal that is about the signature is the claim at work; any other failure of the
        # unsigned model (a pickle the runtime cannot read...) is another check's finding.
        if "signature" in text.lower():
            findings.append(Finding(facet, text))
            happened[facet] = "refused: " + text
        else:
            other.append(facet)
            happened[facet] = "failed for another reason: " + text

    remedy = _step(reg, "log-model-cloudpickle[unsigned]")
    for facet, step in (("log-unsigned", log), ("load-unsigned", pred)):
        if step is None or not step["ok"]:
            failed(facet, _step_text(step))
            if facet == "log-unsigned" and remedy is not None and remedy["ok"]:
                happened[facet] += " (logged with serialization_format='cloudpickle')"
        else:
            warns = [w for w in step.get("warnings", []) if "signature" in w.lower()]
            happened[facet] = "accepted" + (f" (warning: {first_line(warns[0], 200)})" if warns else "")
    if served_unsigned is None:
        happened["serve-unsigned"] = "not tried (no unsigned model reached the runtime)"
    elif not served_unsigned["load"]["ok"]:
        failed("serve-unsigned", f"HTTP {served_unsigned['load']['http_status']}: "
                                 f"{first_line(served_unsigned['load']['answer'])}")
    else:
        happened["serve-unsigned"] = "loaded"
    refused_for_signature = bool(findings)
    mlflow_version = (reg.get("versions") or {}).get("mlflow")
    evidence = {"mlflow": mlflow_version, "MLFLOW_MODEL_SIGNATURE_ENFORCEMENT_in_mlflow": env_files,
                "what_happened": happened, "seed_claim_holds": refused_for_signature}
    known = f"known to mlflow {mlflow_version} ({', '.join(env_files)})" if env_files else \
        f"unknown to mlflow {mlflow_version}"
    evidence["other_failures"] = other
    ok = (f"seed claim does not hold: nothing refused the unsigned model for its missing signature (log: "
          f"{happened['log-unsigned']}; load: {happened['load-unsigned']}; serve: {happened['serve-unsigned']}); "
          f"MLFLOW_MODEL_SIGNATURE_ENFORCEMENT {known}")
    return _cell("row", row, "signature-claim", findings, ok[:700], evidence, bad_prefix="seed claim holds here: ")


# ----------------------------------------------------------------------------------- upgrade checks
def model_in_runtime_cell(subject: str, check: str, origin: str, runtime: str, want: list[Any] | None,
                          download: Mapping[str, Any] | None, served: Mapping[str, Any] | None) -> Cell:
    """A model registered under `origin`, fetched by `runtime`'s storage initializer, served by
    `runtime`'s MLServer: it loads and its V2 predictions equal its own (origin env's) predictions."""
    evidence: dict[str, Any] = {"model_from": origin, "served_by": runtime, "download": download,
                                "served": served}
    if want is None:
        return _cell("upgrade", subject, check, [Finding("prerequisite", f"no registered model from {origin}")],
                     "", evidence)
    if download is None:
        raise NotEstablished(f"{subject} {check}: the storage initializer was never run")
    if not download["ok"] or "MLmodel" not in download["files"]:
        text = first_line(download["error"]) if not download["ok"] else f"no MLmodel in {download['files'][:6]}"
        return _cell("upgrade", subject, check, [Finding("download", f"{download['uri']}: {text}")], "", evidence)
    if served is None:
        raise NotEstablished(f"{subject} {check}: the model was downloaded but never loaded")
    load = served["load"]
    if not load["ok"]:
        return _cell("upgrade", subject, check, [Finding("load", f"HTTP {load['http_status']}: "
                                                         f"{first_line(load['answer'])}")], "", evidence)
    findings, said = [], {}
    for variant in CONTENT_TYPES:
        res = served["infer"].get(variant)
        if res is None:
            raise NotEstablished(f"{subject} {check}: loaded but no {variant} request was made")
        if not res["ok"]:
            said[variant] = f"HTTP {res['http_status']}: {first_line(res['error'])}"
        else:
            equal, said[variant] = same_predictions(res["predictions"], want)
            if equal:
                continue
        findings.append(Finding(f"predictions[{variant}]", said[variant]))
    warn = _runtime_words(load)
    ok = f"{origin}'s model served by {runtime}'s runtime: predictions equal" + (f" (runtime: {warn})" if warn else "")
    return _cell("upgrade", subject, check, findings, ok, {**evidence, "cases": said})


def client_reads_registry_cell(subject: str, newer: str, older: str, read: Mapping[str, Any] | None,
                               want_version: str | None, want: list[Any] | None) -> Cell:
    """The newer row's client against the older row's tracking server: finds the versions, resolves
    the alias to the same version, gets a download URI, and the model predicts as registered."""
    check = "new-client-reads-old-registry"
    evidence: dict[str, Any] = {"client_of": newer, "server_of": older, "read": read}
    if want_version is None or want is None:
        return _cell("upgrade", subject, check, [Finding("prerequisite", f"no registered model in {older}")],
                     "", evidence)
    if read is None:
        raise NotEstablished(f"{subject}: the newer client never ran against the older server")
    findings = []
    for facet in ("search", "alias", "download-uri", "predict"):
        step = _step(read, facet)
        if step is None or not step["ok"]:
            findings.append(Finding(facet, _step_text(step)))
    alias = _step(read, "alias") or {}
    if alias.get("ok") and alias.get("version") != want_version:
        findings.append(Finding("alias", f"resolved v{alias.get('version')}, registered as v{want_version}"))
    pred = _step(read, "predict") or {}
    if pred.get("ok"):
        equal, text = same_predictions(pred.get("predictions"), want)
        if not equal:
            findings.append(Finding("predict", text))
    client = (read.get("versions") or {}).get("mlflow")
    ok = (f"mlflow {client} client read {older}'s registry: alias -> v{want_version}, download URI, "
          "predictions equal")
    return _cell("upgrade", subject, check, findings, ok, evidence)
