"""The host cluster's network namespace: the node's own network, reachable from the harness over one
veth link, with no route out.

Inside: ``lo``, ``eth0`` (the veth's node end, the advertise and node address), and ``svc0``, one end
of a veth pair whose other end stays down (this kernel has no dummy driver), holding the route to the
service CIDR (so a connect to a ClusterIP gets as far as
kube-proxy's DNAT instead of "network unreachable", and anything not DNATed is dropped there). The
pods' bridge comes later, from the CNI bridge plugin. There is no default route: a packet for any
other address has nowhere to go, and the host side forwards nothing (its ip_forward is untouched).
Every name is recorded in the run's ledger before it exists; deleting the namespace removes the
veth pair and the dummy with it.
"""
from __future__ import annotations

import ipaddress
import os
import secrets
import shutil
import subprocess
from dataclasses import dataclass

from harness.ledger import ledger
from harness.procs import ComponentFailed, run_command

__all__ = ["NodeNetns", "netns_unavailable"]

#: 10.214.0.0/16 carved into /30 links, one per cluster (the project's own test hosts only).
_POOL = ipaddress.ip_network("10.214.0.0/16")
_PREFIX = "schost-"


def _run(*argv: str, timeout: float = 30, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = run_command(argv, what=argv[0], timeout=timeout)
    if check and proc.returncode != 0:
        raise ComponentFailed(f"{' '.join(argv)}: exit {proc.returncode}: {(proc.stderr or proc.stdout).strip()}")
    return proc


def netns_unavailable() -> str | None:
    """None when a namespace with veth, dummy links and iptables can be made here; else why not."""
    if os.geteuid() != 0:
        return "the host cluster needs root (network namespaces, mounts, cgroups)"
    for tool, package in (("ip", "iproute2"), ("nsenter", "util-linux"), ("iptables", "iptables")):
        if not shutil.which(tool):
            return f"{tool} is not installed (apt-get install -y {package})"
    return None


@dataclass
class NodeNetns:
    service_cidr: str = "10.96.0.0/16"
    name: str = ""
    host_if: str = ""
    host_ip: str = ""
    node_ip: str = ""

    def open(self) -> NodeNetns:
        reason = netns_unavailable()
        if reason:
            raise ComponentFailed(reason)
        suffix = secrets.token_hex(3)
        taken = set(_run("ip", "netns", "list", check=False).stdout.split())
        self.name = f"{_PREFIX}{suffix}"
        if self.name in taken:
            raise ComponentFailed(f"network namespace {self.name} exists already: run again (a random name)")
        link = list(_POOL.subnets(new_prefix=30))[int(suffix, 16) % 16384]
        self.host_ip, self.node_ip = (str(h) for h in link.hosts())
        self.host_if = f"sch{suffix}"
        record = ledger.active()
        with record.creating("netns", key=self.name, name=self.name):
            _run("ip", "netns", "add", self.name)
        try:
            with record.creating("link", key=self.host_if, name=self.host_if):
                _run("ip", "link", "add", self.host_if, "type", "veth", "peer", "name", "eth0", "netns", self.name)
            _run("ip", "addr", "add", f"{self.host_ip}/30", "dev", self.host_if)
            _run("ip", "link", "set", self.host_if, "up")
            for argv in (("ip", "link", "set", "lo", "up"), ("ip", "addr", "add", f"{self.node_ip}/30", "dev", "eth0"),
                         ("ip", "link", "set", "eth0", "up"),
                         # no dummy driver in this kernel: a veth whose peer stays down drops alike
                         ("ip", "link", "add", "svc0", "type", "veth", "peer", "name", "svc1"),
                         ("ip", "link", "set", "svc0", "up"), ("ip", "route", "add", self.service_cidr, "dev", "svc0"),
                         # pods reach each other and Services through the node: it forwards among its own links
                         ("sysctl", "-q", "-w", "net.ipv4.ip_forward=1")):
                _run(*self.exec_argv(*argv))
            routes = _run(*self.exec_argv("ip", "route", "show", "default")).stdout.strip()
            if routes:
                raise ComponentFailed(f"namespace {self.name} has a default route ({routes}): refusing to go on")
        except Exception:
            self.close()
            raise
        return self

    def exec_argv(self, *argv: str) -> list[str]:
        """``argv`` inside the namespace's network only: the mount namespace stays the host's, so the
        kubelet's volume mounts and containerd's rootfs mounts see each other (``ip netns exec``
        would give each process a mount namespace of its own)."""
        return ["nsenter", f"--net=/run/netns/{self.name}", "--", *argv]

    def close(self) -> None:
        record = ledger.active()
        if self.name and _run("ip", "netns", "delete", self.name, check=False).returncode == 0:
            record.release_key("netns", self.name)
        if self.host_if:
            if _run("ip", "link", "show", self.host_if, check=False).returncode != 0:
                record.release_key("link", self.host_if)  # it went with its peer
            elif _run("ip", "link", "delete", self.host_if, check=False).returncode == 0:
                record.release_key("link", self.host_if)
