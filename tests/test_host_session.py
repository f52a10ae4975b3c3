"""`--profile host` sessions leave nothing behind, however they end: a pass, a failure, Ctrl-C,
SIGTERM and SIGKILL (no teardown at all: the cluster's own ledger reaper removes it), and
``--keep-cluster`` / ``seamcheck-cluster up`` keep it for the next run, which reuses it, until
``seamcheck-cluster down`` removes it completely. Each case runs a real inner pytest session and then
looks, without the ledger's help, for what a host cluster makes: its processes (control plane,
kubelets, containerd and its shims, the Pods' processes), network namespaces, veth links, host
iptables rules, cgroups, mounts, the host paths its nodes bind over, and its folders."""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest

from tests.host_fixtures import _unavailable
from tests.inner import REPO_ROOT, inner_env, interrupt_inner, run_inner, write_test

pytestmark = pytest.mark.stack

#: What a host cluster runs (independent of the ledger): its binaries live in the host build cache.
# and the services it installs (MLflow's and the S3 stand-in's Python runs from a role environment's folder
# inside their containers; the host profile's port-forwards are kubectl from the host cache).
HOST_PROGRAMS = re.compile(r"/seamcheck/host/bin/|^/pause|^/coredns|/bin/netpol|^/bin/prometheus|"
                           r"mlflow server --host 0\.0\.0\.0|moto_server -H 0\.0\.0\.0")
HOST_PATHS = ("/var/lib/kubelet", "/var/lib/cni", "/run/containerd", "/var/log/pods", "/var/log/containers")
GONE_DEADLINE_S = 60.0


@dataclass(frozen=True)
class Snapshot:
    processes: frozenset[int]
    netns: frozenset[str]
    links: frozenset[str]
    cgroups: frozenset[str]
    mounts: frozenset[str]
    folders: frozenset[str]
    paths: frozenset[str]
    host_rules: tuple[str, ...]

    @classmethod
    def take(cls) -> Snapshot:
        procs = set()
        for proc in psutil.process_iter(["pid", "cmdline"]):
            if HOST_PROGRAMS.search(" ".join(proc.info["cmdline"] or [])):
                procs.add(proc.info["pid"])
        netns = {ln.split()[0] for ln in _out(["ip", "netns", "list"]).splitlines() if ln.strip()}
        links = {ln.split(":")[1].strip().split("@")[0] for ln in _out(["ip", "-o", "link", "show"]).splitlines()}
        cgroups = {str(p) for p in Path("/sys/fs/cgroup").glob("*/seamcheck-*")} | \
            {str(p) for p in Path("/sys/fs/cgroup").glob("*/kubepods")}
        mounts = {ln.split()[4] for ln in Path("/proc/self/mountinfo").read_text().splitlines()
                  if "seamcheck" in ln or any(p in ln for p in HOST_PATHS)}
        folders = {p.name for p in Path("/tmp").glob("seamcheck-host-*")}
        paths = {p for p in HOST_PATHS if os.path.exists(p)}
        rules = tuple(ln for ln in _out(["iptables-save"]).splitlines() if not ln.startswith("#"))
        return cls(frozenset(procs), frozenset(netns), frozenset(links), frozenset(cgroups), frozenset(mounts),
                   frozenset(folders), frozenset(paths), rules)

    def new_since(self, before: Snapshot) -> list[str]:
        alive = []
        for pid in self.processes - before.processes:
            try:
                proc = psutil.Process(pid)
                if proc.status() != psutil.STATUS_ZOMBIE:
                    alive.append(f"process {pid} {' '.join(proc.cmdline()[:2])}")
            except psutil.NoSuchProcess:
                pass
        found = alive
        for label, now, then in (("network namespace", self.netns, before.netns), ("link", self.links, before.links),
                                 ("cgroup", self.cgroups, before.cgroups), ("mount", self.mounts, before.mounts),
                                 ("folder /tmp/", self.folders, before.folders), ("host path", self.paths, before.paths)):
            found += [f"{label} {n}" for n in sorted(now - then)]
        if self.host_rules != before.host_rules:
            found.append("the host's iptables rules changed")
        return found


def _out(argv: list[str]) -> str:
    return subprocess.run(argv, capture_output=True, text=True, timeout=20, check=False).stdout


def _left_after(before: Snapshot, deadline_s: float = GONE_DEADLINE_S) -> tuple[list[str], float]:
    started = time.monotonic()
    while True:
        left = Snapshot.take().new_since(before)
        if not left or time.monotonic() - started > deadline_s:
            return left, time.monotonic() - started
        time.sleep(0.2)


@pytest.fixture
def machine() -> None:
    from harness.host.cluster import COMPONENTS

    reason = _unavailable(COMPONENTS)
    if reason:
        pytest.skip(f"no host cluster here: {reason}")


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    return inner_env({"SEAMCHECK_LEDGER_DIR": str(tmp_path / "ledgers"), "SEAMCHECK_PROFILE": "host", **extra})


INNER = textwrap.dedent('''
    import json, os, time
    from pathlib import Path

    pytest_plugins = ["harness.fixtures.stack"]

    def test_on_the_host_cluster(stack):
        assert stack.name == "host" and [n.name for n in stack.cluster.nodes] == ["seamcheck-host",
                                                                                  "seamcheck-host-gpu"]
        ready = os.environ.get("READY_FILE")
        if ready:
            Path(ready).write_text(json.dumps({"kubeconfig": str(stack.cluster.kubeconfig)}))
        if os.environ.get("INNER_OUTCOME") == "hang":
            time.sleep(600)
        assert os.environ.get("INNER_OUTCOME") != "fail", "this inner test fails on purpose"
''')


# CI runs the SIGKILL case (no teardown at all: the hardest); each case is a cluster and its services up
# and down (~90 s), so the pass, failure, Ctrl-C and SIGTERM cases run nightly (`-m slow`).
@pytest.mark.parametrize("outcome", [pytest.param("pass", marks=pytest.mark.slow),
                                     pytest.param("fail", marks=pytest.mark.slow)])
def test_a_session_that_ends_leaves_nothing(machine, tmp_path: Path, outcome: str) -> None:
    write_test(tmp_path, INNER)
    before = Snapshot.take()
    result = run_inner(tmp_path, env=_env(tmp_path, INNER_OUTCOME=outcome), timeout=600)
    assert result.returncode == (0 if outcome == "pass" else 1), result.stdout[-3000:] + result.stderr[-2000:]
    left, _ = _left_after(before, deadline_s=5)  # teardown ran before pytest exited
    assert left == [], f"left after a {outcome}: {left}\n{result.stdout[-3000:]}"
    assert not (tmp_path / "ledgers" / "host-cluster.kept.json").exists()


@pytest.mark.parametrize("sig", [pytest.param(signal.SIGINT, id="SIGINT", marks=pytest.mark.slow),
                                 pytest.param(signal.SIGTERM, id="SIGTERM", marks=pytest.mark.slow)])
def test_an_interrupted_session_leaves_nothing(machine, tmp_path: Path, sig: int) -> None:
    write_test(tmp_path, INNER)
    ready = tmp_path / "ready.json"
    before = Snapshot.take()
    code, output = interrupt_inner(tmp_path, _env(tmp_path, INNER_OUTCOME="hang", READY_FILE=str(ready)), ready, sig,
                                   deadline_s=300)
    assert code != 0, output[-3000:]
    left, _ = _left_after(before, deadline_s=5)
    assert left == [], f"left after {sig.name}: {left}\n{output[-3000:]}"


def test_a_killed_session_leaves_nothing(machine, tmp_path: Path) -> None:
    """SIGKILL: no teardown runs; the cluster's ledger reaper (and the session's) remove it all."""
    write_test(tmp_path, INNER)
    ready = tmp_path / "ready.json"
    before = Snapshot.take()
    proc = subprocess.Popen([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "--reports-dir",
                             str(tmp_path / "r"), str(tmp_path / "test_inner.py")], cwd=tmp_path,
                            env=_env(tmp_path, INNER_OUTCOME="hang", READY_FILE=str(ready)),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 300
        while not ready.exists():
            assert proc.poll() is None, proc.communicate(timeout=10)[0][-3000:]
            assert time.monotonic() < deadline, "the inner session never got its host cluster"
            time.sleep(0.5)
        during = Snapshot.take().new_since(before)
        os.kill(proc.pid, signal.SIGKILL)
        output, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=30)
    left, seconds = _left_after(before)
    assert len([d for d in during if d.startswith("process")]) >= 10, during  # a whole cluster was up
    assert left == [], f"left after SIGKILL: {left}\n{output[-3000:]}"
    log = (tmp_path / "ledgers" / "reaper.log").read_text()
    assert "host-cluster" in log and "network namespace" in log, log
    print(f"kill -> last resource gone: {seconds:.1f}s; {log.strip()}")


def _cli(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "harness.host.cli", *args, "--ledger-dir", str(tmp_path / "ledgers")],
                          cwd=REPO_ROOT, env=inner_env(), capture_output=True, text=True, timeout=300, check=False)


@pytest.mark.slow
def test_keep_cluster_keeps_it_the_next_session_reuses_it_and_down_removes_it(machine, tmp_path: Path) -> None:
    write_test(tmp_path, INNER)
    before = Snapshot.take()
    kept = run_inner(tmp_path, "--keep-cluster", env=_env(tmp_path), timeout=600)
    assert kept.returncode == 0, kept.stdout[-3000:] + kept.stderr[-2000:]
    assert "keeping the cluster (--keep-cluster)" in kept.stdout + kept.stderr
    try:
        assert (tmp_path / "ledgers" / "host-cluster.kept.json").exists()
        assert [d for d in Snapshot.take().new_since(before) if d.startswith("process")], "nothing was kept"
        started = time.monotonic()
        again = run_inner(tmp_path, env=_env(tmp_path, INNER_OUTCOME="fail"), timeout=600)
        reuse_s = time.monotonic() - started
        assert again.returncode == 1, again.stdout[-3000:]
        assert "reusing the kept cluster" in again.stdout + again.stderr, again.stdout[-3000:]
        status = _cli(tmp_path, "status")
        assert status.returncode == 0 and "seamcheck-cluster: up: KUBECONFIG=" in status.stdout, status
    finally:
        down = _cli(tmp_path, "down")
    assert down.returncode == 0 and "seamcheck-cluster: down: removed" in down.stdout, down
    left, _ = _left_after(before, deadline_s=10)
    assert left == [], f"left after seamcheck-cluster down: {left}"
    assert _cli(tmp_path, "status").returncode == 3
    print(f"a session on the kept cluster took {reuse_s:.1f}s; {down.stdout.strip()}")


def test_seamcheck_cluster_up_then_status_then_down(machine, tmp_path: Path) -> None:
    before = Snapshot.take()
    up = _cli(tmp_path, "up")
    try:
        assert up.returncode == 0 and "seamcheck-cluster: up in" in up.stdout, up.stdout + up.stderr
        again = _cli(tmp_path, "up")
        assert again.returncode == 0 and "already up" in again.stdout, again
        status = _cli(tmp_path, "status", "--json")
        assert status.returncode == 0 and '"state": "up"' in status.stdout, status
    finally:
        down = _cli(tmp_path, "down")
    assert down.returncode == 0, down
    left, _ = _left_after(before, deadline_s=10)
    assert left == [], f"left after seamcheck-cluster down: {left}"
