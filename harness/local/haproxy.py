"""The local router: HAProxy (Debian's package) standing where Knative's ingress and activator
stand on a cluster. One backend per InferenceService, one server per ready replica of each
revision; the revision's traffic percent becomes its replicas' weights. Weights and servers
change at runtime through the admin socket (no dropped connections). Paths reach backends through
a map file that the admin socket edits too, so removing an InferenceService (or recreating one
under a name the running process still knows) never reloads; only a backend HAProxy has never
seen re-renders the configuration from the recorded state and reloads the master-worker process
(SIGUSR2). A reload closes the old worker's idle keep-alive connections, which a client may have
just written a request on: under the concurrent chaos scenarios one service's deletion must not
fail another's requests.

Tagged routes (Knative's `<tag>-<route>.<namespace>.<domain>` hosts): a service may have a backend
per tag beside its own, created with it (one reload), holding only the tagged revision's replicas;
a second map file sends a request whose Host header names a tag's host to that backend before any
path is looked at, and the admin socket edits it like the paths' map.
"""
from __future__ import annotations

import os
import re
import signal
import socket
import threading
from dataclasses import dataclass, field
from pathlib import Path

from harness.binaries import MissingBinary, find_binary
from harness.ports import LOOPBACK
from harness.procs import ComponentFailed, ManagedProcess, ProcessRegistry, run_command

__all__ = ["SERVED_BY_HEADER", "HAProxyRouter", "MissingBinary", "find_haproxy", "revision_of", "start_router",
           "tag_backend_name", "weight_for"]

#: Response header naming the replica (<revision>-r<i>) that answered.
SERVED_BY_HEADER = "x-seamcheck-served-by"
#: HAProxy weights run 0..256; a revision at 100% with one replica gets 250.
_WEIGHT_SCALE = 2.5
_NAME_OK = re.compile(r"[^A-Za-z0-9_.:-]")


def find_haproxy() -> str:
    return find_binary("haproxy")


def weight_for(percent: float, replicas: int) -> int:
    """Per-replica weight so that a revision's replicas together get `percent` of the traffic."""
    if replicas <= 0 or percent <= 0:
        return 0
    return max(1, min(256, round(percent * _WEIGHT_SCALE / replicas)))


def revision_of(served_by: str) -> str:
    """The revision name from a served-by header value (`<revision>-r<i>`)."""
    return served_by.rsplit("-r", 1)[0]


def revision_of_server(server: str) -> str:
    """The revision a router server belongs to: a replica (`<revision>-r<i>`) or the revision's
    activator (`<revision>-activator`)."""
    return server[: -len("-activator")] if server.endswith("-activator") else revision_of(server)


def backend_name(namespace: str, isvc: str) -> str:
    return _NAME_OK.sub("_", f"isvc.{namespace}.{isvc}")


def tag_backend_name(namespace: str, isvc: str, tag: str) -> str:
    """A service's backend for one tag (service names are DNS-1035 labels, without dots, so this
    never names another service's backend)."""
    return f"{backend_name(namespace, isvc)}.{_NAME_OK.sub('_', tag)}"


def route_prefix(model: str) -> str:
    """The path prefix (the V2 protocol's) that routes to a service's backend."""
    return f"/v2/models/{model}/"


@dataclass
class _Server:
    address: str
    port: int
    weight: int


@dataclass
class HAProxyRouter:
    process: ManagedProcess
    url: str
    metrics_url: str
    admin_socket: Path
    config_path: Path
    state: Path
    ready_seconds: float
    # backend -> (path prefix model name, or None for a tag's backend (routed by host only), server
    # name -> server). The source of truth for reloads.
    _backends: dict[str, tuple[str | None, dict[str, _Server]]] = field(default_factory=dict)
    _tag_backends: dict[str, tuple[str, ...]] = field(default_factory=dict)  # service backend -> its tags' backends
    _hosts: dict[str, str] = field(default_factory=dict)  # Host header (lower case, no port) -> backend
    _lock: threading.RLock = field(default_factory=threading.RLock)
    _bind: str = ""
    _metrics_bind: str = ""
    # Backends the running process has (a removed service's stays, empty and unrouted, until the
    # next reload).
    _loaded: set[str] = field(default_factory=set)

    @property
    def routes_map(self) -> Path:
        return self.state / "routes.map"

    @property
    def hosts_map(self) -> Path:
        return self.state / "hosts.map"

    # --- runtime API -------------------------------------------------------------------------
    def command(self, cmd: str, timeout: float = 5.0) -> str:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout)
            sock.connect(str(self.admin_socket))
            sock.sendall(cmd.encode() + b"\n")
            chunks = []
            while True:
                data = sock.recv(65536)
                if not data:
                    break
                chunks.append(data)
        return b"".join(chunks).decode(errors="replace").strip()

    def ensure_backend(self, namespace: str, isvc: str, *, tags: tuple[str, ...] = ()) -> str:
        """The service's backend, routed by its path, and an unrouted backend per tag in ``tags``
        (`route_host` routes a tag's host to it): all created at once, so a new service costs one
        reload at most."""
        name = backend_name(namespace, isvc)
        tagged = tuple(tag_backend_name(namespace, isvc, tag) for tag in tags)
        with self._lock:
            missing = [b for b in tagged if b not in self._backends]
            if name in self._backends and not missing:
                return name
            for backend in missing:
                self._backends[backend] = (None, {})
            self._tag_backends[name] = tuple(dict.fromkeys(self._tag_backends.get(name, ()) + tagged))
            new = name not in self._backends
            self._backends.setdefault(name, (isvc, {}))
            if all(b in self._loaded for b in (name, *tagged)):  # known to the process: route again, no reload
                self._write_routes()
                if new:
                    self._expect_ok(self.command(f"add map {self.routes_map} {route_prefix(isvc)} {name}"))
            else:
                self._reload()
        return name

    def route_host(self, host: str, backend: str | None, *, previous_backend: str | None = None) -> None:
        """Send requests whose Host header is ``host`` to ``backend`` (a tag's), or stop (None): its
        requests then go by path again. ``previous_backend``: unroute ``host`` only while it still
        names that backend."""
        host = host.lower()
        with self._lock:
            current = self._hosts.get(host)
            if backend is None:
                if current is None or (previous_backend is not None and current != previous_backend):
                    return
                del self._hosts[host]
                self._write_hosts()
                self._expect_ok(self.command(f"del map {self.hosts_map} {host}"))
                return
            if backend not in self._backends:
                raise ComponentFailed(f"route_host: host={host} backend={backend} is not a backend of the router; "
                                      "create it with ensure_backend(..., tags=...) first")
            if current == backend:
                return
            self._hosts[host] = backend
            self._write_hosts()
            verb = "set" if current is not None else "add"
            self._expect_ok(self.command(f"{verb} map {self.hosts_map} {host} {backend}"))

    def remove_backend(self, namespace: str, isvc: str) -> None:
        """Unroute the service (its path and its tags' hosts answer 404 again) and drain its
        servers, without a reload."""
        name = backend_name(namespace, isvc)
        with self._lock:
            entry = self._backends.pop(name, None)
            if entry is None:
                return
            model, servers = entry
            tagged = self._tag_backends.pop(name, ())
            for host in [h for h, b in self._hosts.items() if b in tagged]:
                self.route_host(host, None)
            self._write_routes()
            self._expect_ok(self.command(f"del map {self.routes_map} {route_prefix(model)}"))
            for server in servers:
                self._del_server(name, server)
            for backend in tagged:
                _none, tag_servers = self._backends.pop(backend, (None, {}))
                for server in tag_servers:
                    self._del_server(backend, server)

    def set_servers(self, backend: str, wanted: dict[str, tuple[str, int, int]]) -> None:
        """Make the backend's servers exactly `wanted` (name -> (address, port, weight))."""
        with self._lock:
            _model, servers = self._backends[backend]
            for name in [n for n in servers if n not in wanted]:
                self._del_server(backend, name)
                servers.pop(name)
            for name, (addr, port, weight) in wanted.items():
                current = servers.get(name)
                if current is None:
                    self._add_server(backend, name, addr, port, weight)
                    servers[name] = _Server(addr, port, weight)
                elif current.weight != weight:
                    self._expect_ok(self.command(f"set server {backend}/{name} weight {weight}"))
                    current.weight = weight

    def server_stats(self, backend: str) -> dict[str, dict[str, str]]:
        """HAProxy's own view of a backend's servers (`show stat`): status (UP/DOWN/MAINT...),
        weight, chkdown (UP->DOWN transitions), lastchg (s since the last), stot (sessions: one
        per request sent to the server), hrsp_2xx / hrsp_5xx (its answers by class)."""
        wanted = ("status", "weight", "chkdown", "lastchg", "stot", "check_status", "hrsp_2xx", "hrsp_5xx")
        rows = self.command("show stat").lstrip("# ").splitlines()
        if not rows:
            return {}
        header = rows[0].split(",")
        out: dict[str, dict[str, str]] = {}
        for line in rows[1:]:
            row = dict(zip(header, line.split(","), strict=False))
            if row.get("pxname") == backend and row.get("svname") not in ("BACKEND", "FRONTEND"):
                out[row["svname"]] = {k: row.get(k, "") for k in wanted}
        return out

    def routed_counts(self, namespace: str, isvc: str) -> dict[str, tuple[str, int, int]]:
        """Per server of the service's backend: (revision, requests sent to it, 2xx answers), as
        HAProxy counted them since the server was added: the router's own view, independent of
        Prometheus and of the model servers' metrics."""
        counts = {}
        for server, row in self.server_stats(backend_name(namespace, isvc)).items():
            counts[server] = (revision_of_server(server), int(row.get("stot") or 0), int(row.get("hrsp_2xx") or 0))
        return counts

    def server_weights(self, backend: str) -> dict[str, int]:
        with self._lock:
            return {n: s.weight for n, s in self._backends[backend][1].items()}

    def _add_server(self, backend: str, name: str, addr: str, port: int, weight: int) -> None:
        out = self.command(f"add server {backend}/{name} {addr}:{port} weight {weight} check")
        if "New server registered" not in out:
            raise ComponentFailed(f"haproxy refused to add server {backend}/{name}: {out}")
        self.command(f"enable health {backend}/{name}")
        self.command(f"enable server {backend}/{name}")

    def _del_server(self, backend: str, name: str) -> None:
        self.command(f"set server {backend}/{name} state maint")
        self.command(f"shutdown sessions server {backend}/{name}")
        out = self.command(f"del server {backend}/{name}")
        if "Server deleted" not in out:
            raise ComponentFailed(f"haproxy refused to delete server {backend}/{name}: {out}")

    @staticmethod
    def _expect_ok(out: str) -> None:
        if out:
            raise ComponentFailed(f"haproxy runtime API said: {out}")

    # --- configuration -----------------------------------------------------------------------
    def render(self) -> str:
        return render_config(self._bind, self._metrics_bind, self.admin_socket, self.routes_map,
                             {b: (m, {n: (s.address, s.port, s.weight) for n, s in srv.items()})
                              for b, (m, srv) in self._backends.items()}, hosts_map=self.hosts_map)

    def _write_routes(self) -> None:
        """The map file as the running process will hold it (what a reload starts from)."""
        write_routes(self.routes_map, {b: m for b, (m, _s) in self._backends.items() if m is not None})

    def _write_hosts(self) -> None:
        write_hosts(self.hosts_map, self._hosts)

    def _reload(self) -> None:
        self._write_routes()
        self._write_hosts()
        self.config_path.write_text(self.render())
        check = find_haproxy()
        result = run_command([check, "-c", "-f", str(self.config_path)], what="haproxy -c", timeout=30)
        if result.returncode != 0:
            raise ComponentFailed(f"rendered haproxy config is invalid:\n{result.stdout}{result.stderr}")
        before = self._worker_pid()
        os.kill(self.process.pid, signal.SIGUSR2)  # master-worker: start new worker, drain the old
        # Runtime commands must reach the new worker: the old one may still answer on the shared
        # admin socket for a moment, and a server added there would vanish with it.
        self.process.wait_until(lambda: self._worker_pid() not in ("", before),
                                what="a new haproxy worker on the admin socket after reload", deadline_s=15)
        self._loaded = set(self._backends)

    def _answers(self) -> bool:
        return self._worker_pid() != ""

    def _worker_pid(self) -> str:
        """The pid of the worker answering the admin socket ("" when none answers)."""
        try:
            info = self.command("show info")
        except OSError:
            return ""
        for line in info.splitlines():
            if line.startswith("Pid:"):
                return line.split(":", 1)[1].strip()
        return ""


def write_routes(path: Path, models: dict[str, str]) -> None:
    """backend -> model name, as HAProxy's map file: `<path prefix> <backend>` per line."""
    path.write_text("".join(f"{route_prefix(m)} {b}\n" for b, m in sorted(models.items())))


def write_hosts(path: Path, hosts: dict[str, str]) -> None:
    """host -> backend, as HAProxy's map file: `<host> <backend>` per line."""
    path.write_text("".join(f"{h} {b}\n" for h, b in sorted(hosts.items())))


def render_config(bind: str, metrics_bind: str, admin_socket: Path, routes_map: Path,
                  backends: dict[str, tuple[str | None, dict[str, tuple[str, int, int]]]], *,
                  hosts_map: Path | None = None) -> str:
    lines = [
        "global",
        f"  stats socket {admin_socket} mode 600 level admin expose-fd listeners",
        # After a reload the old worker finishes what it holds: longer than the activator holds a
        # request for a cold start (60 s) and than the server timeout, or a new service's reload
        # would cut another service's held requests ("connection closed" after 10 s, seen).
        "  hard-stop-after 2m",
        "defaults",
        "  mode http",
        "  timeout connect 2s",
        "  timeout client 60s",
        "  timeout server 60s",
        # Knative's activator retries a request whose connection failed; do the same, and only
        # that: a 5xx from a model server must reach the client (and the canary judge).
        "  retries 2",
        "  option redispatch 1",
        "  retry-on conn-failure empty-response",
        # Knative's readiness probing: a replica leaves after 3 failed checks (Kubernetes'
        # failureThreshold default), each allowed 2 s, so a model server busy on a loaded machine
        # is not taken out (and its share given to the others) for one slow answer.
        "  timeout check 2s",
        "  default-server inter 1s fall 3 rise 1",
        "frontend inference",
        f"  bind {bind}",
        "  option http-buffer-request",
        # Which replica answered (server names are <revision>-r<i>): lets load tests measure the
        # split per revision from responses. Harness instrumentation; Knative adds no such header.
        # The emulation's activator names the replica it forwarded to itself: keep that.
        f"  http-response set-header {SERVED_BY_HEADER} %s unless {{ res.hdr({SERVED_BY_HEADER}) -m found }}",
    ]
    if hosts_map is not None:
        # A tagged route's host (Knative's <tag>-<route>.<namespace>.<domain>) names its backend
        # before the path does; the Host header's port and case do not matter, as for Knative.
        host = f"req.hdr(host),field(1,:),lower,map({hosts_map})"
        lines.append(f"  use_backend %[{host}] if {{ {host} -m found }}")
    lines += [
        # The prefix the path begins with names the backend; none (a removed service too) -> 404.
        f"  use_backend %[path,map_beg({routes_map},no_route)]",
        "  default_backend no_route",
        "frontend metrics",
        f"  bind {metrics_bind}",
        "  http-request use-service prometheus-exporter if { path /metrics }",
        "  http-request return status 404",
        "backend no_route",
        ('  http-request return status 404 content-type application/json '
        'string "{\\"error\\":\\"no InferenceService routes this path\\"}"'),
    ]
    for backend, (_model, servers) in sorted(backends.items()):
        lines += [f"backend {backend}", "  balance roundrobin", "  option httpchk GET /v2/health/ready"]
        for name, (addr, port, weight) in sorted(servers.items()):
            lines.append(f"  server {name} {addr}:{port} weight {weight} check")
    return "\n".join(lines) + "\n"


def start_router(registry: ProcessRegistry, state: Path, port: int, metrics_port: int,
                 deadline_s: float = 30.0) -> HAProxyRouter:
    binary = find_haproxy()
    home = state / "haproxy"
    home.mkdir(parents=True, exist_ok=True)
    admin = home / "admin.sock"
    config = home / "haproxy.cfg"
    bind, metrics_bind = f"{LOOPBACK}:{port}", f"{LOOPBACK}:{metrics_port}"
    routes = home / "routes.map"
    write_routes(routes, {})
    write_hosts(home / "hosts.map", {})
    config.write_text(render_config(bind, metrics_bind, admin, routes, {}, hosts_map=home / "hosts.map"))
    # -W: master-worker, so SIGUSR2 reloads without dropping the listening sockets; -db: foreground.
    proc = registry.start(ManagedProcess("haproxy", [binary, "-W", "-db", "-f", str(config)],
                                         state / "logs" / "haproxy.log"))
    router = HAProxyRouter(proc, f"http://{bind}", f"http://{metrics_bind}/metrics", admin, config, home,
                           0.0, _bind=bind, _metrics_bind=metrics_bind)
    router.ready_seconds = proc.wait_until(router._answers, what=f"haproxy admin socket {admin}",
                                           deadline_s=deadline_s)
    return router
