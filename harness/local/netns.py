"""A network namespace for the pipeline's tasks, so a NetworkPolicy's effect can be reproduced
locally: the tasks reach the stack only through a veth link, and iptables rules inside the
namespace cut that path (REJECT: connection refused at once; DROP: packets vanish, clients time
out) while the harness keeps its own loopback path.

Blast radius: everything here is created by this module with a seamcheck- name, recorded in the
run's ledger before it exists (so the reaper removes it if the session is killed), and removed by
`close()` (deleting the namespace removes its veth pair and every rule inside it). Nothing is
changed in the host's own iptables tables.
"""
from __future__ import annotations

import ipaddress
import os
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from harness.errors import ProfileError
from harness.ledger import ledger
from harness.procs import ComponentFailed, ManagedProcess, ProcessRegistry, run_command

__all__ = ["NetnsUnavailable", "PipelineNetns", "netns_available", "seamcheck_namespaces"]

_PREFIX = "seamcheck-"
#: 10.213.0.0/16 carved into /30 links; each namespace takes one (its own test hosts only).
_POOL = ipaddress.ip_network("10.213.0.0/16")


class NetnsUnavailable(ProfileError):
    pass


def _run(*argv: str, timeout: float = 20, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = run_command(argv, what=argv[0], timeout=timeout)
    if check and proc.returncode != 0:
        raise ComponentFailed(f"{' '.join(argv)}: exit {proc.returncode}: {proc.stderr.strip() or proc.stdout.strip()}")
    return proc


def netns_available() -> str | None:
    """None when namespaces, veth and iptables can be used here; else the reason."""
    if os.geteuid() != 0:
        return "network namespaces need root (run as root, or skip the network chaos scenarios)"
    for tool in ("ip", "iptables", "socat"):
        if not shutil.which(tool):
            return f"{tool} is not installed (apt-get install -y iproute2 iptables socat)"
    return None


def seamcheck_namespaces() -> list[str]:
    out = _run("ip", "netns", "list", check=False).stdout
    return [line.split()[0] for line in out.splitlines() if line.startswith(_PREFIX)]


@dataclass
class PipelineNetns:
    """`ip netns exec <name> ...` runs a command inside; `forward(port)` exposes one of the
    stack's loopback ports to it at `host_ip:port`; `block(port, "REJECT"|"DROP")` cuts it."""

    registry: ProcessRegistry
    logs: Path
    name: str = ""
    host_ip: str = ""
    ns_ip: str = ""
    host_if: str = ""
    _forwards: dict[int, ManagedProcess] = field(default_factory=dict)
    _rules: list[tuple[list[str], int]] = field(default_factory=list)  # (rule, ledger entry)

    def open(self) -> PipelineNetns:
        reason = netns_available()
        if reason:
            raise NetnsUnavailable(reason)
        taken = set(seamcheck_namespaces())
        index = os.getpid() % 4000
        while f"{_PREFIX}{index}" in taken:
            index += 1
        self.name = f"{_PREFIX}{index}"
        link = list(_POOL.subnets(new_prefix=30))[index % 16384]
        hosts = list(link.hosts())
        self.host_ip, self.ns_ip = str(hosts[0]), str(hosts[1])
        self.host_if, ns_if = f"sc{index}h", f"sc{index}n"
        record = ledger.active()
        with record.creating("netns", key=self.name, name=self.name):
            _run("ip", "netns", "add", self.name)
        try:
            with record.creating("link", key=self.host_if, name=self.host_if):
                _run("ip", "link", "add", self.host_if, "type", "veth", "peer", "name", ns_if)
            _run("ip", "link", "set", ns_if, "netns", self.name)
            _run("ip", "addr", "add", f"{self.host_ip}/30", "dev", self.host_if)
            _run("ip", "link", "set", self.host_if, "up")
            self.exec_argv("ip", "addr", "add", f"{self.ns_ip}/30", "dev", ns_if, run=True)
            self.exec_argv("ip", "link", "set", ns_if, "up", run=True)
            self.exec_argv("ip", "link", "set", "lo", "up", run=True)
        except Exception:
            self.close()
            raise
        return self

    def exec_argv(self, *argv: str, run: bool = False) -> list[str]:
        full = ["ip", "netns", "exec", self.name, *argv]
        if run:
            _run(*full)
        return full

    def forward(self, port: int) -> str:
        """Expose 127.0.0.1:port to the namespace as host_ip:port (socat, one of our processes)."""
        if port not in self._forwards:
            proc = self.registry.start(ManagedProcess(
                f"forwarder {self.host_ip}:{port}",
                ["socat", f"TCP-LISTEN:{port},bind={self.host_ip},fork,reuseaddr", f"TCP:127.0.0.1:{port}"],
                self.logs / f"forward-{port}.log"))
            import socket

            def listening() -> bool:
                with socket.socket() as sock:
                    sock.settimeout(0.5)
                    return sock.connect_ex((self.host_ip, port)) == 0

            proc.wait_until(listening, what=f"socat listening on {self.host_ip}:{port}", deadline_s=10)
            self._forwards[port] = proc
        return f"{self.host_ip}:{port}"

    def block(self, port: int, mode: str = "REJECT") -> list[str]:
        """Cut the namespace's path to host_ip:port, the way a NetworkPolicy denies egress."""
        if mode not in ("REJECT", "DROP"):
            raise ValueError(f"mode must be REJECT or DROP, not {mode!r}")
        rule = ["OUTPUT", "-d", self.host_ip, "-p", "tcp", "--dport", str(port), "-j", mode]
        if mode == "REJECT":
            rule += ["--reject-with", "tcp-reset"]
        with ledger.active().creating("iptables", netns=self.name, table="filter", chain=rule[0],
                                      rule=rule[1:]) as entry:
            self.exec_argv("iptables", "-A", *rule, run=True)
        self._rules.append((rule, entry))
        return rule

    def unblock(self) -> None:
        for rule, entry in reversed(self._rules):
            self.exec_argv("iptables", "-D", *rule, run=True)
            ledger.active().released(entry)
        self._rules.clear()

    def rules(self) -> list[str]:
        out = _run(*self.exec_argv("iptables", "-S", "OUTPUT")).stdout
        return [line for line in out.splitlines() if line.startswith("-A")]

    def close(self) -> None:
        for proc in self._forwards.values():
            proc.stop()
            self.registry.forget(proc)
        self._forwards.clear()
        record = ledger.active()
        for _rule, entry in self._rules:
            record.released(entry)  # they go with the namespace
        self._rules.clear()
        # Deleting the namespace removes the veth pair and every rule inside; a failed delete stays
        # in the ledger for the session's close (or the reaper) to try again.
        if self.name and _run("ip", "netns", "delete", self.name, check=False).returncode == 0:
            record.release_key("netns", self.name)
        if self.host_if:
            _run("ip", "link", "delete", self.host_if, check=False)  # gone with the namespace, usually
            if _run("ip", "link", "show", self.host_if, check=False).returncode != 0:
                record.release_key("link", self.host_if)

    def __enter__(self) -> PipelineNetns:
        return self.open()

    def __exit__(self, *exc: object) -> None:
        self.close()
