"""A session killed with SIGKILL (a CI job timeout, the OOM killer, ``kill -9``) runs no teardown;
its reaper must still leave nothing behind. Each case runs a real inner session on the local
profile, SIGKILLs its pytest process at one point (while the stack starts, once it is up, during a
chaos fault with a network rule in place, during a canary judgement with Locust running), and then
looks, without the ledger's help, for what the session had made: processes, listening ports,
network namespaces, veth links, host iptables rules and state folders."""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest

from harness.ledger.records import LedgerState, read_state
from harness.ledger.undo import processes_with_token
from harness.local.netns import netns_available
from tests.inner import REPO_ROOT, inner_env, write_test

pytestmark = pytest.mark.stack

#: The stack's programs, as the project's before-stop check names them (independent of the ledger).
STACK_PROGRAMS = re.compile(r"prometheus --config|haproxy -W|mlserver start|mlflow server|gunicorn|moto_server|"
                            r"locust |chaos .*run|socat TCP-LISTEN|harness.pipeline.run_local")
GONE_DEADLINE_S = 30.0


@dataclass(frozen=True)
class Snapshot:
    processes: frozenset[int]
    listening: frozenset[tuple[str, int]]
    netns: frozenset[str]
    links: frozenset[str]
    folders: frozenset[str]
    host_rules: tuple[str, ...]

    @classmethod
    def take(cls) -> Snapshot:
        procs = set()
        for proc in psutil.process_iter(["pid", "cmdline"]):
            if STACK_PROGRAMS.search(" ".join(proc.info["cmdline"] or [])):
                procs.add(proc.info["pid"])
        listening = {(c.laddr.ip, c.laddr.port) for c in psutil.net_connections(kind="inet")
                     if c.status == psutil.CONN_LISTEN}
        netns = {ln.split()[0] for ln in _out(["ip", "netns", "list"]).splitlines() if ln.strip()}
        links = {ln.split(":")[1].strip().split("@")[0] for ln in _out(["ip", "-o", "link", "show"]).splitlines()}
        folders = {p.name for p in Path("/tmp").glob("seamcheck-*")}
        rules = tuple(ln for ln in _out(["iptables-save"]).splitlines() if not ln.startswith("#"))
        return cls(frozenset(procs), frozenset(listening), frozenset(netns), frozenset(links), frozenset(folders),
                   rules)

    def new_since(self, before: Snapshot) -> list[str]:
        alive = [p for p in self.processes - before.processes if psutil.pid_exists(p)
                 and psutil.Process(p).status() != psutil.STATUS_ZOMBIE]
        found = [f"process {p} {' '.join(psutil.Process(p).cmdline()[:4])}" for p in alive]
        found += [f"listening port {ip}:{port}" for ip, port in sorted(self.listening - before.listening)]
        found += [f"network namespace {n}" for n in sorted(self.netns - before.netns)]
        found += [f"link {n}" for n in sorted(self.links - before.links)]
        found += [f"folder /tmp/{n}" for n in sorted(self.folders - before.folders)]
        if self.host_rules != before.host_rules:
            found.append("the host's iptables rules changed")
        return found


def _out(argv: list[str]) -> str:
    return subprocess.run(argv, capture_output=True, text=True, timeout=20, check=False).stdout


def _ledger(ledgers: Path) -> tuple[Path, LedgerState] | None:
    for path in ledgers.glob("*.ledger"):
        state = read_state(path)
        if state.header:
            return path, state
    return None


def kill_and_check(tmp_path: Path, args: list[str], ready: Callable[[LedgerState], bool], *, what: str,
                   env_extra: dict[str, str] | None = None, deadline_s: float = 300) -> dict:
    """Start an inner session, SIGKILL its pytest process once ``ready(ledger)`` holds, and return
    what the kill left (must be nothing) and how long until the last resource was gone."""
    ledgers = tmp_path / "ledgers"
    before = Snapshot.take()
    env = inner_env({"SEAMCHECK_LEDGER_DIR": str(ledgers), **(env_extra or {})})
    proc = subprocess.Popen([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q",
                             "--reports-dir", str(tmp_path / "reports"), *args],
                            cwd=REPO_ROOT if any(a.startswith("scenarios") for a in args) else tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        end = time.monotonic() + deadline_s
        while True:
            found = _ledger(ledgers)
            if found is not None and ready(found[1]):
                break
            if proc.poll() is not None:
                raise AssertionError(f"the inner session ended before {what}:\n{proc.communicate(timeout=10)[0][-4000:]}")
            if time.monotonic() > end:
                raise AssertionError(f"the inner session did not reach {what} within {deadline_s:.0f}s")
            time.sleep(0.1)
        path, state = found
        token = state.token
        made = [" ".join(p.cmdline()[:4]) for p in processes_with_token(token)]
        os.kill(proc.pid, signal.SIGKILL)
        killed_at = time.monotonic()
        output, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=30)
    while True:
        left = Snapshot.take().new_since(before)
        left += [f"process {p.pid} {p.cmdline()[:3]} (carries the run's token)" for p in processes_with_token(token)]
        left += [f"ledger {path}"] if path.exists() else []
        if not left or time.monotonic() - killed_at > GONE_DEADLINE_S:
            break
        time.sleep(0.1)
    seconds = time.monotonic() - killed_at
    log = (ledgers / "reaper.log").read_text() if (ledgers / "reaper.log").exists() else ""
    return {"left": left, "seconds": seconds, "made": made, "state": state, "output": output, "reaper_log": log}


def _created(state: LedgerState, name: str) -> bool:
    return any(e.kind == "process" and e.state == "created" and e.what.get("name") == name
               for e in state.entries.values())


HANGS = textwrap.dedent("""
    import time
    pytest_plugins = ["harness.fixtures.stack"]

    def test_hangs(stack):
        time.sleep(600)
""")


def _assert_clean(result: dict, *, at_least: int) -> None:
    assert len(result["made"]) >= at_least, f"the session had only {len(result['made'])} processes when killed"
    assert result["left"] == [], f"left after the kill: {result['left']}\n{result['output'][-3000:]}"
    assert "the reaper removed what run" in result["reaper_log"], result["reaper_log"]
    print(f"kill -> last resource gone: {result['seconds']:.2f}s; reaper: {result['reaper_log'].strip()}")


def test_killed_while_the_stack_starts(tmp_path: Path) -> None:
    write_test(tmp_path, HANGS)
    result = kill_and_check(tmp_path, [str(tmp_path / "test_inner.py")],
                            lambda st: _created(st, "mlflow tracking server"), what="mlflow's start")
    _assert_clean(result, at_least=2)  # the S3 store and mlflow, haproxy and prometheus not yet


def test_killed_once_the_stack_is_up(tmp_path: Path) -> None:
    write_test(tmp_path, HANGS)
    manifest = tmp_path / "stack.json"
    result = kill_and_check(tmp_path, [str(tmp_path / "test_inner.py")], lambda _st: manifest.exists(),
                            what="the stack being up", env_extra={"SEAMCHECK_STACK_MANIFEST": str(manifest)})
    assert len(json.loads(manifest.read_text())["pids"]) >= 4
    _assert_clean(result, at_least=4)


CUT = textwrap.dedent('''
    import json, os, time
    from pathlib import Path

    import pytest

    from harness.chaos.control import ChaosContext

    pytest_plugins = ["harness.fixtures.stack", "harness.fixtures.chaos"]


    @pytest.fixture(scope="session")
    def chaos_context(tmp_path_factory):
        return ChaosContext(base_storage_uri="", model_name="", model_version="", template={},
                            dataset_path="", rows_path=Path("unused"))


    def test_cut(chaos_control):
        cut = chaos_control.call("cut_pipeline_to_mlflow", mode="DROP")
        Path(os.environ["CUT_RECORD"]).write_text(json.dumps(cut))
        time.sleep(600)
''')


def test_killed_during_a_chaos_fault_with_a_rule_in_place(tmp_path: Path) -> None:
    reason = netns_available()
    if reason:
        pytest.skip(reason)
    write_test(tmp_path, CUT)
    record = tmp_path / "cut.json"
    result = kill_and_check(tmp_path, [str(tmp_path / "test_inner.py")], lambda _st: record.exists(),
                            what="the network cut", env_extra={"CUT_RECORD": str(record)})
    cut = json.loads(record.read_text())
    assert "-j DROP" in cut["rule"], cut  # the fault was in place when the session died
    assert any(e.kind == "iptables" and e.pending for e in result["state"].entries.values())
    _assert_clean(result, at_least=5)
    assert "network namespace" in result["reaper_log"], result["reaper_log"]


def _locust_judging(state: LedgerState) -> bool:
    """Locust has been sending for a few seconds: the judgement is reading its windows."""
    for entry in state.entries.values():
        if entry.kind == "process" and entry.what.get("name") == "locust" and entry.pending and entry.what.get("pid"):
            try:
                return time.time() - psutil.Process(entry.what["pid"]).create_time() > 8
            except psutil.NoSuchProcess:
                return False
    return False


# Nightly (slow): the pipeline, four services and a canary before the kill take ~95 s; the three
# cases above exercise the same reaper on the stack's processes, rules and namespaces in CI.
@pytest.mark.slow
def test_killed_during_a_canary_judgement_with_locust_running(tmp_path: Path) -> None:
    """The real canary suite's healthy scenario (pipeline, services, canary, Locust, judges)."""
    result = kill_and_check(tmp_path, ["-m", "canary", "scenarios/canary/test_judgement.py", "-k", "healthy-sequential"],
                            _locust_judging, what="a canary judgement under Locust load", deadline_s=600)
    assert any("locust" in cmd for cmd in result["made"]), result["made"]
    _assert_clean(result, at_least=6)
