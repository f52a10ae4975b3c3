"""harness/load.py: a real Locust subprocess against a small real HTTP server started here.

The server answers POST /v2/models/x/infer with 200 and 500 alternately and counts what it got;
the event log's exact counts must equal the server's own. Locust itself is never imported into
this process (gevent's monkey-patching would break ssl/requests here).
"""
from __future__ import annotations

import json
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from harness.load import LoadFailed, RequestEvent, read_events, run_load, start_load, summarize, windows_of
from harness.pipeline.dataset import FEATURES, make_dataset


class _V2Stub(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128  # no SYN backlog overflows (1 s retransmits) under a burst

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.lock = threading.Lock()
        self.count = 0
        self.by_status: dict[int, int] = {}
        self.rows = 0
        self.bad_bodies: list[str] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_port}"


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _V2Stub

    def log_message(self, *_args: object) -> None:
        pass

    def do_POST(self) -> None:
        raw = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        problem = None
        rows = 0
        if self.path != "/v2/models/x/infer":
            problem = f"path {self.path}"
        else:
            try:
                body = json.loads(raw)
                names = [i["name"] for i in body["inputs"]]
                shapes = {tuple(i["shape"]) for i in body["inputs"]}
                lengths = {len(i["data"]) for i in body["inputs"]}
                rows = next(iter(lengths))
                if names != FEATURES or len(shapes) != 1 or len(lengths) != 1 or not 1 <= rows <= 4 \
                        or body.get("parameters") != {"content_type": "pd"}:
                    problem = f"body {raw[:300]!r}"
            except (ValueError, KeyError, TypeError, StopIteration) as exc:
                problem = f"{exc!r}: {raw[:300]!r}"
        with self.server.lock:
            self.server.count += 1
            code = 200 if self.server.count % 2 else 500
            self.server.by_status[code] = self.server.by_status.get(code, 0) + 1
            self.server.rows += rows
            if problem:
                self.server.bad_bodies.append(problem)
        out = json.dumps({"model_name": "x", "model_version": "v7", "id": "1",
                          "outputs": [{"name": "output-1", "shape": [rows], "datatype": "INT64",
                                       "data": [1] * rows}]}).encode()
        # One write (status line, headers, body): no small-packet/delayed-ACK stalls.
        self.wfile.write(f"HTTP/1.1 {code} X\r\nContent-Type: application/json\r\nContent-Length: {len(out)}\r\n"
                         f"x-seamcheck-served-by: stub-r0\r\n\r\n".encode() + out)


@pytest.fixture
def v2_stub() -> Iterator[_V2Stub]:
    server = _V2Stub()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.fixture(scope="module")
def rows_parquet(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("rows") / "rows.parquet"
    make_dataset(200, seed=3).to_parquet(path, index=False)  # features + label (the label is not sent)
    return path


def _assert_locust_not_here() -> None:
    assert "locust" not in sys.modules, "locust was imported into the pytest process"
    gevent = sys.modules.get("gevent")
    if gevent is not None:
        import gevent.monkey

        assert not gevent.monkey.is_anything_patched(), "the pytest process was gevent-patched"
    import socket
    import ssl

    assert socket.socket.__module__ == "socket" and ssl.SSLContext.__module__ == "ssl"


def test_exact_counts_match_the_server(v2_stub: _V2Stub, rows_parquet: Path, tmp_path: Path) -> None:
    result = run_load(v2_stub.url, "x", rows_parquet, users=4, spawn_rate=4, duration_s=5, target_rps=80,
                      out_dir=tmp_path / "load", window_s=1.0)

    assert not v2_stub.bad_bodies, v2_stub.bad_bodies[:3]
    assert result.returncode == 0 and result.finished
    # Exact: every request the server answered is in the event log, and no other.
    assert result.requests == v2_stub.count > 0
    assert result.totals.statuses == v2_stub.by_status
    assert result.failures == result.totals.failures_5xx == v2_stub.by_status[500]
    assert result.totals.failures_other == 0
    assert sum(ev.rows for ev in result.events) == v2_stub.rows
    # Windows add up to the totals, window by window.
    # How many windows Locust fills depends on how soon its users start on a busy machine (one CI run
    # got 2 of 5 s): the windows are checked for adding up, not counted.
    assert result.windows
    assert sum(w.requests for w in result.windows) == result.requests
    assert sum(w.failures_5xx for w in result.windows) == result.totals.failures_5xx
    assert [w.start_s for w in result.windows] == [float(i) for i in range(len(result.windows))]
    full = [w for w in result.windows[:-1] if w.requests]
    assert all(w.p50_ms is not None and w.p50_ms <= w.p95_ms <= w.p99_ms for w in full)
    # Paced: 80 req/s requested, never more (a busy machine may give less, which is not a pacing bug).
    assert result.requests / len(result.windows) <= 100, (result.requests, len(result.windows))
    assert result.by_model_version.keys() == {"v7"} and result.by_served_by.keys() == {"stub-r0"}
    # Locust's own CSV lags the event log (never more than it).
    assert result.locust_csv is not None and result.locust_csv["requests"] <= result.requests
    assert any("HTTP 500" in error for error in result.locust_csv["failures_by_error"])
    assert (tmp_path / "load" / "load-summary.json").is_file()
    _assert_locust_not_here()


def test_start_load_snapshot_then_stop(v2_stub: _V2Stub, rows_parquet: Path, tmp_path: Path) -> None:
    started = time.monotonic()
    with start_load(v2_stub.url, "x", rows_parquet, users=2, spawn_rate=2, duration_s=60, target_rps=40,
                    out_dir=tmp_path / "load") as handle:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and handle.snapshot().requests < 20:
            time.sleep(0.3)
        snap = handle.snapshot()
        assert snap.requests >= 20 and snap.returncode is None and not snap.finished
        assert handle.running()
        result = handle.stop()
    assert time.monotonic() - started < 30  # stopped long before its 60 s
    assert not handle.running() and result.finished
    assert result.requests == v2_stub.count >= snap.requests
    assert result.totals.statuses == v2_stub.by_status
    _assert_locust_not_here()


def test_locust_failure_is_reported_with_its_log(tmp_path: Path) -> None:
    with pytest.raises(LoadFailed, match="exited with status") as info:
        run_load("http://127.0.0.1:9", "x", tmp_path / "missing.parquet", users=1, spawn_rate=1, duration_s=1,
                 target_rps=None, out_dir=tmp_path / "load")
    assert "missing.parquet" in str(info.value)


def test_windows_from_events_without_locust(tmp_path: Path) -> None:
    t0 = 1000.0
    events = [RequestEvent(t=t0 + 0.1, end=t0 + 0.2, status=200, ms=10, ok=True),
              RequestEvent(t=t0 + 0.5, end=t0 + 0.6, status=503, ms=30, ok=False),
              RequestEvent(t=t0 + 2.5, end=t0 + 2.6, status=0, ms=5, ok=False, error="refused"),
              RequestEvent(t=t0 + 2.7, end=t0 + 2.8, status=404, ms=20, ok=False)]
    windows = windows_of(events, t0, 1.0, until_s=3.5)
    assert [w.requests for w in windows] == [2, 0, 2, 0]  # the empty windows are kept
    assert (windows[0].failures_5xx, windows[2].failures_other, windows[2].failures_5xx) == (1, 2, 0)
    assert windows[1].p99_ms is None and windows[0].p50_ms == 10 and windows[0].p99_ms == 30
    total = summarize(events, 0, 4)
    assert (total.requests, total.failures, total.statuses) == (4, 3, {200: 1, 503: 1, 0: 1, 404: 1})
    log = tmp_path / "events.jsonl"
    log.write_text(json.dumps({"event": "start", "t": t0}) + "\n"
                   + "".join(json.dumps(ev.__dict__) + "\n" for ev in events) + '{"t": 12')  # a torn last line
    start, read, stop = read_events(log)
    assert start == {"event": "start", "t": t0} and read == events and stop is None


def test_locust_is_not_imported_in_the_pytest_process() -> None:
    _assert_locust_not_here()
