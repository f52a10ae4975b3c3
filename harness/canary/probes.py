"""Correctness probes: the same labelled held-out rows sent to the canary and to the stable, each
through its own tagged route, and their answers compared; the tally goes into every reading and
the sequential judge tests it (harness/judges/probes.py).

Built as a platform team would run it on a cluster: with ``serving.kserve.io/enable-tag-routing:
"true"`` KServe 0.14 tags the canary's traffic target ``latest`` (and always tags the rolled-out
revision's ``prev`` during a canary split), Knative gives each tag a host of its own,
``<tag>-<isvc>-predictor.<namespace>.<domain>``, routed to that revision alone, and the
InferenceService's status lists the URL beside the target (``status.components.predictor.traffic
[].url``). The probes read both URLs from the status, check each tag names the revision they are
meant to probe, and send each round of rows to both. The local emulation gives the same routes
(docs/emulation.md).

A round: ``batch`` rows not sent before, one V2 request to each revision. Both answered (HTTP 200,
readable outputs of as many values as rows) and the round compares them row by row:
``compare_answers``. Anything else fails the round (missing evidence, never a disagreement). Where
the router names the replica that answered (the local one's served-by header), a round answered by
another revision than the tag's fails too: the probes must compare the revisions they say they do.
"""
from __future__ import annotations

import math
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

import requests

from harness.errors import StackError
from harness.judges.base import ProbeTally
from harness.local.haproxy import SERVED_BY_HEADER, revision_of
from harness.local.reconcile import TAG_ROUTING_ANNOTATION
from harness.serving.isvc import predictor_status
from harness.serving.v2 import v2_request

if TYPE_CHECKING:  # pandas takes 0.4 s to import; here it is only a type
    import pandas as pd

__all__ = ["TAG_ROUTING", "Answer", "ProbeRoute", "ProbeRouteMissing", "ProbeRunner", "RowComparison",
           "compare_answers", "probe_routes", "read_answer"]

#: The tag KServe gives each side of a canary split (ksvc_reconciler.go at v0.14.1).
TAGS = {"canary": "latest", "stable": "prev"}
#: The annotation a probed InferenceService carries: without it the canary's target has no tag.
TAG_ROUTING = {TAG_ROUTING_ANNOTATION: "true"}
_EXACT_TYPES = ("INT", "UINT", "BOOL", "BYTES")  # V2 datatypes compared exactly (labels)


class ProbeRouteMissing(StackError):
    """The InferenceService's status has no tagged route to a revision the probes must reach."""


@dataclass(frozen=True)
class ProbeRoute:
    role: str  # "canary" | "stable"
    revision: str  # the revision its tag names
    host: str  # the tagged host, from the status' traffic url
    url: str  # where the V2 infer request goes
    headers: dict[str, str] = field(default_factory=dict)


def _base_for_host(stack: Any, service: str, host: str) -> tuple[str, dict[str, str]]:
    """Where a request for ``host`` goes on this profile. The cluster profiles reach Knative's
    gateway through their host-routing proxy (a base URL per host, which sets the Host header
    itself); the local router routes by the Host header on its one listener."""
    proxy = getattr(stack, "proxy", None)
    if proxy is not None and callable(getattr(proxy, "base_url", None)):
        return proxy.base_url(host), {}
    return stack.inference_base_url(service), {"Host": host}


def probe_routes(stack: Any, service: str, isvc: Mapping[str, Any], *, canary: str, stable: str
                 ) -> dict[str, ProbeRoute]:
    """{"canary": the ``latest`` route, "stable": the ``prev`` route} of ``service`` from its status
    ``isvc``; ProbeRouteMissing when a tag is absent, has no url, or names another revision."""
    traffic = predictor_status(dict(isvc)).get("traffic") or []
    by_tag = {t["tag"]: t for t in traffic if t.get("tag")}
    routes: dict[str, ProbeRoute] = {}
    for role, revision in (("canary", canary), ("stable", stable)):
        tag = TAGS[role]
        target = by_tag.get(tag)
        if target is None or not target.get("url"):
            raise ProbeRouteMissing(
                f"probe_route={tag}: InferenceService {service} has no traffic target tagged {tag!r} with a url "
                f"(tagged: {sorted(by_tag) or 'none'}); set its annotation serving.kserve.io/enable-tag-routing: "
                "\"true\" (the canary's latest tag) and probe during a canary split (the stable's prev tag)")
        if target.get("revisionName") != revision:
            raise ProbeRouteMissing(f"probe_route={tag}: the tag names revision {target.get('revisionName')}, not "
                                    f"the {role} {revision}; probe only while the split is the one judged")
        host = urlparse(str(target["url"])).hostname or ""
        base, headers = _base_for_host(stack, service, host)
        routes[role] = ProbeRoute(role, revision, host, f"{base}/v2/models/{service}/infer", headers)
    return routes


@dataclass(frozen=True)
class Answer:
    datatype: str
    values: tuple[Any, ...]

    @property
    def exact(self) -> bool:
        return self.datatype.upper().startswith(_EXACT_TYPES)


def read_answer(body: Any, rows: int) -> Answer:
    """The first output of a V2 response, flattened; ValueError when it is not one value per row."""
    outputs = body.get("outputs") if isinstance(body, dict) else None
    if not outputs or not isinstance(outputs, list) or not isinstance(outputs[0], dict):
        raise ValueError(f"no outputs in the answer: {str(body)[:200]}")
    data = outputs[0].get("data")
    if not isinstance(data, list):  # a malformed answer: the round's caller catches ValueError
        raise ValueError(f"output {outputs[0].get('name')!r} has no data list")  # noqa: TRY004
    if len(data) != rows:
        raise ValueError(f"output {outputs[0].get('name')!r} holds {len(data)} values for {rows} rows")
    return Answer(str(outputs[0].get("datatype") or ""), tuple(data))


@dataclass(frozen=True)
class RowComparison:
    rows: int
    disagreements: int
    output: str  # "label" | "value": how the stable's answers were compared
    max_abs_diff: float | None = None  # numeric answers
    canary_correct: int | None = None  # against the held-out labels, where answers are labels or probabilities
    stable_correct: int | None = None
    note: str = ""  # why every row disagreed (the output contract changed)


def _correct(answer: Answer, labels: Sequence[int] | None) -> int | None:
    """Rows answered right: a label equal to the held-out one, or a probability in [0, 1] on the
    right side of 0.5; None for other numbers (a regression value has no label to match)."""
    if labels is None:
        return None
    try:
        if answer.exact:
            return sum(int(v) == int(y) for v, y in zip(answer.values, labels, strict=True))
        values = [float(v) for v in answer.values]
    except (TypeError, ValueError):
        return None
    if not all(0.0 <= v <= 1.0 for v in values):
        return None
    return sum((v >= 0.5) == bool(y) for v, y in zip(values, labels, strict=True))


def compare_answers(canary: Answer, stable: Answer, *, tolerance: float,
                    labels: Sequence[int] | None = None) -> RowComparison:
    """Row by row: labels (the stable's datatype is an integer, boolean or string one) disagree when
    not equal; numbers (probabilities, regression values) when |canary - stable| > tolerance, or
    either is not finite. An answer of another datatype or length than the stable's disagrees on
    every row: the model's output contract changed, which a client reading it would feel."""
    rows = len(stable.values)
    output = "label" if stable.exact else "value"
    if canary.datatype != stable.datatype or len(canary.values) != rows:
        return RowComparison(rows, rows, output, note=(f"the canary answers {canary.datatype} x{len(canary.values)}, "
                                                       f"the stable {stable.datatype} x{rows}"))
    correct = {"canary_correct": _correct(canary, labels), "stable_correct": _correct(stable, labels)}
    if stable.exact:
        differ = sum(c != s for c, s in zip(canary.values, stable.values, strict=True))
        return RowComparison(rows, differ, output, **correct)
    differ, largest = 0, 0.0
    for c, s in zip(canary.values, stable.values, strict=True):
        try:
            diff = abs(float(c) - float(s))
        except (TypeError, ValueError):
            diff = math.inf
        if not math.isfinite(diff):
            differ += 1
            continue
        largest = max(largest, diff)
        differ += diff > tolerance
    return RowComparison(rows, differ, output, max_abs_diff=largest, **correct)


@dataclass
class _Side:
    """One route's probe requests, for the cost line."""

    requests: int = 0
    ms: list[float] = field(default_factory=list)
    served_by: dict[str, int] = field(default_factory=dict)


class ProbeRunner:
    """Sends a round every ``interval_s`` from ``start`` until ``stop`` (or ``run_for_s``, its own
    deadline) on a thread of its own; ``tally`` is the judges' view, ``cost`` and
    ``revision_counts`` what the probes added to the load. ``routes`` None (``unavailable`` says
    why): no round is sent and the tally says so, so a judgement that meant to probe never
    promotes on probes it did not get."""

    def __init__(self, routes: Mapping[str, ProbeRoute] | None, *, rows: pd.DataFrame, labels: Sequence[int] | None,
                 batch: int, interval_s: float, run_for_s: float, tolerance: float, timeout_s: float = 10.0,
                 slow_s: float = 0.5, unavailable: str = "") -> None:
        if batch < 1 or interval_s <= 0 or run_for_s <= 0:
            raise ValueError(f"probes: need batch >= 1, interval_s > 0 and run_for_s > 0, got {batch}, {interval_s}, "
                             f"{run_for_s}")
        self.routes = dict(routes) if routes is not None else None
        self.rows, self.labels = rows.reset_index(drop=True), (list(labels) if labels is not None else None)
        self.batch, self.interval_s, self.run_for_s = batch, interval_s, run_for_s
        self.tolerance, self.timeout_s, self.slow_s = tolerance, timeout_s, slow_s
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._offset = 0
        self._rounds = self._failed = self._rows = self._disagree = 0
        self._canary_correct: int | None = 0 if self.labels is not None else None
        self._stable_correct: int | None = 0 if self.labels is not None else None
        self._max_diff: float | None = None
        self._output = ""
        self._last_ok = False
        self._last_error = "" if routes is not None else (unavailable or "no probe routes")
        self._notes: list[str] = []
        self._sides = {"canary": _Side(), "stable": _Side()}
        # revision -> requests, 5xx and slow answers a replica of it gave (named by the served-by header)
        self._served: dict[str, dict[str, int]] = {}
        self._round_ms: list[float] = []
        self._started_at: float | None = None
        self._first_round_s: float | None = None

    # -- the thread --------------------------------------------------------------------------------
    def start(self) -> ProbeRunner:
        if self.routes is None or self._thread is not None:
            return self
        self._started_at = time.monotonic()
        self._thread = threading.Thread(target=self._run, name="canary-probes", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout_s: float = 30.0) -> None:
        """Stop sending; waits for a round in flight (each request is bounded by timeout_s)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=timeout_s)

    def _run(self) -> None:
        assert self.routes is not None and self._started_at is not None
        sessions = {role: requests.Session() for role in self.routes}
        next_at = self._started_at
        try:
            while not self._stop.wait(max(0.0, next_at - time.monotonic())):
                if time.monotonic() - self._started_at > self.run_for_s:
                    self._note(f"stopped at its own deadline, {self.run_for_s:g} s after the first round")
                    return
                next_at += self.interval_s
                if self._offset + self.batch > len(self.rows):
                    self._record_failure(f"the {len(self.rows)} held-out rows are used up (each row is probed once)")
                    return
                at = self._offset
                self._offset += self.batch
                self._round(sessions, at)
        finally:
            for session in sessions.values():
                session.close()

    def _send(self, session: requests.Session, route: ProbeRoute, body: dict[str, Any], rows: int) -> Answer:
        side = self._sides[route.role]
        started = time.perf_counter()
        try:
            resp = session.post(route.url, json=body, headers=route.headers, timeout=(2.0, self.timeout_s))
        except requests.RequestException as exc:
            raise ValueError(f"{route.role} ({route.host}): no answer: {type(exc).__name__}") from None
        finally:
            ms = (time.perf_counter() - started) * 1000
        served = resp.headers.get(SERVED_BY_HEADER, "")
        with self._lock:
            side.requests += 1
            side.ms.append(ms)
            if served:  # a replica answered (not the router itself): what its metrics counted
                revision = revision_of(served)
                side.served_by[revision] = side.served_by.get(revision, 0) + 1
                counts = self._served.setdefault(revision, {"requests": 0, "errors": 0, "slow": 0})
                counts["requests"] += 1
                counts["errors"] += resp.status_code >= 500
                counts["slow"] += ms > self.slow_s * 1000
        if resp.status_code != 200:
            raise ValueError(f"{route.role} ({route.host}): HTTP {resp.status_code}: {resp.text[:160]}")
        if served and revision_of(served) != route.revision:
            raise ValueError(f"{route.role} ({route.host}): answered by revision {revision_of(served)}, not the "
                             f"tag's {route.revision}")
        try:
            return read_answer(resp.json(), rows)
        except ValueError as exc:
            raise ValueError(f"{route.role} ({route.host}): {exc}") from None

    def _round(self, sessions: Mapping[str, requests.Session], at: int) -> None:
        assert self.routes is not None
        frame = self.rows.iloc[at:at + self.batch]
        body = v2_request(frame)
        started = time.perf_counter()
        try:
            answers = {role: self._send(sessions[role], route, body, len(frame)) for role, route in self.routes.items()}
        except ValueError as exc:
            self._record_failure(str(exc))
            return
        finally:
            with self._lock:
                self._round_ms.append((time.perf_counter() - started) * 1000)
                if self._first_round_s is None and self._started_at is not None:
                    self._first_round_s = time.monotonic() - self._started_at
        labels = self.labels[at:at + self.batch] if self.labels is not None else None
        row = compare_answers(answers["canary"], answers["stable"], tolerance=self.tolerance, labels=labels)
        with self._lock:
            self._rounds += 1
            self._rows += row.rows
            self._disagree += row.disagreements
            self._output = self._output or row.output
            self._last_ok = True
            if row.max_abs_diff is not None:
                self._max_diff = max(self._max_diff or 0.0, row.max_abs_diff)
            for name, value in (("_canary_correct", row.canary_correct), ("_stable_correct", row.stable_correct)):
                current = getattr(self, name)
                setattr(self, name, None if value is None or current is None else current + value)
            if row.note and row.note not in self._notes:
                self._notes.append(row.note)

    def _record_failure(self, why: str) -> None:
        with self._lock:
            self._rounds += 1
            self._failed += 1
            self._last_ok = False
            self._last_error = why

    def _note(self, what: str) -> None:
        with self._lock:
            if what not in self._notes:
                self._notes.append(what)

    # -- what the judges and the report read ---------------------------------------------------------
    def tally(self) -> ProbeTally:
        with self._lock:
            return ProbeTally(rounds=self._rounds, failed=self._failed, rows=self._rows,
                              disagreements=self._disagree, last_ok=self._last_ok, output=self._output,
                              tolerance=self.tolerance if self._output == "value" else 0.0,
                              canary_correct=self._canary_correct if self._rows else None,
                              stable_correct=self._stable_correct if self._rows else None,
                              max_abs_diff=self._max_diff, last_error=self._last_error)

    def revision_counts(self) -> dict[str, dict[str, int]]:
        """Per revision, the probe requests a replica of it answered (where the router names the
        replica: the local served-by header), their 5xx and those slower than slow_s: what its
        metrics counted beside the load's own requests."""
        with self._lock:
            return {revision: dict(counts) for revision, counts in self._served.items()}

    def cost(self) -> dict[str, Any]:
        """What probing cost: rounds, rows and requests, each revision's answer times, the time to
        the first compared round, and what the probes noted."""
        def quantile(values: list[float], q: float) -> float | None:
            ordered = sorted(values)
            return round(ordered[max(1, math.ceil(q * len(ordered))) - 1], 1) if ordered else None

        with self._lock:
            out: dict[str, Any] = {"rounds": self._rounds, "failed": self._failed, "rows": self._rows,
                                   "batch": self.batch, "interval_s": self.interval_s,
                                   "requests": sum(s.requests for s in self._sides.values()),
                                   "first_round_s": round(self._first_round_s, 2) if self._first_round_s else None,
                                   "round_ms_p50": quantile(self._round_ms, 0.5),
                                   "round_ms_p90": quantile(self._round_ms, 0.9), "notes": list(self._notes),
                                   "last_error": self._last_error}
            for role, side in self._sides.items():
                out[role] = {"requests": side.requests, "ms_p50": quantile(side.ms, 0.5),
                             "ms_p90": quantile(side.ms, 0.9), "served_by": dict(side.served_by)}
            return out
