"""The seed's operations dashboard as Prometheus alerting rules, per metric dialect.

The dashboard's thresholds: serving error > 1 %, p99 > 500 ms, canary error > 2x stable, pipeline
success < 95 %, any OOM per day, registry approval wait > 24 h. Each becomes a rule where the
dialect measures it; where it does not, ``not_measurable`` says why:

* serving error and p99, per InferenceService (``namespace``, ``isvc`` labels on every dialect:
  label_replace derives them where the exporter names them otherwise);
* canary vs stable, per revision: on a cluster nothing labels a pod canary or stable (KServe tags
  routes, not pods), so every dialect compares each revision serving a service with the
  service's best revision; with two revisions serving that is the canary against the stable,
  whichever is worse. The stable's rate is read as at least the judges' error floor (0.5 %):
  against a clean stable any single 5xx would otherwise be "infinitely worse";
* pipeline success: KFP's API server's run counters (``kfp`` group; KFP's local runner, on the
  local profile, exports nothing);
* OOM: kube-state-metrics' restart counter and last termination reason (``kube-state-metrics``
  group; neither the local profile nor the harness's own cluster Prometheus scrapes it, so it is
  shipped for users' clusters and tested with promtool only);
* registry approval wait: not measurable from Prometheus in any dialect: MLflow's server exports
  HTTP request metrics only, nothing about registered versions or their stages and aliases.

An error ratio needs traffic (one 5xx of two requests is 50 %): serving and canary rules fire only
above MIN_RPS. Two scales: ``SEED`` (5 minute windows, held 5 minutes, a day for the pipeline's
success rate) is what ships for users' clusters; ``HARNESS`` (10 s windows held 2 s) is what the
harness's own stacks load, whose faults last tens of seconds (the canary suite scales the seed's
15 minutes to 45 s the same way). ``python -m harness.metrics.alerts --write`` regenerates the
shipped files (a test keeps them equal to this module).
"""
from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

__all__ = ["ALERT_DIALECTS", "CLUSTER_GROUPS", "CLUSTER_RULES_FILE", "HARNESS", "LOCAL_GROUPS", "LOCAL_RULES_FILE",
           "MIN_RPS", "NOT_MEASURABLE", "RULES_DIR", "SEED", "AlertDialect", "AlertScale", "kfp_rules",
           "kube_state_rules", "render_rules", "rule_groups", "serving_rules", "shipped_files"]

RULES_DIR = Path(__file__).resolve().parent / "rules"
#: What the local profile's Prometheus loads (the model servers' and the router's dialects).
LOCAL_RULES_FILE = RULES_DIR / "local.rules.yml"
#: What ships for clusters (Knative's queue-proxy, MLServer, KFP, kube-state-metrics), seed scale;
#: harness/cluster/manifests/stack/prometheus-rule.yaml.j2 wraps it as a PrometheusRule.
CLUSTER_RULES_FILE = RULES_DIR / "cluster.rules.yml"

ERROR_RATIO = 0.01  # serving error > 1 %
P99_S = 0.5  # p99 > 500 ms
CANARY_FACTOR = 2.0  # canary error > 2x stable
CANARY_FLOOR = 0.005  # the judges' error floor (harness/judges/base.py JudgeConfig.error_floor)
PIPELINE_SUCCESS = 0.95  # pipeline success < 95 %
MIN_RPS = 0.5  # requests per second under which an error ratio is noise

#: The dashboard rules no dialect can express, and why.
NOT_MEASURABLE = {
    "registry-approval-wait": ("MLflow's server exports HTTP request metrics only (no registered version, stage or "
                               "alias series), so a wait in the registry is not in Prometheus; read it from MLflow's "
                               "API (a version's creation time against its alias or stage transition)"),
}


@dataclass(frozen=True)
class AlertScale:
    window: str  # the rate window of the serving rules
    hold: str  # `for`: how long a condition holds before the alert fires
    pipeline_window: str  # the window of the pipeline success rate


SEED = AlertScale("5m", "5m", "1d")
HARNESS = AlertScale("10s", "2s", "10m")


@dataclass(frozen=True)
class AlertDialect:
    """Where one exporter keeps requests, 5xx and latency, and how its labels become namespace,
    isvc and revision (label_replace steps: target label, source label, regex with one group)."""

    name: str
    requests: str  # every request, a counter selector
    errors: str | None  # its 5xx (None: the exporter counts none)
    service_labels: tuple[str, ...]  # the exporter's labels that identify a service
    relabel: tuple[tuple[str, str, str], ...] = ()
    revision_requests: str | None = None  # per revision (None: use `requests` with `revision_label`)
    revision_errors: str | None = None
    revision_labels: tuple[str, ...] = ()  # the exporter's labels that identify a revision
    revision_relabel: tuple[tuple[str, str, str], ...] = ()
    latency_bucket: str | None = None  # the request duration histogram's buckets
    latency_limit: float = P99_S  # the p99 limit in the histogram's unit
    not_measurable: dict[str, str] = field(default_factory=dict)


def _relabel(expr: str, steps: tuple[tuple[str, str, str], ...]) -> str:
    for target, source, regex in steps:
        expr = f'label_replace({expr}, "{target}", "$1", "{source}", "{regex}")'
    return expr


def _per(dialect: AlertDialect, selector: str, window: str, *, revision: bool = False, extra: str = "") -> str:
    """sum by the exporter's labels of rate(selector), relabelled and summed again by namespace,
    isvc (and revision): every dialect's vectors carry the same labels."""
    labels = dialect.revision_labels if revision else dialect.service_labels
    steps = dialect.revision_relabel if revision else dialect.relabel
    by = "namespace, isvc, revision" if revision else "namespace, isvc"
    inner = f"sum by ({', '.join(labels + ((extra,) if extra else ()))}) (rate({selector}[{window}]))"
    if not steps:  # the exporter's own labels already are namespace, isvc (and revision)
        return inner
    return f"sum by ({by}{', ' + extra if extra else ''}) ({_relabel(inner, steps)})"


def serving_rules(dialect: AlertDialect, scale: AlertScale) -> list[dict[str, Any]]:
    w = scale.window
    common = {"dialect": dialect.name, "seamcheck": "dashboard"}
    rules: list[dict[str, Any]] = []
    req = _per(dialect, dialect.requests, w)
    if dialect.errors:
        err = _per(dialect, dialect.errors, w)
        rules.append({
            "alert": "SeamcheckServingErrorRate",
            "expr": f"({err}) / ({req}) > {ERROR_RATIO:g} and ({req}) > {MIN_RPS:g}",
            "for": scale.hold, "labels": {**common, "severity": "page"},
            "annotations": {"summary": "{{ $labels.namespace }}/{{ $labels.isvc }}: {{ $value | humanizePercentage }} "
                                       f"of requests failed with 5xx (> {ERROR_RATIO:.0%}, over {w})"}})
    if dialect.latency_bucket:
        buckets = _per(dialect, dialect.latency_bucket, w, extra="le")
        rules.append({
            "alert": "SeamcheckServingLatencyP99",
            "expr": f"histogram_quantile(0.99, {buckets}) > {dialect.latency_limit:g} and ({req}) > {MIN_RPS:g}",
            "for": scale.hold, "labels": {**common, "severity": "page"},
            "annotations": {"summary": "{{ $labels.namespace }}/{{ $labels.isvc }}: p99 {{ $value | humanize }} over "
                                       f"{dialect.latency_limit:g} (the dashboard's {P99_S * 1000:.0f} ms, over {w})"}})
    rev_errors = dialect.revision_errors or dialect.errors
    if rev_errors and "canary-error-vs-stable" not in dialect.not_measurable:
        rev_req = _per(dialect, dialect.revision_requests or dialect.requests, w, revision=True)
        rev_err = _per(dialect, rev_errors, w, revision=True)
        # A revision without a 5xx series has 0 errors (client libraries create it at the first 5xx).
        ratio = f"(({rev_err}) or 0 * ({rev_req})) / ({rev_req})"
        rules.append({
            "alert": "SeamcheckCanaryErrorAboveStable",
            "expr": (f"{ratio} > on (namespace, isvc) group_left () ({CANARY_FACTOR:g} * clamp_min(min by (namespace, "
                     f"isvc) ({ratio}), {CANARY_FLOOR:g})) and on (namespace, isvc) (count by (namespace, isvc) "
                     f"({ratio}) > 1) and ({rev_req}) > {MIN_RPS:g}"),
            "for": scale.hold, "labels": {**common, "severity": "page"},
            "annotations": {"summary": "{{ $labels.namespace }}/{{ $labels.isvc }} revision {{ $labels.revision }}: "
                                       "5xx ratio {{ $value | humanizePercentage }}, more than "
                                       f"{CANARY_FACTOR:g}x the service's best revision (at least {CANARY_FLOOR:.1%})"}})
    return rules


def kfp_rules(scale: AlertScale) -> list[dict[str, Any]]:
    """Pipeline success from KFP's API server: resource_manager_workflow_runs_success and _failed
    (gauges it only ever increments, one per run report it persists; increase() reads them)."""
    w = scale.pipeline_window
    ok = f"(sum(increase(resource_manager_workflow_runs_success[{w}])) or vector(0))"
    bad = f"(sum(increase(resource_manager_workflow_runs_failed[{w}])) or vector(0))"
    return [{"alert": "SeamcheckPipelineSuccessRate",
             "expr": f"{ok} / ({ok} + {bad}) < {PIPELINE_SUCCESS:g} and ({ok} + {bad}) > 0",
             "labels": {"dialect": "kfp", "seamcheck": "dashboard", "severity": "ticket"},
             "annotations": {"summary": "pipeline runs succeeded {{ $value | humanizePercentage }} over "
                                        f"{w} (< {PIPELINE_SUCCESS:.0%})"}}]


def kube_state_rules(scale: AlertScale) -> list[dict[str, Any]]:
    """Any container restarted after an OOM kill within the pipeline's window (a day at seed scale)."""
    w = scale.pipeline_window
    return [{"alert": "SeamcheckContainerOOMKilled",
             "expr": (f"increase(kube_pod_container_status_restarts_total[{w}]) > 0 and on (namespace, pod, container) "
                      'kube_pod_container_status_last_terminated_reason{reason="OOMKilled"} == 1'),
             "labels": {"dialect": "kube-state-metrics", "seamcheck": "dashboard", "severity": "ticket"},
             "annotations": {"summary": "{{ $labels.namespace }}/{{ $labels.pod }} container {{ $labels.container }} "
                                        f"was OOM killed within {w}"}}]


ALERT_DIALECTS: dict[str, AlertDialect] = {
    "mlserver": AlertDialect(
        "mlserver", requests='rest_server_requests_total{path=~".*/infer"}',
        errors='rest_server_requests_total{path=~".*/infer",status_code=~"5.."}',
        service_labels=("namespace", "isvc"), revision_labels=("namespace", "isvc", "revision"),
        latency_bucket='rest_server_request_duration_seconds_bucket{path=~".*/infer"}'),
    "knative": AlertDialect(
        "knative", requests="revision_app_request_count", errors='revision_app_request_count{response_code_class="5xx"}',
        service_labels=("namespace_name", "configuration_name"),
        relabel=(("isvc", "configuration_name", "(.+)-predictor"), ("namespace", "namespace_name", "(.+)")),
        revision_labels=("namespace_name", "configuration_name", "revision_name"),
        revision_relabel=(("isvc", "configuration_name", "(.+)-predictor"), ("namespace", "namespace_name", "(.+)"),
                          ("revision", "revision_name", "(.+)")),
        latency_bucket="revision_app_request_latencies_bucket", latency_limit=P99_S * 1000),
    # The router sees what clients see: a 503 from the activator or from a backend with no server
    # never reaches a model server, so only this dialect counts it.
    "haproxy": AlertDialect(
        "haproxy", requests='haproxy_backend_http_responses_total{proxy=~"isvc\\\\..+"}',
        errors='haproxy_backend_http_responses_total{proxy=~"isvc\\\\..+",code="5xx"}',
        service_labels=("proxy",),
        relabel=(("isvc", "proxy", "isvc\\\\.[^.]+\\\\.(.+)"), ("namespace", "proxy", "isvc\\\\.([^.]+)\\\\..+")),
        revision_requests='haproxy_server_http_responses_total{proxy=~"isvc\\\\..+"}',
        revision_errors='haproxy_server_http_responses_total{proxy=~"isvc\\\\..+",code="5xx"}',
        revision_labels=("proxy", "server"),
        revision_relabel=(("isvc", "proxy", "isvc\\\\.[^.]+\\\\.(.+)"), ("namespace", "proxy", "isvc\\\\.([^.]+)\\\\..+"),
                          ("revision", "server", "(.+)-(?:r[0-9]+|activator)")),
        not_measurable={"serving-latency-p99": "HAProxy's exporter has no latency histograms (averages only)"}),
    "kserve-python": AlertDialect(
        "kserve-python", requests="request_predict_seconds_count", errors=None,
        service_labels=("namespace", "isvc"), revision_labels=("namespace", "isvc", "revision"),
        latency_bucket="request_predict_seconds_bucket",
        not_measurable={"serving-error-rate": "KServe's Python model server counts no errors",
                        "canary-error-vs-stable": "KServe's Python model server counts no errors"}),
    "seed": AlertDialect(
        "seed", requests="kserve_request_total", errors='kserve_request_total{response_code=~"5.."}',
        service_labels=("namespace", "isvc"), revision_labels=("namespace", "isvc", "revision"),
        latency_bucket="kserve_request_duration_seconds_bucket"),
}

#: The local profile's Prometheus: the model servers' dialect and the router's.
LOCAL_GROUPS = ("mlserver", "haproxy")
#: What ships for clusters: Knative's queue-proxy and MLServer, KFP, kube-state-metrics.
CLUSTER_GROUPS = ("knative", "mlserver", "kfp", "kube-state-metrics")


def rule_groups(names: tuple[str, ...], scale: AlertScale) -> list[dict[str, Any]]:
    groups = []
    for name in names:
        if name == "kfp":
            rules = kfp_rules(scale)
        elif name == "kube-state-metrics":
            rules = kube_state_rules(scale)
        else:
            rules = serving_rules(ALERT_DIALECTS[name], scale)
        groups.append({"name": f"seamcheck-dashboard-{name}", "rules": rules})
    return groups


def render_rules(names: tuple[str, ...], scale: AlertScale) -> str:
    """A Prometheus rules file (the ``groups:`` document) for the dialects named."""
    header = (f"# Generated by harness/metrics/alerts.py (python -m harness.metrics.alerts --write): the seed's\n"
              f"# dashboard thresholds for {', '.join(names)}; windows {scale.window}, held {scale.hold}.\n")
    return header + yaml.safe_dump({"groups": rule_groups(names, scale)}, sort_keys=False, width=200)


def shipped_files() -> dict[Path, str]:
    return {LOCAL_RULES_FILE: render_rules(LOCAL_GROUPS, HARNESS), CLUSTER_RULES_FILE: render_rules(CLUSTER_GROUPS, SEED)}


def main(argv: list[str] | None = None) -> int:
    args = argv if argv is not None else sys.argv[1:]
    if args != ["--write"]:
        print("usage: python -m harness.metrics.alerts --write   (regenerates harness/metrics/rules/*.yml)",
              file=sys.stderr)
        return 2
    for path, text in shipped_files().items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
