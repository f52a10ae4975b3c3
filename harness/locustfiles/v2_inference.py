"""Locust load: Open Inference Protocol (V2) requests built from real dataset rows.

Run on its own:

    SEAMCHECK_ROWS=rows.parquet SEAMCHECK_MODEL=recommendation-classifier \\
        locust -f harness/locustfiles/v2_inference.py --host http://127.0.0.1:PORT --headless -u 10 -r 10 -t 20s

or through harness/load.py (run_load / start_load), which is how the harness uses it: always in a
subprocess, never imported into the pytest process (importing locust monkey-patches the process
with gevent, which breaks ssl/requests/mlflow already imported there).

Each task POSTs /v2/models/$SEAMCHECK_MODEL/infer with 1-4 random rows of the parquet, one named
input per column and `"parameters": {"content_type": "pd"}` (as harness.serving.v2.v2_request
builds them). Any status other than 200 is a failure named "HTTP <code>" (0: no HTTP answer).

Environment variables:
  SEAMCHECK_ROWS            parquet file with the rows to send (required)
  SEAMCHECK_MODEL           model name in the URL (required)
  SEAMCHECK_EVENTS          JSONL file: one line per request (below); unset = no event log
  SEAMCHECK_TARGET_RPS      total target request rate; each user runs at TARGET_RPS / users
                            (locust's constant_throughput); unset or 0 = no waiting (closed loop)
  SEAMCHECK_BATCH_MIN/MAX   rows per request, drawn uniformly (default 1 and 4)
  SEAMCHECK_DROP_COLUMNS    comma-separated columns not sent (default "label")
  SEAMCHECK_HEADERS         JSON object of extra request headers (e.g. a Host header)
  SEAMCHECK_RECORD_HEADER   response header recorded per request (default x-seamcheck-served-by,
                            the replica name the harness's router adds)
  SEAMCHECK_TIMEOUT_S       per-request connect and network timeout (default 30)

Event log lines (times are epoch seconds, so they line up with the harness's own clock):
  {"event": "start", "t": ..., "pid": ..., "users": ..., "target_rps": ...}     once, at test start
  {"t": start, "end": end, "status": 200, "ms": 12.3, "ok": true, "rows": 2,
   "model_version": "v1", "served_by": "rev-00001-r0", "error": null}              per request
  {"event": "stop", "t": ...}                                                      once, at test stop
"""
from __future__ import annotations

import json
import os
import random
import re
import time

from locust import FastHttpUser, events, task
from locust.user.wait_time import constant_throughput

_DATATYPES = {"float64": "FP64", "float32": "FP32", "int64": "INT64", "int32": "INT32", "bool": "BOOL",
              "object": "BYTES"}
_VERSION_RE = re.compile(r'"model_version"\s*:\s*(null|"((?:[^"\\]|\\.)*)")')


def _env(name: str, default: str | None = None) -> str | None:
    value = os.environ.get(name)
    return value if value not in (None, "") else default


def _load_rows() -> tuple[list[str], list[str], list[list]]:
    """Columns, their V2 datatypes and the values as plain Python lists (one per column)."""
    import pandas as pd

    path = _env("SEAMCHECK_ROWS")
    if not path:
        raise SystemExit("SEAMCHECK_ROWS is not set: point it at a parquet file of rows to send")
    frame = pd.read_parquet(path)
    drop = [c for c in (_env("SEAMCHECK_DROP_COLUMNS", "label") or "").split(",") if c and c in frame.columns]
    frame = frame.drop(columns=drop)
    if frame.empty or not len(frame.columns):
        raise SystemExit(f"SEAMCHECK_ROWS={path}: no rows or no columns to send")
    columns = [str(c) for c in frame.columns]
    datatypes = [_DATATYPES.get(str(frame[c].dtype), "FP64") for c in frame.columns]
    values = [frame[c].tolist() for c in frame.columns]
    return columns, datatypes, values


MODEL = _env("SEAMCHECK_MODEL")
if not MODEL:
    raise SystemExit("SEAMCHECK_MODEL is not set: the model name of /v2/models/<name>/infer")
COLUMNS, DATATYPES, VALUES = _load_rows()
N_ROWS = len(VALUES[0])
BATCH_MIN = max(1, int(_env("SEAMCHECK_BATCH_MIN", "1")))
BATCH_MAX = max(BATCH_MIN, int(_env("SEAMCHECK_BATCH_MAX", "4")))
HEADERS = json.loads(_env("SEAMCHECK_HEADERS", "{}"))
RECORD_HEADER = (_env("SEAMCHECK_RECORD_HEADER", "x-seamcheck-served-by") or "").lower()
TARGET_RPS = float(_env("SEAMCHECK_TARGET_RPS", "0"))
TIMEOUT_S = float(_env("SEAMCHECK_TIMEOUT_S", "30"))
PATH = f"/v2/models/{MODEL}/infer"

_random = random.Random()  # seeded from OS entropy: every run draws other rows
_events_file = None


def _body(k: int) -> dict:
    idx = [_random.randrange(N_ROWS) for _ in range(k)]
    return {
        "inputs": [{"name": col, "shape": [k], "datatype": dt, "data": [vals[i] for i in idx]}
                   for col, dt, vals in zip(COLUMNS, DATATYPES, VALUES)],
        "parameters": {"content_type": "pd"},
    }


def _write(record: dict) -> None:
    if _events_file is not None:
        _events_file.write(json.dumps(record, separators=(",", ":")) + "\n")


@events.test_start.add_listener
def _on_test_start(environment, **_kw):
    global _events_file
    path = _env("SEAMCHECK_EVENTS")
    if path and _events_file is None:
        # Line-buffered: the harness may read the log while the load still runs.
        _events_file = open(path, "a", buffering=1)  # noqa: SIM115 - open for the whole run
    opts = environment.parsed_options
    _write({"event": "start", "t": time.time(), "pid": os.getpid(), "model": MODEL, "rows": N_ROWS,
            "users": getattr(opts, "num_users", None), "target_rps": TARGET_RPS or None,
            "host": environment.host})


@events.test_stop.add_listener
def _on_test_stop(environment, **_kw):
    _write({"event": "stop", "t": time.time()})
    if _events_file is not None:
        _events_file.flush()


@events.quitting.add_listener
def _on_quitting(environment, **_kw):
    # Only flush: on SIGTERM locust fires `quitting` BEFORE it stops the users, so requests still
    # in flight (and the stop record) are written after this. The file closes at process exit.
    if _events_file is not None:
        _events_file.flush()


@events.request.add_listener
def _on_request(request_type, name, response_time, response_length, response=None, context=None,
                exception=None, start_time=None, **_kw):
    status = getattr(response, "status_code", None) or 0
    version = served_by = None
    if response is not None and status:
        try:
            text = response.text or ""
        except Exception:  # noqa: BLE001 - a body that could not be read
            text = ""
        match = _VERSION_RE.search(text[:2000])
        if match and match.group(1) != "null":
            version = match.group(2)
        if RECORD_HEADER:
            try:
                served_by = response.headers.get(RECORD_HEADER)
            except Exception:  # noqa: BLE001
                served_by = None
    _write({"t": start_time, "end": time.time(), "status": int(status), "ms": round(float(response_time or 0), 3),
            "ok": exception is None, "rows": (context or {}).get("rows"), "model_version": version,
            "served_by": served_by, "error": None if exception is None else str(exception)[:300]})


class V2InferenceUser(FastHttpUser):
    connection_timeout = TIMEOUT_S
    network_timeout = TIMEOUT_S
    _pacer = None

    def on_start(self) -> None:
        if TARGET_RPS > 0:
            users = getattr(self.environment.parsed_options, "num_users", None) or \
                getattr(self.environment.runner, "target_user_count", None) or 1
            self._pacer = constant_throughput(TARGET_RPS / max(1, int(users)))

    def wait_time(self) -> float:
        return self._pacer(self) if self._pacer is not None else 0.0

    @task
    def infer(self) -> None:
        k = _random.randint(BATCH_MIN, BATCH_MAX)
        with self.client.post(PATH, json=_body(k), headers=HEADERS, name=PATH, catch_response=True,
                              context={"rows": k}) as resp:
            code = resp.status_code or 0
            if code == 200:
                resp.success()
            elif code == 0:  # no HTTP answer: refused, reset, timed out
                resp.failure(f"HTTP 0: {getattr(resp, 'error', None) or 'no response'}")
            else:
                resp.failure(f"HTTP {code}")
