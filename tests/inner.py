"""Helpers for tests that run a whole inner pytest session against seamcheck (bad input, teardown)."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent

USES_STACK = textwrap.dedent("""
    pytest_plugins = ["fixtures.stack"]

    def test_uses_stack(stack):
        assert stack.tracking_uri
""")


def inner_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    env.pop("PYTEST_ADDOPTS", None)
    env.update(extra or {})
    return env


def write_test(tmp_path: Path, body: str = USES_STACK) -> Path:
    path = tmp_path / "test_inner.py"
    path.write_text(body)
    return path


def run_inner(tmp_path: Path, *args: str, env: dict[str, str] | None = None,
              timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "--reports-dir", str(tmp_path / "reports"),
         str(tmp_path / "test_inner.py"), *args],
        cwd=tmp_path, env=env or inner_env(), capture_output=True, text=True, timeout=timeout)
