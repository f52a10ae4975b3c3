"""Chaos never escapes its target: actions outside the harness's own things are refused, the
host's network rules are untouched, a process the harness did not start survives, and the
rollbacks run even when the method fails."""
from __future__ import annotations

import subprocess

import psutil
import pytest
import requests

from harness.chaos.runner import EXPERIMENTS_DIR, run_experiment_file
from harness.local.netns import netns_available

pytestmark = [pytest.mark.chaos, pytest.mark.stack]


def _host_rules() -> list[str]:
    out = subprocess.run(["iptables-save"], capture_output=True, text=True, timeout=20, check=False).stdout
    return [line for line in out.splitlines() if not line.startswith("#")]


@pytest.mark.chaos_alone("checks that no fault of the harness's is in place and the host's rules are as before")
def test_out_of_bounds_refused_and_rollbacks_run(chaos_control, journal_dir, seam) -> None:
    reason = netns_available()
    if reason:
        pytest.skip(reason)
    bystander = subprocess.Popen(["sleep", "300"])  # a process the harness did not start
    host_before = _host_rules()
    try:
        journal = run_experiment_file(EXPERIMENTS_DIR / "selftest" / "rollbacks-after-failed-method.json",
                                      journal_path=journal_dir / "selftest-rollbacks-after-failed-method.json")
        with seam.check("blast-radius", "out-of-bounds actions refused; host rules and foreign processes "
                                              "untouched; rollbacks run after a failed method") as ev:
            kill = journal.activity("kill-a-service-the-harness-did-not-create")
            stop = journal.activity("stop-a-component-the-harness-does-not-own")
            rollback = journal.activity("lift-the-cut", phase="rollbacks")
            cut = journal.output("cut-pipeline-path-to-mlflow")
            inside = subprocess.run(["ip", "netns", "exec", cut["namespace"], "iptables", "-S", "OUTPUT"],
                                    capture_output=True, text=True, timeout=20, check=False).stdout
            ev.update(kill=kill["status"], stop=stop["status"], rollback=rollback["status"],
                      faults_in_place=chaos_control.faults_in_place(), rules_inside=inside.splitlines())
            assert kill["status"] == "failed" and "refusing" in "".join(kill["exception"]), kill["exception"]
            assert stop["status"] == "failed" and "unknown component" in "".join(stop["exception"])
            assert rollback["status"] == "succeeded" and rollback["output"]["lifted"], rollback
            assert "-j REJECT" not in inside and chaos_control.faults_in_place() == []
            assert _host_rules() == host_before, "the host's iptables rules changed"
            assert psutil.pid_exists(bystander.pid) and bystander.poll() is None, "a foreign process was touched"
    finally:
        bystander.kill()
        bystander.wait(timeout=10)


def test_control_refuses_a_caller_without_the_token(chaos_control) -> None:
    response = requests.post(f"{chaos_control.url}/v1/stop_component", json={"component": "mlflow"}, timeout=10)
    assert response.status_code == 401
    assert chaos_control.profile.tracking.process.alive()


def test_every_experiment_file_is_valid_for_chaos_toolkit() -> None:
    from chaoslib.experiment import ensure_experiment_is_valid
    from chaoslib.loader import load_experiment

    files = sorted(EXPERIMENTS_DIR.glob("*.json")) + sorted((EXPERIMENTS_DIR / "selftest").glob("*.json"))
    assert len(files) >= 6
    for path in files:
        ensure_experiment_is_valid(load_experiment(str(path)))
