"""The by-hand path: `seamcheck-stack` stands a stack up and prints the control's two export lines,
and every experiment file runs with Chaos Toolkit's own `chaos run` against it.

The chaos suite itself runs each experiment with `chaos run` too, against the session's control;
this test is about `seamcheck-stack` (its env file, its teardown on Ctrl-C). Nightly (slow): it
stands a second whole stack up and runs every experiment file once more."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness.chaos.runner import experiment_files
from tests.inner import inner_env

pytestmark = [pytest.mark.slow]

BIN = Path(sys.executable).parent


def test_every_experiment_runs_with_chaos_run(tmp_path: Path) -> None:
    env_file = tmp_path / "stack.env"
    log = (tmp_path / "stack.log").open("w")
    stack = subprocess.Popen([str(BIN / "seamcheck-stack"), "--env-file", str(env_file)], stdout=log,
                             stderr=subprocess.STDOUT, env=inner_env(), start_new_session=True)
    try:
        deadline = time.monotonic() + 420
        while not env_file.exists():
            assert stack.poll() is None, (tmp_path / "stack.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "seamcheck-stack did not come up within 420 s"
            time.sleep(1)
        env = inner_env(dict(line.removeprefix("export ").split("=", 1)
                             for line in env_file.read_text().splitlines()))
        outcomes = {}
        for path in experiment_files():
            journal = tmp_path / f"{path.stem}.journal.json"
            proc = subprocess.run([str(BIN / "chaos"), "--no-log-file", "run", "--rollback-strategy", "always",
                                   "--journal-path", str(journal), str(path)],
                                  check=False, env=env, capture_output=True, text=True, timeout=900, cwd=tmp_path)
            data = json.loads(journal.read_text())
            outcomes[path.name] = (proc.returncode, data["status"], data["deviated"])
        assert all(rc == 0 and status == "completed" and not deviated
                   for rc, status, deviated in outcomes.values()), outcomes
    finally:
        if stack.poll() is None:
            os.killpg(stack.pid, signal.SIGINT)
            try:
                stack.wait(timeout=120)
            except subprocess.TimeoutExpired:
                os.killpg(stack.pid, signal.SIGKILL)
                stack.wait(timeout=30)
        log.close()
    assert stack.returncode == 0, (tmp_path / "stack.log").read_text()[-3000:]
