"""Nothing the stack started outlives the session: not when it passes, fails, or is interrupted
(SIGINT, as Ctrl-C; SIGTERM, as a CI cancel). Each case runs a real inner session on the local
profile, then looks for its processes, its listening ports and its state folder."""
from __future__ import annotations

import json
import signal
import textwrap
import time
from pathlib import Path

import psutil
import pytest

from tests.inner import inner_env, interrupt_inner, run_inner, write_test

pytestmark = pytest.mark.stack

HANGS = textwrap.dedent("""
    import time
    pytest_plugins = ["harness.fixtures.stack"]

    def test_hangs(stack):
        time.sleep(600)
""")
FAILS = textwrap.dedent("""
    pytest_plugins = ["harness.fixtures.stack"]

    def test_fails(stack):
        assert stack.tracking_uri == "not this"
""")


def _leftovers(manifest: dict) -> list[str]:
    found = []
    for pid in manifest["pids"]:
        try:
            proc = psutil.Process(pid)
            if proc.status() != psutil.STATUS_ZOMBIE:
                found.append(f"pid {pid} {proc.cmdline()[:3]}")
        except psutil.NoSuchProcess:
            pass
    state = manifest["state"]
    for proc in psutil.process_iter(["pid", "cmdline"]):
        cmdline = " ".join(proc.info["cmdline"] or [])
        if state and state in cmdline:
            found.append(f"pid {proc.info['pid']} mentions {state}: {cmdline[:120]}")
    if state and Path(state).exists():
        found.append(f"state folder {state} still exists")
    return found


def _wait_gone(manifest: dict, seconds: float = 20) -> list[str]:
    end = time.monotonic() + seconds
    while True:
        left = _leftovers(manifest)
        if not left or time.monotonic() > end:
            return left
        time.sleep(0.5)


# The passing session's teardown is the failing one's minus the failure: nightly (slow) for CI time.
@pytest.mark.parametrize("body,expected_rc", [pytest.param(None, 0, id="passes", marks=pytest.mark.slow),
                                              pytest.param(FAILS, 1, id="fails")])
def test_nothing_left_after_session_ends(tmp_path: Path, body, expected_rc: int) -> None:
    write_test(tmp_path, body) if body else write_test(tmp_path)
    manifest_path = tmp_path / "stack.json"
    result = run_inner(tmp_path, env=inner_env({"SEAMCHECK_STACK_MANIFEST": str(manifest_path)}))
    assert result.returncode == expected_rc, result.stdout[-3000:] + result.stderr[-3000:]
    manifest = json.loads(manifest_path.read_text())
    assert len(manifest["pids"]) >= 4  # s3, mlflow, haproxy, prometheus
    assert _wait_gone(manifest) == []


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_nothing_left_after_interrupt(tmp_path: Path, sig: signal.Signals) -> None:
    write_test(tmp_path, HANGS)
    manifest_path = tmp_path / "stack.json"
    returncode, output = interrupt_inner(tmp_path, inner_env({"SEAMCHECK_STACK_MANIFEST": str(manifest_path)}),
                                         manifest_path, sig)
    manifest = json.loads(manifest_path.read_text())
    assert len(manifest["pids"]) >= 4, manifest  # the stack was up when the signal came
    assert returncode in (pytest.ExitCode.INTERRUPTED, 1, 2), output[-3000:]
    assert _wait_gone(manifest) == [], output[-3000:]
