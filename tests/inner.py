"""Helpers for tests that run a whole inner pytest session against seamcheck (bad input, teardown)."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

from harness.ledger import ledger

REPO_ROOT = Path(__file__).resolve().parent.parent

USES_STACK = textwrap.dedent("""
    pytest_plugins = ["harness.fixtures.stack"]

    def test_uses_stack(stack):
        assert stack.tracking_uri
""")


def inner_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The outer session's environment plus its run token: if the outer session is killed, its
    reaper stops the inner session too (the inner one sets its own token for its children)."""
    env = {**ledger.child_env(), "PYTHONPATH": str(REPO_ROOT)}
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


def collected_ids(*args: str) -> list[str]:
    """The test ids `pytest --collect-only` lists for the repository's own suite with ``args``, in
    the order they would run (nothing is started)."""
    result = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--collect-only", "-q", *args],
                            check=False, cwd=REPO_ROOT, env=inner_env(), capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    return [line for line in result.stdout.splitlines() if "::" in line]


def interrupt_inner(tmp_path: Path, env: dict[str, str], ready_file: Path, sig: int,
                    *, deadline_s: float = 240) -> tuple[int, str]:
    """Start the inner session, wait until it writes ``ready_file``, send ``sig`` (as Ctrl-C or a
    CI cancel would), and return its exit status and output. Never leaves it running."""
    import time

    proc = subprocess.Popen(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "--reports-dir", str(tmp_path / "r"),
         str(tmp_path / "test_inner.py")],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + deadline_s
        while not ready_file.exists():
            if proc.poll() is not None:
                raise AssertionError(f"the inner session ended before {ready_file.name} appeared:\n"
                                     f"{proc.communicate(timeout=10)[0][-3000:]}")
            if time.monotonic() > deadline:
                raise AssertionError(f"the inner session did not write {ready_file.name} within {deadline_s:.0f}s")
            time.sleep(0.5)
        time.sleep(1)
        os.kill(proc.pid, sig)
        output, _ = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=30)
    return proc.returncode, output
