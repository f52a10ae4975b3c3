"""One node of the host cluster: containerd (CRI, runc, the CNI bridge) and a kubelet in the node's
network namespace, plus the node's kube-proxy and NetworkPolicy controller once the add-ons go in.

containerd and the kubelet share a private mount namespace (harness/host/mountns.py) that keeps their
mounts, the fixed host paths they write and the kernel settings the kubelet would change off the host.
Each node has its own cgroup root (``/seamcheck-<cluster>-<n>`` in every cgroup v1 hierarchy), recorded
in the run ledger before it exists: two kubelets never share ``/kubepods``, and whatever a node's pods
leave behind dies with that cgroup (undo_cgroup kills every process in it before removing it).
Flags and configuration follow kind's node (v0.24.0) and kubeadm's KubeletConfiguration at v1.30;
each difference says why where it is made.
"""
from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from harness.host.addons import kube_proxy_argv
from harness.host.images import load_images
from harness.host.mountns import CONTAINERD_PATHS, KUBELET_PATHS, claim_mountpoints, private_argv
from harness.host.netns import NodeNetns
from harness.host.netpol import kube_router_argv
from harness.ledger import ledger
from harness.procs import ComponentFailed, ManagedProcess, log_tail, run_command

__all__ = ["CGROUP_ROOT", "HostNode"]

CGROUP_ROOT = Path("/sys/fs/cgroup")


def cgroup_hierarchies() -> list[Path]:
    """The mounted cgroup v1 hierarchies (a folder of the cgroup tmpfs that is no mount is skipped)."""
    if not CGROUP_ROOT.is_dir():
        return []
    return sorted(p for p in CGROUP_ROOT.iterdir() if p.is_dir() and os.path.ismount(p))


@dataclass
class HostNode:
    """A kubelet node: ``start_runtime`` (containerd, images), ``start_kubelet``, then the add-ons."""

    name: str
    netns: NodeNetns
    work: Path  # this node's folder (inside the cluster's)
    pod_cidr: str  # this node's share of the pods' addresses (host-local IPAM: no IP allocation by the API)
    cgroup_root: str  # e.g. /seamcheck-ab12cd-0
    bin: Callable[[str, str], str]  # (component, binary) -> path
    labels: dict[str, str] = field(default_factory=dict)
    taints: list[dict[str, str]] = field(default_factory=list)
    procs: list[ManagedProcess] = field(default_factory=list)
    mountpoints: list[Path] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def ip(self) -> str:
        return self.netns.node_ip

    @property
    def containerd_socket(self) -> Path:
        return self.work / "containerd" / "containerd.sock"

    def _start(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> ManagedProcess:
        proc = ManagedProcess(name=f"{name} ({self.name})", argv=self.netns.exec_argv(*argv),
                              log_path=self.work / "logs" / f"{name}.log", env=env).start()
        self.procs.append(proc)
        return proc

    def proc(self, name: str) -> ManagedProcess:
        return next(p for p in self.procs if p.name == f"{name} ({self.name})")

    def _timed(self, what: str, proc: ManagedProcess, ready: Callable[[], bool], deadline_s: float) -> None:
        self.timings[what] = proc.wait_until(ready, what=what, deadline_s=deadline_s, interval_s=0.5)

    # ------------------------------------------------------------------ containerd
    def start_runtime(self, archives: dict[str, Path], cni_bin: Path, ctd_bin: Path, runc: Path) -> None:
        d = self.work / "containerd"
        for sub in ("cni/net.d", "certs.d", "netns"):
            (d / sub).mkdir(parents=True, exist_ok=True)
        (d / "cni/net.d/10-seamcheck.conflist").write_text(json.dumps({
            "cniVersion": "1.0.0", "name": "seamcheck", "plugins": [
                {"type": "bridge", "bridge": "cni0", "isGateway": True, "ipMasq": False, "hairpinMode": True,
                 "ipam": {"type": "host-local", "ranges": [[{"subnet": self.pod_cidr}]],
                          "routes": [{"dst": "0.0.0.0/0"}], "dataDir": str(d / "cni/ipam")}},
                {"type": "portmap", "capabilities": {"portMappings": True}}]}, indent=1))
        pause = load_images()["pause"].local
        # As kind's /etc/containerd/config.toml (v0.24.0), with every path below our folder and the
        # runc of the host build; the CRI plugin is on.
        (d / "config.toml").write_text(f'''version = 2
root = "{d}/root"
state = "{d}/state"
[grpc]
  address = "{d}/containerd.sock"
[ttrpc]
  address = "{d}/containerd.sock.ttrpc"
[debug]
  address = "{d}/debug.sock"
[plugins."io.containerd.internal.v1.opt"]
  path = "{d}/opt"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{pause}"
  netns_mounts_under_state_dir = true
  disable_apparmor = true
  # CAP_SYS_RESOURCE is not ours here: runc cannot lower oom_score_adj (-998 for a sandbox) below
  # containerd's own, so containerd raises such values to its own (kind does the same rootless).
  restrict_oom_score_adj = true
  tolerate_missing_hugepages_controller = true
  stream_server_address = "127.0.0.1"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    discard_unpacked_layers = false
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        BinaryName = "{runc}"
        Root = "{d}/runc"
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{cni_bin}"
    conf_dir = "{d}/cni/net.d"
  [plugins."io.containerd.grpc.v1.cri".registry]
    config_path = "{d}/certs.d"
''')
        env = {**os.environ, "PATH": f"{ctd_bin}:{runc.parent}:{os.environ.get('PATH', '/usr/bin:/bin')}"}
        # containerd and the kubelet share one private mount namespace (the kubelet joins
        # containerd's): their mounts see each other and vanish with them, the host's /proc/sys
        # values are masked for the kubelet, and the fixed host paths both write are our folders.
        self.mountpoints = claim_mountpoints(CONTAINERD_PATHS + KUBELET_PATHS)
        binds = list(self._sysctl_masks())
        for path in CONTAINERD_PATHS + KUBELET_PATHS:
            own = self.work / "host-paths" / path.strip("/").replace("/", "_")
            own.mkdir(parents=True, exist_ok=True)
            binds.append((own, path))
        proc = self._start("containerd", private_argv(
            binds, [str(ctd_bin / "containerd"), "--config", str(d / "config.toml")]), env=env)
        ctr = self.ctr()
        self._timed("containerd answering", proc,
                    lambda: run_command([*ctr, "version"], what="ctr version", timeout=20, env=env).returncode == 0, 60)
        self.import_images(archives.values())

    def ctr(self) -> list[str]:
        """containerd's own client, on this node's socket and the namespace the CRI plugin uses."""
        return [self.bin("containerd", "ctr"), "--address", str(self.containerd_socket), "--namespace", "k8s.io"]

    def import_images(self, archives: Iterable[Path], *, timeout_s: float = 300) -> None:
        """Import OCI archives into this node's containerd: its kubelet finds them there and never pulls
        (local names, no `latest`). Also for a kept cluster's node (no process of ours runs it)."""
        for archive in archives:
            out = run_command([*self.ctr(), "images", "import", str(archive)], what="ctr images import",
                              timeout=timeout_s)
            if out.returncode != 0:
                log = self.work / "logs" / "containerd.log"
                raise ComponentFailed(f"containerd ({self.name}): ctr images import {archive}: "
                                      f"{out.stderr.strip()[-400:]}; last lines of {log}:\n{log_tail(log)}")

    def _sysctl_masks(self) -> list[tuple[Path, str]]:
        """(file, /proc/sys path) for each kernel setting the kubelet would change on the host.

        The kubelet sets vm.overcommit_memory=1, kernel.panic=10, kernel.panic_on_oops=1 (and checks
        vm.panic_on_oom, kernel.keys.root_max*) unless they already hold those values
        (pkg/kubelet/cm/container_manager_linux.go setupKernelTunables@v1.30.14). They are global, not
        per namespace: inside the private mount namespace a file holding the wanted value is bound
        over each one that differs, so the kubelet reads what it wants and writes nothing."""
        wanted = {"vm/overcommit_memory": 1, "vm/panic_on_oom": 0, "kernel/panic": 10, "kernel/panic_on_oops": 1,
                  "kernel/keys/root_maxkeys": 1000000, "kernel/keys/root_maxbytes": 25000000}
        masks = []
        for key, value in wanted.items():
            real = f"/proc/sys/{key}"
            try:
                if int(Path(real).read_text().split()[0]) == value:
                    continue
            except (OSError, ValueError, IndexError):
                continue
            fake = self.work / "sysctl" / key.replace("/", ".")
            fake.parent.mkdir(parents=True, exist_ok=True)
            fake.write_text(f"{value}\n")
            masks.append((fake, real))
        return masks

    # ------------------------------------------------------------------ kubelet
    def make_cgroup_root(self) -> None:
        """The node's cgroup root in every hierarchy, recorded first; cpuset needs its cpus and mems
        copied from the parent before a child can hold a process (cgroup v1)."""
        record = ledger.active()
        for hierarchy in cgroup_hierarchies():
            path = hierarchy / self.cgroup_root.strip("/")
            record.intend("cgroup", key=str(path), path=str(path))
            path.mkdir(exist_ok=True)
            for knob in ("cpuset.cpus", "cpuset.mems"):
                if (hierarchy / knob).exists():
                    (path / knob).write_text((hierarchy / knob).read_text())

    def start_kubelet(self, *, kubeconfig: Path, client_ca: Path, dns_ip: str, ready: Callable[[], bool]) -> None:
        k = self.work / "kubelet"
        for sub in ("root", "pki", "pod-logs"):
            (k / sub).mkdir(parents=True, exist_ok=True)
        (k / "resolv.conf").write_text(f"nameserver {dns_ip}\nsearch default.svc.cluster.local svc.cluster.local "
                                       "cluster.local\noptions ndots:5\n")
        self.make_cgroup_root()
        # kind's KubeletConfiguration: never evict or garbage-collect images on this shared disk
        # (an imported image that the kubelet deleted could never be pulled back).
        (k / "config.yaml").write_text(json.dumps({
            "apiVersion": "kubelet.config.k8s.io/v1beta1", "kind": "KubeletConfiguration",
            "authentication": {"anonymous": {"enabled": False}, "webhook": {"enabled": True},
                               "x509": {"clientCAFile": str(client_ca)}},
            "authorization": {"mode": "Webhook"}, "cgroupDriver": "cgroupfs", "cgroupRoot": self.cgroup_root,
            "clusterDNS": [dns_ip], "clusterDomain": "cluster.local",
            "containerRuntimeEndpoint": f"unix://{self.containerd_socket}", "failSwapOn": False,
            "address": self.ip, "healthzBindAddress": "127.0.0.1", "healthzPort": 10248,
            "readOnlyPort": 0, "protectKernelDefaults": True, "resolvConf": str(k / "resolv.conf"),
            "podLogsDir": str(k / "pod-logs"),
            "evictionHard": {"nodefs.available": "0%", "nodefs.inodesFree": "0%", "imagefs.available": "0%"},
            "imageGCHighThresholdPercent": 100, "rotateCertificates": False, "serializeImagePulls": False,
            # A GPU pool's taint from the start, as kind-gpu's JoinConfiguration registers it.
            **({"registerWithTaints": self.taints} if self.taints else {})},
            indent=1))
        ctd = self.proc("containerd")
        labels = ",".join(f"{k}={v}" for k, v in sorted(self.labels.items()))
        proc = self._start("kubelet", [
            "nsenter", f"--mount=/proc/{ctd.pid}/ns/mnt", "--", self.bin("kubelet", "kubelet"),
            f"--config={k / 'config.yaml'}", f"--kubeconfig={kubeconfig}", f"--root-dir={k / 'root'}",
            f"--cert-dir={k / 'pki'}", f"--hostname-override={self.name}", f"--node-ip={self.ip}", "--v=2",
            *([f"--node-labels={labels}"] if labels else [])])
        self._timed(f"node {self.name} Ready", proc, ready, 180)

    # ------------------------------------------------------------------ add-ons
    def start_kube_proxy(self, kubeconfig: Path, cluster_cidr: str) -> None:
        proxy = self._start("kube-proxy", kube_proxy_argv(
            self.bin("kubernetes", "kube-proxy"), kubeconfig=str(kubeconfig), node=self.name, pod_cidr=cluster_cidr))
        rules = self.netns.exec_argv("iptables", "-t", "nat", "-S", "KUBE-SERVICES")
        self._timed(f"kube-proxy of {self.name} writing the KUBE-SERVICES chain", proxy,
                    lambda: "kubernetes:https" in run_command(rules, what="iptables -S", timeout=20).stdout, 90)

    def start_kube_router(self, kubeconfig: Path, service_cidr: str) -> None:
        proc = self._start("kube-router", kube_router_argv(
            self.bin("kube-router", "kube-router"), kubeconfig=str(kubeconfig), node=self.name,
            service_cidr=service_cidr))
        chain = self.netns.exec_argv("iptables", "-t", "filter", "-S", "KUBE-ROUTER-FORWARD")
        # Its first full sync writes the chain every pod's traffic is sent through.
        self._timed(f"kube-router of {self.name} writing the KUBE-ROUTER-FORWARD chain", proc,
                    lambda: run_command(chain, what="iptables -S", timeout=20).returncode == 0, 90)

    def stop(self, timeout: float = 20) -> None:
        """Stop this node's processes, newest first (the cluster removes the rest)."""
        for proc in reversed(self.procs):
            proc.stop(timeout=timeout)
        self.procs.clear()

