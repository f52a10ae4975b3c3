"""PromQL per metric dialect. Every template takes the window, the InferenceService and the
revision, so canary and stable are always queried apart.

`slow_requests` counts the requests slower than a latency limit: the histogram's count minus its
cumulative bucket at the limit (`{le}`, written as the exporter writes bucket bounds: Python's
prometheus_client "0.5", Go's "500" for Knative's milliseconds). A limit that is not a bucket bound
has no series, so the query returns nothing, which the judges read as "no slow-request data".

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
    slow_requests: str | None = None  # requests slower than {le} over the window
    le_per_second: float = 1.0  # the histogram's unit: 1000 for milliseconds
    le_style: str = "python"  # how the exporter writes a bound: "python" (0.5, 1.0) or "go" (500, 1)

    def le(self, limit_s: float) -> str:
        """The `le` label value of the bucket bound at limit_s, as this exporter writes it."""
        bound = limit_s * self.le_per_second
        if self.le_style == "go":  # strconv.FormatFloat(v, 'g', -1, 64)
            return f"{bound:.15g}"  # 15 digits drop float noise: 0.1 s x 1000 -> "100"
        return repr(float(bound))  # prometheus_client's floatToGoString: 0.5 -> "0.5", 1 -> "1.0"


def _slower_than_le(histogram: str, selector: str) -> str:
    """The slow_requests template of a classic histogram: its count minus its bucket at {le}."""
    return (f"sum(increase({histogram}_count{{{{{selector}}}}}[{{window}}]))"
            f" - sum(increase({histogram}_bucket{{{{{selector},le=\"{{le}}\"}}}}[{{window}}]))")


DIALECTS: dict[str, Dialect] = {
    "mlserver": Dialect(
        "mlserver",
        requests='sum(increase(rest_server_requests_total{{isvc="{isvc}",revision="{revision}",path=~".*/infer"}}[{window}]))',
        errors='sum(increase(rest_server_requests_total{{isvc="{isvc}",revision="{revision}",path=~".*/infer",status_code=~"5.."}}[{window}]))',
        latency_quantile='histogram_quantile({q}, sum by (le) (rate(rest_server_request_duration_seconds_bucket{{isvc="{isvc}",revision="{revision}",path=~".*/infer"}}[{window}])))',
        source="MLServer's starlette exporter; scrape target labels isvc/revision/role set by the scrape config",
        slow_requests=_slower_than_le("rest_server_request_duration_seconds",
                                      'isvc="{isvc}",revision="{revision}",path=~".*/infer"'),
    ),
    "knative": Dialect(
        "knative",
        requests='sum(increase(revision_app_request_count{{namespace_name=~".+",configuration_name="{isvc}-predictor",revision_name="{revision}"}}[{window}]))',
        errors='sum(increase(revision_app_request_count{{configuration_name="{isvc}-predictor",revision_name="{revision}",response_code_class="5xx"}}[{window}]))',
        latency_quantile='histogram_quantile({q}, sum by (le) (rate(revision_app_request_latencies_bucket{{configuration_name="{isvc}-predictor",revision_name="{revision}"}}[{window}]))) / 1000',
        source="Knative queue-proxy (Serverless KServe); latencies in milliseconds",
        slow_requests=_slower_than_le("revision_app_request_latencies",
                                      'configuration_name="{isvc}-predictor",revision_name="{revision}"'),
        le_per_second=1000.0, le_style="go",
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
        slow_requests=_slower_than_le("request_predict_seconds", 'isvc="{isvc}",revision="{revision}"'),
    ),
    "seed": Dialect(
        "seed",
        requests='sum(increase(kserve_request_total{{isvc="{isvc}",revision="{revision}"}}[{window}]))',
        errors='sum(increase(kserve_request_total{{isvc="{isvc}",revision="{revision}",response_code=~"5.."}}[{window}]))',
        latency_quantile='histogram_quantile({q}, sum by (le) (rate(kserve_request_duration_seconds_bucket{{isvc="{isvc}",revision="{revision}"}}[{window}])))',
        source="the seed document's names; exist only if users record them",
        slow_requests=_slower_than_le("kserve_request_duration_seconds", 'isvc="{isvc}",revision="{revision}"'),
    ),
}


def render(template: str, *, isvc: str, revision: str, window: str, q: float | None = None,
           le: str | None = None) -> str:
    return template.format(isvc=isvc, revision=revision, window=window, q=q, le=le)
