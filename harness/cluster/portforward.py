"""`kubectl port-forward` to a cluster's services, supervised: a forward dies when its pod goes
away (a chaos fault, a rollout), so a watcher restarts it on the same local port.

Used by the cloud profile (its services have no NodePorts on this machine's loopback); the kind
profile publishes NodePorts through kind's extraPortMappings instead.
"""
from __future__ import annotations

import socket
import threading
from dataclasses import dataclass, field
from pathlib import Path

from harness.cluster.commands import Kubectl
from harness.ports import LOOPBACK, free_port
from harness.procs import ComponentFailed, ManagedProcess, ProcessRegistry

__all__ = ["PortForward", "PortForwards"]


def _accepts(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(1.0)
        return sock.connect_ex((LOOPBACK, port)) == 0


@dataclass
class PortForward:
    kubectl: Kubectl
    namespace: str
    target: str  # e.g. svc/mlflow
    remote_port: int
    log_dir: Path
    local_port: int = 0
    process: ManagedProcess | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.local_port}"

    def start(self, registry: ProcessRegistry, *, deadline_s: float = 30.0) -> PortForward:
        self.local_port = self.local_port or free_port()
        argv = self.kubectl.port_forward_argv(self.namespace, self.target, self.local_port, self.remote_port)
        name = f"port-forward {self.namespace}/{self.target}:{self.remote_port}"
        log = self.log_dir / f"port-forward-{self.namespace}-{self.target.replace('/', '-')}.log"
        self.process = registry.start(ManagedProcess(name, argv, log))
        self.process.wait_until(lambda: _accepts(self.local_port), what=f"{name} listening on {self.url}",
                                deadline_s=deadline_s, interval_s=0.3)
        return self

    def alive(self) -> bool:
        return self.process is not None and self.process.alive()


class PortForwards:
    """Several forwards and the watcher that restarts dead ones."""

    def __init__(self, kubectl: Kubectl, registry: ProcessRegistry, log_dir: Path, *, interval_s: float = 2.0) -> None:
        self.kubectl, self.registry, self.log_dir, self.interval_s = kubectl, registry, log_dir, interval_s
        self.forwards: dict[str, PortForward] = {}
        self.restarts: dict[str, int] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def add(self, key: str, namespace: str, target: str, remote_port: int) -> PortForward:
        forward = PortForward(self.kubectl, namespace, target, remote_port, self.log_dir).start(self.registry)
        self.forwards[key] = forward
        if self._thread is None:
            self._thread = threading.Thread(target=self._watch, name="seamcheck-port-forwards", daemon=True)
            self._thread.start()
        return forward

    def _watch(self) -> None:
        while not self._stop.wait(self.interval_s):
            for key, forward in list(self.forwards.items()):
                if self._stop.is_set() or forward.alive():
                    continue
                if forward.process is not None:
                    self.registry.forget(forward.process)
                try:
                    forward.start(self.registry)
                    self.restarts[key] = self.restarts.get(key, 0) + 1
                except ComponentFailed:
                    continue  # the service has no ready pod yet (a fault in progress): try again later

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        for forward in self.forwards.values():
            if forward.process is not None:
                forward.process.stop()
                self.registry.forget(forward.process)
        self.forwards.clear()
