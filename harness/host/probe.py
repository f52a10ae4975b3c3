"""Probes from inside the host cluster's network: from a node's namespace, or from a real Pod's (the
namespace of its sandbox, entered with nsenter: what a container of that Pod would send, from the
Pod's own address, so NetworkPolicy applies to it as to the Pod itself).

A probe is one TCP connect with a timeout, run by this machine's Python inside the namespace (the
Pods' images carry no shell or client); it prints one JSON line: whether it connected, the errno,
and how long it took, so a test can tell "refused at once" from "timed out".
"""
from __future__ import annotations

import json
import sys
from dataclasses import dataclass

from harness.procs import ComponentFailed, run_command

__all__ = ["Probe", "tcp_probe"]

_CONNECT = r"""
import errno, json, socket, sys, time
host, port, timeout = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
started = time.monotonic()
sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
sock.settimeout(timeout)
try:
    sock.connect((host, port))
    out = {"connected": True, "errno": 0, "error": ""}
except socket.timeout:
    out = {"connected": False, "errno": errno.ETIMEDOUT, "error": "timed out"}
except OSError as exc:
    out = {"connected": False, "errno": exc.errno or 0, "error": exc.strerror or str(exc)}
out["seconds"] = round(time.monotonic() - started, 3)
print(json.dumps(out))
"""


@dataclass(frozen=True)
class Probe:
    target: str
    connected: bool
    errno: int
    error: str
    seconds: float

    def describe(self) -> str:
        return f"{self.target}: " + ("connected" if self.connected else f"{self.error} (errno {self.errno})") + \
            f" in {self.seconds:.3f}s"


def tcp_probe(prefix: list[str], host: str, port: int, *, timeout_s: float = 3.0) -> Probe:
    """Connect to host:port from the namespace ``prefix`` enters (``nsenter --net=...  --``)."""
    out = run_command([*prefix, sys.executable, "-c", _CONNECT, host, str(port), str(timeout_s)],
                      what=f"tcp probe {host}:{port}", timeout=timeout_s + 20)
    try:
        data = json.loads(out.stdout.strip().splitlines()[-1])
    except (IndexError, ValueError):
        raise ComponentFailed(f"tcp probe {host}:{port} printed nothing it should: exit {out.returncode} "
                           f"{(out.stderr or out.stdout).strip()[-400:]}") from None
    return Probe(f"{host}:{port}", **data)
