"""The local router (real HAProxy): routes by path prefix, splits by weight, and unroutes a
removed service without a reload, so its deletion cannot drop another service's keep-alive
connections (the concurrent chaos scenarios delete services under each other's load)."""
from __future__ import annotations

import contextlib
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from harness.binaries import MissingBinary
from harness.local.haproxy import (
    SERVED_BY_HEADER,
    HAProxyRouter,
    find_haproxy,
    start_router,
    tag_backend_name,
)
from harness.ports import LOOPBACK, free_port
from harness.procs import ProcessRegistry


class _Ready(BaseHTTPRequestHandler):
    def log_message(self, *_args: object) -> None:
        pass

    def do_GET(self) -> None:  # the router's health check and the test's requests
        body = self.server.server_address[1].to_bytes(4, "big").hex().encode()
        with contextlib.suppress(ConnectionResetError, BrokenPipeError):  # health checks hang up early
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)


@pytest.fixture
def upstreams() -> Iterator[list[int]]:
    servers = [ThreadingHTTPServer((LOOPBACK, 0), _Ready) for _ in range(2)]
    threads = [threading.Thread(target=s.serve_forever, daemon=True) for s in servers]
    for thread in threads:
        thread.start()
    yield [s.server_address[1] for s in servers]
    for server in servers:
        server.shutdown()
        server.server_close()


@pytest.fixture
def router(tmp_path: Path) -> Iterator[HAProxyRouter]:
    try:
        find_haproxy()
    except MissingBinary as exc:
        pytest.skip(str(exc))
    registry = ProcessRegistry()
    try:
        yield start_router(registry, tmp_path, free_port(), free_port())
    finally:
        registry.stop_all()


def _get(router: HAProxyRouter, model: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"{router.url}/v2/models/{model}/ready", timeout=5) as resp:
            return resp.status, resp.headers.get(SERVED_BY_HEADER, "")
    except urllib.error.HTTPError as exc:
        return exc.code, ""


def _worker_pid(router: HAProxyRouter) -> str:
    return router._worker_pid()


def _wait_up(router: HAProxyRouter, model: str) -> None:
    until = time.monotonic() + 10
    while _get(router, model)[0] != 200:  # the first health check marks the server up
        assert time.monotonic() < until, f"{model} never answered 200 through the router"
        time.sleep(0.1)


def test_routes_split_and_unroute_without_reload(router: HAProxyRouter, upstreams: list[int]) -> None:
    a = router.ensure_backend("ns", "svc-a")
    b = router.ensure_backend("ns", "svc-b")
    router.set_servers(a, {"svc-a-00001-r0": (LOOPBACK, upstreams[0], 250)})
    router.set_servers(b, {"svc-b-00001-r0": (LOOPBACK, upstreams[1], 125),
                           "svc-b-00002-r0": (LOOPBACK, upstreams[0], 125)})
    _wait_up(router, "svc-a")
    _wait_up(router, "svc-b")
    assert _get(router, "svc-a") == (200, "svc-a-00001-r0")
    assert {_get(router, "svc-b")[1] for _ in range(8)} == {"svc-b-00001-r0", "svc-b-00002-r0"}
    assert _get(router, "nobody")[0] == 404

    worker = _worker_pid(router)
    router.remove_backend("ns", "svc-a")
    assert _get(router, "svc-a")[0] == 404, "a removed service must answer 404, as its deleted route does"
    assert _get(router, "svc-b")[0] == 200
    router.ensure_backend("ns", "svc-a")  # recreated under the same name: routed again, still no reload
    router.set_servers(a, {"svc-a-00001-r0": (LOOPBACK, upstreams[1], 250)})
    _wait_up(router, "svc-a")
    assert _get(router, "svc-a") == (200, "svc-a-00001-r0")
    assert _worker_pid(router) == worker, "removing or re-adding a known service reloaded HAProxy"

    router.ensure_backend("ns", "svc-c")  # a backend the process has never seen: one reload
    assert _worker_pid(router) != worker
    assert _get(router, "svc-c")[0] == 503  # routed, no server yet
    assert _get(router, "svc-a")[0] == 200 and _get(router, "svc-b")[0] == 200
    assert sorted(router.routes_map.read_text().split()) == sorted(
        ["/v2/models/svc-a/", "isvc.ns.svc-a", "/v2/models/svc-b/", "isvc.ns.svc-b", "/v2/models/svc-c/", "isvc.ns.svc-c"])


def _get_host(router: HAProxyRouter, model: str, host: str) -> tuple[int, str]:
    request = urllib.request.Request(f"{router.url}/v2/models/{model}/ready", headers={"Host": host})
    try:
        with urllib.request.urlopen(request, timeout=5) as resp:
            return resp.status, resp.headers.get(SERVED_BY_HEADER, "")
    except urllib.error.HTTPError as exc:
        return exc.code, ""


def test_a_tags_host_reaches_its_revision_alone_and_unroutes_without_reload(router: HAProxyRouter,
                                                                             upstreams: list[int]) -> None:
    """Knative's tagged routes: the tag's host goes to the tagged revision only (whatever the split
    on the service's own route), case and port of the Host header aside; unrouting it, and
    removing the service, need no reload."""
    backend = router.ensure_backend("ns", "svc", tags=("latest", "prev"))
    worker = _worker_pid(router)
    router.set_servers(backend, {"svc-00001-r0": (LOOPBACK, upstreams[0], 250),
                                 "svc-00002-r0": (LOOPBACK, upstreams[1], 0)})  # the canary at 0 %
    router.set_servers(tag_backend_name("ns", "svc", "latest"), {"svc-00002-r0": (LOOPBACK, upstreams[1], 250)})
    router.set_servers(tag_backend_name("ns", "svc", "prev"), {"svc-00001-r0": (LOOPBACK, upstreams[0], 250)})
    latest, prev = "latest-svc-predictor.ns.example.com", "prev-svc-predictor.ns.example.com"
    router.route_host(latest, tag_backend_name("ns", "svc", "latest"))
    router.route_host(prev, tag_backend_name("ns", "svc", "prev"))
    _wait_up(router, "svc")
    until = time.monotonic() + 10
    while _get_host(router, "svc", latest)[0] != 200:
        assert time.monotonic() < until, "the latest tag's host never answered"
        time.sleep(0.1)
    assert {_get(router, "svc")[1] for _ in range(6)} == {"svc-00001-r0"}  # the service's route: 100 % stable
    assert {_get_host(router, "svc", latest)[1] for _ in range(6)} == {"svc-00002-r0"}
    assert {_get_host(router, "svc", "PREV-svc-predictor.ns.example.com:8080")[1] for _ in range(4)} == {
        "svc-00001-r0"}
    router.route_host(latest, None)  # the tag left the traffic: its host goes by path again
    assert _get_host(router, "svc", latest) == (200, "svc-00001-r0")
    assert router.hosts_map.read_text() == f"{prev} {tag_backend_name('ns', 'svc', 'prev')}\n"
    router.remove_backend("ns", "svc")
    assert _get_host(router, "svc", prev)[0] == 404 and router.hosts_map.read_text() == ""
    assert _worker_pid(router) == worker, "tag routes reloaded HAProxy"
