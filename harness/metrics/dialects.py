"""PromQL per metric dialect. Every template takes the window, the InferenceService and the
revision, so canary and stable are always queried apart.

The seed's `kserve_request_total` / `kserve_request_duration_seconds` exist nowhere in KServe:
that dialect is here only for users who record those names themselves.
"""
from __future__ import annotations

from dataclasses import dataclass

__all__ = ["DIALECTS", "Dialect", "render"]


@dataclass(frozen=True)
class Dialect:
    name: str
    requests: str  # request count increase over the window
    errors: str  # 5xx count increase over the window
    latency_quantile: str | None  # seconds; {q} is the quantile
    source: str


DIALECTS: dict[str, Dialect] = {
    "mlserver": Dialect(
        "mlserver",
        requests='sum(increase(rest_server_requests_total{{isvc="{isvc}",revision="{revision}",path=~".*/infer"}}[{window}]))',
        errors='sum(increase(rest_server_requests_total{{isvc="{isvc}",revision="{revision}",path=~".*/infer",status_code=~"5.."}}[{window}]))',
        latency_quantile='histogram_quantile({q}, sum by (le) (rate(rest_server_request_duration_seconds_bucket{{isvc="{isvc}",revision="{revision}",path=~".*/infer"}}[{window}])))',
        source="MLServer's starlette exporter; scrape target labels isvc/revision/role set by the scrape config",
    ),
    "knative": Dialect(
        "knative",
        requests='sum(increase(revision_app_request_count{{namespace_name=~".+",configuration_name="{isvc}-predictor",revision_name="{revision}"}}[{window}]))',
        errors='sum(increase(revision_app_request_count{{configuration_name="{isvc}-predictor",revision_name="{revision}",response_code_class="5xx"}}[{window}]))',
        latency_quantile='histogram_quantile({q}, sum by (le) (rate(revision_app_request_latencies_bucket{{configuration_name="{isvc}-predictor",revision_name="{revision}"}}[{window}]))) / 1000',
        source="Knative queue-proxy (Serverless KServe); latencies in milliseconds",
    ),
    "haproxy": Dialect(
        "haproxy",
        requests='sum(increase(haproxy_server_http_responses_total{{proxy=~"isvc.*\\\\.{isvc}",server=~"{revision}-r.*"}}[{window}]))',
        errors='sum(increase(haproxy_server_http_responses_total{{proxy=~"isvc.*\\\\.{isvc}",server=~"{revision}-r.*",code="5xx"}}[{window}]))',
        latency_quantile=None,
        source="the local router's exporter (per server = per replica); no histograms",
    ),
    "kserve-python": Dialect(
        "kserve-python",
        requests='sum(increase(request_predict_seconds_count{{isvc="{isvc}",revision="{revision}"}}[{window}]))',
        errors='vector(0) * sum(increase(request_predict_seconds_count{{isvc="{isvc}",revision="{revision}"}}[{window}]))',
        latency_quantile='histogram_quantile({q}, sum by (le) (rate(request_predict_seconds_bucket{{isvc="{isvc}",revision="{revision}"}}[{window}])))',
        source="KServe's Python model server (sklearn/xgboost/custom; not MLServer): no error counter",
    ),
    "seed": Dialect(
        "seed",
        requests='sum(increase(kserve_request_total{{isvc="{isvc}",revision="{revision}"}}[{window}]))',
        errors='sum(increase(kserve_request_total{{isvc="{isvc}",revision="{revision}",response_code=~"5.."}}[{window}]))',
        latency_quantile='histogram_quantile({q}, sum by (le) (rate(kserve_request_duration_seconds_bucket{{isvc="{isvc}",revision="{revision}"}}[{window}])))',
        source="the seed document's names; exist only if users record them",
    ),
}


def render(template: str, *, isvc: str, revision: str, window: str, q: float | None = None) -> str:
    return template.format(isvc=isvc, revision=revision, window=window, q=q)
