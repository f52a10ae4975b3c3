"""How each kind of ledger entry is undone. "Not there" always counts as done, so an undo can run
twice (the owner's close and then its reaper, or a reaper and the next run) without harm.

Processes are found two ways, both proof that they are the run's own: the very process recorded
(same pid and same start time, so a reused pid is never signalled), and any process whose
environment carries the run's token (every process the harness starts gets it, and its children
inherit it: MLServer's workers, gunicorn's, HAProxy's, the KFP runner's tasks). A whole recorded
process group is signalled only while its leader is the recorded one.
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from harness.ledger.records import KINDS, Entry

__all__ = ["TOKEN_VAR", "Swept", "processes_with_token", "sweep", "verified_process"]

#: The environment variable that marks a process (and its descendants) as one run's own.
TOKEN_VAR = "SEAMCHECK_RUN_TOKEN"
#: Between SIGTERM and SIGKILL: teardown's courtesy, kept short (the owner is gone).
GRACE_S = 2.0
#: How long the sweep keeps looking for processes that a dying process forked meanwhile.
PROCESS_SWEEP_S = 15.0
COMMAND_TIMEOUT_S = 60.0
# Never remove these, whatever a ledger says (a corrupted or hand-edited ledger).
_PRECIOUS = {Path("/"), Path("/tmp"), Path("/run"), Path("/var"), Path("/home"), Path("/root"), Path.home()}


@dataclass
class Swept:
    """What one sweep removed, by kind, and what it could not."""

    removed: dict[str, int] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def add(self, kind: str, n: int = 1) -> None:
        if n:
            self.removed[kind] = self.removed.get(kind, 0) + n

    @property
    def empty(self) -> bool:
        return not self.removed and not self.failures

    def summary(self) -> str:
        names = {"process": ("process", "processes"), "command": ("undo command", "undo commands"),
                 "mount": ("mount", "mounts"), "cgroup": ("cgroup", "cgroups"),
                 "iptables": ("iptables rule", "iptables rules"), "link": ("veth link", "veth links"),
                 "netns": ("network namespace", "network namespaces"), "dir": ("folder", "folders")}
        parts = [f"{n} {names.get(k, (k, k))[n != 1]}" for k, n in self.removed.items()]
        text = ", ".join(parts) if parts else "nothing was left"
        if self.failures:
            text += f"; could not remove: {'; '.join(self.failures[:5])}"
        return text


# ------------------------------------------------------------------------------ processes
def _environ_has(pid: int, marker: bytes) -> bool:
    try:
        with open(f"/proc/{pid}/environ", "rb") as fh:
            data = fh.read()
    except OSError:  # gone, or not ours to read
        return False
    return marker in data.split(b"\0")


def processes_with_token(token: str, *, exclude: Iterable[int] = ()) -> list[psutil.Process]:
    """Every live process whose environment (as exec'd) holds ``TOKEN_VAR=token``."""
    if not token:
        return []
    marker = f"{TOKEN_VAR}={token}".encode()
    skip = {os.getpid(), *exclude}
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) in skip:
            continue
        if _environ_has(int(name), marker):
            try:
                proc = psutil.Process(int(name))
                if proc.status() != psutil.STATUS_ZOMBIE:
                    found.append(proc)
            except psutil.NoSuchProcess:
                pass
    return found


def verified_process(what: dict) -> psutil.Process | None:
    """The recorded process if it is still the same one (pid and start time), else None."""
    pid, started = what.get("pid"), what.get("started")
    if not pid or started is None:
        return None
    try:
        proc = psutil.Process(int(pid))
        if abs(proc.create_time() - float(started)) > 0.05 or proc.status() == psutil.STATUS_ZOMBIE:
            return None
        return proc
    except psutil.NoSuchProcess:
        return None


def _signal_all(procs: Iterable[psutil.Process], groups: Iterable[int], sig: int) -> None:
    for pgid in groups:
        try:
            os.killpg(pgid, sig)
        except (ProcessLookupError, PermissionError):
            pass
    for proc in procs:
        try:
            proc.send_signal(sig)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            pass


def _alive(procs: Iterable[psutil.Process]) -> list[psutil.Process]:
    alive = []
    for proc in procs:
        try:
            if proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE:
                alive.append(proc)
        except psutil.NoSuchProcess:
            pass
    return alive


def undo_processes(entries: list[Entry], token: str, *, grace_s: float = GRACE_S,
                   exclude: Iterable[int] = ()) -> int:
    """SIGTERM every recorded process group (leader verified) and every token-carrying process,
    SIGKILL what is left after ``grace_s``, and keep looking until no token-carrier is left.
    Returns how many distinct processes were signalled."""
    leaders = [p for p in (verified_process(e.what) for e in entries if e.kind == "process") if p is not None]
    groups = set()
    for leader in leaders:
        try:
            if os.getpgid(leader.pid) == leader.pid:  # started in its own session: the group is ours
                groups.add(leader.pid)
        except ProcessLookupError:
            pass
    targets = {p.pid: p for p in [*leaders, *processes_with_token(token, exclude=exclude)]}
    signalled = set(targets)
    if not targets:
        return 0
    _signal_all(targets.values(), groups, signal.SIGTERM)
    _gone, alive = psutil.wait_procs(list(targets.values()), timeout=grace_s)
    end = time.monotonic() + PROCESS_SWEEP_S
    while True:
        _signal_all(alive, groups, signal.SIGKILL)
        psutil.wait_procs(alive, timeout=2)
        # Anything forked meanwhile (a dying parent's last child) carries the token too.
        alive = _alive([*alive, *processes_with_token(token, exclude=exclude)])
        signalled.update(p.pid for p in alive)
        if not alive or time.monotonic() > end:
            return len(signalled)
        time.sleep(0.1)


# ------------------------------------------------------------------------------ the rest
def _run(argv: list[str], timeout: float = 20) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False,
                          stdin=subprocess.DEVNULL)


def _unescape_mount(path: str) -> str:
    # /proc/self/mountinfo writes space, tab, newline and backslash as octal escapes.
    for code, char in (("\\040", " "), ("\\011", "\t"), ("\\012", "\n"), ("\\134", "\\")):
        path = path.replace(code, char)
    return path


def mount_points() -> list[str]:
    try:
        lines = Path("/proc/self/mountinfo").read_text().splitlines()
    except OSError:
        return []
    return [_unescape_mount(line.split()[4]) for line in lines if len(line.split()) > 4]


def undo_mount(what: dict) -> int:
    """Unmount ``path`` (and, with ``tree``, every mount below it), deepest first, lazily: a
    busy mount is detached now and freed when its last user goes."""
    root = os.path.normpath(what["path"])
    tree = bool(what.get("tree"))
    targets = [m for m in mount_points() if m == root or (tree and m.startswith(root.rstrip("/") + "/"))]
    done = 0
    for point in sorted(set(targets), key=lambda m: m.count("/"), reverse=True):
        if _run(["umount", "-l", point]).returncode == 0:
            done += 1
    return done


def _cgroup_pids(root: Path) -> list[int]:
    pids = []
    for folder, _dirs, files in os.walk(root):
        if "cgroup.procs" in files:
            try:
                pids += [int(x) for x in Path(folder, "cgroup.procs").read_text().split()]
            except (OSError, ValueError):
                pass
    return pids


def _kill_all(pids: list[int]) -> None:
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _remove_tree(root: Path) -> OSError | None:
    """Remove the cgroup folders deepest first; return the first refusal, if any."""
    refusal = None
    for folder, _dirs, _files in sorted(os.walk(root), key=lambda w: w[0].count("/"), reverse=True):
        try:
            os.rmdir(folder)
        except FileNotFoundError:
            pass
        except OSError as exc:
            refusal = refusal or exc
    return refusal


def undo_cgroup(what: dict, deadline_s: float = 10.0) -> int:
    """Kill every process in the cgroup's subtree (membership is the proof it is the run's: a
    process cannot leave a cgroup on its own), then remove the folders, deepest first.

    Removal is retried until the deadline: a killed process leaves ``cgroup.procs`` before the
    kernel lets its cgroup go (rmdir answers EBUSY for a short while after the last task exits,
    and a runc being killed can still make a child cgroup), so an empty ``cgroup.procs`` is not
    yet a removable cgroup."""
    root = Path(what["path"])
    if not root.is_dir():
        return 0
    end = time.monotonic() + deadline_s
    while True:
        pids = _cgroup_pids(root)
        _kill_all(pids)
        refusal = _remove_tree(root) if not pids else None
        if not root.exists():
            return 1
        if time.monotonic() > end:
            if pids:
                raise RuntimeError(f"cgroup {root} still holds pids {pids[:5]} after {deadline_s:.0f}s")
            raise RuntimeError(f"cgroup {root} not removable after {deadline_s:.0f}s: {refusal}")
        time.sleep(0.05)


def _netns_exists(name: str) -> bool:
    return name in {line.split()[0] for line in _run(["ip", "netns", "list"]).stdout.splitlines() if line.strip()}


def undo_iptables(what: dict) -> int:
    netns = what.get("netns")
    if netns and not _netns_exists(netns):
        return 0  # the rule went with its namespace
    argv = ["iptables", "-t", what.get("table", "filter"), "-D", what["chain"], *what["rule"]]
    if netns:
        argv = ["ip", "netns", "exec", netns, *argv]
    return 1 if _run(argv).returncode == 0 else 0


def undo_link(what: dict) -> int:
    name = what["name"]
    if _run(["ip", "link", "show", name]).returncode != 0:
        return 0
    return 1 if _run(["ip", "link", "delete", name]).returncode == 0 else 0


def undo_netns(what: dict) -> int:
    name = what["name"]
    if not _netns_exists(name):
        return 0
    proc = _run(["ip", "netns", "delete", name])
    if proc.returncode != 0:
        raise RuntimeError(f"ip netns delete {name}: {proc.stderr.strip()}")
    return 1


def undo_command(what: dict) -> int:
    env = {**os.environ, **(what.get("env") or {})}
    proc = subprocess.run(list(what["argv"]), capture_output=True, text=True, env=env, check=False,
                          timeout=float(what.get("timeout_s", COMMAND_TIMEOUT_S)), stdin=subprocess.DEVNULL)
    if proc.returncode != 0 and not what.get("ok_if_fails"):
        raise RuntimeError(f"{' '.join(what['argv'])}: exit {proc.returncode}: {proc.stderr.strip()[-300:]}")
    return 1


def undo_dir(what: dict) -> int:
    path = Path(what["path"])
    if not path.is_absolute() or path.resolve() in _PRECIOUS or len(path.parts) < 3:
        raise RuntimeError(f"refusing to remove {path}: not a folder the harness makes")
    if not path.exists():
        return 0
    shutil.rmtree(path, ignore_errors=True)
    if path.exists():
        raise RuntimeError(f"{path} could not be removed completely")
    return 1


_UNDO: dict[str, Callable[[dict], int]] = {
    "command": undo_command, "mount": undo_mount, "cgroup": undo_cgroup, "iptables": undo_iptables,
    "link": undo_link, "netns": undo_netns, "dir": undo_dir,
}


def sweep(entries: list[Entry], token: str, *, exclude: Iterable[int] = (),
          grace_s: float = GRACE_S) -> Swept:
    """Undo ``entries`` (the pending ones of a ledger) in KINDS order; processes by token too.
    Each failure is noted and the sweep goes on: one stuck mount must not keep a namespace."""
    started = time.monotonic()
    swept = Swept()
    try:
        swept.add("process", undo_processes(entries, token, grace_s=grace_s, exclude=exclude))
    except Exception as exc:  # noqa: BLE001 - a sweep reports what it could not do and goes on
        swept.failures.append(f"processes: {exc}")
    for kind in KINDS:
        undo = _UNDO.get(kind)
        if undo is None:
            continue
        # Undo in reverse order of creation: a rule before its namespace, a subfolder first.
        for entry in sorted((e for e in entries if e.kind == kind), key=lambda e: e.id, reverse=True):
            try:
                swept.add(kind, undo(entry.what))
            except Exception as exc:  # noqa: BLE001
                swept.failures.append(f"{entry.describe()}: {exc}")
    swept.seconds = time.monotonic() - started
    return swept
