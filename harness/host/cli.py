"""``seamcheck-cluster up|down|status``: the host cluster by hand, for reuse across runs.

``up`` starts the cluster the `host` profile uses (two nodes, add-ons) and keeps it: it outlives the
command (harness/host/kept.py), and every later ``pytest --profile host`` reuses it and leaves it in
place. ``down`` removes it completely (processes, mounts, cgroups, namespaces, links, folders).
``status`` says whether one is kept and answers. All three print one line and exit 0 on success;
``--ledger-dir`` (or SEAMCHECK_LEDGER_DIR) names the folder the record lives in, as for pytest.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from harness.errors import SeamcheckError
from harness.ledger import ledger
from harness.ledger.ledger import LEDGER_DIR_ENV

__all__ = ["main"]


def _up(args: argparse.Namespace) -> int:
    from harness.host.cluster import HostCluster
    from harness.host.kept import reuse_kept
    from harness.host.preflight import preflight_machine

    kept = reuse_kept()
    if kept is not None:
        print(f"seamcheck-cluster: already up: KUBECONFIG={kept.kubeconfig} (server {kept.server})")
        return 0
    preflight_machine()
    cluster = HostCluster(addons=True, gpu_node=True)
    try:
        cluster.start()
    except BaseException:
        cluster.stop()
        raise
    path = cluster.keep()
    print(f"seamcheck-cluster: up in {cluster.timings['start_s']:.0f}s: KUBECONFIG={cluster.kubeconfig} "
          f"(server {cluster.server}, nodes {', '.join(n.name for n in cluster.nodes)}; record {path}; "
          f"remove it with `seamcheck-cluster down`)")
    return 0


def _down(args: argparse.Namespace) -> int:
    from harness.host.kept import kept_path, remove_kept

    swept = remove_kept()
    if swept is None:
        print(f"seamcheck-cluster: no kept cluster ({kept_path()} does not exist)")
        return 0
    if swept.failures:
        print(f"seamcheck-cluster: could not remove everything: {swept.summary()}; run it again", file=sys.stderr)
        return 1
    print(f"seamcheck-cluster: down: removed {swept.summary()} in {swept.seconds:.1f}s")
    return 0


def _status(args: argparse.Namespace) -> int:
    from harness.host.kept import kept_path, read_kept
    from harness.ledger.undo import processes_with_token

    record = read_kept()
    if record is None:
        print(f"seamcheck-cluster: down (no kept cluster in {kept_path().parent})")
        return 3
    alive = len(processes_with_token(record.get("token", "")))
    from harness.host.kept import reuse_kept

    answers = reuse_kept() is not None  # one that no longer answers is removed here
    state = "up" if answers else "gone (its record was removed)"
    line = {"state": state, "kubeconfig": record.get("kubeconfig"), "server": record.get("server"),
            "nodes": [n["name"] for n in record.get("nodes", [])], "processes": alive}
    print(f"seamcheck-cluster: {state}: " + (json.dumps(line) if args.json else
                                           f"KUBECONFIG={line['kubeconfig']} (server {line['server']}, nodes "
                                           f"{', '.join(line['nodes'])}, {alive} processes)"))
    return 0 if answers else 3


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="seamcheck-cluster", description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=("up", "down", "status"))
    parser.add_argument("--ledger-dir", type=Path, default=os.environ.get(LEDGER_DIR_ENV) or None,
                        help=f"where the kept cluster's record lives (default: the ledger folder; {LEDGER_DIR_ENV})")
    parser.add_argument("--json", action="store_true", help="status: print the state as JSON")
    args = parser.parse_args(argv)
    ledger.configure(args.ledger_dir, run_id=f"seamcheck-cluster-{args.command}")
    try:
        return {"up": _up, "down": _down, "status": _status}[args.command](args)
    except KeyboardInterrupt:
        return 130
    except SeamcheckError as exc:
        print(f"seamcheck-cluster: error: {exc}", file=sys.stderr)
        return 1
    finally:
        ledger.reset()


if __name__ == "__main__":
    sys.exit(main())
