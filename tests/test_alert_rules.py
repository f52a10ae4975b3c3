"""The dashboard's alert rules (harness/metrics/alerts.py) under `promtool test rules`, on synthetic
series written the way each exporter writes them: every rule of every dialect with a case where it
fires and one where it does not (the rules at the harness's scale, 10 s windows held 2 s; the
shipped files are checked with `promtool check rules` and kept equal to the generator)."""
from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from harness.metrics.alerts import (
    ALERT_DIALECTS,
    CLUSTER_GROUPS,
    HARNESS,
    LOCAL_GROUPS,
    NOT_MEASURABLE,
    render_rules,
    rule_groups,
    shipped_files,
)
from harness.procs import run_command

PROMTOOL = shutil.which("promtool")
pytestmark = pytest.mark.skipif(PROMTOOL is None, reason="promtool (Debian's prometheus package) is not installed: "
                                                         "apt-get install prometheus")
NS, SVC = "model-serving", "svc"
STEPS = 40  # samples, one a second
EVAL = "30s"


def _counter(series: str, per_s: float) -> dict[str, str]:
    return {"series": series, "values": f"0+{per_s:g}x{STEPS}"}


# Each dialect's series as its exporter writes them: requests of one revision (ok and 5xx) and its
# request-duration buckets (le in the exporter's unit and spelling).
def _mlserver(rev: str, ok: float, bad: float) -> list[dict[str, str]]:
    base = f'namespace="{NS}",isvc="{SVC}",revision="{rev}",role="stable",path="/v2/models/m/infer"'
    out = [_counter(f'rest_server_requests_total{{{base},status_code="200"}}', ok)]
    if bad:
        out.append(_counter(f'rest_server_requests_total{{{base},status_code="500"}}', bad))
    out.append(_counter(f'rest_server_requests_total{{namespace="{NS}",isvc="{SVC}",revision="{rev}",path="/metrics",'
                        'status_code="500"}', 50))  # not an inference: never counted
    return out


def _knative(rev: str, ok: float, bad: float) -> list[dict[str, str]]:
    base = f'namespace_name="{NS}",configuration_name="{SVC}-predictor",revision_name="{rev}"'
    out = [_counter(f'revision_app_request_count{{{base},response_code_class="2xx"}}', ok)]
    if bad:
        out.append(_counter(f'revision_app_request_count{{{base},response_code_class="5xx"}}', bad))
    return out


def _haproxy(rev: str, ok: float, bad: float) -> list[dict[str, str]]:
    proxy = f"isvc.{NS}.{SVC}"
    out = [_counter(f'haproxy_server_http_responses_total{{proxy="{proxy}",server="{rev}-r0",code="2xx"}}', ok)]
    if bad:  # the activator answers 503 for a revision whose cold start it gave up on
        out.append(_counter(f'haproxy_server_http_responses_total{{proxy="{proxy}",server="{rev}-activator",'
                            'code="5xx"}', bad))
    return out


def _haproxy_backend(total_ok: float, total_bad: float) -> list[dict[str, str]]:
    proxy = f"isvc.{NS}.{SVC}"
    out = [_counter(f'haproxy_backend_http_responses_total{{proxy="{proxy}",code="2xx"}}', total_ok)]
    if total_bad:
        out.append(_counter(f'haproxy_backend_http_responses_total{{proxy="{proxy}",code="5xx"}}', total_bad))
    return out


def _seed(rev: str, ok: float, bad: float) -> list[dict[str, str]]:
    base = f'namespace="{NS}",isvc="{SVC}",revision="{rev}"'
    out = [_counter(f'kserve_request_total{{{base},response_code="200"}}', ok)]
    if bad:
        out.append(_counter(f'kserve_request_total{{{base},response_code="503"}}', bad))
    return out


def _kserve_python(rev: str, ok: float, bad: float) -> list[dict[str, str]]:
    return [_counter(f'request_predict_seconds_count{{namespace="{NS}",isvc="{SVC}",revision="{rev}"}}', ok + bad)]


REQUESTS: dict[str, Callable[[str, float, float], list[dict[str, str]]]] = {
    "mlserver": _mlserver, "knative": _knative, "haproxy": _haproxy, "seed": _seed, "kserve-python": _kserve_python}
#: Bucket series of each dialect's histogram: (metric, labels, the bounds as the exporter writes them).
BUCKETS = {
    "mlserver": ("rest_server_request_duration_seconds_bucket",
                 f'namespace="{NS}",isvc="{SVC}",revision="r1",path="/v2/models/m/infer"', ("0.1", "0.5", "1.0")),
    "knative": ("revision_app_request_latencies_bucket",
                f'namespace_name="{NS}",configuration_name="{SVC}-predictor",revision_name="r1"', ("100", "500", "1000")),
    "seed": ("kserve_request_duration_seconds_bucket", f'namespace="{NS}",isvc="{SVC}",revision="r1"',
             ("0.1", "0.5", "1.0")),
    "kserve-python": ("request_predict_seconds_bucket", f'namespace="{NS}",isvc="{SVC}",revision="r1"',
                      ("0.1", "0.5", "1.0")),
}


def _histogram(dialect: str, rate: float, slow_share: float) -> list[dict[str, str]]:
    """`rate` requests a second, `slow_share` of them between the middle and the top bound."""
    metric, labels, (fast, limit, top) = BUCKETS[dialect]
    fast_rate = rate * (1 - slow_share)
    return [_counter(f'{metric}{{{labels},le="{fast}"}}', fast_rate), _counter(f'{metric}{{{labels},le="{limit}"}}', fast_rate),
            _counter(f'{metric}{{{labels},le="{top}"}}', rate), _counter(f'{metric}{{{labels},le="+Inf"}}', rate)]


def _alert(name: str, dialect: str, severity: str = "page", **labels: str) -> dict[str, Any]:
    return {"exp_labels": {"dialect": dialect, "seamcheck": "dashboard", "severity": severity, **labels}}


def _case(series: list[dict[str, str]], alertname: str, alerts: list[dict[str, Any]]) -> dict[str, Any]:
    return {"interval": "1s", "input_series": series,
            "alert_rule_test": [{"eval_time": EVAL, "alertname": alertname, "exp_alerts": alerts}]}


def _serving_cases(dialect: str) -> list[tuple[str, dict[str, Any]]]:
    d = ALERT_DIALECTS[dialect]
    service = {"namespace": NS, "isvc": SVC}
    rev_labels = lambda rev: {**service, "revision": rev}  # noqa: E731
    cases: list[tuple[str, dict[str, Any]]] = []
    if d.errors:
        if dialect == "haproxy":  # per service from the backend's own counts (503s without a server too)
            firing, quiet = _haproxy_backend(95, 5), _haproxy_backend(99.5, 0.5)
        else:
            firing, quiet = REQUESTS[dialect]("r1", 95, 5), REQUESTS[dialect]("r1", 99.5, 0.5)
        cases += [("error-fires", _case(firing, "SeamcheckServingErrorRate",
                                        [_alert("SeamcheckServingErrorRate", dialect, **service)])),
                  ("error-quiet", _case(quiet, "SeamcheckServingErrorRate", [])),
                  ("error-idle-quiet", _case(REQUESTS[dialect]("r1", 0.1, 0.1) + (_haproxy_backend(0.1, 0.1)
                                                                                 if dialect == "haproxy" else []),
                                             "SeamcheckServingErrorRate", []))]
    if d.latency_bucket:
        requests = REQUESTS[dialect]("r1", 100, 0)
        cases += [("p99-fires", _case(requests + _histogram(dialect, 100, 0.05), "SeamcheckServingLatencyP99",
                                      [_alert("SeamcheckServingLatencyP99", dialect, **service)])),
                  ("p99-quiet", _case(requests + _histogram(dialect, 100, 0.0), "SeamcheckServingLatencyP99", []))]
    if (d.revision_errors or d.errors) and "canary-error-vs-stable" not in d.not_measurable:
        stable = REQUESTS[dialect]("r1", 100, 0)
        cases += [
            ("canary-fires", _case(stable + REQUESTS[dialect]("r2", 95, 5), "SeamcheckCanaryErrorAboveStable",
                                   [_alert("SeamcheckCanaryErrorAboveStable", dialect, **rev_labels("r2"))])),
            # 0.8 % beside a clean stable: under 2x the floor (0.5 %), noise nobody acts on
            ("canary-quiet", _case(stable + REQUESTS[dialect]("r2", 99.2, 0.8), "SeamcheckCanaryErrorAboveStable", [])),
            # one revision alone has nothing to be compared with (the serving rule covers it)
            ("canary-alone-quiet", _case(REQUESTS[dialect]("r2", 95, 5), "SeamcheckCanaryErrorAboveStable", []))]
    return cases


def _kfp_cases() -> list[tuple[str, dict[str, Any]]]:
    def runs(ok: float, bad: float | None) -> list[dict[str, str]]:
        series = [{"series": 'resource_manager_workflow_runs_success{profile="p"}', "values": f"0+{ok:g}x{STEPS * 30}"}]
        if bad is not None:
            series.append({"series": 'resource_manager_workflow_runs_failed{profile="p"}',
                           "values": f"0+{bad:g}x{STEPS * 30}"})
        return series

    def case(series: list[dict[str, str]], alerts: list[dict[str, Any]]) -> dict[str, Any]:
        return {"interval": "1s", "input_series": series, "alert_rule_test": [
            {"eval_time": "15m", "alertname": "SeamcheckPipelineSuccessRate", "exp_alerts": alerts}]}

    fired = [_alert("SeamcheckPipelineSuccessRate", "kfp", severity="ticket")]
    return [("pipeline-fires", case(runs(0.9, 0.1), fired)), ("pipeline-quiet", case(runs(0.99, 0.01), [])),
            ("pipeline-no-failed-series-quiet", case(runs(1, None), [])),
            ("pipeline-all-failed-fires", case([{"series": 'resource_manager_workflow_runs_failed{profile="p"}',
                                                 "values": f"0+1x{STEPS * 30}"}], fired))]


def _oom_cases() -> list[tuple[str, dict[str, Any]]]:
    pod = 'namespace="kubeflow",pod="train-0",container="main"'

    def case(restarts: str, reason: str, alerts: list[dict[str, Any]]) -> dict[str, Any]:
        return {"interval": "1m", "input_series": [
            {"series": f"kube_pod_container_status_restarts_total{{{pod}}}", "values": restarts},
            {"series": f'kube_pod_container_status_last_terminated_reason{{{pod},reason="{reason}"}}',
             "values": "1x20"}],
            "alert_rule_test": [{"eval_time": "15m", "alertname": "SeamcheckContainerOOMKilled", "exp_alerts": alerts}]}

    fired = [_alert("SeamcheckContainerOOMKilled", "kube-state-metrics", severity="ticket", namespace="kubeflow",
                    pod="train-0", container="main")]
    return [("oom-fires", case("0x5 1x15", "OOMKilled", fired)),
            ("oom-other-reason-quiet", case("0x5 1x15", "Error", [])),
            ("oom-no-restart-quiet", case("0x20", "OOMKilled", []))]


CASES = [(f"{d}-{name}", case) for d in ALERT_DIALECTS for name, case in _serving_cases(d)] + _kfp_cases() + _oom_cases()


def _rules_without_annotations(tmp: Path) -> Path:
    """Every group at the harness's scale; annotations off (promtool compares them verbatim, and
    their templates are checked by `promtool check rules` on the shipped files instead)."""
    groups = rule_groups(tuple(ALERT_DIALECTS) + ("kfp", "kube-state-metrics"), HARNESS)
    for group in groups:
        for rule in group["rules"]:
            rule.pop("annotations", None)
    path = tmp / "rules.yml"
    path.write_text(yaml.safe_dump({"groups": groups}, sort_keys=False))
    return path


@pytest.mark.parametrize(("name", "case"), CASES, ids=[c[0] for c in CASES])
def test_promtool_rule_case(name: str, case: dict[str, Any], tmp_path: Path) -> None:
    rules = _rules_without_annotations(tmp_path)
    test = tmp_path / "test.yml"
    test.write_text(yaml.safe_dump({"rule_files": [str(rules)], "evaluation_interval": "1s", "tests": [case]}))
    done = run_command([PROMTOOL, "test", "rules", str(test)], timeout=60)
    assert done.returncode == 0, f"{name}:\n{done.stdout}{done.stderr}"


def test_every_rule_has_a_firing_and_a_quiet_case() -> None:
    alerts = {rule["alert"] for d in ALERT_DIALECTS for g in rule_groups((d,), HARNESS) for rule in g["rules"]}
    alerts |= {"SeamcheckPipelineSuccessRate", "SeamcheckContainerOOMKilled"}
    tested = {test["alertname"]: set() for _n, case in CASES for test in case["alert_rule_test"]}
    for name, case in CASES:
        for test in case["alert_rule_test"]:
            tested[test["alertname"]].add("fires" if test["exp_alerts"] else "quiet")
    assert {a: tested.get(a) for a in alerts} == {a: {"fires", "quiet"} for a in alerts}
    for d in ALERT_DIALECTS.values():  # what a dialect cannot measure says why
        rules = {r["alert"] for g in rule_groups((d.name,), HARNESS) for r in g["rules"]}
        assert ("SeamcheckServingLatencyP99" in rules) != ("serving-latency-p99" in d.not_measurable), d.name
        assert ("SeamcheckServingErrorRate" in rules) != ("serving-error-rate" in d.not_measurable), d.name
    assert "registry-approval-wait" in NOT_MEASURABLE


def test_the_shipped_rule_files_are_the_generators_and_promtool_accepts_them() -> None:
    for path, text in shipped_files().items():
        assert path.read_text() == text, f"{path} differs from harness/metrics/alerts.py: python -m harness.metrics.alerts --write"
        done = run_command([PROMTOOL, "check", "rules", str(path)], timeout=60)
        assert done.returncode == 0, done.stdout + done.stderr
    assert render_rules(LOCAL_GROUPS, HARNESS).count("alert:") == 5
    assert render_rules(CLUSTER_GROUPS, HARNESS).count("alert:") == 8
