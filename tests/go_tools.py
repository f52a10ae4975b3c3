"""Programs the tests run that are built from the Go module proxy (no copy of their source here):
`go install module@version` once into ~/.cache/seamcheck/go-bin/<name>-<version>, reused after."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from harness.procs import run_command

__all__ = ["ACTIONLINT", "REGISTRY", "go_tool"]

#: (module of the command, version, binary name)
REGISTRY = ("github.com/distribution/distribution/v3/cmd/registry", "v3.1.2", "registry")
ACTIONLINT = ("github.com/rhysd/actionlint/cmd/actionlint", "v1.7.12", "actionlint")


def go_tool(module: str, version: str, name: str, *, timeout_s: float = 1200) -> Path:
    """The built binary; the test is skipped on a machine without Go."""
    binary = Path.home() / ".cache" / "seamcheck" / "go-bin" / f"{name}-{version}" / name
    if binary.exists():
        return binary
    go = shutil.which("go")
    if go is None:
        pytest.skip(f"Go is not installed: {name} is built from the Go module proxy ({module}@{version})")
    done = run_command([go, "install", f"{module}@{version}"], timeout=timeout_s, what=f"go install {name}",
                       env={**os.environ, "GOBIN": str(binary.parent)})
    assert done.returncode == 0, f"go install {module}@{version} failed:\n{done.stderr[-3000:]}"
    return binary
