"""Prometheus queries with deadlines (prometheus-api-client underneath)."""
from __future__ import annotations

import time
from collections.abc import Callable

from prometheus_api_client import PrometheusConnect

from harness.errors import StackError

__all__ = ["PrometheusUnreachable", "query_scalar", "wait_for_scalar"]


class PrometheusUnreachable(StackError):
    pass


def _connect(url: str) -> PrometheusConnect:
    return PrometheusConnect(url=url, disable_ssl=True)


def query_scalar(url: str, promql: str) -> float | None:
    """The query's single value, or None when it returned no series (never 0 for 'no data')."""
    try:
        result = _connect(url).custom_query(promql)
    except Exception as exc:  # requests errors, HTTP errors: the judge must see "unreachable"
        raise PrometheusUnreachable(f"Prometheus at {url} did not answer {promql!r}: {exc}") from exc
    if not result:
        return None
    return float(result[0]["value"][1])


def wait_for_scalar(url: str, promql: str, predicate: Callable[[float | None], bool], *, what: str,
                    deadline_s: float, interval_s: float = 1.0) -> float | None:
    end = time.monotonic() + deadline_s
    value: float | None = None
    while True:
        value = query_scalar(url, promql)
        if predicate(value):
            return value
        if time.monotonic() >= end:
            raise TimeoutError(f"gave up after {deadline_s:.0f}s waiting for {what}; last value of "
                               f"{promql!r} was {value}")
        time.sleep(interval_s)
