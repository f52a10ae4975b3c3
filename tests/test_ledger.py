"""The run ledger and its reaper, against real resources: a stand-in session (tests/ledger_owner.py)
creates processes, a folder, a network namespace with a veth link and a rule, nested mounts, a
cgroup holding a process without the token, and an undo command; it is SIGKILLed and everything
must be gone within seconds, undone by the reaper alone."""
from __future__ import annotations

import ast
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from harness.ledger import ledger as ledger_mod
from harness.ledger.others import live_claims, sweep_dead
from harness.ledger.records import dumps
from harness.ledger.undo import TOKEN_VAR, mount_points, processes_with_token, sweep
from tests.inner import REPO_ROOT, inner_env

ROOT = os.geteuid() == 0


def _start_owner(tmp_path: Path, make: str, *extra: str, tag: str = "t1") -> tuple[subprocess.Popen, dict]:
    report = tmp_path / f"owner-{tag}.json"
    proc = subprocess.Popen([sys.executable, "-m", "tests.ledger_owner", "--ledger-dir", str(tmp_path / "ledgers"),
                             "--report", str(report), "--make", make, "--tag", tag, *extra],
                            cwd=REPO_ROOT, env=inner_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    deadline = time.monotonic() + 60
    while not report.exists():
        if proc.poll() is not None:
            raise AssertionError(f"the owner exited early:\n{proc.communicate(timeout=10)[0][-3000:]}")
        assert time.monotonic() < deadline, "the owner did not report what it made within 60 s"
        time.sleep(0.05)
    time.sleep(0.1)
    return proc, json.loads(report.read_text())


def _left(made: dict) -> list[str]:
    """What of ``made`` still exists, found without the ledger's help."""
    found = [f"pid {p.pid} (carries the token)" for p in processes_with_token(made["token"])]
    for key in ("process", "jailed"):
        pid = made.get(key)
        if pid and psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
            found.append(f"{key} pid {pid}")
    for key in ("dir", "mount", "cgroup"):
        if made.get(key) and Path(made[key]).exists():
            found.append(f"{key} {made[key]}")
    if made.get("mount"):
        found += [f"mount {m}" for m in mount_points() if m.startswith(made["mount"])]
    if made.get("netns"):
        if made["netns"] in subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, timeout=20, check=False).stdout:
            found.append(f"netns {made['netns']}")
        if subprocess.run(["ip", "link", "show", made["link"]], capture_output=True, timeout=20, check=False).returncode == 0:
            found.append(f"link {made['link']}")
    if Path(made["ledger"]).exists():
        found.append(f"ledger {made['ledger']}")
    return found


def _gone_within(made: dict, seconds: float) -> tuple[list[str], float]:
    started = time.monotonic()
    while True:
        left = _left(made)
        if not left or time.monotonic() - started > seconds:
            return left, time.monotonic() - started
        time.sleep(0.05)


@pytest.mark.skipif(not ROOT, reason="network namespaces, mounts and cgroups need root")
def test_the_reaper_undoes_everything_when_the_owner_is_sigkilled(tmp_path: Path) -> None:
    proc, made = _start_owner(tmp_path, "process,dir,netns,mount,cgroup,command")
    assert len(processes_with_token(made["token"])) >= 3  # leader, child, the setsid grandchild
    assert made["netns"] in subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, timeout=20,
                                           check=False).stdout
    assert any(m.startswith(made["mount"]) for m in mount_points())
    assert psutil.pid_exists(made["jailed"]) and made["reaper"] and psutil.pid_exists(made["reaper"])
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)
    left, seconds = _gone_within(made, 20)
    assert left == [], left
    assert Path(made["undo_marker"]).exists(), "the undo command did not run"
    try:  # its last act is removing the ledger: it exits right after
        psutil.Process(made["reaper"]).wait(timeout=10)
    except psutil.NoSuchProcess:
        pass
    except psutil.TimeoutExpired:
        raise AssertionError("the reaper outlived its sweep by 10 s") from None
    log = (tmp_path / "ledgers" / "reaper.log").read_text()
    assert "the reaper removed what run owner-t1" in log and f"pytest pid {proc.pid}" in log, log
    assert "network namespace" in log and "cgroup" in log, log
    print(f"kill -> last resource gone: {seconds:.2f}s")


def test_a_normal_close_leaves_no_ledger_and_the_reaper_exits(tmp_path: Path) -> None:
    proc, made = _start_owner(tmp_path, "process,dir", "--close")
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, out
    assert json.loads(Path(tmp_path / "owner-t1.closed").read_text()) == {}, "close found leaks after a clean teardown"
    left, _ = _gone_within(made, 10)
    assert left == [], left
    assert not (tmp_path / "ledgers" / "reaper.log").exists()


def test_close_removes_what_teardown_left_and_says_so(tmp_path: Path) -> None:
    proc, made = _start_owner(tmp_path, "process", "--close", "--leak")
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, out
    assert json.loads(Path(tmp_path / "owner-t1.closed").read_text()) == {"process": 3}
    assert "teardown left resources behind; the ledger removed them: 3 processes" in out, out
    assert _gone_within(made, 10)[0] == []


def test_a_killed_reaper_is_replaced(tmp_path: Path) -> None:
    """Nobody may leave a session unwatched: the next record starts a new reaper."""
    record = ledger_mod.Ledger(tmp_path / "ledgers", "replace-test")
    try:
        record.intend("claim", name="x")
        first = record._reaper
        assert first is not None
        first.kill()
        first.wait(timeout=10)
        record.intend("claim", name="y")
        assert record._reaper is not first and record._reaper.poll() is None
    finally:
        record.close()


def _dead_owner_ledger(directory: Path, token: str, folder: Path) -> Path:
    """A ledger as a run that died with its reaper would leave it: no lock, owner gone."""
    directory.mkdir(parents=True, exist_ok=True)
    gone = subprocess.Popen(["true"])
    gone.wait()
    path = directory / f"stale-{gone.pid}.ledger"
    path.write_bytes(dumps({"op": "open", "run_id": "stale-run", "token": token, "owner_pid": gone.pid,
                            "owner_started": 1.0})
                     + dumps({"op": "intend", "id": 1, "kind": "dir", "what": {"path": str(folder)}})
                     + dumps({"op": "intend", "id": 2, "kind": "process", "what": {"name": "orphan"}}))
    return path


def test_the_next_run_cleans_a_dead_runs_ledger_and_says_so_in_one_line(tmp_path: Path) -> None:
    token = "f" * 32
    folder = tmp_path / "seamcheck-stale-state"
    folder.mkdir()
    orphan = subprocess.Popen(["sleep", "300"], env={**os.environ, TOKEN_VAR: token}, start_new_session=True)
    bystander = subprocess.Popen(["sleep", "300"], start_new_session=True)  # not the dead run's
    try:
        path = _dead_owner_ledger(tmp_path / "ledgers", token, folder)
        lines: list[str] = []
        reaped = sweep_dead(tmp_path / "ledgers", say=lines.append)
        assert len(reaped) == 1 and len(lines) == 1, lines
        assert "removed what run stale-run" in lines[0] and "1 process, 1 folder" in lines[0], lines
        assert orphan.wait(timeout=10) is not None
        assert not folder.exists() and not path.exists()
        assert bystander.poll() is None, "a process the dead run did not start was signalled"
    finally:
        for proc in (orphan, bystander):
            proc.kill()
            proc.wait(timeout=10)


def test_a_new_pytest_session_cleans_a_dead_runs_ledger_first(tmp_path: Path) -> None:
    token = "e" * 32
    folder = tmp_path / "seamcheck-stale-state"
    folder.mkdir()
    _dead_owner_ledger(tmp_path / "ledgers", token, folder)
    (tmp_path / "test_inner.py").write_text("def test_uses_stack(stack):\n    pass\n")
    with socket.socket() as taken:  # preflight then refuses the port: the session ends before any start
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        result = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q",
                                 "--ledger-dir", str(tmp_path / "ledgers"), "--mlflow-port",
                                 str(taken.getsockname()[1]), str(tmp_path / "test_inner.py")],
                                cwd=tmp_path, env=inner_env(), capture_output=True, text=True, timeout=120,
                                check=False)
    out = result.stdout + result.stderr
    lines = [ln for ln in out.splitlines() if "removed what run stale-run" in ln]
    assert len(lines) == 1, out[-3000:]
    assert "this run removed what run stale-run" in lines[0] and "1 folder" in lines[0], lines
    assert not folder.exists()


def test_a_live_runs_claim_is_refused_naming_its_owner_pid(tmp_path: Path) -> None:
    proc, made = _start_owner(tmp_path, "claim")
    try:
        claims = live_claims(tmp_path / "ledgers")
        assert claims["port:47999"].owner_pid == proc.pid and claims["port:47999"].owner_running
        (tmp_path / "test_inner.py").write_text("def test_uses_stack(stack):\n    pass\n")
        result = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q",
                                 "--ledger-dir", str(tmp_path / "ledgers"), "--mlflow-port", "47999",
                                 str(tmp_path / "test_inner.py")],
                                cwd=tmp_path, env=inner_env(), capture_output=True, text=True, timeout=120,
                                check=False)
        errors = [ln for ln in (result.stdout + result.stderr).splitlines() if ln.startswith("ERROR: seamcheck:")]
        assert result.returncode == pytest.ExitCode.USAGE_ERROR, result.stdout[-2000:] + result.stderr[-2000:]
        assert len(errors) == 1 and f"pytest pid {proc.pid}, still running" in errors[0], errors
        assert "port 47999 for mlflow is held by seamcheck run owner-t1" in errors[0], errors
    finally:
        proc.kill()
        proc.wait(timeout=10)
    assert _gone_within(made, 10)[0] == []


def test_only_recorded_processes_are_signalled(tmp_path: Path) -> None:
    """Blast radius: a recorded pid whose start time differs (a reused pid) and a process without
    the token are left alone; only the token-carrier goes."""
    bystander = subprocess.Popen(["sleep", "300"], start_new_session=True)
    ours = subprocess.Popen(["sleep", "300"], env={**os.environ, TOKEN_VAR: "a" * 32}, start_new_session=True)
    try:
        from harness.ledger.records import Entry

        reused = Entry(1, "process", {"pid": bystander.pid, "started": psutil.Process(bystander.pid).create_time() - 5})
        # Precondition, checked on its own so a failure says which half broke: the scan sees the carrier.
        environ = Path(f"/proc/{ours.pid}/environ").read_bytes()
        assert f"{TOKEN_VAR}={'a' * 32}".encode() in environ.split(b"\0"), (ours.poll(), environ[:300])
        assert [p.pid for p in processes_with_token("a" * 32)] == [ours.pid]
        swept = sweep([reused], "a" * 32)
        assert (swept.removed, swept.failures) == ({"process": 1}, []), (ours.poll(), bystander.poll())
        assert ours.wait(timeout=10) is not None
        assert bystander.poll() is None
    finally:
        for proc in (bystander, ours):
            proc.kill()
            proc.wait(timeout=10)


# Modules that run only inside a role environment's interpreter (a child of a recorded process,
# inheriting its token), where the harness's venv (psutil) is not importable.
_IN_ROLE_SUBPROCESS = {"harness/pipeline/run_local.py"}
_LEDGER_OWN = {"harness/procs.py", "harness/ledger/undo.py", "harness/ledger/ledger.py"}


def test_every_program_the_harness_starts_goes_through_procs() -> None:
    """A child started around procs.spawn would carry no token and no ledger entry: a leak when
    the session is killed."""
    offenders = []
    for path in sorted((REPO_ROOT / "harness").rglob("*.py")):
        rel = path.relative_to(REPO_ROOT).as_posix()
        if rel in _IN_ROLE_SUBPROCESS | _LEDGER_OWN:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and \
                    isinstance(node.func.value, ast.Name) and node.func.value.id in ("subprocess", "os") and \
                    node.func.attr in ("Popen", "run", "call", "check_call", "check_output", "system", "fork",
                                       "spawnv", "execv", "posix_spawn"):
                offenders.append(f"{rel}:{node.lineno} {node.func.value.id}.{node.func.attr}")
    assert offenders == []


@pytest.mark.skipif(not ROOT or not Path("/sys/fs/cgroup/unified").is_dir(),
                    reason="needs root and the unified cgroup hierarchy")
def test_a_cgroup_still_being_filled_is_removed() -> None:
    """A pod's cgroup as the reaper can find it after a SIGKILL: a runtime outside the tree (runc,
    say, not yet swept) still makes container cgroups in it and starts processes there for a
    moment. One pass (list, kill, rmdir) meets a folder made after its walk and the rmdir answers
    EBUSY; the undo retries, killing and removing again, until the tree is gone."""
    from harness.ledger.undo import undo_cgroup

    root = Path(f"/sys/fs/cgroup/unified/seamcheck-test-{os.getpid()}")
    pods = root / "kubepods" / "burstable"
    pods.mkdir(parents=True)
    # For 1.5 s, every 10 ms: a new container cgroup with a sleeping process in it.
    script = (f"end=$(($(date +%s%N) + 1500000000)); n=0; while [ $(date +%s%N) -lt $end ]; do "
              f"n=$((n+1)); mkdir -p {pods}/c$n && sh -c 'echo $$ > {pods}/c'$n'/cgroup.procs; exec sleep 60' & "
              "sleep 0.01; done")
    runtime = subprocess.Popen(["sh", "-c", script], stdin=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        first = pods / "c1" / "cgroup.procs"
        while not first.exists() or not first.read_text().split():
            assert time.monotonic() < deadline, "the stand-in runtime never started a process in its cgroup"
            time.sleep(0.02)
        assert undo_cgroup({"path": str(root)}) == 1
        assert not root.exists()
    finally:
        runtime.kill()
        runtime.wait(timeout=10)
        if root.exists():
            for pid in (int(x) for f in root.rglob("cgroup.procs") for x in f.read_text().split()):
                os.kill(pid, signal.SIGKILL)
            time.sleep(0.2)
            subprocess.run(["find", str(root), "-depth", "-type", "d", "-delete"], timeout=20, check=False)
