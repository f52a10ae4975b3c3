"""A host cluster kept after the process that started it (``--keep-cluster``, ``seamcheck-cluster up``).

``HostCluster.keep()`` hands the cluster's run ledger over (every pending entry marked kept, so no
reaper undoes it) and writes this record: where the cluster lives and how to reach it, plus the
ledger's token and its entries, the exact list of what to remove. The record sits beside the
ledgers (``<ledger folder>/host-cluster.kept.json``) but is no ledger: the sweep of dead runs leaves
it alone. A later session reuses a kept cluster that still answers and leaves it in place;
``remove_kept`` (``seamcheck-cluster down``) sweeps its entries with its token, the same undo code a
reaper runs, and a kept cluster that no longer answers is removed the same way before a new one starts.
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.ledger import ledger
from harness.ledger.records import Entry
from harness.ledger.undo import Swept, sweep

if TYPE_CHECKING:
    from harness.host.cluster import HostCluster

__all__ = ["KEPT_NAME", "kept_path", "read_kept", "remove_kept", "reuse_kept", "write_kept"]

KEPT_NAME = "host-cluster.kept.json"


def kept_path(directory: Path | None = None) -> Path:
    return Path(directory or ledger.active().directory) / KEPT_NAME


def write_kept(cluster: HostCluster, token: str, entries: list[dict[str, Any]], path: Path | None = None) -> Path:
    assert cluster.netns is not None and cluster.work is not None
    path = path or kept_path()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    record = {
        "kept_at": time.time(), "kept_by": os.getpid(), "token": token, "entries": entries,
        "work": str(cluster.work), "kubeconfig": str(cluster.kubeconfig), "server": cluster.server,
        "node": cluster.node, "service_cidr": cluster.service_cidr, "service_ip": cluster.service_ip,
        "dns_ip": cluster.dns_ip, "addons": cluster.addons, "gpu_node": cluster.gpu_node,
        "network_policy": cluster.network_policy, "enforcer": cluster.enforcer,
        "netns": _netns(cluster.netns),
        "nodes": [{"name": n.name, "netns": _netns(n.netns), "pod_cidr": n.pod_cidr, "cgroup_root": n.cgroup_root,
                   "labels": n.labels, "taints": n.taints} for n in cluster.nodes],
    }
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(record, indent=1))
    os.replace(tmp, path)
    return path


def _netns(ns: Any) -> dict[str, str]:
    return {"name": ns.name, "host_if": ns.host_if, "host_ip": ns.host_ip, "node_ip": ns.node_ip,
            "service_cidr": ns.service_cidr}


def read_kept(path: Path | None = None) -> dict[str, Any] | None:
    path = path or kept_path()
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except ValueError:
        return {"token": "", "entries": [], "broken": str(path)}  # half-written: nothing to reuse


def remove_kept(path: Path | None = None) -> Swept | None:
    """Remove the kept cluster (processes by its token, then mounts, cgroups, namespaces, folders);
    None when there is none."""
    path = path or kept_path()
    record = read_kept(path)
    if record is None:
        return None
    entries = [Entry(e["id"], e["kind"], dict(e["what"]), "created") for e in record.get("entries", [])]
    swept = sweep(entries, record.get("token", ""))
    if not swept.failures:
        path.unlink(missing_ok=True)
    return swept


def reuse_kept(path: Path | None = None) -> HostCluster | None:
    """The kept cluster, when there is one whose API server answers; a kept one that does not is
    removed (its processes are gone or half gone: a reboot, a kill) and None returned."""
    from harness.host import build as hbuild
    from harness.host.cluster import API_COMPONENTS, COMPONENTS, HostCluster
    from harness.host.netns import NodeNetns
    from harness.host.node import HostNode
    from harness.host.pki import Pki

    path = path or kept_path()
    record = read_kept(path)
    if record is None:
        return None
    if record.get("broken"):
        remove_kept(path)
        return None
    cluster = HostCluster(node=record["node"], service_cidr=record["service_cidr"], service_ip=record["service_ip"],
                          dns_ip=record["dns_ip"], addons=record["addons"], gpu_node=record["gpu_node"],
                          network_policy=record["network_policy"], enforcer=record["enforcer"],
                          work=Path(record["work"]), netns=NodeNetns(**record["netns"]))
    cluster.pki = Pki(cluster.work / "pki")
    cluster.bins = {c: b for c in (COMPONENTS if record["nodes"] else API_COMPONENTS)
                    if (b := hbuild.find(hbuild.recipes(hbuild.load_host_versions())[c])) is not None}
    first = cluster.netns
    for n in record["nodes"]:
        netns = first if n["netns"]["name"] == first.name else NodeNetns(**n["netns"], peer=first)
        cluster.nodes.append(HostNode(name=n["name"], netns=netns, work=cluster.work / "nodes" / n["name"],
                                      pod_cidr=n["pod_cidr"], cgroup_root=n["cgroup_root"], bin=cluster.bin,
                                      labels=n["labels"], taints=n["taints"]))
    if "kubernetes" not in cluster.bins or not cluster.pki.ca_crt.is_file() or not cluster.https_ok("/readyz"):
        remove_kept(path)
        return None
    return cluster
