"""The owner's side of the ledger: one ``Ledger`` per process that creates resources (a pytest
session, an xdist worker, ``seamcheck-stack``).

Every resource is recorded *before* it exists (``intend``), completed with what is known only
afterwards (``created``: a pid and its start time), and crossed off when teardown removed it
(``released``) or the user asked to keep it (``kept``). The ledger file and the reaper start with
the first intent, so a run that creates nothing leaves no trace. Processes the harness starts get
the run's token in their environment (``child_env``); the reaper finds every process carrying it,
also one whose pid was never recorded because the owner died between fork and the record.

Why one ledger per process and not an object passed down every call chain: the reaper watches a
process, so there is exactly one per process by nature; ``configure`` (the plugin, at configure
time) and ``active`` are that one instance's door.
"""
from __future__ import annotations

import fcntl
import os
import secrets
import select
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager, nullcontext
from pathlib import Path
from typing import Any

import psutil

from harness.errors import StackError
from harness.ledger.others import LEDGER_SUFFIX, LiveClaim, live_claims, sweep_dead
from harness.ledger.records import dumps, read_state
from harness.ledger.undo import TOKEN_VAR, Swept, sweep

__all__ = ["LEDGER_DIR_ENV", "Ledger", "LedgerError", "activated", "active", "child_env", "configure",
           "default_directory", "reset"]

#: The environment variable of --ledger-dir (read by the plugin, named here for the error text).
LEDGER_DIR_ENV = "SEAMCHECK_LEDGER_DIR"
REAPER_START_DEADLINE_S = 20.0


class LedgerError(StackError):
    """The ledger or its reaper cannot work here (folder not writable, reaper did not start)."""


def default_directory() -> Path:
    """Machine-wide, so runs see each other: /run/seamcheck as root (cleared at boot, when the
    processes and namespaces it lists are gone too), else the user's runtime folder."""
    if os.geteuid() == 0:
        return Path("/run/seamcheck")
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    return Path(runtime, "seamcheck") if runtime else Path(tempfile.gettempdir(), f"seamcheck-ledger-{os.getuid()}")


def _start_time(pid: int) -> float | None:
    try:
        return psutil.Process(pid).create_time()
    except psutil.NoSuchProcess:
        return None


class Ledger:
    def __init__(self, directory: Path, run_id: str, *, say: Callable[[str], None] | None = None,
                 around_spawn: Callable[[], AbstractContextManager[Any]] | None = None,
                 report_dir: Path | None = None) -> None:
        self.directory = Path(directory)
        self.run_id = run_id
        self.token = secrets.token_hex(16)
        self.say = say or (lambda line: print(line, file=sys.stderr, flush=True))
        # The plugin passes pytest's "capture off" context: the reaper then inherits the real
        # terminal's stderr, so its one line reaches the user even after pytest is gone.
        self.around_spawn = around_spawn or nullcontext
        self.report_dir = report_dir
        self.path: Path | None = None
        self._fd: int | None = None
        self._watch_w: int | None = None
        self._reaper: subprocess.Popen[bytes] | None = None
        self._next_id = 1
        self._keys: dict[tuple[str, str], int] = {}
        self._lock = threading.RLock()

    # ------------------------------------------------------------------ records
    def intend(self, kind: str, *, key: str | None = None, **what: Any) -> int:
        """Record a resource about to be created; returns its entry id. ``key`` (a path, a name)
        lets teardown release it by that name."""
        with self._lock:
            self._ensure_open()
            entry = self._next_id
            self._next_id += 1
            self._write({"op": "intend", "id": entry, "kind": kind, "what": what})
            if key is not None:
                self._keys[(kind, key)] = entry
            return entry

    @contextmanager
    def creating(self, kind: str, *, key: str | None = None, **what: Any) -> Iterator[int]:
        """``intend`` around the one step that creates the resource: if that step fails, it did
        not create it (a name already taken, say), and the entry must not undo someone else's."""
        entry = self.intend(kind, key=key, **what)
        try:
            yield entry
        except BaseException:
            self.released(entry)
            if key is not None:
                self._keys.pop((kind, key), None)
            raise

    def created(self, entry: int, **what: Any) -> None:
        with self._lock:
            self._write({"op": "created", "id": entry, "what": what})

    def process_started(self, entry: int, pid: int) -> None:
        """The facts that make a process provably the one recorded: pid, start time, group."""
        self.created(entry, pid=pid, started=_start_time(pid))

    def released(self, entry: int | None) -> None:
        if entry is None:
            return
        with self._lock:
            if self._fd is not None:
                self._write({"op": "released", "id": entry})

    def kept(self, entry: int | None) -> None:
        if entry is None:
            return
        with self._lock:
            if self._fd is not None:
                self._write({"op": "kept", "id": entry})

    def entry_for(self, kind: str, key: str) -> int | None:
        return self._keys.get((kind, key))

    def release_key(self, kind: str, key: str) -> None:
        with self._lock:
            self.released(self._keys.pop((kind, key), None))

    # ------------------------------------------------------------------ helpers for the common kinds
    def child_env(self, env: Mapping[str, str] | None = None) -> dict[str, str]:
        """``env`` (default: this process's) plus the run's token: pass it to every child."""
        self._ensure_open()
        return {**(os.environ if env is None else env), TOKEN_VAR: self.token}

    def make_dir(self, prefix: str, parent: Path | str | None = None) -> Path:
        """A new private folder (like mkdtemp), recorded before it exists; release it with
        ``release_key("dir", str(path))`` after removing it, or ``keep_dir``."""
        base = Path(parent) if parent is not None else Path(tempfile.gettempdir())
        while True:
            path = base / f"{prefix}{secrets.token_hex(4)}"
            self.intend("dir", key=str(path), path=str(path))
            try:
                os.mkdir(path, 0o700)
                return path
            except FileExistsError:
                self.release_key("dir", str(path))

    def keep_key(self, kind: str, key: str) -> None:
        """The user asked to keep it (--keep-stack, --keep-cluster): never undone."""
        with self._lock:
            self.kept(self._keys.pop((kind, key), None))

    def keep_dir(self, path: Path) -> None:
        self.keep_key("dir", str(path))

    def remove_dir(self, path: Path, *, keep: bool = False) -> None:
        """Teardown's end of ``make_dir``: remove the folder (or keep it, as the user asked)."""
        if keep:
            self.keep_dir(path)
            return
        shutil.rmtree(path, ignore_errors=True)
        if not Path(path).exists():
            self.release_key("dir", str(path))

    def claim(self, name: str, **what: Any) -> int:
        """A name a concurrent run must not use (``port:5000``): checked by ``claims_in_the_way``."""
        return self.intend("claim", key=name, name=name, **what)

    def claims_in_the_way(self, names: list[str]) -> dict[str, LiveClaim]:
        """Which of ``names`` another live run holds (never opens this ledger)."""
        if not self.directory.is_dir():
            return {}
        held = live_claims(self.directory, skip=self.path)
        return {n: held[n] for n in names if n in held}

    def sweep_dead_runs(self) -> None:
        """Clean up after runs that died without teardown and without their reaper."""
        if self.directory.is_dir():
            sweep_dead(self.directory, say=self.say, skip=self.path)

    # ------------------------------------------------------------------ lifecycle
    @property
    def is_open(self) -> bool:
        return self._fd is not None

    def _write(self, record: dict[str, Any]) -> None:
        assert self._fd is not None
        os.write(self._fd, dumps(record))  # O_APPEND: one write(2), one whole line
        if self._reaper is not None and self._reaper.poll() is not None:
            self._start_reaper()  # somebody killed it: a session must never run unwatched

    def _ensure_open(self) -> None:
        with self._lock:
            if self._fd is not None:
                return
            try:
                self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
            except OSError as exc:
                raise LedgerError(f"cannot create the ledger folder {self.directory}: {exc}; pass a writable "
                                  f"folder to --ledger-dir (or {LEDGER_DIR_ENV})") from None
            sweep_dead(self.directory, say=self.say)
            final = self.directory / f"{self.run_id}-{os.getpid()}{LEDGER_SUFFIX}"
            tmp = self.directory / f".{final.name}.{secrets.token_hex(4)}"
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND | os.O_CLOEXEC, 0o600)
            # Locked and complete before it gets the name other runs look for.
            fcntl.flock(fd, fcntl.LOCK_EX)
            os.write(fd, dumps({"op": "open", "run_id": self.run_id, "token": self.token, "owner_pid": os.getpid(),
                                "owner_started": _start_time(os.getpid()), "argv": sys.argv[:8],
                                "cwd": os.getcwd(), "opened": time.time(),
                                "report_dir": str(self.report_dir) if self.report_dir else None}))
            os.rename(tmp, final)
            self._fd, self.path = fd, final
            self._start_reaper()

    def _start_reaper(self) -> None:
        assert self.path is not None
        if self._watch_w is not None:
            os.close(self._watch_w)
        watch_r, watch_w = os.pipe()  # both ends non-inheritable: no other child keeps it open
        ready_r, ready_w = os.pipe()
        env = {k: v for k, v in os.environ.items() if k != TOKEN_VAR}
        argv = [sys.executable, "-m", "harness.ledger.reaper", "--ledger", str(self.path),
                "--watch-fd", str(watch_r), "--ready-fd", str(ready_w)]
        try:
            with self.around_spawn():
                self._reaper = subprocess.Popen(argv, pass_fds=(watch_r, ready_w), start_new_session=True,
                                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, env=env,
                                                cwd="/")
        finally:
            os.close(watch_r)
            os.close(ready_w)
        self._watch_w = watch_w
        try:
            ready, _, _ = select.select([ready_r], [], [], REAPER_START_DEADLINE_S)
            answer = os.read(ready_r, 1) if ready else b""
        finally:
            os.close(ready_r)
        if answer != b"r":
            self._reaper.kill()
            raise LedgerError(f"the reaper ({' '.join(argv[:3])}) did not start within {REAPER_START_DEADLINE_S:.0f}s "
                              f"(exit status {self._reaper.poll()}); nothing would clean up after a killed run")
        self._write({"op": "reaper", "pid": self._reaper.pid})

    def close(self) -> Swept:
        """End of the session: undo whatever teardown left (and say so), then remove the ledger.
        Closing the pipe's write end lets the reaper see that the owner is done."""
        with self._lock:
            if self._fd is None or self.path is None:
                return Swept()
            state = read_state(self.path)
            leaks = [e for e in state.pending() if e.kind != "claim"]
            swept = sweep(leaks, self.token, exclude={self._reaper.pid} if self._reaper else ())
            if not swept.empty:
                self.say(f"seamcheck: teardown left resources behind; the ledger removed them: {swept.summary()}")
            self._finish()
            return swept

    def hand_over(self) -> tuple[str, list[dict[str, Any]]]:
        """Close without undoing anything, for resources that must outlive this process (a host
        cluster kept with --keep-cluster): every pending entry is marked kept, and the run's token
        and those entries are returned for whoever removes them later (``sweep`` of the entries
        with that token). Only for a ledger of its own: its token's processes stay alive."""
        with self._lock:
            if self._fd is None or self.path is None:
                return self.token, []
            pending = [e for e in read_state(self.path).pending() if e.kind != "claim"]
            for entry in pending:
                self._write({"op": "kept", "id": entry.id})
            self._finish()
            return self.token, [{"id": e.id, "kind": e.kind, "what": e.what} for e in pending]

    def _finish(self) -> None:
        """Write the close record, drop the file and let the reaper go (held lock, open ledger):
        the reaper sees EOF on its pipe, finds no ledger file, and exits without a sweep."""
        assert self._fd is not None and self.path is not None
        self._write({"op": "close"})
        self.path.unlink(missing_ok=True)
        os.close(self._fd)
        self._fd = None
        if self._watch_w is not None:
            os.close(self._watch_w)
            self._watch_w = None
        if self._reaper is not None:
            try:
                self._reaper.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._reaper.kill()

    def pending_descriptions(self) -> list[str]:
        if self.path is None:
            return []
        return [e.describe() for e in read_state(self.path).pending() if e.kind != "claim"]


# ---------------------------------------------------------------------- the process's ledger
_active: Ledger | None = None
_active_lock = threading.Lock()


def configure(directory: Path | None = None, run_id: str | None = None, **kwargs: Any) -> Ledger:
    """Make (or replace, when nothing was recorded yet) this process's ledger."""
    global _active
    with _active_lock:
        if _active is not None and _active.is_open:
            return _active
        directory = Path(directory) if directory else default_directory()
        _active = Ledger(directory, run_id or time.strftime("%Y%m%d-%H%M%S"), **kwargs)
        return _active


def active() -> Ledger:
    """This process's ledger (a default one when nothing configured it: a benchmark, a script)."""
    return _active if _active is not None else configure()


def child_env(env: Mapping[str, str] | None = None) -> dict[str, str]:
    return active().child_env(env)


@contextmanager
def activated(record: Ledger) -> Iterator[Ledger]:
    """Make ``record`` this process's ledger for a while (a test of code that records)."""
    global _active
    with _active_lock:
        previous, _active = _active, record
    try:
        yield record
    finally:
        with _active_lock:
            _active = previous


def reset() -> Swept:
    """Close this process's ledger (the plugin's unconfigure): see ``Ledger.close``."""
    global _active
    with _active_lock:
        ledger, _active = _active, None
    return ledger.close() if ledger is not None else Swept()

