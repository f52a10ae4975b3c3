"""The host cluster: etcd, kube-apiserver, kube-controller-manager, kube-scheduler and one or two
kubelet nodes (harness/host/node.py: containerd with CRI, runc and the CNI bridge), all real, as local
processes in network namespaces of their own (harness/host/netns.py).

``HostCluster(...).start()`` takes the binaries from the host build cache (building what is missing),
makes the PKI and kubeconfigs (harness/host/pki.py) and starts each component in order, waiting for
each with a deadline that names what it waited for and ends with the tail of its log. Flags follow
kubeadm's static pod manifests at v1.30 (cmd/kubeadm/app/phases/controlplane/manifests.go) and kind's
node configuration (the CNI bridge stands in for kindnet). etcd listens on the control plane
namespace's loopback only, over plain HTTP (nothing else can reach it).

Shapes: ``api_only`` is etcd and kube-apiserver alone (envtest's shape: the API without controllers,
for tests of API logic); the default adds the controllers and one node; ``gpu_node`` adds a second
node labelled and tainted like a cloud GPU pool that advertises ``nvidia.com/gpu`` through a node
status patch (kind-gpu's shape, harness/cluster/gpu.py); ``addons`` adds kube-proxy and the
NetworkPolicy controller on every node and CoreDNS (harness/host/addons.py, netpol.py).

The cluster records everything in a run ledger of its own (its processes carry that ledger's token):
``stop()`` removes all of it, the ledger's reaper removes it if the process is killed, and ``keep()``
hands it over to a record on disk instead (harness/host/kept.py) so that it outlives this process
(``--keep-cluster``, ``seamcheck-cluster up``). docs/host-cluster-bringup.md has the layout and results.
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import ssl
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from harness.host import build as hbuild
from harness.host.addons import as_list, coredns_manifests, network_policy_manifests, nft_queue_missing
from harness.host.images import load_images, write_images
from harness.host.mountns import release_mountpoints
from harness.host.netns import NodeNetns
from harness.host.netpol import kube_router_missing, kube_router_rbac
from harness.host.node import HostNode, cgroup_hierarchies
from harness.host.pki import Pki, make_pki, write_kubeconfig
from harness.ledger import ledger
from harness.ledger.ledger import Ledger, activated
from harness.procs import ComponentFailed, ManagedProcess, run_command

__all__ = ["API_COMPONENTS", "COMPONENTS", "GPU_LABELS", "GPU_TAINTS", "HostCluster"]

#: What every cluster with nodes needs; kube-network-policies (kind's enforcer) is added where the
#: kernel can run it and it is built (`python -m harness.host.build kube-network-policies`).
COMPONENTS = ("etcd", "kubernetes", "kubelet", "containerd", "runc", "cni-plugins", "pause", "coredns", "kube-router")
API_COMPONENTS = ("etcd", "kubernetes")
#: The images every node imports (harness/host/images.toml); the enforcer's own is added when used.
NODE_IMAGES = ("pause", "coredns", "busybox")
#: The second node, as kind-gpu's GPU worker (harness/cluster/manifests/cluster.yaml.j2).
GPU_LABELS = {"seamcheck.io/role": "gpu", "nvidia.com/gpu.present": "true"}
GPU_TAINTS = [{"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"}]
CLUSTER_CIDR = "10.244.0.0/16"


@dataclass
class HostCluster:
    """``start()``, use ``kubectl``/``kubeconfig``/``server``, then ``stop()`` (or ``keep()``)."""

    node: str = "seamcheck-host"
    service_cidr: str = "10.96.0.0/16"
    service_ip: str = "10.96.0.1"
    dns_ip: str = "10.96.0.10"
    #: also kube-proxy, CoreDNS and the NetworkPolicy enforcer
    addons: bool = False
    #: a second node shaped like a cloud GPU pool
    gpu_node: bool = False
    #: etcd and kube-apiserver only
    api_only: bool = False
    #: why NetworkPolicy is not enforced, or "" when it is (see ``enforcer``)
    network_policy: str = ""
    #: which controller enforces NetworkPolicy: kube-network-policies (kind's) or kube-router
    enforcer: str = ""
    parent: Path | None = None
    work: Path | None = None
    netns: NodeNetns | None = None
    pki: Pki | None = None
    bins: dict[str, hbuild.Built] = field(default_factory=dict)
    procs: list[ManagedProcess] = field(default_factory=list)
    nodes: list[HostNode] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    record: Ledger | None = field(default=None, repr=False)
    _extra_netns: list[NodeNetns] = field(default_factory=list, repr=False)

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

    @property
    def gpu_node_name(self) -> str:
        return f"{self.node}-gpu"

    @property
    def suffix(self) -> str:
        assert self.netns is not None
        return self.netns.name.rsplit("-", 1)[-1]

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

    def https_ok(self, path: str, cert: str = "admin") -> bool:
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

    def in_pod(self, namespace: str, name: str) -> list[str]:
        """The argv prefix that runs a command in a running Pod's network namespace."""
        return ["nsenter", f"--net=/proc/{self.pod_pid(namespace, name)}/ns/net", "--"]

    @contextlib.contextmanager
    def _own_ledger(self) -> Iterator[Ledger]:
        """Everything the cluster makes goes into its own ledger (so ``keep()`` can hand exactly that
        over); it shares the session's folder, voice and report folder."""
        if self.record is None:
            outer = ledger.active()
            self.record = Ledger(outer.directory, f"{outer.run_id}-host-cluster", say=outer.say,
                                 around_spawn=outer.around_spawn, report_dir=outer.report_dir)
        with activated(self.record):
            yield self.record

    # ------------------------------------------------------------------ bring-up
    def start(self) -> HostCluster:
        t0 = time.monotonic()
        with self._own_ledger() as record:
            self.work = record.make_dir("seamcheck-host-", self.parent)
            # containerd's snapshots and rootfs, the kubelet's volumes, the pods' netns files: all below.
            record.intend("mount", key=str(self.work), path=str(self.work), tree=True)
            try:
                self.netns = NodeNetns(service_cidr=self.service_cidr).open()
                if self.addons:
                    self._choose_enforcer()
                components = API_COMPONENTS if self.api_only else COMPONENTS + (
                    ("kube-network-policies",) if self.enforcer == "kube-network-policies" else ())
                self.bins = hbuild.ensure_all(components)
                archives = {} if self.api_only else write_images(list(NODE_IMAGES) + (
                    ["kube-network-policies"] if self.enforcer == "kube-network-policies" else []))
                ip = self.netns.node_ip
                more = (self.gpu_node_name,) if self.gpu_node else ()
                self.pki = make_pki(self.work / "pki", advertise=ip, service_ip=self.service_ip, node=self.node,
                                    more_nodes=more)
                for user in ("admin", "controller-manager", "scheduler", "kubelet", "kube-proxy", "kube-router",
                             *(f"kubelet-{n}" for n in more)):
                    write_kubeconfig(self.work / f"{user}.conf", pki=self.pki, user=user, server=self.server)
                self.timings["prepare_s"] = time.monotonic() - t0
                self._etcd()
                self._apiserver()
                if not self.api_only:
                    self._controller_manager()
                    self._scheduler()
                    self._nodes(archives)
                    if self.addons:
                        self._addons()
                    if self.gpu_node:
                        self._advertise_gpu()
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
            "--enable-admission-plugins=NodeRestriction", *self._api_only_admission(), "--enable-bootstrap-token-auth=true",
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
        self._timed(f"kube-apiserver /readyz at {self.server}", proc, lambda: self.https_ok("/readyz"), 180)

    def _api_only_admission(self) -> list[str]:
        # Without kube-controller-manager no namespace gets its `default` ServiceAccount, and the
        # ServiceAccount admission plugin refuses every pod there ("error looking up service
        # account"); on the API-only shape pods are objects whose status a test writes, so the
        # plugin (and the token volume it would add) goes. The whole cluster keeps it.
        return ["--disable-admission-plugins=ServiceAccount"] if self.api_only else []

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

    def _node_ready(self, name: str) -> bool:
        out = self.kubectl("get", "node", name, "-o", "json", check=False)
        if out.returncode != 0:
            return False
        conds = {c["type"]: c["status"] for c in json.loads(out.stdout)["status"].get("conditions", [])}
        return conds.get("Ready") == "True"

    def _nodes(self, archives: dict[str, Path]) -> None:
        assert self.work is not None and self.netns is not None
        shapes = [(self.node, self.netns, "10.244.0.0/24", {}, [], "kubelet")]
        if self.gpu_node:
            # The GPU node's namespace hangs off the first node's: no second link to the host.
            gpu_ns = NodeNetns(service_cidr=self.service_cidr).open(peer=self.netns)
            self._extra_netns.append(gpu_ns)
            shapes.append((self.gpu_node_name, gpu_ns, "10.244.1.0/24", dict(GPU_LABELS), list(GPU_TAINTS),
                           f"kubelet-{self.gpu_node_name}"))
        for i, (name, netns, pod_cidr, labels, taints, conf) in enumerate(shapes):
            node = HostNode(name=name, netns=netns, work=self.work / "nodes" / name, pod_cidr=pod_cidr,
                            cgroup_root=f"/seamcheck-{self.suffix}-{i}", bin=self.bin, labels=labels, taints=taints)
            self.nodes.append(node)
            node.start_runtime(archives, cni_bin=self.bins["cni-plugins"].dir, ctd_bin=self.bins["containerd"].dir,
                               runc=self.bins["runc"].binary("runc"))
            node.start_kubelet(kubeconfig=self.work / f"{conf}.conf", client_ca=self.pki.ca_crt, dns_ip=self.dns_ip,
                               ready=lambda n=name: self._node_ready(n))
            self.timings.update(node.timings)
        if len(self.nodes) > 1:
            # Pods reach the other node's pods through it: each node routes the other's pod CIDR.
            first, gpu = self.nodes
            first.netns.route(gpu.pod_cidr, via=gpu.ip)
            gpu.netns.route(first.pod_cidr, via=gpu.netns.host_ip)

    def _addons(self) -> None:
        for node in self.nodes:
            node.start_kube_proxy(self.work / "kube-proxy.conf", CLUSTER_CIDR)
        images = load_images()
        objects = coredns_manifests(images["coredns"].local, self.dns_ip)
        if self.enforcer == "kube-network-policies":
            objects += network_policy_manifests(images["kube-network-policies"].local)
        elif self.enforcer == "kube-router":
            objects += kube_router_rbac()
        self.kubectl("apply", "-f", "-", input=as_list(objects))
        if self.enforcer == "kube-router":
            for node in self.nodes:
                node.start_kube_router(self.work / "kube-router.conf", self.service_cidr)
        kubelet = self.nodes[0].proc("kubelet")

        def rolled_out(kind: str, name: str) -> bool:
            out = self.kubectl("-n", "kube-system", "get", kind, name, "-o", "json", check=False)
            if out.returncode != 0:
                return False
            status = json.loads(out.stdout).get("status", {})
            return (status.get("readyReplicas") or status.get("numberReady") or 0) >= 1

        self._timed("CoreDNS Deployment ready", kubelet, lambda: rolled_out("deployment", "coredns"), 180)
        if self.enforcer == "kube-network-policies":
            self._timed("kube-network-policies DaemonSet ready", kubelet,
                        lambda: rolled_out("daemonset", "kube-network-policies"), 180)
        for node in self.nodes:
            self.timings.update(node.timings)

    def _choose_enforcer(self) -> None:
        """kind's kube-network-policies where this kernel runs it (the nftables queue expression,
        probed in the node's namespace) and it is built; kube-router's policy controller otherwise
        (iptables and ipset); neither when kube-router's tools are missing (then ``network_policy``
        says why and the policy tests skip with it)."""
        from harness.host.recipes import recipes
        from harness.host.versions import load_host_versions

        assert self.netns is not None
        missing_queue = nft_queue_missing(self.netns.exec_argv) if shutil.which("nft") else "nft is not installed"
        knp_built = hbuild.find(recipes(load_host_versions())["kube-network-policies"]) is not None
        if missing_queue is None and knp_built:
            self.enforcer = "kube-network-policies"
            return
        reason = kube_router_missing()
        if reason:
            self.network_policy = f"{missing_queue or 'kube-network-policies is not built'}, and {reason}"
        else:
            self.enforcer = "kube-router"

    def _advertise_gpu(self) -> None:
        """kind-gpu's fake GPU: the node status patch (harness/cluster/gpu.py), on the real kubelet."""
        from kubernetes import config as k8s_config

        from harness.cluster.gpu import advertise_fake_gpu

        started = time.monotonic()
        api = k8s_config.new_client_from_config(config_file=str(self.kubeconfig))
        advertise_fake_gpu(api, self.gpu_node_name, count=1, deadline_s=60)
        self.timings[f"{self.gpu_node_name} advertising nvidia.com/gpu"] = time.monotonic() - started

    # ------------------------------------------------------------------ teardown
    def stop(self) -> None:
        """Stop every process (nodes newest first, then the control plane), unmount, remove the
        cgroups, the namespaces and the folder; then close the cluster's ledger (it removes and
        names anything this missed)."""
        from harness.ledger.undo import processes_with_token, undo_cgroup, undo_mount

        if self.record is None:
            return
        with activated(self.record) as record:
            for node in reversed(self.nodes):
                node.stop()
            for proc in reversed(self.procs):
                proc.stop(timeout=20)
            self.procs.clear()
            if "containerd" in self.bins:
                # Shims outlive containerd by design (they keep containers running) and leave its process
                # group; they carry the cluster's token, and are ours if they are our shim binary.
                shim = str(self.bins["containerd"].binary("containerd-shim-runc-v2"))
                for p in processes_with_token(record.token, exclude=[os.getpid()]):
                    with contextlib.suppress(psutil.Error):  # gone already
                        if p.exe() == shim:
                            p.kill()
            if self.work is not None:
                # Whatever is left in the pods' cgroups dies before the unmount.
                for node in self.nodes:
                    for hierarchy in cgroup_hierarchies():
                        key = str(hierarchy / node.cgroup_root.strip("/"))
                        if record.entry_for("cgroup", key) is not None:
                            try:
                                undo_cgroup({"path": key})
                                record.release_key("cgroup", key)
                            except RuntimeError:
                                pass
                undo_mount({"path": str(self.work), "tree": True})
                record.release_key("mount", str(self.work))
            for netns in reversed(self._extra_netns):
                netns.close()
            if self.netns is not None:
                self.netns.close()
            for node in reversed(self.nodes):
                release_mountpoints(node.mountpoints)
            if self.work is not None:
                record.remove_dir(self.work)
        self.record.close()
        self.record = None

    def keep(self) -> Path:
        """Leave the cluster running after this process: hand its ledger over to the kept record
        (harness/host/kept.py), which ``seamcheck-cluster down`` or a later session removes."""
        from harness.host.kept import write_kept

        assert self.record is not None, "the cluster was not started here"
        token, entries = self.record.hand_over()
        self.record = None
        return write_kept(self, token, entries)


def main(argv: list[str] | None = None) -> int:
    """``python -m harness.host.cluster [--addons] [--gpu-node] [--hold SECONDS]``: bring the cluster
    up, print how to reach it, keep it for a while (Ctrl-C ends it early), then remove it."""
    import argparse
    import sys

    parser = argparse.ArgumentParser(prog="python -m harness.host.cluster", description=main.__doc__)
    parser.add_argument("--addons", action="store_true", help="also kube-proxy, CoreDNS, NetworkPolicy")
    parser.add_argument("--gpu-node", action="store_true", help="also a second node shaped like a GPU pool")
    parser.add_argument("--hold", type=float, default=600.0, help="seconds to keep it up (default 600)")
    args = parser.parse_args(argv)
    cluster = HostCluster(addons=args.addons, gpu_node=args.gpu_node)
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
