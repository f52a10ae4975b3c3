"""A stand-in session for the ledger's tests: ``python -m tests.ledger_owner`` records and creates
real resources of every kind through the harness's own code (procs.spawn, the ledger's helpers,
real `ip`, `iptables`, `mount`, cgroup folders), writes what it made to ``--report``, then waits
to be killed (or closes its ledger normally with ``--close``)."""
from __future__ import annotations

import argparse
import json
import subprocess
import time
from pathlib import Path

from harness.ledger import ledger
from harness.ledger.undo import processes_with_token
from harness.procs import kill_process_tree, spawn


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--ledger-dir", type=Path, required=True)
    parser.add_argument("--report", type=Path, required=True)
    parser.add_argument("--make", default="process,dir")
    parser.add_argument("--close", action="store_true", help="release everything and close normally")
    parser.add_argument("--leak", action="store_true", help="with --close: leave the process unreleased")
    parser.add_argument("--tag", default="t1")
    args = parser.parse_args()
    kinds = set(args.make.split(","))
    record = ledger.configure(args.ledger_dir, run_id=f"owner-{args.tag}")
    made: dict[str, object] = {"token": record.token}
    if "process" in kinds:
        # A group leader with a child, and a grandchild that leaves the group (setsid): found by token.
        child = spawn(["sh", "-c", "sleep 300 & setsid sleep 301 & wait"], what="sleepers")
        until = time.monotonic() + 20
        while len(processes_with_token(record.token)) < 3 and time.monotonic() < until:
            time.sleep(0.02)  # the shell's two children are forked a moment later
        made["process"] = child.pid
        made["process_entry"] = child.entry
    if "dir" in kinds:
        folder = record.make_dir("seamcheck-ledgertest-")
        (folder / "inside").write_text("x")
        made["dir"] = str(folder)
    name, link = f"seamcheck-lt-{args.tag}", f"sclt{args.tag}h"
    if "netns" in kinds:
        with record.creating("netns", key=name, name=name):
            subprocess.run(["ip", "netns", "add", name], check=True, timeout=20)
        with record.creating("link", key=link, name=link):
            subprocess.run(["ip", "link", "add", link, "type", "veth", "peer", "name", f"sclt{args.tag}n"],
                           check=True, timeout=20)
        rule = ["-d", "10.213.255.1", "-p", "tcp", "--dport", "9", "-j", "DROP"]
        with record.creating("iptables", netns=name, table="filter", chain="OUTPUT", rule=rule):
            subprocess.run(["ip", "netns", "exec", name, "iptables", "-A", "OUTPUT", *rule], check=True, timeout=20)
        made.update(netns=name, link=link)
    if "mount" in kinds:
        point = record.make_dir("seamcheck-ledgermnt-")
        with record.creating("mount", path=str(point), tree=True):
            subprocess.run(["mount", "-t", "tmpfs", "seamcheck-test", str(point)], check=True, timeout=20)
        (point / "sub").mkdir()
        subprocess.run(["mount", "-t", "tmpfs", "seamcheck-test", str(point / "sub")], check=True, timeout=20)
        made["mount"] = str(point)
    if "cgroup" in kinds:
        group = Path(f"/sys/fs/cgroup/pids/seamcheck-ledgertest-{args.tag}")
        with record.creating("cgroup", path=str(group)):
            (group / "inner").mkdir(parents=True)
        # A process with no token (as a container's would be): only its cgroup says it is ours.
        jailed = subprocess.Popen(["sleep", "302"], start_new_session=True)
        (group / "inner" / "cgroup.procs").write_text(str(jailed.pid))
        made.update(cgroup=str(group), jailed=jailed.pid)
    if "command" in kinds:
        marker = args.report.with_suffix(".undone")
        record.intend("command", argv=["touch", str(marker)])
        made["undo_marker"] = str(marker)
    if "claim" in kinds:
        record.claim("port:47999", component="test")
    made["ledger"] = str(record.path)
    made["reaper"] = record._reaper.pid if record._reaper else None
    args.report.write_text(json.dumps(made))
    if args.close:
        if "process_entry" in made and not args.leak:
            kill_process_tree(int(made["process"]), timeout=10)  # teardown's own way: group and descendants
            record.released(int(made["process_entry"]))
        if "dir" in made:
            record.remove_dir(Path(str(made["dir"])))
        swept = ledger.reset()
        args.report.with_suffix(".closed").write_text(json.dumps(swept.removed))
        return
    time.sleep(600)


if __name__ == "__main__":
    main()
