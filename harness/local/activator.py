"""The emulation's stand-in for Knative's activator: while a routed revision cold-starts (scaled to
zero, traffic names it again), its share of the router's traffic goes here. Each request is held
until a replica of the revision is ready, then forwarded to it (method, path, headers, body) and
its answer relayed, naming the replica in the served-by header; a request still held when the
cold start is abandoned, or after HOLD_S, gets 503 with a JSON error naming the revision.

One small threaded HTTP listener per cold revision, on loopback. GET /v2/health/ready answers
200 so that the router's health check keeps the activator in rotation while it holds requests.
Every wait has a deadline; its threads are daemons; `close()` stops the listener.
"""
from __future__ import annotations

import http.client
import itertools
import json
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol

from harness.ports import LOOPBACK

__all__ = ["HOLD_S", "Activator"]

#: How long a request is held for a cold-starting revision (Knative's activator waits up to its
#: request timeout; the router's server timeout is 60 s too).
HOLD_S = 60.0
_POLL_S = 0.1
_HOP_BY_HOP = {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "te", "trailer", "upgrade",
               "content-length", "host"}


class _Backend(Protocol):
    name: str
    http_port: int


class Activator:
    """Holds and forwards requests for one cold-starting revision.

    ``ready_replicas`` returns the revision's ready replicas (objects with ``name`` and
    ``http_port``); ``abandoned`` returns why the cold start was given up, or "" while it goes on.
    """

    def __init__(self, revision: str, ready_replicas: Callable[[], list[Any]], abandoned: Callable[[], str],
                 *, served_by_header: str, hold_s: float = HOLD_S) -> None:
        self.revision = revision
        self._ready_replicas = ready_replicas
        self._abandoned = abandoned
        self._header = served_by_header
        self.hold_s = hold_s
        self._rr = itertools.count()
        self._lock = threading.Lock()
        self.in_flight = 0
        self.forwarded = 0
        self.refused = 0
        self._server = ThreadingHTTPServer((LOOPBACK, 0), self._handler_class())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.2},
                                        name=f"activator-{revision}", daemon=True)
        self._thread.start()

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def server_name(self) -> str:
        """The router's name for this server (a replica is ``<revision>-r<i>``)."""
        return f"{self.revision}-activator"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    # ------------------------------------------------------------------ request handling
    def _pick(self, deadline: float) -> tuple[_Backend | None, str]:
        """A ready replica, or None and why not, waiting at most until ``deadline``."""
        while True:
            ready = self._ready_replicas()
            if ready:
                return ready[next(self._rr) % len(ready)], ""
            reason = self._abandoned()
            if reason:
                return None, reason
            if time.monotonic() >= deadline:
                return None, f"no replica of the revision became ready within {self.hold_s:.0f}s"
            time.sleep(_POLL_S)

    def _forward(self, method: str, path: str, headers: dict[str, str], body: bytes
                 ) -> tuple[int, list[tuple[str, str]], bytes, str] | str:
        deadline = time.monotonic() + self.hold_s
        last_error = ""
        while True:
            replica, why = self._pick(deadline)
            if replica is None:
                return f"{why}{'; last forward error: ' + last_error if last_error else ''}"
            conn = http.client.HTTPConnection(LOOPBACK, replica.http_port,
                                              timeout=max(1.0, deadline - time.monotonic()))
            try:
                conn.request(method, path, body=body or None, headers=headers)
                response = conn.getresponse()
                data = response.read()
                return response.status, response.getheaders(), data, replica.name
            except OSError as exc:  # the replica went away between its probe and our connect
                last_error = f"{replica.name}: {type(exc).__name__}: {exc}"
                if time.monotonic() >= deadline:
                    return last_error
                time.sleep(_POLL_S)
            finally:
                conn.close()

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        activator = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.0"  # one request per connection: nothing idles on a closed listener

            def log_message(self, *_args: Any) -> None:
                pass

            def _handle(self) -> None:
                if self.command == "GET" and self.path == "/v2/health/ready":
                    self._reply(200, [("Content-Type", "application/json")], b"{}", "")
                    return
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP}
                with activator._lock:
                    activator.in_flight += 1
                try:
                    outcome = activator._forward(self.command, self.path, headers, body)
                finally:
                    with activator._lock:
                        activator.in_flight -= 1
                if isinstance(outcome, str):
                    with activator._lock:
                        activator.refused += 1
                    error = {"error": f'revision "{activator.revision}" has no ready pods: {outcome}',
                             "revision": activator.revision}
                    self._reply(503, [("Content-Type", "application/json")], json.dumps(error).encode(), "")
                    return
                status, response_headers, data, served_by = outcome
                with activator._lock:
                    activator.forwarded += 1
                kept = [(k, v) for k, v in response_headers
                        if k.lower() not in _HOP_BY_HOP and k.lower() not in ("date", "server", activator._header)]
                self._reply(status, kept, data, served_by)

            def _reply(self, status: int, headers: list[tuple[str, str]], data: bytes, served_by: str) -> None:
                self.send_response(status)
                for key, value in headers:
                    self.send_header(key, value)
                if served_by:
                    self.send_header(activator._header, served_by)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PUT = do_DELETE = _handle

        return Handler
