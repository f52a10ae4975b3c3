"""A containerd of our own: started as a local process with every folder it writes (root, state,
sockets, the shims' and runc's state, fifos, /opt) under one folder the run ledger owns.

It is what a kubelet will talk to later; today it also proves the locally written images import and
run (``ctr -n k8s.io images import``, ``ctr run``). Its cgroups are named after each container and
recorded in the ledger before the container exists, its overlay mounts are recorded as one mount
tree under its folder, so a killed session leaves nothing behind.
"""
from __future__ import annotations

import os
import secrets
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from harness.host.mountns import CONTAINERD_PATHS, claim_mountpoints, private_argv, release_mountpoints
from harness.ledger import ledger
from harness.procs import ComponentFailed, ManagedProcess, run_command

__all__ = ["LocalContainerd"]

START_DEADLINE_S = 60.0
CTR_TIMEOUT_S = 180.0
_CGROUP_ROOT = Path("/sys/fs/cgroup")


@dataclass
class LocalContainerd:
    """containerd + ctr from one host build entry, runc from another; ``cri`` off unless asked."""

    bin_dir: Path  # containerd, ctr, containerd-shim-runc-v2
    runc: Path
    parent: Path | None = None  # where the private folder is made (default: the temp folder)
    cri: bool = False
    folder: Path | None = None
    proc: ManagedProcess | None = field(default=None, repr=False)

    @property
    def address(self) -> Path:
        assert self.folder is not None
        return self.folder / "containerd.sock"

    def config(self) -> str:
        d = self.folder
        disabled = "" if self.cri else 'disabled_plugins = ["io.containerd.grpc.v1.cri"]\n'
        return (f'version = 2\nroot = "{d}/root"\nstate = "{d}/state"\n{disabled}'
                f'[grpc]\n  address = "{d}/containerd.sock"\n[ttrpc]\n  address = "{d}/containerd.sock.ttrpc"\n'
                f'[debug]\n  address = "{d}/debug.sock"\n  level = "info"\n'
                # Without this the opt plugin creates /opt/containerd on the host.
                f'[plugins."io.containerd.internal.v1.opt"]\n  path = "{d}/opt"\n')

    def env(self) -> dict[str, str]:
        # The daemon finds the shim, and the shim finds runc, on PATH.
        path = f"{self.bin_dir}:{self.runc.parent}:{os.environ.get('PATH', '/usr/sbin:/usr/bin:/sbin:/bin')}"
        return {**os.environ, "PATH": path}

    def start(self) -> LocalContainerd:
        record = ledger.active()
        self.folder = record.make_dir("seamcheck-containerd-", self.parent)
        # Every overlay mount (snapshots, task rootfs) lies below the folder: one tree entry.
        record.intend("mount", key=str(self.folder), path=str(self.folder), tree=True)
        (self.folder / "config.toml").write_text(self.config())
        # A private mount namespace: the snapshots and rootfs mounts stay off the host's table and
        # the shims' sockets (always under /run/containerd/s in 1.7) land in our folder.
        self._mountpoints = claim_mountpoints(CONTAINERD_PATHS)
        binds = []
        for path in CONTAINERD_PATHS:
            own = self.folder / "host-paths" / path.strip("/").replace("/", "_")
            own.mkdir(parents=True)
            binds.append((own, path))
        argv = private_argv(binds, [str(self.bin_dir / "containerd"), "--config", str(self.folder / "config.toml")])
        self.proc = ManagedProcess(name="containerd", argv=argv, log_path=self.folder / "containerd.log",
                                   env=self.env()).start()
        self.proc.wait_until(self._answers, what=f"containerd answering on {self.address}",
                             deadline_s=START_DEADLINE_S, interval_s=0.3)
        return self

    def _answers(self) -> bool:
        return self.address.exists() and self.ctr("version", check=False).returncode == 0

    def ctr(self, *args: str, namespace: str = "k8s.io", check: bool = True,
            timeout: float = CTR_TIMEOUT_S) -> subprocess.CompletedProcess[str]:
        argv = [str(self.bin_dir / "ctr"), "--address", str(self.address), "--namespace", namespace, *args]
        try:
            proc = run_command(argv, what="ctr " + " ".join(args[:2]), timeout=timeout, env=self.env())
        except subprocess.TimeoutExpired:
            raise self._failed(f"`ctr {' '.join(args)}` gave no result in {timeout:.0f}s") from None
        if check and proc.returncode != 0:
            raise self._failed(f"`ctr {' '.join(args)}` exit {proc.returncode}: {(proc.stderr or proc.stdout).strip()[-600:]}")
        return proc

    def _failed(self, what: str) -> ComponentFailed:
        return self.proc.failure(what) if self.proc is not None else ComponentFailed(what)

    def import_image(self, archive: Path) -> str:
        """``ctr images import`` of an OCI archive (unpacked for the overlayfs snapshotter): ctr's output."""
        return self.ctr("images", "import", str(archive)).stdout

    def run(self, image: str, *command: str, timeout: float = CTR_TIMEOUT_S) -> subprocess.CompletedProcess[str]:
        """Run ``image`` once to completion with runc (``ctr run --rm``) in a fresh, empty network
        namespace; its cgroups are recorded before they exist."""
        assert self.folder is not None
        cid = f"seamcheck-{secrets.token_hex(4)}"
        entries = self._record_cgroups("k8s.io", cid)
        try:
            return self.ctr("run", "--rm", "--runc-binary", str(self.runc), "--runc-root", str(self.folder / "runc"),
                            "--fifo-dir", str(self.folder / "fifo"), image, cid, *command, timeout=timeout)
        finally:
            for path, entry in entries:
                if not path.exists():
                    ledger.active().released(entry)

    def _record_cgroups(self, namespace: str, cid: str) -> list[tuple[Path, int]]:
        # runc makes /<namespace>/<id> in every v1 hierarchy (and the unified one); the namespace
        # folder too, if it is new, is ours to remove.
        out = []
        for hierarchy in sorted(p for p in _CGROUP_ROOT.iterdir() if p.is_dir()) if _CGROUP_ROOT.is_dir() else []:
            for path in ((hierarchy / namespace) if not (hierarchy / namespace).exists() else None,
                         hierarchy / namespace / cid):
                if path is not None:
                    out.append((path, ledger.active().intend("cgroup", key=str(path), path=str(path))))
        return out

    def stop(self) -> None:
        """Stop the daemon (its shims are gone with their containers), unmount, remove the folder."""
        record = ledger.active()
        if self.proc is not None:
            self.proc.stop()
        if self.folder is not None:
            from harness.ledger.undo import undo_mount  # the ledger's own unmount: deepest first, lazily

            undo_mount({"path": str(self.folder), "tree": True})
            record.release_key("mount", str(self.folder))
            for hierarchy in (p for p in _CGROUP_ROOT.iterdir() if p.is_dir()) if _CGROUP_ROOT.is_dir() else []:
                key = str(hierarchy / "k8s.io")
                if record.entry_for("cgroup", key) is not None:
                    try:
                        os.rmdir(key)
                    except OSError:
                        pass
                    if not Path(key).exists():
                        record.release_key("cgroup", key)
            release_mountpoints(getattr(self, "_mountpoints", []))
            record.remove_dir(self.folder)
