"""Prerequisite programs of the cluster profiles, checked before anything starts.

Each failure is ONE line naming the fix (the plugin prints it as `ERROR: seamcheck: ...`):
a missing binary, a kind older than v0.24 (the first release whose default CNI enforces
NetworkPolicy, which the chaos faults need), or a Docker daemon that does not answer.
"""
from __future__ import annotations

import re
import shutil
from dataclasses import dataclass

from harness.cluster.commands import run_cmd
from harness.cluster.errors import ClusterError
from harness.errors import ProfileError

__all__ = [
    "MIN_KIND",
    "ToolError",
    "Tools",
    "check_cloud_tools",
    "check_kind_tools",
    "docker_daemon_version",
    "kind_version",
    "parse_version",
    "require",
]

#: kind v0.24.0 ships kindnet with the kube-network-policies controller: NetworkPolicy is enforced.
MIN_KIND = (0, 24, 0)
DOCKER_TIMEOUT_S = 15.0


class ToolError(ProfileError):
    """A prerequisite program is missing, too old, or not answering (one-line message)."""


@dataclass(frozen=True)
class Tools:
    kubectl: str
    kind: str | None = None
    docker: str | None = None
    helm: str | None = None
    git: str | None = None
    kind_version: str | None = None
    docker_server: str | None = None


def require(name: str, hint: str, binary: str | None = None) -> str:
    """The absolute path of `binary` (or `name` on PATH); ToolError naming the fix otherwise."""
    candidate = binary or name
    found = shutil.which(candidate)
    if not found:
        where = f"{candidate!r} was not found" if binary else f"{name} is not installed (not on PATH)"
        raise ToolError(f"{where}; {hint}")
    return found


def parse_version(text: str) -> tuple[int, int, int]:
    match = re.search(r"v?(\d+)\.(\d+)(?:\.(\d+))?", text or "")
    if not match:
        raise ValueError(f"no version number in {text!r}")
    return int(match.group(1)), int(match.group(2)), int(match.group(3) or 0)


def kind_version(kind: str) -> str:
    """`kind version` prints e.g. `kind v0.24.0 go1.22.6 linux/amd64`."""
    try:
        out = run_cmd([kind, "version"], what="asking kind for its version", timeout=15)
    except ClusterError as exc:
        raise ToolError(str(exc).splitlines()[0]) from None
    match = re.search(r"v\d+\.\d+\.\d+", out.stdout)
    if not match:
        raise ToolError(f"`{kind} version` printed no version: {out.stdout.strip()[:200]!r}")
    return match.group(0)


def docker_daemon_version(docker: str, timeout: float = DOCKER_TIMEOUT_S) -> str:
    """The daemon's version; ToolError in one line when the client cannot reach a daemon."""
    try:
        out = run_cmd([docker, "info", "--format", "{{.ServerVersion}}"], what="asking the Docker daemon",
                      timeout=timeout, check=False)
    except ClusterError:
        raise ToolError(f"the Docker daemon did not answer `docker info` within {timeout:.0f}s; start Docker "
                        "(kind runs its nodes as containers)") from None
    text = (out.stderr + out.stdout).strip()
    if out.returncode != 0 or not out.stdout.strip() or "Cannot connect" in text:
        first = next((line.strip() for line in text.splitlines() if line.strip()), "no output")
        raise ToolError(f"the Docker daemon is not answering ({first}); start Docker or point DOCKER_HOST at "
                        "a running daemon (kind runs its nodes as containers)")
    return out.stdout.strip().splitlines()[0]


#: Free disk the kind profile needs where Docker keeps its data. An estimate: kind turns the
#: kubelet's image garbage collection and disk eviction off (kind v0.24.0's kubeadm config sets
#: imageGCHighThresholdPercent 100 and evictionHard 0%), so every image stays on every node that
#: pulled it; the MLflow runtime image (several GB) lands on each worker, and the stack's ~25 other
#: images and the node images come on top.
KIND_FREE_DISK_GIB = 20


def docker_free_disk_gib(docker: str, timeout: float = DOCKER_TIMEOUT_S) -> tuple[str, float] | None:
    """(Docker's root folder, its free GiB), or None when Docker does not say or the folder cannot be
    read from here (a rootless daemon, a VM)."""
    out = run_cmd([docker, "info", "--format", "{{.DockerRootDir}}"], what="asking Docker for its root folder",
                  timeout=timeout, check=False)
    root = out.stdout.strip()
    if out.returncode != 0 or not root:
        return None
    try:
        return root, shutil.disk_usage(root).free / 2**30
    except OSError:
        return None


def check_docker_disk(docker: str, need_gib: float = KIND_FREE_DISK_GIB) -> None:
    found = docker_free_disk_gib(docker)
    if found is not None and found[1] < need_gib:
        root, free = found
        raise ToolError(f"Docker's data folder {root} has {free:.1f} GiB free; the kind profile needs about "
                        f"{need_gib:g} GiB (kind keeps every pulled image on every node); free some (`docker system "
                        "prune -af`, removing unused toolchains on a CI runner) or move Docker's data-root")


def check_kind_tools(kind_bin: str | None = None, *, need_helm: bool = False) -> Tools:
    """kind, kubectl and git (KFP's remote kustomizations) installed; kind new enough; Docker answering."""
    kind = require("kind", "install kind >= v0.24 (https://kind.sigs.k8s.io/docs/user/quick-start/#installation) "
                           "or pass --kind-bin", kind_bin)
    version = kind_version(kind)
    if parse_version(version) < MIN_KIND:
        raise ToolError(f"kind {version} is too old: seamcheck needs >= v{'.'.join(map(str, MIN_KIND))} "
                        "(its CNI enforces NetworkPolicy, which the chaos faults rely on); install a newer kind "
                        "or pass --kind-bin")
    docker = require("docker", "install Docker (kind runs its nodes as Docker containers)")
    kubectl = require("kubectl", "install kubectl (https://kubernetes.io/docs/tasks/tools/)")
    git = require("git", "install git (kubectl fetches KFP's kustomize manifests with it)")
    helm = require("helm", "install helm 3 (the row's network layer is Istio, installed from its charts)") \
        if need_helm else None
    server = docker_daemon_version(docker)
    check_docker_disk(docker)
    return Tools(kubectl=kubectl, kind=kind, docker=docker, helm=helm, git=git, kind_version=version,
                 docker_server=server)


def check_cloud_tools(*, install: bool, need_helm: bool = False) -> Tools:
    kubectl = require("kubectl", "install kubectl (https://kubernetes.io/docs/tasks/tools/)")
    git = require("git", "install git (kubectl fetches KFP's kustomize manifests with it)") if install else None
    helm = require("helm", "install helm 3 (the row's network layer is Istio, installed from its charts)") \
        if install and need_helm else None
    return Tools(kubectl=kubectl, git=git, helm=helm)
