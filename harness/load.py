"""Load with Locust, always in a subprocess, measured from Locust's own per-request event log.

Why a subprocess: ``import locust`` runs ``gevent.monkey.patch_all()``; in a process that already
imported ssl/requests/urllib3 (pytest with the harness loaded, mlflow) that ends in RecursionError
in ssl (see the feasibility notes, section 6). So the pytest process never imports locust: it runs
``<python> -m locust -f harness/locustfiles/v2_inference.py --headless ...`` in its own process group.

Why an event log: Locust's CSV files are flushed periodically and lag its console totals, so exact
counts cannot come from them. The locustfile writes one JSONL line per request (start time,
status, latency, the response's model_version and served-by header) and the windows here are
computed from that file: exact counts. Locust's own CSV totals are kept beside them
(``LoadResult.locust_csv``) for reference only.

``run_load`` blocks until the load ends; ``start_load`` returns a ``LoadHandle`` at once, so a
canary judgement can read ``handle.snapshot()`` while the load continues, then ``stop()`` it or
``wait()`` for its end and take ``result()``.
"""
from __future__ import annotations

import csv
import importlib.util
import json
import math
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Self

from harness.errors import StackError
from harness.paths import LOCUSTFILES
from harness.procs import spawn

__all__ = [
    "EVENTS_FILE",
    "LOCUSTFILE",
    "LoadFailed",
    "LoadHandle",
    "LoadResult",
    "RequestEvent",
    "WindowStats",
    "read_events",
    "run_load",
    "start_load",
    "summarize",
    "windows_of",
]

LOCUSTFILE = LOCUSTFILES / "v2_inference.py"
EVENTS_FILE = "events.jsonl"
CSV_PREFIX = "locust"
LOG_FILE = "locust.log"
SUMMARY_FILE = "load-summary.json"
#: Time for the locust process to start (imports, parquet) and to write its files at the end.
START_MARGIN_S = 30.0
_LOCUSTFILE_VARS = ("SEAMCHECK_ROWS", "SEAMCHECK_MODEL", "SEAMCHECK_EVENTS", "SEAMCHECK_TARGET_RPS",
                    "SEAMCHECK_BATCH_MIN", "SEAMCHECK_BATCH_MAX", "SEAMCHECK_DROP_COLUMNS", "SEAMCHECK_HEADERS",
                    "SEAMCHECK_RECORD_HEADER", "SEAMCHECK_TIMEOUT_S")


class LoadFailed(StackError):
    """Locust did not run to its end (crashed, or killed at the deadline). ``result`` holds what the
    event log recorded until then (None if nothing was recorded)."""

    def __init__(self, message: str, result: LoadResult | None = None) -> None:
        super().__init__(message)
        self.result = result


# =============================================================================== events and windows
@dataclass(frozen=True)
class RequestEvent:
    t: float  # request start, epoch seconds
    end: float  # when locust recorded it, epoch seconds
    status: int  # HTTP status; 0 = no HTTP answer (refused, reset, timeout)
    ms: float  # latency as locust measured it
    ok: bool  # locust's verdict: True only for HTTP 200
    rows: int | None = None
    model_version: str | None = None
    served_by: str | None = None
    error: str | None = None

    @property
    def is_5xx(self) -> bool:
        return 500 <= self.status <= 599


@dataclass
class WindowStats:
    """Requests that STARTED in [start_s, end_s) (seconds after the load's start, t0).

    failures = failures_5xx + failures_other; failures_other holds everything not 200 and not 5xx,
    including status 0 (no HTTP answer). Latency quantiles are nearest-rank over all requests of
    the window, failed ones included (as Locust computes them); None for an empty window."""

    start_s: float
    end_s: float
    requests: int = 0
    failures: int = 0
    failures_5xx: int = 0
    failures_other: int = 0
    statuses: dict[int, int] = field(default_factory=dict)
    p50_ms: float | None = None
    p95_ms: float | None = None
    p99_ms: float | None = None
    max_ms: float | None = None
    mean_ms: float | None = None

    @property
    def seconds(self) -> float:
        return self.end_s - self.start_s

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds > 0 else 0.0

    @property
    def failure_fraction(self) -> float:
        return self.failures / self.requests if self.requests else 0.0

    @property
    def fraction_5xx(self) -> float:
        return self.failures_5xx / self.requests if self.requests else 0.0

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["statuses"] = {str(k): v for k, v in sorted(self.statuses.items())}
        data["rps"] = round(self.rps, 3)
        return data


def _quantile(sorted_ms: Sequence[float], q: float) -> float | None:
    if not sorted_ms:
        return None
    rank = max(1, math.ceil(q * len(sorted_ms)))
    return sorted_ms[min(rank, len(sorted_ms)) - 1]


def summarize(events: Iterable[RequestEvent], start_s: float, end_s: float) -> WindowStats:
    """One WindowStats over ``events`` (already selected by the caller)."""
    stats = WindowStats(start_s=start_s, end_s=end_s)
    latencies = []
    for ev in events:
        stats.requests += 1
        stats.statuses[ev.status] = stats.statuses.get(ev.status, 0) + 1
        if not ev.ok:
            stats.failures += 1
            if ev.is_5xx:
                stats.failures_5xx += 1
            else:
                stats.failures_other += 1
        latencies.append(ev.ms)
    if latencies:
        latencies.sort()
        stats.p50_ms, stats.p95_ms, stats.p99_ms = (_quantile(latencies, q) for q in (0.50, 0.95, 0.99))
        stats.max_ms = latencies[-1]
        stats.mean_ms = round(sum(latencies) / len(latencies), 3)
    return stats


def windows_of(events: Sequence[RequestEvent], t0: float, window_s: float,
               until_s: float | None = None) -> list[WindowStats]:
    """Consecutive windows of ``window_s`` from ``t0`` (epoch) until the last event (or ``until_s``
    seconds after t0), empty windows included, so their counts add up to the totals."""
    if window_s <= 0:
        raise ValueError("window_s must be > 0")
    last = max((ev.t - t0 for ev in events), default=0.0)
    span = max(last, until_s or 0.0)
    n = max(1, math.floor(span / window_s) + 1) if events or until_s else 0
    buckets: list[list[RequestEvent]] = [[] for _ in range(n)]
    for ev in events:
        i = min(max(0, math.floor((ev.t - t0) / window_s)), n - 1)  # a request started before t0 goes first
        buckets[i].append(ev)
    return [summarize(b, i * window_s, (i + 1) * window_s) for i, b in enumerate(buckets)]


def read_events(path: Path) -> tuple[dict[str, Any] | None, list[RequestEvent], dict[str, Any] | None]:
    """(start record, request events, stop record) from a locustfile's JSONL event log. A last line
    still being written (no newline yet) is skipped."""
    start = stop = None
    events: list[RequestEvent] = []
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None, [], None
    lines = text.split("\n")
    for line in lines[:-1]:  # the part after the last newline is incomplete (or empty)
        if not line:
            continue
        record = json.loads(line)
        kind = record.get("event")
        if kind == "start":
            start = start or record
        elif kind == "stop":
            stop = record
        else:
            events.append(RequestEvent(t=record["t"], end=record["end"], status=record["status"], ms=record["ms"],
                                       ok=record["ok"], rows=record.get("rows"),
                                       model_version=record.get("model_version"),
                                       served_by=record.get("served_by"), error=record.get("error")))
    events.sort(key=lambda ev: ev.t)
    return start, events, stop


@dataclass
class LoadResult:
    out_dir: Path
    events_path: Path
    log_path: Path
    csv_prefix: Path
    t0: float  # epoch seconds of the locust test start (window 0 starts here)
    window_s: float
    windows: list[WindowStats]
    totals: WindowStats
    by_model_version: dict[str, WindowStats]
    by_served_by: dict[str, WindowStats]
    returncode: int | None  # None: still running (a snapshot)
    finished: bool  # the locustfile wrote its stop record
    locust_csv: dict[str, Any] | None = None  # Locust's own (lagging) CSV totals, for reference
    command: list[str] = field(default_factory=list)
    events: list[RequestEvent] = field(default_factory=list, repr=False)

    @property
    def requests(self) -> int:
        return self.totals.requests

    @property
    def failures(self) -> int:
        return self.totals.failures

    def between(self, start_s: float, end_s: float) -> WindowStats:
        """Stats of the requests started between start_s and end_s seconds after t0."""
        return summarize([ev for ev in self.events if start_s <= ev.t - self.t0 < end_s], start_s, end_s)

    def since(self, epoch: float) -> WindowStats:
        """Stats of the requests started at or after an epoch time (e.g. a fault's injection)."""
        return self.between(epoch - self.t0, math.inf)

    def as_dict(self) -> dict[str, Any]:
        return {
            "t0": self.t0, "window_s": self.window_s, "returncode": self.returncode, "finished": self.finished,
            "totals": self.totals.as_dict(), "windows": [w.as_dict() for w in self.windows],
            "by_model_version": {k: v.as_dict() for k, v in self.by_model_version.items()},
            "by_served_by": {k: v.as_dict() for k, v in self.by_served_by.items()},
            "locust_csv": self.locust_csv, "command": self.command,
            "files": {"events": str(self.events_path), "log": str(self.log_path), "csv_prefix": str(self.csv_prefix)},
        }


def _locust_csv_totals(prefix: Path) -> dict[str, Any] | None:
    stats = prefix.with_name(prefix.name + "_stats.csv")
    try:
        with stats.open(newline="") as fh:
            rows = [r for r in csv.DictReader(fh) if r.get("Name") == "Aggregated"]
    except OSError:
        return None
    if not rows:
        return None
    row = rows[-1]

    def num(key: str) -> float | None:
        try:
            return float(row[key])
        except (KeyError, TypeError, ValueError):
            return None

    failures: dict[str, int] = {}
    try:
        with prefix.with_name(prefix.name + "_failures.csv").open(newline="") as fh:
            for r in csv.DictReader(fh):
                failures[r["Error"]] = failures.get(r["Error"], 0) + int(r["Occurrences"])
    except (OSError, KeyError, ValueError):
        pass
    return {"requests": num("Request Count"), "failures": num("Failure Count"), "rps": num("Requests/s"),
            "p50_ms": num("50%"), "p95_ms": num("95%"), "p99_ms": num("99%"), "max_ms": num("Max Response Time"),
            "failures_by_error": failures}


def _build_result(out_dir: Path, window_s: float, returncode: int | None, command: list[str],
                  fallback_t0: float) -> LoadResult:
    events_path = out_dir / EVENTS_FILE
    start, events, stop = read_events(events_path)
    t0 = float(start["t"]) if start else (events[0].t if events else fallback_t0)
    until = (float(stop["t"]) - t0) if stop else None
    windows = windows_of(events, t0, window_s, until_s=until)
    end_s = windows[-1].end_s if windows else 0.0
    totals = summarize(events, 0.0, max(end_s, until or 0.0))

    def grouped(key: str) -> dict[str, WindowStats]:
        groups: dict[str, list[RequestEvent]] = {}
        for ev in events:
            groups.setdefault(str(getattr(ev, key)), []).append(ev)
        return {k: summarize(v, totals.start_s, totals.end_s) for k, v in sorted(groups.items())}

    return LoadResult(out_dir=out_dir, events_path=events_path, log_path=out_dir / LOG_FILE,
                      csv_prefix=out_dir / CSV_PREFIX, t0=t0, window_s=window_s, windows=windows, totals=totals,
                      by_model_version=grouped("model_version"), by_served_by=grouped("served_by"),
                      returncode=returncode, finished=stop is not None,
                      locust_csv=_locust_csv_totals(out_dir / CSV_PREFIX) if returncode is not None else None,
                      command=command, events=events)


# =============================================================================== the subprocess
def _log_tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _kill_group(popen: subprocess.Popen, sig: int = signal.SIGKILL) -> None:
    try:
        os.killpg(popen.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


class LoadHandle:
    """A running Locust subprocess (its own process group). Use as a context manager, or call
    ``wait``/``stop``/``kill``: the process never outlives the handle's owner by design."""

    def __init__(self, popen: subprocess.Popen, *, out_dir: Path, window_s: float, deadline_s: float,
                 command: list[str], started: float) -> None:
        self.popen = popen
        self.out_dir = out_dir
        self.window_s = window_s
        self.deadline_s = deadline_s
        self.command = command
        self.started = started  # epoch seconds when the subprocess was started
        self._result: LoadResult | None = None
        self._killed_at_deadline = False

    @property
    def pid(self) -> int:
        return self.popen.pid

    @property
    def events_path(self) -> Path:
        return self.out_dir / EVENTS_FILE

    def running(self) -> bool:
        return self.popen.poll() is None

    def wait_for_first_request(self, deadline_s: float) -> float:
        """Until the event log holds a request (Locust's imports done, its users up), at most
        deadline_s; returns the seconds waited. Locust takes seconds to start, more on a busy
        machine, so a scenario that acts "N seconds into the load" starts counting here."""
        started = time.monotonic()
        until = started + deadline_s
        while time.monotonic() < until:
            if not self.running():
                raise LoadFailed(f"locust exited before its first request. Last lines of "
                                 f"{self.out_dir / LOG_FILE}:\n{_log_tail(self.out_dir / LOG_FILE)}")
            try:
                with open(self.events_path, "rb") as fh:
                    if any(b'"status"' in line for line in fh):
                        return time.monotonic() - started
            except FileNotFoundError:
                pass
            time.sleep(0.2)
        raise LoadFailed(f"no request logged by locust within {deadline_s:.0f}s. Last lines of "
                         f"{self.out_dir / LOG_FILE}:\n{_log_tail(self.out_dir / LOG_FILE)}")

    def snapshot(self) -> LoadResult:
        """What the event log holds so far; the load keeps running."""
        return _build_result(self.out_dir, self.window_s, self.popen.poll(), self.command, self.started)

    def wait(self, timeout_s: float | None = None) -> int:
        """Wait for locust to end; at ``timeout_s`` (default: its own deadline, run time + margin)
        kill its group and raise LoadFailed. KeyboardInterrupt kills the group and propagates."""
        limit = self.deadline_s - (time.time() - self.started) if timeout_s is None else timeout_s
        try:
            return self.popen.wait(timeout=max(0.0, limit))
        except subprocess.TimeoutExpired:
            self._killed_at_deadline = True
            self.kill()
            raise LoadFailed(f"locust gave no result within {max(0.0, limit):.0f}s; killed its process group. "
                             f"Last lines of {self.out_dir / LOG_FILE}:\n{_log_tail(self.out_dir / LOG_FILE)}",
                             self._final()) from None
        except BaseException:
            self.kill()
            raise

    def stop(self, timeout_s: float = 20.0) -> LoadResult:
        """End the load now, as Ctrl-C would (SIGTERM: locust stops its users and writes its files),
        then return the result. Kills the group if it does not exit within ``timeout_s``."""
        if self.running():
            _kill_group(self.popen, signal.SIGTERM)
            try:
                self.popen.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self.kill()
        elif self._result is not None:
            return self._result
        return self._final()  # stopped on purpose: no LoadFailed for its exit status

    def kill(self) -> None:
        _kill_group(self.popen, signal.SIGKILL)
        try:
            self.popen.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass

    def _final(self) -> LoadResult:
        self._result = _build_result(self.out_dir, self.window_s, self.popen.poll(), self.command, self.started)
        (self.out_dir / SUMMARY_FILE).write_text(json.dumps(self._result.as_dict(), indent=2))
        return self._result

    def result(self) -> LoadResult:
        """Wait for the end (see ``wait``), then the exact per-window result. Raises LoadFailed if
        locust exited with an error (a bad locustfile or environment: see the log tail)."""
        if self._result is not None:
            return self._result
        rc = self.wait()
        result = self._final()
        if rc != 0 and not result.finished:
            raise LoadFailed(f"locust exited with status {rc}; last lines of {result.log_path}:\n"
                             f"{_log_tail(result.log_path)}", result)
        return result

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *_exc: object) -> None:
        if self.running():
            self.kill()


def _python_with_locust(python: Path | str | None) -> str:
    if python is not None:
        return str(python)
    # find_spec does not import the package (importing it would monkey-patch this process).
    if importlib.util.find_spec("locust") is None:
        raise LoadFailed(f"locust is not installed in {sys.executable}'s environment: pip install locust")
    return sys.executable


def start_load(host: str, model: str, rows_parquet: Path, users: int, spawn_rate: float, duration_s: float,
               target_rps: float | None, out_dir: Path, window_s: float = 1.0,
               headers: Mapping[str, str] | None = None, *, python: Path | str | None = None,
               batch_rows: tuple[int, int] = (1, 4), stop_timeout_s: int = 5, request_timeout_s: float = 30.0,
               record_header: str = "x-seamcheck-served-by", extra_env: Mapping[str, str] | None = None,
               locustfile: Path = LOCUSTFILE) -> LoadHandle:
    """Start Locust (headless) against ``host`` and return at once.

    ``duration_s`` is rounded up to whole seconds (locust's --run-time). ``target_rps``: total rate,
    each user paced at target_rps / users with constant_throughput (None: as fast as it goes).
    ``stop_timeout_s``: at the end, requests in flight may finish (so every request the server saw
    is in the event log). ``python``: an interpreter with locust (default: this one, if it has it).
    Everything goes to ``out_dir``: events.jsonl, locust.log, locust_*.csv, load-summary.json."""
    if users < 1 or spawn_rate <= 0 or duration_s <= 0:
        raise ValueError("users >= 1, spawn_rate > 0 and duration_s > 0 are required")
    if target_rps is not None and target_rps <= 0:
        raise ValueError("target_rps must be > 0 (or None for no pacing)")
    interpreter = _python_with_locust(python)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for stale in (EVENTS_FILE, SUMMARY_FILE):
        (out_dir / stale).unlink(missing_ok=True)
    run_time = max(1, math.ceil(duration_s))
    argv = [interpreter, "-m", "locust", "-f", str(locustfile), "--headless", "--host", host.rstrip("/"),
            "--users", str(users), "--spawn-rate", str(spawn_rate), "--run-time", f"{run_time}s",
            "--stop-timeout", str(int(stop_timeout_s)), "--csv", str(out_dir / CSV_PREFIX), "--csv-full-history",
            "--only-summary", "--exit-code-on-error", "0", "--loglevel", "INFO"]
    env = {k: v for k, v in os.environ.items() if k not in _LOCUSTFILE_VARS}
    env.update(extra_env or {})
    env.update({
        "SEAMCHECK_ROWS": str(Path(rows_parquet).resolve()),
        "SEAMCHECK_MODEL": model,
        "SEAMCHECK_EVENTS": str((out_dir / EVENTS_FILE).resolve()),
        "SEAMCHECK_TARGET_RPS": "" if target_rps is None else repr(float(target_rps)),
        "SEAMCHECK_BATCH_MIN": str(batch_rows[0]),
        "SEAMCHECK_BATCH_MAX": str(batch_rows[1]),
        "SEAMCHECK_HEADERS": json.dumps(dict(headers or {})),
        "SEAMCHECK_RECORD_HEADER": record_header,
        "SEAMCHECK_TIMEOUT_S": repr(float(request_timeout_s)),
        "PYTHONUNBUFFERED": "1",
    })
    deadline = run_time + users / spawn_rate + stop_timeout_s + START_MARGIN_S
    started = time.time()
    with open(out_dir / LOG_FILE, "ab") as log:  # the child keeps its own copy of the descriptor
        popen = spawn(argv, what="locust", stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                      cwd=str(out_dir)).popen
    return LoadHandle(popen, out_dir=out_dir, window_s=window_s, deadline_s=deadline, command=argv, started=started)


def run_load(host: str, model: str, rows_parquet: Path, users: int, spawn_rate: float, duration_s: float,
             target_rps: float | None, out_dir: Path, window_s: float = 1.0,
             headers: Mapping[str, str] | None = None, **kwargs: Any) -> LoadResult:
    """Run Locust to its end (see start_load for the arguments) and return the exact windows.
    The subprocess is killed on its deadline (run time + spawn + stop timeout + 30 s) and on
    KeyboardInterrupt."""
    handle = start_load(host, model, rows_parquet, users, spawn_rate, duration_s, target_rps, out_dir,
                        window_s, headers, **kwargs)
    with handle:
        return handle.result()
