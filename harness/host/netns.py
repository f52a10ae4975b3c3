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

A second node's namespace (``open(peer=first)``) hangs off the first node's instead of the host: its
veth's other end lies in the first node's namespace, so nothing of it is in the host's at all, and it
reaches the control plane through the first node, which routes between its own links only.
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
    host_ip: str = ""  # the other end of eth0: on the host, or in the peer's namespace
    node_ip: str = ""
    peer: NodeNetns | None = None  # the first node's namespace, for a second node's

    @property
    def link_cidr(self) -> str:
        """The /30 of eth0 (both ends)."""
        return str(ipaddress.ip_network(f"{self.node_ip}/30", strict=False))

    def open(self, peer: NodeNetns | None = None) -> NodeNetns:
        reason = netns_unavailable()
        if reason:
            raise ComponentFailed(reason)
        self.peer = peer
        suffix = secrets.token_hex(3)
        taken = set(_run("ip", "netns", "list", check=False).stdout.split())
        self.name = f"{_PREFIX}{suffix}"
        if self.name in taken:
            raise ComponentFailed(f"network namespace {self.name} exists already: run again (a random name)")
        index = int(suffix, 16) % 16384
        links = list(_POOL.subnets(new_prefix=30))
        if peer is not None and str(links[index]) == peer.link_cidr:
            index = (index + 1) % 16384  # the peer's own /30: take the next one
        link = links[index]
        self.host_ip, self.node_ip = (str(h) for h in link.hosts())
        self.host_if = f"sch{suffix}"
        record = ledger.active()
        with record.creating("netns", key=self.name, name=self.name):
            _run("ip", "netns", "add", self.name)
        try:
            # The outer end: on the host (recorded: it lives in the host's namespace), or in the
            # peer's namespace (it goes with either namespace; nothing to record).
            outer = peer.exec_argv if peer is not None else (lambda *a: list(a))
            add = ("ip", "link", "add", self.host_if, "type", "veth", "peer", "name", "eth0", "netns", self.name)
            if peer is None:
                with record.creating("link", key=self.host_if, name=self.host_if):
                    _run(*add)
            else:
                _run(*outer(*add))
            _run(*outer("ip", "addr", "add", f"{self.host_ip}/30", "dev", self.host_if))
            _run(*outer("ip", "link", "set", self.host_if, "up"))
            for argv in (("ip", "link", "set", "lo", "up"), ("ip", "addr", "add", f"{self.node_ip}/30", "dev", "eth0"),
                         ("ip", "link", "set", "eth0", "up"),
                         # no dummy driver in this kernel: a veth whose peer stays down drops alike
                         ("ip", "link", "add", "svc0", "type", "veth", "peer", "name", "svc1"),
                         ("ip", "link", "set", "svc0", "up"), ("ip", "route", "add", self.service_cidr, "dev", "svc0"),
                         # pods reach each other and Services through the node: it forwards among its own links
                         ("sysctl", "-q", "-w", "net.ipv4.ip_forward=1"),
                         # a pod's packet for an address outside the cluster is answered "network
                         # unreachable" every time, not once a second per pod (the kernel's default
                         # ICMP rate limit): a probe out fails at once instead of after SYN retries
                         ("sysctl", "-q", "-w", "net.ipv4.icmp_ratelimit=0")):
                _run(*self.exec_argv(*argv))
            if peer is not None:
                # The control plane's address is the peer's eth0: reached through the peer.
                _run(*self.exec_argv("ip", "route", "add", peer.link_cidr, "via", self.host_ip))
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

    def route(self, cidr: str, via: str) -> None:
        """A route inside the namespace (a pod CIDR of another node, through that node)."""
        _run(*self.exec_argv("ip", "route", "replace", cidr, "via", via))

    def close(self) -> None:
        record = ledger.active()
        if self.name and _run("ip", "netns", "delete", self.name, check=False).returncode == 0:
            record.release_key("netns", self.name)
        if self.host_if and self.peer is None:
            if _run("ip", "link", "show", self.host_if, check=False).returncode != 0:
                record.release_key("link", self.host_if)  # it went with its peer
            elif _run("ip", "link", "delete", self.host_if, check=False).returncode == 0:
                record.release_key("link", self.host_if)
