"""The emulated KServe control plane's API: the Kubernetes REST paths of
`serving.kserve.io/v1beta1` InferenceServices, so that clients - the seed's deploy component
through the official `kubernetes` client, and the harness - talk to the local profile exactly as
they would to a cluster's API server (create, get, list, merge/JSON patch, replace, delete;
Kubernetes `Status` errors with the same reasons and codes).
"""
from __future__ import annotations

import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import yaml

from harness.local.emulation import GROUP, PLURAL, VERSION, ApiError, KServeEmulation
from harness.ports import LOOPBACK

__all__ = ["EmulatedApiServer", "write_kubeconfig"]

_COLLECTION = re.compile(rf"^/apis/{re.escape(GROUP)}/{VERSION}/namespaces/([a-z0-9-]+)/{PLURAL}/?$")
_ITEM = re.compile(rf"^/apis/{re.escape(GROUP)}/{VERSION}/namespaces/([a-z0-9-]+)/{PLURAL}/([^/]+)/?$")


def _status(code: int, reason: str, message: str) -> dict:
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": message, "reason": reason, "code": code}


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    #: namespace/name of the InferenceService a request acted on (a create's from its body), like an
    #: audit log's objectRef: readers tell one service's writes from the others' without the body.
    object_ref = ""

    def log_message(self, fmt: str, *args: Any) -> None:  # into the api log, not stderr
        ref = f" object={self.object_ref}" if self.object_ref else ""
        self.server.log.write(f"{self.address_string()} {fmt % args}{ref}\n")
        self.server.log.flush()

    def _send(self, code: int, body: Any) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _body(self) -> Any:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        if not raw:
            return None
        try:
            return json.loads(raw)
        except json.JSONDecodeError:
            return yaml.safe_load(raw)

    def _dispatch(self, method: str) -> None:
        path = self.path.split("?", 1)[0]
        kserve = self.server.emulation
        self.object_ref = ""  # one handler serves a keep-alive connection's requests
        try:
            if (m := _COLLECTION.match(path)):
                ns = m.group(1)
                if method == "GET":
                    return self._send(200, {"apiVersion": f"{GROUP}/{VERSION}", "kind": "InferenceServiceList",
                                            "metadata": {}, "items": kserve.list(ns)})
                if method == "POST":
                    body = self._body() or {}
                    self.object_ref = f"{ns}/{(body.get('metadata') or {}).get('name', '')}"
                    return self._send(201, kserve.create(ns, body))
            elif (m := _ITEM.match(path)):
                ns, name = m.groups()
                self.object_ref = f"{ns}/{name}"
                if method == "GET":
                    return self._send(200, kserve.get(ns, name))
                if method == "PATCH":
                    ctype = self.headers.get("Content-Type", "application/merge-patch+json")
                    return self._send(200, kserve.patch(ns, name, self._body(), ctype))
                if method == "PUT":
                    return self._send(200, kserve.replace(ns, name, self._body() or {}))
                if method == "DELETE":
                    return self._send(200, kserve.delete(ns, name))
            elif path in ("/version", "/version/"):
                return self._send(200, {"major": "1", "minor": "30", "gitVersion": "v1.30.0-seamcheck-emulated"})
            else:
                return self._send(404, _status(404, "NotFound", f"the server could not find the requested "
                                                                 f"resource ({method} {path})"))
            return self._send(405, _status(405, "MethodNotAllowed", f"{method} is not supported on {path}"))
        except ApiError as exc:
            return self._send(exc.code, _status(exc.code, exc.reason, str(exc)))
        except Exception as exc:  # a bug in the emulation must still answer like an API server
            return self._send(500, _status(500, "InternalError", f"{type(exc).__name__}: {exc}"))

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_PATCH(self) -> None:
        self._dispatch("PATCH")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    emulation: KServeEmulation
    log: Any


class EmulatedApiServer:
    def __init__(self, emulation: KServeEmulation, port: int, log_path: Path) -> None:
        self._server = _Server((LOOPBACK, port), _Handler)
        self._server.emulation = emulation
        log_path.parent.mkdir(parents=True, exist_ok=True)
        self._server.log = open(log_path, "a")
        self.url = f"http://{LOOPBACK}:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, name="kserve-api", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)
        self._server.log.close()


def write_kubeconfig(path: Path, server_url: str, namespace: str) -> Path:
    """A kubeconfig for the emulated API, so `config.load_kube_config()` works unchanged."""
    cfg = {
        "apiVersion": "v1", "kind": "Config", "current-context": "seamcheck-local",
        "clusters": [{"name": "seamcheck-local", "cluster": {"server": server_url}}],
        "users": [{"name": "seamcheck", "user": {"token": "seamcheck-local"}}],
        "contexts": [{"name": "seamcheck-local",
                      "context": {"cluster": "seamcheck-local", "user": "seamcheck", "namespace": namespace}}],
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(cfg))
    return path
