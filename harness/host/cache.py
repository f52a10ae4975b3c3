"""The host build cache: one folder per (component, hash of its inputs), complete only when its
marker exists.

Layout under ``cache_root()`` (``$SEAMCHECK_HOST_CACHE``, default ~/.cache/seamcheck/host):
``bin/<component>-<hash16>/`` holds the binaries and, written last, ``seamcheck-host-build.json``
(the inputs, and what the build measured: wall and CPU seconds, sizes). A folder without the marker
is a half-built leftover and is rebuilt from scratch. ``locks/<component>-<hash16>.lock`` is the
FileLock two builds of the same entry take, so they never build it at once (the second one waits,
then finds the marker). ``go-build/`` is the Go build cache these builds use (kept apart from the
user's, so its size is ours to measure); the module cache stays Go's own (``go env GOMODCACHE``).
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["MARKER", "Entry", "cache_root", "entry_for", "input_key", "read_marker", "write_marker"]

MARKER = "seamcheck-host-build.json"
#: Bumped when the way components are built changes, so old entries are not reused.
RECIPE_VERSION = "host-build-1"


def cache_root() -> Path:
    env = os.environ.get("SEAMCHECK_HOST_CACHE")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(Path.home(), ".cache")
    return Path(base) / "seamcheck" / "host"


def input_key(inputs: dict[str, Any]) -> str:
    """The 16-hex hash of everything that decides a build's output (canonical JSON)."""
    blob = json.dumps({"recipe": RECIPE_VERSION, **inputs}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Entry:
    component: str
    key: str
    root: Path

    @property
    def dir(self) -> Path:
        return self.root / "bin" / f"{self.component}-{self.key}"

    @property
    def lock_path(self) -> Path:
        return self.root / "locks" / f"{self.component}-{self.key}.lock"

    @property
    def marker(self) -> Path:
        return self.dir / MARKER

    def complete(self) -> bool:
        return self.marker.is_file()

    def binary(self, name: str) -> Path:
        return self.dir / name


def entry_for(component: str, inputs: dict[str, Any], root: Path | None = None) -> Entry:
    return Entry(component, input_key({"component": component, **inputs}), root or cache_root())


def write_marker(entry: Entry, record: dict[str, Any]) -> None:
    """Written last, atomically (rename): its presence means every binary is in place."""
    tmp = entry.dir / (MARKER + ".tmp")
    tmp.write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, entry.marker)


def read_marker(path: Path) -> dict[str, Any]:
    return json.loads(Path(path).read_text())
