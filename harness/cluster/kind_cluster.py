"""A kind cluster's lifecycle, driving the `kind` CLI directly (every call with a timeout):
create from the rendered config, reuse an existing cluster by name, export its kubeconfig,
read the host ports a reused cluster publishes, delete.

Why not pytest-kind: 22.11 pins kind v0.17 (too old for Kubernetes 1.28+ node images, and
without NetworkPolicy enforcement); the kind CLI itself is the stable interface.

Also a small CLI for CI workflows, so a cluster created outside pytest matches the profile:

    python -m harness.cluster.kind_cluster config --profile kind [--row ROW] [--name NAME]   # the cluster config
    python -m harness.cluster.kind_cluster kind-version [--row ROW]                          # e.g. v0.24.0
"""
from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from harness.cluster.commands import run_cmd
from harness.cluster.errors import ClusterError
from harness.cluster.render import render_kind_config
from harness.cluster.spec import ClusterSpec, cluster_spec

__all__ = ["CREATE_TIMEOUT_S", "KindCluster", "main"]

CREATE_TIMEOUT_S = 900.0  # image pull of a node image on a cold CI runner, then kubeadm on 3-4 nodes
DELETE_TIMEOUT_S = 300.0


@dataclass
class KindCluster:
    spec: ClusterSpec
    kind: str
    docker: str = "docker"
    say: Callable[[str], None] = lambda _m: None

    @property
    def name(self) -> str:
        return self.spec.cluster_name

    def clusters(self) -> list[str]:
        out = run_cmd([self.kind, "get", "clusters"], what="listing kind clusters", timeout=60)
        # kind prints "No kind clusters found." on stderr when there are none.
        return [line.strip() for line in out.stdout.splitlines() if line.strip()]

    def exists(self) -> bool:
        return self.name in self.clusters()

    def create(self, config_path: Path, *, timeout: float = CREATE_TIMEOUT_S) -> None:
        config_path.parent.mkdir(parents=True, exist_ok=True)
        config_path.write_text(render_kind_config(self.spec))
        self.say(f"kind: creating cluster {self.name!r} ({self.spec.node_image.split('@')[0]}, "
                 f"{1 + self.spec.workers + self.spec.gpu_workers} nodes; deadline {timeout:.0f}s) ...")
        run_cmd([self.kind, "create", "cluster", "--name", self.name, "--config", str(config_path),
                 "--wait", "300s"], what=f"creating kind cluster {self.name!r}", timeout=timeout)

    def ensure(self, config_path: Path) -> bool:
        """Create the cluster unless one of that name exists; True when this call created it."""
        if self.exists():
            self.say(f"kind: reusing the existing cluster {self.name!r} (not created by this session, so it "
                     "is left in place at the end)")
            return False
        self.create(config_path)
        return True

    def write_kubeconfig(self, path: Path) -> Path:
        out = run_cmd([self.kind, "get", "kubeconfig", "--name", self.name],
                      what=f"exporting the kubeconfig of kind cluster {self.name!r}", timeout=60)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(out.stdout)
        path.chmod(0o600)
        return path

    def published_ports(self) -> dict[int, int]:
        """container (node) port -> host port, as Docker publishes them on the control-plane node.
        A reused cluster may have been created with other host ports than this session would pick."""
        node = f"{self.name}-control-plane"
        out = run_cmd([self.docker, "port", node], what=f"reading the published ports of {node}", timeout=30,
                      check=False)
        ports = {}
        for line in out.stdout.splitlines():
            match = re.match(r"\s*(\d+)/tcp\s*->\s*[\d.:\[\]]*:(\d+)\s*$", line)
            if match:
                ports[int(match.group(1))] = int(match.group(2))
        return ports

    def delete(self, *, timeout: float = DELETE_TIMEOUT_S) -> None:
        self.say(f"kind: deleting cluster {self.name!r} ...")
        run_cmd([self.kind, "delete", "cluster", "--name", self.name], what=f"deleting kind cluster {self.name!r}",
                timeout=timeout)


def main(argv: list[str] | None = None) -> int:
    from harness.matrix import DEFAULT_MATRIX_PATH, load_matrix

    parser = argparse.ArgumentParser(prog="python -m harness.cluster.kind_cluster", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    for name in ("config", "kind-version", "node-image", "images"):
        p = sub.add_parser(name)
        p.add_argument("--row", default=None)
        p.add_argument("--matrix-file", default=str(DEFAULT_MATRIX_PATH))
        p.add_argument("--profile", default="kind", choices=["kind", "kind-gpu"])
        p.add_argument("--name", default=None)
        p.add_argument("--namespace", default="model-serving")
    args = parser.parse_args(argv)
    row = load_matrix(args.matrix_file).row(args.row)
    spec = cluster_spec(row, args.profile, cluster_name=args.name, serving_namespace=args.namespace)
    if args.cmd == "config":
        sys.stdout.write(render_kind_config(spec))
    elif args.cmd == "kind-version":
        print(spec.kind_version)
    elif args.cmd == "node-image":
        print(spec.node_image)
    else:  # every image the install pulls, replacements applied: the nightly pre-pulls and loads them
        import tempfile

        from harness.cluster.commands import Kubectl
        from harness.cluster.install import COMPONENTS, install_images, kfp_target

        with tempfile.TemporaryDirectory(prefix="seamcheck-images-") as scratch:
            kfp = kfp_target(spec, row.image_replacements, row.hidden_images, Path(scratch) / "kfp-overlay")
            images = install_images(spec, Kubectl(), COMPONENTS, kfp=kfp, replacements=row.image_replacements,
                                    hidden_images=row.hidden_images, timeout_s=300)
        print("\n".join(images))
    return 0


if __name__ == "__main__":
    from harness.matrix import MatrixError

    try:
        sys.exit(main())
    except (ClusterError, MatrixError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
