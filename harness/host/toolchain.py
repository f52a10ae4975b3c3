"""The Go and C toolchains the host build drives: finding them, their versions, and one build
command run to completion with progress lines and a deadline.

Every command goes through harness.procs (recorded in the run ledger, killed by process group at
its deadline). Go runs with ``GOTOOLCHAIN=local`` (never fetch another Go), ``GOFLAGS=-mod=mod``
(a wrapper's go.sum may gain lines in the scratch copy; the committed one stays as it is),
``GOWORK=off`` (no go.work above the scratch folder may change the build) and our own GOCACHE.
"""
from __future__ import annotations

import functools
import json
import os
import resource
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from harness.procs import run_command, spawn

__all__ = ["GO_TIMEOUT_S", "HostBuildError", "Measured", "cc_binary", "cc_version", "go_binary", "go_env",
           "go_version", "module_dir", "run_build"]

#: The longest one `go build` may take (a cold kubelet on 2 cores is ~20 min): override with
#: SEAMCHECK_HOST_BUILD_TIMEOUT (seconds).
GO_TIMEOUT_S = float(os.environ.get("SEAMCHECK_HOST_BUILD_TIMEOUT", "5400"))
SHORT_TIMEOUT_S = 300.0
PROGRESS_EVERY_S = 20.0

Say = Callable[[str], None]


class HostBuildError(RuntimeError):
    """A component could not be built; the message names the step, the fix, and the log's tail."""


def go_binary() -> str:
    explicit = os.environ.get("SEAMCHECK_GO")
    for cand in (explicit, shutil.which("go"), "/usr/local/go/bin/go"):
        if cand and Path(cand).is_file() and os.access(cand, os.X_OK):
            return cand
    raise HostBuildError("go is not installed: put Go 1.26 at /usr/local/go/bin/go or on PATH, "
                         f"or set SEAMCHECK_GO=/path/to/go (SEAMCHECK_GO={explicit!r})")


def go_env(gocache: Path, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env.update({"GOTOOLCHAIN": "local", "GOFLAGS": "-mod=mod", "GOWORK": "off", "GOCACHE": str(gocache)})
    env.update(extra or {})
    return env


@functools.cache
def go_version(go: str) -> str:
    proc = run_command([go, "env", "GOVERSION"], what="go env GOVERSION", timeout=SHORT_TIMEOUT_S,
                       env={**os.environ, "GOTOOLCHAIN": "local"})
    if proc.returncode != 0 or not proc.stdout.strip():
        raise HostBuildError(f"`{go} env GOVERSION` failed (exit {proc.returncode}): {proc.stderr.strip()[-300:]}")
    return proc.stdout.strip()


def cc_binary() -> str:
    found = shutil.which(os.environ.get("CC", "gcc")) or shutil.which("cc")
    if not found:
        raise HostBuildError("no C compiler: apt-get install -y gcc libc6-dev (or set CC=/path/to/cc)")
    return found


@functools.cache
def cc_version(cc: str) -> str:
    proc = run_command([cc, "--version"], what="cc --version", timeout=SHORT_TIMEOUT_S)
    return (proc.stdout.splitlines() or ["unknown"])[0].strip()


def module_dir(go: str, module_at_version: str, env: Mapping[str, str]) -> Path:
    """The module's folder in the module cache, downloading it (and checking its sum) if needed."""
    proc = run_command([go, "mod", "download", "-json", module_at_version], what=f"go mod download {module_at_version}",
                       timeout=SHORT_TIMEOUT_S * 2, env=env, cwd="/")
    try:
        info = json.loads(proc.stdout)
    except json.JSONDecodeError:
        info = {}
    if proc.returncode != 0 or info.get("Error") or not info.get("Dir"):
        raise HostBuildError(f"the Go module proxy did not give {module_at_version}: "
                             f"{info.get('Error') or proc.stderr.strip()[-400:]} (check GOPROXY and the version)")
    return Path(info["Dir"])


@dataclass
class Measured:
    wall_s: float
    cpu_s: float
    lines: int


def _children_cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def run_build(argv: Sequence[str], *, what: str, env: Mapping[str, str], cwd: Path, log: Path, say: Say,
              total: int = 0, timeout: float = GO_TIMEOUT_S) -> Measured:
    """Run one build command to completion, its output appended to ``log``; every
    PROGRESS_EVERY_S say how many output lines (``go build -v``: packages built) of ``total`` so far.
    CPU time is this process's waited-for children's (builds run one at a time)."""
    started, cpu0 = time.monotonic(), _children_cpu()
    count = [0]
    with open(log, "a") as out:
        out.write(f"$ {' '.join(argv)}\n")
        out.flush()
        child = spawn(argv, what=what, env=dict(env), cwd=str(cwd), text=True, stdin=subprocess.DEVNULL,
                      stdout=subprocess.PIPE, stderr=subprocess.STDOUT)

        def pump() -> None:
            assert child.popen.stdout is not None
            for line in child.popen.stdout:
                out.write(line)
                count[0] += 1

        reader = threading.Thread(target=pump, daemon=True)
        reader.start()
        deadline = started + timeout
        try:
            while True:
                try:
                    child.popen.wait(timeout=min(PROGRESS_EVERY_S, max(0.1, deadline - time.monotonic())))
                    break
                except subprocess.TimeoutExpired:
                    elapsed = time.monotonic() - started
                    if time.monotonic() >= deadline:
                        _kill_group(child.pid)
                        child.popen.wait()
                        raise HostBuildError(
                            f"{what}: no result after {timeout:.0f}s (raise SEAMCHECK_HOST_BUILD_TIMEOUT); "
                            f"log {log}:\n{_tail(log)}") from None
                    of = f"/{total}" if total else ""
                    say(f"  {what}: {count[0]}{of} packages, {_clock(elapsed)}")
        finally:
            reader.join(timeout=10)
            if child.popen.returncode is not None:
                child.done()
    measured = Measured(time.monotonic() - started, _children_cpu() - cpu0, count[0])
    if child.popen.returncode != 0:
        raise HostBuildError(f"{what}: exit status {child.popen.returncode}; log {log}:\n{_tail(log)}")
    return measured


def _kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _tail(path: Path, lines: int = 25) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _clock(seconds: float) -> str:
    m, s = divmod(int(seconds), 60)
    return f"{m}m{s:02d}s"
