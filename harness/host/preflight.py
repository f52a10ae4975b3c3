"""What the host cluster needs on this machine, checked before anything starts: root, the tools it
execs (with the Debian package that has each), and every component in the host build cache (a cold
build takes about 45 CPU-minutes, so it is never started from inside a session); kube-network-policies
is optional (harness/host/cluster.py chooses the enforcer)."""
from __future__ import annotations

import os
import shutil

from harness.errors import ProfileError

__all__ = ["TOOLS", "preflight_machine"]

#: What the cluster needs on the machine, with the Debian package that has it.
TOOLS = (("ip", "iproute2"), ("nsenter", "util-linux"), ("unshare", "util-linux"), ("mount", "mount"),
         ("iptables", "iptables"), ("iptables-save", "iptables"), ("iptables-restore", "iptables"),
         ("ipset", "ipset"), ("conntrack", "conntrack"))


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
    known = recipes(load_host_versions())
    missing = [c for c in COMPONENTS if hbuild.find(known[c]) is None]
    if missing:
        raise ProfileError(f"--profile host: not in the host build cache: {', '.join(missing)}; build them first with "
                           f"`python -m harness.host.build` (about 45 CPU-minutes cold, cached afterwards)")
