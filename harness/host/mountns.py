"""A private mount namespace for containerd (and the kubelet, which joins it), so the fixed host
paths they write land in our own folder and their mounts stay off the host's mount table.

Some paths are not configurable: a containerd 1.7 shim puts its socket in /run/containerd/s
(runtime/v2/shim/util_unix.go, socketRoot), libcni caches results in /var/lib/cni, and the kubelet
uses /var/lib/kubelet/device-plugins and /var/log/containers whatever its --root-dir. Inside the
namespace our own folder is bound over each; on the host each is at most an empty mount point,
which the run ledger records (when we create it) and ``release_mountpoints`` removes. The
namespace starts with ``unshare --mount --propagation private`` and dies with its last process.
"""
from __future__ import annotations

import shlex
from pathlib import Path

from harness.ledger import ledger

__all__ = ["CONTAINERD_PATHS", "KUBELET_PATHS", "claim_mountpoints", "private_argv", "release_mountpoints"]

CONTAINERD_PATHS = ("/run/containerd",)
KUBELET_PATHS = ("/var/lib/cni", "/var/lib/kubelet", "/var/log/containers", "/var/log/pods")


def claim_mountpoints(paths: tuple[str, ...]) -> list[Path]:
    """Make each missing path (an empty folder, recorded first); return the ones we made."""
    made = []
    for path in map(Path, paths):
        if path.exists():
            continue  # someone else's: we bind over it inside our namespace and leave it alone
        ledger.active().intend("dir", key=str(path), path=str(path))
        path.mkdir(mode=0o700)
        made.append(path)
    return made


def release_mountpoints(made: list[Path]) -> None:
    for path in reversed(made):
        ledger.active().remove_dir(path)


def private_argv(binds: list[tuple[Path, str]], argv: list[str]) -> list[str]:
    """``argv`` in a new private mount namespace after ``mount --bind SRC DST`` for each bind
    (one process: unshare and sh exec into it, so its pid is the namespace's first)."""
    script = "set -e; " + "".join(f"mount --bind {shlex.quote(str(src))} {shlex.quote(dst)}; " for src, dst in binds)
    script += "exec " + " ".join(shlex.quote(a) for a in argv)
    return ["unshare", "--mount", "--propagation", "private", "--", "sh", "-c", script]
