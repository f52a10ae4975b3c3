"""Child processes of the harness: started in their own process group, recorded in the run's
ledger before they exist (with the run's token in their environment, so the reaper finds them and
their descendants if the session is killed), waited for with a deadline, stopped by group, and
always reported with the tail of their log.

Why process groups: `mlflow server` forks gunicorn and MLServer forks inference workers;
killing only the PID we started leaves listening orphans (seen on this machine).

Every program the harness starts goes through `spawn`, `run_command` or `run_checked` (a test
checks that no other module calls subprocess directly).
"""
from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import requests
from tenacity import RetryError, Retrying, retry_if_result, stop_after_delay, wait_fixed

from harness.errors import StackError
from harness.ledger import ledger

__all__ = [
    "ComponentFailed",
    "ManagedProcess",
    "ProcessRegistry",
    "Spawned",
    "log_tail",
    "run_checked",
    "run_command",
    "spawn",
]

#: How much of a component's log goes into an error message.
LOG_TAIL_LINES = 40


class ComponentFailed(StackError):
    """A component did not start, did not become ready, or a command failed.

    The message always names what was waited for and ends with the tail of the log.
    """


def log_tail(path: Path | str, lines: int = LOG_TAIL_LINES) -> str:
    try:
        text = Path(path).read_text(errors="replace")
    except OSError:
        return "(no log written)"
    return "\n".join(text.splitlines()[-lines:]) or "(log is empty)"


@dataclass
class Spawned:
    """A started child and its ledger entry: call ``done()`` once it is gone."""

    popen: subprocess.Popen
    entry: int

    @property
    def pid(self) -> int:
        return self.popen.pid

    def done(self) -> None:
        ledger.active().released(self.entry)


def spawn(argv: Sequence[str], *, what: str, env: Mapping[str, str] | None = None,
          **popen_kwargs: object) -> Spawned:
    """``subprocess.Popen`` in a session of its own, recorded in the ledger before it exists and
    carrying the run's token (``env`` defaults to this process's environment)."""
    record = ledger.active()
    entry = record.intend("process", name=what, argv=[str(a) for a in list(argv)[:4]])
    try:
        popen = subprocess.Popen(list(argv), env=record.child_env(env), start_new_session=True,
                                 **popen_kwargs)  # type: ignore[call-overload]
    except BaseException:
        record.released(entry)
        raise
    record.process_started(entry, popen.pid)
    return Spawned(popen, entry)


def run_command(
    argv: Sequence[str],
    *,
    timeout: float,
    what: str | None = None,
    env: Mapping[str, str] | None = None,
    cwd: Path | str | None = None,
    input: str | None = None,
) -> subprocess.CompletedProcess[str]:
    """A short command to completion (text output captured). At ``timeout`` its whole process
    group is killed and ``subprocess.TimeoutExpired`` raised, with what it printed so far."""
    child = spawn(argv, what=what or str(argv[0]), env=env, cwd=cwd, text=True,
                  stdin=subprocess.PIPE if input is not None else subprocess.DEVNULL,
                  stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        out, err = child.popen.communicate(input, timeout=timeout)
    except subprocess.TimeoutExpired:
        _killpg(child.pid, signal.SIGKILL)
        out, err = child.popen.communicate()
        raise subprocess.TimeoutExpired(list(argv), timeout, output=out, stderr=err) from None
    except BaseException:
        _killpg(child.pid, signal.SIGKILL)
        child.popen.wait()
        raise
    finally:
        if child.popen.returncode is not None:
            child.done()
    return subprocess.CompletedProcess(list(argv), child.popen.returncode, out, err)


def _killpg(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def run_checked(
    argv: Sequence[str],
    *,
    what: str,
    timeout: float,
    env: Mapping[str, str] | None = None,
    cwd: Path | str | None = None,
    log_path: Path | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run a short command to completion; on failure raise with its output's tail."""
    try:
        proc = run_command(argv, what=what, timeout=timeout, env=env, cwd=cwd)
    except subprocess.TimeoutExpired as exc:
        out = (exc.stdout or "") + (exc.stderr or "") if isinstance(exc.stdout, str) else ""
        raise ComponentFailed(f"{what}: no result after {timeout:.0f}s\n{_tail_text(out)}") from None
    if log_path is not None:
        log_path.parent.mkdir(parents=True, exist_ok=True)
        log_path.write_text(proc.stdout + proc.stderr)
    if proc.returncode != 0:
        raise ComponentFailed(
            f"{what}: exit status {proc.returncode}\n{_tail_text(proc.stdout + proc.stderr)}"
        )
    return proc


def _tail_text(text: str, lines: int = LOG_TAIL_LINES) -> str:
    return "\n".join(text.splitlines()[-lines:])


@dataclass
class ManagedProcess:
    """One long-running component: a command, its log file, and its process group."""

    name: str
    argv: list[str]
    log_path: Path
    env: dict[str, str] | None = None
    cwd: Path | None = None
    popen: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    entry: int | None = field(default=None, repr=False)  # its ledger entry

    def start(self) -> ManagedProcess:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")
        try:
            # its own process group: stop() kills the whole tree
            child = spawn(self.argv, what=self.name, env=self.env, cwd=self.cwd, stdout=log,
                          stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        except OSError as exc:
            raise ComponentFailed(f"{self.name}: could not start {self.argv[0]!r}: {exc}") from exc
        finally:
            log.close()
        self.popen, self.entry = child.popen, child.entry
        return self

    @property
    def pid(self) -> int:
        assert self.popen is not None, f"{self.name} was never started"
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def exit_code(self) -> int | None:
        return None if self.popen is None else self.popen.poll()

    def tail(self, lines: int = LOG_TAIL_LINES) -> str:
        return log_tail(self.log_path, lines)

    def failure(self, what: str) -> ComponentFailed:
        state = "running" if self.alive() else f"exited with status {self.exit_code()}"
        return ComponentFailed(
            f"{self.name}: {what} ({state}); last lines of {self.log_path}:\n{self.tail()}"
        )

    def wait_until(
        self,
        ready: Callable[[], bool],
        *,
        what: str,
        deadline_s: float,
        interval_s: float = 0.2,
        fail_fast: Callable[[], str | None] | None = None,
    ) -> float:
        """Poll `ready` until true; return seconds waited. Gives up early if the process dies
        (or `fail_fast` returns a reason), and at the deadline, naming `what` it waited for."""
        start = time.monotonic()

        def check() -> bool:
            if not self.alive():
                raise self.failure(f"exited while waiting for {what}")
            if fail_fast is not None:
                reason = fail_fast()
                if reason:
                    raise self.failure(f"{reason} while waiting for {what}")
            try:
                return bool(ready())
            except (requests.RequestException, OSError):
                return False

        retrying = Retrying(
            stop=stop_after_delay(deadline_s),
            wait=wait_fixed(interval_s),
            # Only a falsy result is retried: ComponentFailed from check() propagates at once.
            retry=retry_if_result(lambda ok: not ok),
        )
        try:
            retrying(check)
        except RetryError:
            raise self.failure(f"gave up after {deadline_s:.0f}s waiting for {what}") from None
        return time.monotonic() - start

    def wait_http(self, url: str, *, deadline_s: float, expect: int = 200) -> float:
        return self.wait_until(
            lambda: requests.get(url, timeout=2).status_code == expect,
            what=f"HTTP {expect} from {url}",
            deadline_s=deadline_s,
        )

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM the process group, then SIGKILL whatever is left of it."""
        if self.popen is None:
            return
        kill_process_tree(self.popen.pid, timeout=timeout)
        try:
            self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return  # still there: the ledger keeps it, for the session's close or the reaper
        ledger.active().released(self.entry)
        self.entry = None

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Signal the whole group now (a fault, not a teardown)."""
        if self.popen is not None and self.alive():
            try:
                os.killpg(self.popen.pid, sig)
            except ProcessLookupError:
                pass


def kill_process_tree(pid: int, timeout: float = 10.0) -> None:
    """Terminate the process group led by `pid` and any descendant that left it."""
    try:
        leader = psutil.Process(pid)
        members = [leader, *leader.children(recursive=True)]
    except psutil.NoSuchProcess:
        members = []
    try:
        os.killpg(pid, signal.SIGTERM)
    except (ProcessLookupError, PermissionError):
        pass
    for proc in members:
        try:
            proc.terminate()
        except psutil.NoSuchProcess:
            pass
    _gone, alive = psutil.wait_procs(members, timeout=timeout)
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    for proc in alive:
        try:
            proc.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(alive, timeout=timeout)


class ProcessRegistry:
    """Every process the harness started, so teardown can stop all of them (newest first)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._procs: list[ManagedProcess] = []

    def start(self, proc: ManagedProcess) -> ManagedProcess:
        with self._lock:
            self._procs.append(proc)
        return proc.start()

    def forget(self, proc: ManagedProcess) -> None:
        with self._lock:
            if proc in self._procs:
                self._procs.remove(proc)

    def pids(self) -> list[int]:
        with self._lock:
            return [p.popen.pid for p in self._procs if p.popen is not None]

    def owns(self, pid: int) -> bool:
        """True when `pid` is one of ours or a descendant of one of ours (chaos blast radius)."""
        for root in self.pids():
            if pid == root:
                return True
            try:
                if pid in {c.pid for c in psutil.Process(root).children(recursive=True)}:
                    return True
            except psutil.NoSuchProcess:
                continue
        return False

    def stop_all(self) -> None:
        with self._lock:
            procs = list(reversed(self._procs))
            self._procs.clear()
        for proc in procs:
            proc.stop()
