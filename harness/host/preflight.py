"""What the host cluster needs on this machine, checked before anything starts: root, the tools it
execs (with the Debian package that has each), and every component in the host build cache (a cold
build takes about 45 CPU-minutes, so it is never started from inside a session); kube-network-policies
is optional (harness/host/cluster.py chooses the enforcer); and enough inotify instances for its
kubelets and containerd."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

from harness.errors import ProfileError

__all__ = ["INOTIFY_INSTANCES", "TOOLS", "inotify_problem", "preflight_machine"]

#: What the cluster needs on the machine, with the Debian package that has it.
TOOLS = (("ip", "iproute2"), ("nsenter", "util-linux"), ("unshare", "util-linux"), ("mount", "mount"),
         ("iptables", "iptables"), ("iptables-save", "iptables"), ("iptables-restore", "iptables"),
         ("ipset", "ipset"), ("conntrack", "conntrack"))

#: fs.inotify.max_user_instances the cluster asks for. Every kubelet (cAdvisor, its config and
#: certificate watchers) and containerd take inotify instances from root's budget, which Debian
#: leaves at 128: in CI (2026-12-02) a second cluster's kubelet exited with "Failed to start
#: cAdvisor: inotify_init: too many open files". 512 is what kind asks of its hosts for the same
#: reason (kind's docs, user/known-issues "Pod errors due to too many open files").
INOTIFY_INSTANCES = 512
_INOTIFY = "/proc/sys/fs/inotify/max_user_instances"


def inotify_problem(path: str = _INOTIFY, need: int = INOTIFY_INSTANCES) -> str | None:
    try:
        have = int(Path(path).read_text().strip())
    except (OSError, ValueError):
        return None  # not Linux's file: nothing to judge
    if have >= need:
        return None
    return (f"--profile host: fs.inotify.max_user_instances is {have}, the cluster's kubelets and containerd need "
            f"about {need}; raise it with `sysctl -w fs.inotify.max_user_instances={need}` (as kind asks of its hosts)")


def preflight_machine() -> None:
    """Root, the tools, and every component in the host build cache (a cold build takes about 45
    CPU-minutes, so it is never started from inside a session). One-line ProfileError otherwise."""
    from harness.host import build as hbuild
    from harness.host.cluster import COMPONENTS
    from harness.host.recipes import recipes
    from harness.host.versions import load_host_versions

    if os.geteuid() != 0:
        raise ProfileError("--profile host needs root (network namespaces, mounts, cgroups); run pytest as root")
    missing_tools = [f"{tool} (apt-get install -y {pkg})" for tool, pkg in TOOLS if not shutil.which(tool)]
    if missing_tools:
        raise ProfileError(f"--profile host needs {', '.join(missing_tools)}")
    problem = inotify_problem()
    if problem:
        raise ProfileError(problem)
    known = recipes(load_host_versions())
    missing = [c for c in COMPONENTS if hbuild.find(known[c]) is None]
    if missing:
        raise ProfileError(f"--profile host: not in the host build cache: {', '.join(missing)}; build them first with "
                           f"`python -m harness.host.build` (about 45 CPU-minutes cold, cached afterwards)")
