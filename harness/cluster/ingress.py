"""Reaching InferenceServices behind Knative's gateway without DNS.

Knative routes by Host header (`<isvc>-predictor.<namespace>.<domain>`), while scenarios call
`<base_url>/v2/models/<name>/infer` with no headers of their own. This loopback proxy gives each
host a base URL, `http://127.0.0.1:<port>/_host/<host>`, and forwards `<path>` to the gateway
with `Host: <host>`, so the same scenario code works on every profile and no /etc/hosts entry or
wildcard DNS (sslip.io) is needed on CI runners or SRE laptops.
"""
from __future__ import annotations

import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import requests

from harness.ports import LOOPBACK

__all__ = ["PREFIX", "HostRoutingProxy"]

PREFIX = "/_host/"
_HOP_BY_HOP = {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailers",
               "transfer-encoding", "upgrade", "content-length", "content-encoding", "host"}


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt: str, *args: Any) -> None:
        return  # requests are counted by Prometheus, not logged here

    def _forward(self) -> None:
        if not self.path.startswith(PREFIX):
            self._reply(404, b"seamcheck ingress proxy: paths start with /_host/<host>/", {})
            return
        host, _, rest = self.path[len(PREFIX):].partition("/")
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else None
        headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP}
        headers["Host"] = host
        try:
            resp = self.server.session.request(self.command, f"{self.server.upstream()}/{rest}", data=body,
                                               headers=headers, timeout=self.server.timeout_s, allow_redirects=False)
        except requests.RequestException as exc:
            self._reply(502, f"seamcheck ingress proxy: gateway unreachable: {exc}".encode(), {})
            return
        self._reply(resp.status_code, resp.content,
                    {k: v for k, v in resp.headers.items() if k.lower() not in _HOP_BY_HOP})

    def _reply(self, code: int, data: bytes, headers: dict[str, str]) -> None:
        self.send_response(code)
        for key, value in headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = do_PATCH = _forward


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, upstream: Callable[[], str], timeout_s: float) -> None:
        super().__init__((LOOPBACK, 0), _Handler)
        self.upstream, self.timeout_s = upstream, timeout_s
        self.session = requests.Session()


class HostRoutingProxy:
    def __init__(self, upstream: Callable[[], str], *, timeout_s: float = 60.0) -> None:
        """`upstream()` returns the gateway's base URL now (a port-forward may move)."""
        self._server = _Server(upstream, timeout_s)
        self._thread = threading.Thread(target=self._server.serve_forever, name="seamcheck-ingress-proxy",
                                        daemon=True)
        self._thread.start()

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    def base_url(self, host: str) -> str:
        return f"http://{LOOPBACK}:{self.port}{PREFIX}{host}"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
