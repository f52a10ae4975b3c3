"""Which alerts Prometheus had active, and when: ``/api/v1/alerts`` polled every second from a thread.

The API answers with the alerts active now (pending or firing, with ``activeAt``); an alert that
resolved is gone from it. A test that asks after a fault has passed would find nothing, so the log
keeps every state it saw as an interval: from the first poll that showed the alert in that state
to the last one (``to`` None while it still shows). A poll that fails (Prometheus stopped by a
canary scenario, restarting) is counted, not an interval's end: the interval ends only at a poll
that answers without it.
"""
from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import requests

__all__ = ["AlertInterval", "AlertLog"]


@dataclass
class AlertInterval:
    alertname: str
    state: str  # pending | firing
    labels: dict[str, str]
    start: float  # epoch seconds of the first poll that showed it
    end: float | None = None  # the last poll that showed it, once a later poll no longer does
    active_at: str = ""  # Prometheus' own activeAt
    value: str = ""
    last_seen: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {"alertname": self.alertname, "state": self.state, "labels": dict(self.labels), "from": self.start,
                "to": self.end, "active_at": self.active_at, "value": self.value}

    def matches(self, labels: Mapping[str, str]) -> bool:
        return all(self.labels.get(k) == v for k, v in labels.items())

    def overlaps(self, start: float, end: float) -> bool:
        return self.start <= end and (self.end if self.end is not None else self.last_seen) >= start


def _key(alert: Mapping[str, Any]) -> tuple[str, tuple[tuple[str, str], ...]]:
    return alert.get("state", "?"), tuple(sorted((alert.get("labels") or {}).items()))


@dataclass
class AlertLog:
    url: str  # Prometheus' base URL
    interval_s: float = 1.0
    intervals: list[AlertInterval] = field(default_factory=list)
    polls: int = 0
    failed_polls: int = 0
    last_error: str = ""
    #: (epoch, answered) per poll: how well the log watched a window (polls_between)
    poll_times: list[tuple[float, bool]] = field(default_factory=list, repr=False)

    def __post_init__(self) -> None:
        self._open: dict[tuple[str, tuple[tuple[str, str], ...]], AlertInterval] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def poll(self) -> None:
        """Ask once and update the intervals."""
        now = time.time()
        try:
            answer = requests.get(f"{self.url}/api/v1/alerts", timeout=max(1.0, self.interval_s))
            answer.raise_for_status()
            alerts = answer.json()["data"]["alerts"]
        except (requests.RequestException, ValueError, KeyError) as exc:
            with self._lock:
                self.polls += 1
                self.failed_polls += 1
                self.last_error = f"{type(exc).__name__}: {exc}"[:300]
                self.poll_times.append((now, False))
            return
        seen = {_key(a): a for a in alerts}
        with self._lock:
            self.polls += 1
            self.poll_times.append((now, True))
            for key, interval in list(self._open.items()):
                if key not in seen:
                    interval.end = interval.last_seen
                    del self._open[key]
            for key, alert in seen.items():
                interval = self._open.get(key)
                if interval is None:
                    labels = dict(alert.get("labels") or {})
                    interval = AlertInterval(labels.get("alertname", "?"), alert.get("state", "?"), labels, now,
                                             active_at=str(alert.get("activeAt", "")))
                    self._open[key] = interval
                    self.intervals.append(interval)
                interval.last_seen, interval.value = now, str(alert.get("value", ""))

    def _run(self) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            self.poll()
            self._stop.wait(max(0.0, self.interval_s - (time.monotonic() - started)))

    def start(self) -> AlertLog:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="seamcheck-alert-log", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def snapshot(self) -> list[dict[str, Any]]:
        with self._lock:
            return [i.as_dict() for i in self.intervals]

    def seen(self, *, start: float, end: float, state: str | None = None, alertname: str | None = None,
             labels: Mapping[str, str] | None = None) -> list[dict[str, Any]]:
        """The intervals that overlap [start, end] (epoch), optionally of one state, alert and labels."""
        with self._lock:
            return [i.as_dict() for i in self.intervals if i.overlaps(start, end)
                    and (state is None or i.state == state) and (alertname is None or i.alertname == alertname)
                    and i.matches(labels or {})]

    def wait_for(self, *, start: float, deadline_s: float, **match: Any) -> list[dict[str, Any]]:
        """Poll the log (not Prometheus) until an interval matching ``match`` from ``start`` on shows,
        at most deadline_s: an alert's ``for`` and the rate window lag the fault by seconds."""
        until = time.monotonic() + deadline_s
        while True:
            found = self.seen(start=start, end=time.time(), **match)
            if found or time.monotonic() >= until:
                return found
            time.sleep(self.interval_s)

    def health(self) -> dict[str, Any]:
        with self._lock:
            return {"polls": self.polls, "failed_polls": self.failed_polls, "last_error": self.last_error}

    def polls_between(self, start: float, end: float) -> dict[str, Any]:
        """How the log watched [start, end] (epoch): its polls there, those that failed, and the
        longest stretch without an answered poll (from start to the first, between two, from the
        last to end): a quiet window is evidence only where the log was answered throughout."""
        with self._lock:
            inside = [(t, ok) for t, ok in self.poll_times if start <= t <= end]
        answered = [t for t, ok in inside if ok]
        edges = [start, *answered, end]
        gap = max((b - a for a, b in itertools.pairwise(edges)), default=end - start)
        return {"polls": len(inside), "failed": len(inside) - len(answered), "longest_gap_s": round(gap, 1),
                "seconds": round(end - start, 1)}
