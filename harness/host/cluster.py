"""The host cluster: etcd, kube-apiserver, kube-controller-manager, kube-scheduler, containerd (with
its CRI plugin, runc and the CNI bridge) and a kubelet, all real, as local processes in one network
namespace (harness/host/netns.py), one node.

``HostCluster(...).start()`` takes the binaries from the host build cache (building what is
missing), writes the images into the node's containerd, makes the PKI and kubeconfigs
(harness/host/pki.py) and starts each component in order, waiting for each with a deadline that
names what it waited for and ends with the tail of its log. Flags follow kubeadm's static pod
manifests and kubelet configuration at v1.30 (cmd/kubeadm/app/phases/controlplane/manifests.go)
and kind's node configuration (the CNI bridge stands in for kindnet). etcd listens on the
namespace's loopback only, over plain HTTP (nothing else can reach it). containerd and the kubelet
share a private mount namespace (harness/host/mountns.py) that keeps their mounts, the fixed host
paths they write and the kernel settings the kubelet would change off the host. ``addons=True``
adds kube-proxy, CoreDNS and the NetworkPolicy enforcer (harness/host/addons.py). Every folder,
mount, cgroup, link and process is recorded in the run ledger before it exists; ``stop()`` removes
all. docs/host-cluster-bringup.md has the layout, the results and the problems met.
"""
from __future__ import annotations

import contextlib
import json
import os
import ssl
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from harness.host import build as hbuild
from harness.host.addons import (
    as_list,
    coredns_manifests,
    kube_proxy_argv,
    network_policy_manifests,
    nft_queue_missing,
)
from harness.host.images import load_images, write_images
from harness.host.mountns import (
    CONTAINERD_PATHS,
    KUBELET_PATHS,
    claim_mountpoints,
    private_argv,
    release_mountpoints,
)
from harness.host.netns import NodeNetns
from harness.host.pki import Pki, make_pki, write_kubeconfig
from harness.ledger import ledger
from harness.procs import ComponentFailed, ManagedProcess, run_command

__all__ = ["HostCluster"]

COMPONENTS = ("etcd", "kubernetes", "kubelet", "containerd", "runc", "cni-plugins", "pause", "coredns",
              "kube-network-policies")
_CGROUP_ROOT = Path("/sys/fs/cgroup")


@dataclass
class HostCluster:
    """One node's cluster: ``start()``, use ``kubectl``/``kubeconfig``/``server``, then ``stop()``."""

    node: str = "seamcheck-host"
    service_cidr: str = "10.96.0.0/16"
    service_ip: str = "10.96.0.1"
    pod_cidr: str = "10.244.0.0/24"
    dns_ip: str = "10.96.0.10"
    #: also kube-proxy, CoreDNS and the NetworkPolicy enforcer (harness/host/addons.py)
    addons: bool = False
    #: why NetworkPolicy is not enforced (then its enforcer is not deployed), or "" when it is
    network_policy: str = ""
    parent: Path | None = None
    work: Path | None = None
    netns: NodeNetns | None = None
    pki: Pki | None = None
    bins: dict[str, hbuild.Built] = field(default_factory=dict)
    procs: list[ManagedProcess] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    _mountpoints: list[Path] = field(default_factory=list, repr=False)
    _ctd_sock: Path | None = field(default=None, repr=False)

    # ------------------------------------------------------------------ helpers
    def bin(self, component: str, name: str) -> str:
        return str(self.bins[component].binary(name))

    @property
    def server(self) -> str:
        assert self.netns is not None
        return f"https://{self.netns.node_ip}:6443"

    @property
    def kubeconfig(self) -> Path:
        assert self.work is not None
        return self.work / "admin.conf"

    def kubectl(self, *args: str, timeout: float = 60, check: bool = True, input: str | None = None):
        argv = [self.bin("kubernetes", "kubectl"), "--kubeconfig", str(self.kubeconfig), *args]
        proc = run_command(argv, what="kubectl " + " ".join(args[:2]), timeout=timeout, input=input)
        if check and proc.returncode != 0:
            raise ComponentFailed(f"kubectl {' '.join(args)}: exit {proc.returncode}: {proc.stderr.strip()[-800:]}")
        return proc

    def _start(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> ManagedProcess:
        assert self.netns is not None and self.work is not None
        proc = ManagedProcess(name=name, argv=self.netns.exec_argv(*argv), log_path=self.work / "logs" / f"{name}.log",
                              env=env).start()
        self.procs.append(proc)
        return proc

    def _https_ok(self, path: str, cert: str = "admin") -> bool:
        assert self.pki is not None
        ctx = ssl.create_default_context(cafile=str(self.pki.ca_crt))
        ctx.load_cert_chain(str(self.pki.dir / f"{cert}.crt"), str(self.pki.dir / f"{cert}.key"))
        try:
            with urllib.request.urlopen(self.server + path, context=ctx, timeout=3) as resp:
                return resp.status == 200
        except OSError:
            return False

    def pod_pid(self, namespace: str, name: str) -> int:
        """The pid of a running Pod's sandbox (its pause process): ``nsenter --net=/proc/PID/ns/net``
        then acts from inside the Pod's network, as one of its containers would."""
        pod = json.loads(self.kubectl("-n", namespace, "get", "pod", name, "-o", "json").stdout)
        uid = pod["metadata"]["uid"]
        for proc in psutil.process_iter(["name"]):
            if proc.info["name"] != "pause":
                continue
            with contextlib.suppress(OSError, psutil.Error):
                if f"pod{uid}/" in Path(f"/proc/{proc.pid}/cgroup").read_text():
                    return proc.pid
        raise ComponentFailed(f"no pause process in a cgroup of pod {namespace}/{name} (uid {uid}): is it Running?")

    # ------------------------------------------------------------------ bring-up
    def start(self) -> HostCluster:
        t0 = time.monotonic()
        self.bins = hbuild.ensure_all(COMPONENTS)
        archives = write_images()
        record = ledger.active()
        self.work = record.make_dir("seamcheck-host-", self.parent)
        # containerd's snapshots and rootfs, the kubelet's volumes, the pods' netns files: all below.
        record.intend("mount", key=str(self.work), path=str(self.work), tree=True)
        try:
            self.netns = NodeNetns(service_cidr=self.service_cidr).open()
            ip = self.netns.node_ip
            self.pki = make_pki(self.work / "pki", advertise=ip, service_ip=self.service_ip, node=self.node)
            for user in ("admin", "controller-manager", "scheduler", "kubelet", "kube-proxy"):
                write_kubeconfig(self.work / f"{user}.conf", pki=self.pki, user=user, server=self.server)
            self.timings["prepare_s"] = time.monotonic() - t0
            self._etcd()
            self._apiserver()
            self._controller_manager()
            self._scheduler()
            self._containerd(archives)
            self._kubelet()
            if self.addons:
                self._addons()
        except BaseException:
            self.stop()
            raise
        self.timings["start_s"] = time.monotonic() - t0
        return self

    def _timed(self, what: str, proc: ManagedProcess, ready, deadline_s: float) -> None:
        self.timings[what] = proc.wait_until(ready, what=what, deadline_s=deadline_s, interval_s=0.5)

    def _etcd(self) -> None:
        assert self.work is not None
        data = self.work / "etcd"
        proc = self._start("etcd", [
            self.bin("etcd", "etcd"), "--name", self.node, "--data-dir", str(data),
            "--listen-client-urls", "http://127.0.0.1:2379", "--advertise-client-urls", "http://127.0.0.1:2379",
            "--listen-peer-urls", "http://127.0.0.1:2380", "--initial-advertise-peer-urls", "http://127.0.0.1:2380",
            "--initial-cluster", f"{self.node}=http://127.0.0.1:2380", "--listen-metrics-urls", "http://127.0.0.1:2381",
            "--snapshot-count", "10000"])
        etcdctl = self.netns.exec_argv(self.bin("etcd", "etcdctl"), "--endpoints", "http://127.0.0.1:2379",
                                       "endpoint", "health")

        def healthy() -> bool:
            return run_command(etcdctl, what="etcdctl endpoint health", timeout=20).returncode == 0

        self._timed("etcd healthy", proc, healthy, 60)

    def _apiserver(self) -> None:
        pki, ip = self.pki, self.netns.node_ip
        proc = self._start("kube-apiserver", [
            self.bin("kubernetes", "kube-apiserver"), f"--advertise-address={ip}", "--allow-privileged=true",
            "--authorization-mode=Node,RBAC", f"--client-ca-file={pki.ca_crt}",
            "--enable-admission-plugins=NodeRestriction", "--enable-bootstrap-token-auth=true",
            "--etcd-servers=http://127.0.0.1:2379",
            f"--kubelet-client-certificate={pki.apiserver_kubelet_client_crt}",
            f"--kubelet-client-key={pki.apiserver_kubelet_client_key}",
            "--kubelet-preferred-address-types=InternalIP,ExternalIP,Hostname",
            f"--proxy-client-cert-file={pki.front_proxy_client_crt}",
            f"--proxy-client-key-file={pki.front_proxy_client_key}",
            "--requestheader-allowed-names=front-proxy-client",
            f"--requestheader-client-ca-file={pki.front_proxy_ca_crt}",
            "--requestheader-extra-headers-prefix=X-Remote-Extra-", "--requestheader-group-headers=X-Remote-Group",
            "--requestheader-username-headers=X-Remote-User", "--secure-port=6443",
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            f"--service-account-key-file={pki.sa_pub}", f"--service-account-signing-key-file={pki.sa_key}",
            f"--service-cluster-ip-range={self.service_cidr}", f"--tls-cert-file={pki.apiserver_crt}",
            f"--tls-private-key-file={pki.apiserver_key}"])
        self._timed(f"kube-apiserver /readyz at {self.server}", proc, lambda: self._https_ok("/readyz"), 180)

    def _controller_manager(self) -> None:
        pki, conf = self.pki, str(self.work / "controller-manager.conf")
        proc = self._start("kube-controller-manager", [
            self.bin("kubernetes", "kube-controller-manager"), f"--authentication-kubeconfig={conf}",
            f"--authorization-kubeconfig={conf}", "--bind-address=127.0.0.1", f"--client-ca-file={pki.ca_crt}",
            f"--cluster-name={self.node}", f"--cluster-signing-cert-file={pki.ca_crt}",
            f"--cluster-signing-key-file={pki.ca_key}", "--controllers=*,bootstrapsigner,tokencleaner",
            f"--kubeconfig={conf}", "--leader-elect=false",
            f"--requestheader-client-ca-file={pki.front_proxy_ca_crt}", f"--root-ca-file={pki.ca_crt}",
            f"--service-account-private-key-file={pki.sa_key}", f"--service-cluster-ip-range={self.service_cidr}",
            "--use-service-account-credentials=true"])
        self._timed("kube-controller-manager making the default ServiceAccount", proc,
                    lambda: self.kubectl("get", "serviceaccount", "default", check=False).returncode == 0, 120)

    def _scheduler(self) -> None:
        conf = str(self.work / "scheduler.conf")
        proc = self._start("kube-scheduler", [
            self.bin("kubernetes", "kube-scheduler"), f"--authentication-kubeconfig={conf}",
            f"--authorization-kubeconfig={conf}", "--bind-address=127.0.0.1", f"--kubeconfig={conf}",
            "--leader-elect=false"])
        time.sleep(1)
        if not proc.alive():
            raise proc.failure("exited at start")

    def _containerd(self, archives: dict[str, Path]) -> None:
        d = self.work / "containerd"
        for sub in ("cni/net.d", "certs.d", "netns"):
            (d / sub).mkdir(parents=True, exist_ok=True)
        cni_bin = self.bins["cni-plugins"].dir
        (d / "cni/net.d/10-seamcheck.conflist").write_text(json.dumps({
            "cniVersion": "1.0.0", "name": "seamcheck", "plugins": [
                {"type": "bridge", "bridge": "cni0", "isGateway": True, "ipMasq": False, "hairpinMode": True,
                 "ipam": {"type": "host-local", "ranges": [[{"subnet": self.pod_cidr}]],
                          "routes": [{"dst": "0.0.0.0/0"}], "dataDir": str(d / "cni/ipam")}},
                {"type": "portmap", "capabilities": {"portMappings": True}}]}, indent=1))
        runc = self.bins["runc"].binary("runc")
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
        ctd_bin = self.bins["containerd"].dir
        env = {**os.environ, "PATH": f"{ctd_bin}:{runc.parent}:{os.environ.get('PATH', '/usr/bin:/bin')}"}
        # containerd and the kubelet share one private mount namespace (the kubelet joins
        # containerd's): their mounts see each other and vanish with them, the host's /proc/sys
        # values are masked for the kubelet, and the fixed host paths both write are our folders.
        self._mountpoints = claim_mountpoints(CONTAINERD_PATHS + KUBELET_PATHS)
        binds = [(fake, real) for fake, real in self._sysctl_masks()]
        for path in CONTAINERD_PATHS + KUBELET_PATHS:
            own = self.work / "host-paths" / path.strip("/").replace("/", "_")
            own.mkdir(parents=True, exist_ok=True)
            binds.append((own, path))
        proc = self._start("containerd", private_argv(
            binds, [str(ctd_bin / "containerd"), "--config", str(d / "config.toml")]), env=env)
        ctr = [str(ctd_bin / "ctr"), "--address", str(d / "containerd.sock"), "--namespace", "k8s.io"]
        self._timed("containerd answering", proc,
                    lambda: run_command([*ctr, "version"], what="ctr version", timeout=20, env=env).returncode == 0, 60)
        for archive in archives.values():
            out = run_command([*ctr, "images", "import", str(archive)], what="ctr images import", timeout=180, env=env)
            if out.returncode != 0:
                raise proc.failure(f"ctr images import {archive}: {out.stderr.strip()[-400:]}")
        self._ctd_sock = d / "containerd.sock"

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

    def _kubelet(self) -> None:
        k = self.work / "kubelet"
        for sub in ("root", "pki", "pod-logs"):
            (k / sub).mkdir(parents=True, exist_ok=True)
        (k / "resolv.conf").write_text("nameserver 10.96.0.10\nsearch default.svc.cluster.local svc.cluster.local "
                                       "cluster.local\noptions ndots:5\n")
        # kind's KubeletConfiguration: never evict or garbage-collect images on this shared disk
        # (an imported image that the kubelet deleted could never be pulled back).
        (k / "config.yaml").write_text(json.dumps({
            "apiVersion": "kubelet.config.k8s.io/v1beta1", "kind": "KubeletConfiguration",
            "authentication": {"anonymous": {"enabled": False}, "webhook": {"enabled": True},
                               "x509": {"clientCAFile": str(self.pki.ca_crt)}},
            "authorization": {"mode": "Webhook"}, "cgroupDriver": "cgroupfs",
            "clusterDNS": ["10.96.0.10"], "clusterDomain": "cluster.local",
            "containerRuntimeEndpoint": f"unix://{self._ctd_sock}", "failSwapOn": False,
            "address": self.netns.node_ip, "healthzBindAddress": "127.0.0.1", "healthzPort": 10248,
            "readOnlyPort": 0, "protectKernelDefaults": True, "resolvConf": str(k / "resolv.conf"), "podLogsDir": str(k / "pod-logs"),
            "evictionHard": {"nodefs.available": "0%", "nodefs.inodesFree": "0%", "imagefs.available": "0%"},
            "imageGCHighThresholdPercent": 100, "rotateCertificates": False, "serializeImagePulls": False},
            indent=1))
        record = ledger.active()
        # The kubelet makes /kubepods in every cgroup v1 hierarchy (cgroupfs driver): ours to remove.
        for hierarchy in sorted(p for p in _CGROUP_ROOT.iterdir() if p.is_dir()):
            path = hierarchy / "kubepods"
            if not path.exists():
                record.intend("cgroup", key=str(path), path=str(path))
        ctd = next(p for p in self.procs if p.name == "containerd")
        proc = self._start("kubelet", [
            "nsenter", f"--mount=/proc/{ctd.pid}/ns/mnt", "--", self.bin("kubelet", "kubelet"), f"--config={k / 'config.yaml'}",
            f"--kubeconfig={self.work / 'kubelet.conf'}", f"--root-dir={k / 'root'}", f"--cert-dir={k / 'pki'}",
            f"--hostname-override={self.node}", f"--node-ip={self.netns.node_ip}", "--v=2"])

        def ready() -> bool:
            out = self.kubectl("get", "node", self.node, "-o", "json", check=False)
            if out.returncode != 0:
                return False
            conds = {c["type"]: c["status"] for c in json.loads(out.stdout)["status"].get("conditions", [])}
            return conds.get("Ready") == "True"

        self._timed(f"node {self.node} Ready", proc, ready, 180)

    def _addons(self) -> None:
        proxy = self._start("kube-proxy", kube_proxy_argv(
            self.bin("kubernetes", "kube-proxy"), kubeconfig=str(self.work / "kube-proxy.conf"), node=self.node,
            pod_cidr=self.pod_cidr))
        rules = self.netns.exec_argv("iptables", "-t", "nat", "-S", "KUBE-SERVICES")
        self._timed("kube-proxy writing the KUBE-SERVICES chain", proxy,
                    lambda: "kubernetes:https" in run_command(rules, what="iptables -S", timeout=20).stdout, 90)
        images = load_images()
        self.network_policy = nft_queue_missing(self.netns.exec_argv) or ""
        objects = coredns_manifests(images["coredns"].local, self.dns_ip)
        if not self.network_policy:
            objects += network_policy_manifests(images["kube-network-policies"].local)
        self.kubectl("apply", "-f", "-", input=as_list(objects))
        kubelet = next(p for p in self.procs if p.name == "kubelet")

        def rolled_out(kind: str, name: str) -> bool:
            out = self.kubectl("-n", "kube-system", "get", kind, name, "-o", "json", check=False)
            if out.returncode != 0:
                return False
            status = json.loads(out.stdout).get("status", {})
            return (status.get("readyReplicas") or status.get("numberReady") or 0) >= 1

        self._timed("CoreDNS Deployment ready", kubelet, lambda: rolled_out("deployment", "coredns"), 180)
        if not self.network_policy:
            self._timed("kube-network-policies DaemonSet ready", kubelet,
                        lambda: rolled_out("daemonset", "kube-network-policies"), 180)

    # ------------------------------------------------------------------ teardown
    def stop(self) -> None:
        """Stop every process (newest first), unmount, remove cgroups, the namespace and the folder."""
        from harness.ledger.undo import (  # the ledger's own steps
            processes_with_token,
            undo_cgroup,
            undo_mount,
        )

        record = ledger.active()
        for proc in reversed(self.procs):
            proc.stop(timeout=20)
        self.procs.clear()
        if "containerd" in self.bins:
            # Shims outlive containerd by design (they keep containers running) and leave its process
            # group; they carry the run's token, and are ours if they are our shim binary.
            shim = str(self.bins["containerd"].binary("containerd-shim-runc-v2"))
            for p in processes_with_token(record.token, exclude=[os.getpid()]):
                with contextlib.suppress(psutil.Error):  # gone already
                    if p.exe() == shim:
                        p.kill()
        if self.work is not None:
            # Whatever is left in the pods' cgroups dies before the unmount.
            for hierarchy in sorted(p for p in _CGROUP_ROOT.iterdir() if p.is_dir()):
                key = str(hierarchy / "kubepods")
                if record.entry_for("cgroup", key) is not None:
                    try:
                        undo_cgroup({"path": key})
                        record.release_key("cgroup", key)
                    except RuntimeError:
                        pass
            undo_mount({"path": str(self.work), "tree": True})
            record.release_key("mount", str(self.work))
        if self.netns is not None:
            self.netns.close()
        release_mountpoints(self._mountpoints)
        if self.work is not None:
            record.remove_dir(self.work)


def main(argv: list[str] | None = None) -> int:
    """``python -m harness.host.cluster [--addons] [--hold SECONDS]``: bring the cluster up, print
    how to reach it, keep it for a while (Ctrl-C ends it early), then remove it."""
    import argparse
    import sys

    parser = argparse.ArgumentParser(prog="python -m harness.host.cluster", description=main.__doc__)
    parser.add_argument("--addons", action="store_true", help="also kube-proxy, CoreDNS, NetworkPolicy")
    parser.add_argument("--hold", type=float, default=600.0, help="seconds to keep it up (default 600)")
    args = parser.parse_args(argv)
    cluster = HostCluster(addons=args.addons)
    try:
        cluster.start()
        print(f"up in {cluster.timings['start_s']:.0f}s: KUBECONFIG={cluster.kubeconfig} (server {cluster.server}, "
              f"network namespace {cluster.netns.name}); holding {args.hold:.0f}s", flush=True)
        if cluster.network_policy:
            print(f"NetworkPolicy not enforced: {cluster.network_policy}", flush=True)
        time.sleep(args.hold)
    except KeyboardInterrupt:
        pass
    except ComponentFailed as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        cluster.stop()
        ledger.reset()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
