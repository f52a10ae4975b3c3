"""KServe's storage initializer, run for real: the `storage` role environment holds the row's
`kserve[storage]` and we call the same `Storage.download(storageUri, "/mnt/models")` that the
init container's entrypoint runs, into a replica's own model folder.
"""
from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

from harness.envs import RoleEnv
from harness.procs import run_command

__all__ = ["DownloadResult", "download_model"]

# The init container's entrypoint is `Storage.download(src_uri, dest_path)`; nothing more.
# KServe <= 0.14 ships it as kserve.storage; from 0.15 it is the separate kserve-storage package.
_SCRIPT = """
import sys
try:
    from kserve_storage import Storage
except ImportError:
    from kserve.storage import Storage
Storage.download(sys.argv[1], out_dir=sys.argv[2])
"""


@dataclass(frozen=True)
class DownloadResult:
    ok: bool
    exit_code: int
    log: str
    seconds: float


def download_model(env: RoleEnv, storage_uri: str, dest: Path, *, extra_env: dict[str, str],
                   timeout_s: float = 300.0) -> DownloadResult:
    import time

    dest.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    try:
        proc = run_command([str(env.python), "-c", _SCRIPT, storage_uri, str(dest)], what="storage-initializer",
                           timeout=timeout_s, env={**os.environ, **extra_env})
    except subprocess.TimeoutExpired:
        return DownloadResult(False, -1, f"storage-initializer: no result after {timeout_s:.0f}s",
                              time.monotonic() - started)
    return DownloadResult(proc.returncode == 0, proc.returncode, proc.stdout + proc.stderr,
                          time.monotonic() - started)
