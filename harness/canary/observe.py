"""Canary judgement against live metrics: read each revision's requests, errors and p99 from
Prometheus (in the profile's metric dialect, canary and stable apart) every interval, feed the
same readings to every judge under test, and record when and how each one decided.

Sharing one observation stream between judges grades them on identical evidence; the rollout
then follows the acting judge's decision (the sequential judge unless the scenario says otherwise).
"""
from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from harness.judges.base import Decision, Judge, ProbeTally, Reading, RevisionReading, RoutedWindow, Verdict
from harness.metrics.dialects import DIALECTS, render
from harness.metrics.prometheus import PrometheusUnreachable, query_scalar

__all__ = ["JudgementRecord", "JudgementStopped", "RevisionQueries", "RouterWindows", "observe_and_judge",
           "read_revision"]

#: The router's cumulative counts per server: server -> (revision, requests sent, 2xx answers).
RouterCounts = Mapping[str, tuple[str, int, int]]


class JudgementStopped(Exception):
    """The judgement was stopped from outside (the session ended while it observed)."""


@dataclass(frozen=True)
class RevisionQueries:
    isvc: str
    revision: str


def read_revision(url: str, dialect_name: str, target: RevisionQueries, *, elapsed_s: float,
                  window_s: float, latency_limit_s: float | None = None) -> RevisionReading:
    """One revision's counts since the judgement began and its latest window. `None` where the
    query returned no series: the judge, not this function, decides what missing data means.
    ``latency_limit_s``: also count the requests slower than it since the start (the dialect's
    histogram needs a bucket bound there)."""
    dialect = DIALECTS[dialect_name]
    since = f"{max(round(elapsed_s), 2)}s"
    window = f"{max(round(window_s), 2)}s"
    kw = {"isvc": target.isvc, "revision": target.revision}
    p99 = None
    if dialect.latency_quantile:
        p99 = query_scalar(url, render(dialect.latency_quantile, window=window, q=0.99, **kw))
        if p99 is not None and math.isnan(p99):  # no requests in the window
            p99 = None
    slow = None
    if dialect.slow_requests and latency_limit_s is not None:
        slow = query_scalar(url, render(dialect.slow_requests, window=since, le=dialect.le(latency_limit_s), **kw))
    return RevisionReading(
        requests=query_scalar(url, render(dialect.requests, window=since, **kw)),
        errors=query_scalar(url, render(dialect.errors, window=since, **kw)),
        p99_s=p99,
        window_requests=query_scalar(url, render(dialect.requests, window=window, **kw)),
        window_errors=query_scalar(url, render(dialect.errors, window=window, **kw)),
        slow=slow,
    )


class RouterWindows:
    """Per-window counts per revision from the router's cumulative per-server counters. A server
    that left (a replica removed) keeps what it counted; one that is new, or was re-added under the
    same name with its counters restarted, counts from zero."""

    def __init__(self, sample: Callable[[], RouterCounts]) -> None:
        self._sample = sample
        self._last: dict[str, tuple[str, int, int]] = self._read() or {}

    def _read(self) -> dict[str, tuple[str, int, int]] | None:
        try:
            return dict(self._sample())
        except Exception:  # noqa: BLE001 - a router that cannot answer gives no counts, not zero
            return None

    def window(self, revisions: Mapping[str, str]) -> dict[str, RoutedWindow] | None:
        """{role: counts since the last call} for ``revisions`` ({"canary": name, "stable": name});
        None when the router cannot be asked (no evidence, rather than zero)."""
        now = self._read()
        if now is None:
            return None
        sent: dict[str, float] = {}
        ok: dict[str, float] = {}
        for server, (revision, total, good) in now.items():
            _rev, total0, good0 = self._last.get(server, (revision, 0, 0))
            if total < total0:  # counters restarted
                total0, good0 = 0, 0
            sent[revision] = sent.get(revision, 0.0) + total - total0
            ok[revision] = ok.get(revision, 0.0) + max(0, good - good0)
        self._last = now
        return {role: RoutedWindow(sent.get(name, 0.0), ok.get(name, 0.0)) for role, name in revisions.items()}


@dataclass
class JudgementRecord:
    judge: str
    verdict: Verdict | None = None
    decided_at_s: float | None = None
    readings: int = 0


@dataclass
class Judgement:
    records: dict[str, JudgementRecord]
    readings: list[Reading] = field(default_factory=list)
    seconds: float = 0.0
    started_at: float = 0.0  # epoch seconds of the start the readings' t_s count from

    def decision(self, judge: str) -> Decision:
        verdict = self.records[judge].verdict
        return verdict.decision if verdict is not None else Decision.INCONCLUSIVE


def observe_and_judge(judges: Mapping[str, Judge], *, prometheus_url: str, dialect: str, canary: RevisionQueries,
                      stable: RevisionQueries, interval_s: float, deadline_s: float,
                      on_tick: Callable[[float, Reading], None] | None = None,
                      settle_s: float = 0.0, stop: threading.Event | None = None,
                      latency_limit_s: float | None = None,
                      router_counts: Callable[[], RouterCounts] | None = None,
                      probes: Callable[[], ProbeTally] | None = None) -> Judgement:
    """Poll every `interval_s` until every judge decided or `deadline_s` passed; then `finish`
    the undecided ones (a final decision, never CONTINUE). `stop`, set from another thread, ends
    the observation with JudgementStopped (a judgement in a thread that no signal reaches).
    ``latency_limit_s``: the readings also count each revision's requests slower than it.
    ``router_counts``: the profile's router counters (each reading then carries what the router
    sent each revision in the window and the answers it got). ``probes``: the correctness probes'
    tally now (harness/canary/probes.py), carried by every reading."""
    stop = stop or threading.Event()
    for judge in judges.values():
        judge.reset()
    records = {name: JudgementRecord(name) for name in judges}
    result = Judgement(records)
    started = time.monotonic()
    result.started_at = time.time()
    windows = RouterWindows(router_counts) if router_counts is not None else None
    roles = {"canary": canary.revision, "stable": stable.revision}
    if settle_s:
        time.sleep(settle_s)
    last: Reading | None = None
    while True:
        if stop.wait(interval_s):
            raise JudgementStopped(f"stopped after {time.monotonic() - started:.0f}s of observation")
        elapsed = time.monotonic() - started
        routed = windows.window(roles) if windows is not None else None
        tally = probes() if probes is not None else None
        try:
            reading = Reading(
                routed=routed,
                t_s=elapsed,
                canary=read_revision(prometheus_url, dialect, canary, elapsed_s=elapsed, window_s=interval_s,
                                     latency_limit_s=latency_limit_s),
                stable=read_revision(prometheus_url, dialect, stable, elapsed_s=elapsed, window_s=interval_s,
                                     latency_limit_s=latency_limit_s),
                source_ok=True, probes=tally)
        except PrometheusUnreachable as exc:
            empty = RevisionReading(None, None, None, None, None)
            reading = Reading(t_s=elapsed, canary=empty, stable=empty, source_ok=False, source_error=str(exc),
                              routed=routed, probes=tally)
        result.readings.append(reading)
        last = reading
        if on_tick is not None:
            on_tick(elapsed, reading)
        for name, judge in judges.items():
            record = records[name]
            if record.verdict is not None:
                continue
            record.readings += 1
            verdict = judge.observe(reading)
            if verdict.decision is not Decision.CONTINUE:
                record.verdict, record.decided_at_s = verdict, elapsed
        if all(r.verdict is not None for r in records.values()) or elapsed >= deadline_s:
            break
    for name, judge in judges.items():
        record = records[name]
        if record.verdict is None:
            record.verdict = judge.finish(last)
            record.decided_at_s = time.monotonic() - started
    result.seconds = time.monotonic() - started
    return result
