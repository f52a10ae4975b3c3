"""Host cluster figures: time to up per component, cold and warm, and the cluster's peak memory.

    flock /work/stack.lock .venv/bin/python benchmarks/host_cluster.py [--shape full|api] [--runs 2] [--json]

Each run starts the cluster the `host` profile uses (``--shape full``: two nodes, kube-proxy, CoreDNS,
the NetworkPolicy controller, the fake GPU) or envtest's shape (``--shape api``: etcd and
kube-apiserver), prints what each component's wait took (HostCluster.timings), samples the resident
memory of every process the cluster runs (its ledger's token, and the processes in its nodes' cgroups:
the Pods) every 0.5 s while it starts and for 10 s once up, and stops it. The first run is "cold":
the image archives are written anew (they are removed first; the binaries stay cached: their cold
build is benchmarks/host_build.py's); later runs are "warm". Needs root and the host build cache.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from harness.host.cache import cache_root
from harness.host.cluster import HostCluster
from harness.host.node import cgroup_hierarchies
from harness.ledger import ledger
from harness.ledger.undo import processes_with_token


class MemorySampler:
    def __init__(self, cluster: HostCluster) -> None:
        self.cluster = cluster
        self.peak_total = 0
        self.peak_by_name: dict[str, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> MemorySampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _pids(self) -> set[int]:
        pids: set[int] = set()
        if self.cluster.record is not None and self.cluster.record.is_open:
            pids |= {p.pid for p in processes_with_token(self.cluster.record.token)}
        for node in self.cluster.nodes:  # the Pods' processes carry no token: their cgroups name them
            memory = [h for h in cgroup_hierarchies() if h.name == "memory"]
            for root in memory:
                for folder, _dirs, files in os.walk(root / node.cgroup_root.strip("/")):
                    if "cgroup.procs" in files:
                        try:
                            pids |= {int(x) for x in Path(folder, "cgroup.procs").read_text().split()}
                        except (OSError, ValueError):
                            pass
        return pids

    def _run(self) -> None:
        while not self._stop.wait(0.5):
            total, by_name = 0, {}
            for pid in self._pids():
                try:
                    proc = psutil.Process(pid)
                    rss, name = proc.memory_info().rss, proc.name()
                except psutil.Error:
                    continue
                total += rss
                by_name[name] = by_name.get(name, 0) + rss
            if total > self.peak_total:
                self.peak_total, self.peak_by_name = total, by_name


def one_run(shape: str, cold: bool) -> dict:
    if cold:
        for archive in (cache_root() / "images").glob("*.tar"):
            archive.unlink()
    cluster = HostCluster(addons=shape == "full", gpu_node=shape == "full", api_only=shape == "api")
    sampler = MemorySampler(cluster)
    with sampler:
        try:
            cluster.start()
            time.sleep(10)  # settled: CoreDNS serving, the controllers' first syncs done
        finally:
            stop_started = time.monotonic()
            cluster.stop()
            stop_s = time.monotonic() - stop_started
    return {"shape": shape, "cold": cold, "timings": {k: round(v, 2) for k, v in cluster.timings.items()},
            "stop_s": round(stop_s, 1), "peak_rss_mib": round(sampler.peak_total / 2**20),
            "peak_rss_by_program_mib": {k: round(v / 2**20) for k, v in
                                        sorted(sampler.peak_by_name.items(), key=lambda kv: -kv[1])}}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shape", choices=("full", "api"), default="full")
    parser.add_argument("--runs", type=int, default=2, help="the first is cold (image archives written anew)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    results = []
    try:
        for i in range(args.runs):
            results.append(one_run(args.shape, cold=i == 0))
    finally:
        ledger.reset()
    if args.json:
        print(json.dumps(results, indent=1))
        return 0
    print(f"host cluster, shape {args.shape}, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, "
          f"load average {os.getloadavg()[0]:.1f}")
    for r in results:
        print(f"\n{'cold' if r['cold'] else 'warm'}: up in {r['timings']['start_s']} s, stopped in {r['stop_s']} s, "
              f"peak RSS {r['peak_rss_mib']} MiB")
        for what, seconds in r["timings"].items():
            if what != "start_s":
                print(f"  {seconds:7.2f} s  {what}")
        print("  peak RSS by program (MiB): " + ", ".join(f"{k} {v}" for k, v in r["peak_rss_by_program_mib"].items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
