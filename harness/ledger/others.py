"""The other ledgers in a ledger folder: whose owner is gone (clean up after it) and whose owner is
alive (its claims on fixed ports and names are in a new run's way).

Liveness is the owner's exclusive ``flock`` on its ledger file: the kernel drops it when the
process dies, however it dies, so taking the lock *is* the proof that nobody owns the file (no pid
is polled; a pid can be reused).
"""
from __future__ import annotations

import errno
import fcntl
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

from harness.ledger.records import LedgerState, read_state
from harness.ledger.undo import Swept, sweep

__all__ = ["LEDGER_SUFFIX", "LiveClaim", "Reaped", "live_claims", "locked_if_unowned", "owner_alive",
           "reaped_line", "sweep_dead"]

LEDGER_SUFFIX = ".ledger"


@dataclass(frozen=True)
class LiveClaim:
    """A resource (``port:5000``, ``netns:seamcheck-host``) claimed by a run that is still alive."""

    name: str
    run_id: str
    owner_pid: int
    ledger: Path
    owner_running: bool  # False: the owner is gone and its reaper is cleaning up right now

    def describe(self) -> str:
        if self.owner_running:
            return f"seamcheck run {self.run_id} (pytest pid {self.owner_pid}, still running)"
        return (f"seamcheck run {self.run_id} (pytest pid {self.owner_pid} is gone; its reaper is removing "
                "what it left, try again in a few seconds)")


@dataclass(frozen=True)
class Reaped:
    header: dict[str, Any]
    swept: Swept


def owner_alive(header: dict[str, Any]) -> bool:
    """The ledger's owner process is the one recorded (pid and start time)."""
    try:
        proc = psutil.Process(int(header.get("owner_pid", 0)))
        return abs(proc.create_time() - float(header.get("owner_started", 0))) < 0.05 and \
            proc.status() != psutil.STATUS_ZOMBIE
    except (psutil.NoSuchProcess, ValueError):
        return False


def _ledgers(directory: Path) -> list[Path]:
    try:
        return sorted(p for p in directory.iterdir() if p.name.endswith(LEDGER_SUFFIX))
    except FileNotFoundError:
        return []


@contextmanager
def locked_if_unowned(path: Path, *, wait_s: float = 0.0) -> Iterator[int | None]:
    """Yield an fd holding the ledger's lock when nobody else holds it (within ``wait_s``), else
    None. The fd is checked to still be the file at ``path`` (a cleaner may have unlinked it)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        yield None
        return
    try:
        end = time.monotonic() + wait_s
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as exc:
                if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                    raise
                if time.monotonic() >= end:
                    yield None
                    return
                time.sleep(0.02)
        try:
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        yield fd if same else None
    finally:
        os.close(fd)


def reaped_line(header: dict[str, Any], swept: Swept, *, who: str) -> str:
    return (f"seamcheck: {who} removed what run {header.get('run_id', '?')} (pytest pid "
            f"{header.get('owner_pid', '?')}) left when it ended without its teardown: {swept.summary()} "
            f"in {swept.seconds:.1f}s")


def sweep_dead(directory: Path, *, say: Callable[[str], None] | None = None, skip: Path | None = None) -> list[Reaped]:
    """Clean up after every run in ``directory`` whose owner is gone and whose reaper did not
    (it was killed too, or the machine lost power): one line each through ``say``."""
    reaped = []
    for path in _ledgers(directory):
        if skip is not None and path == skip:
            continue
        with locked_if_unowned(path) as fd:
            if fd is None:
                continue
            state: LedgerState = read_state(path)
            swept = sweep(state.pending(), state.token) if not state.closed else Swept()
            path.unlink(missing_ok=True)
        reaped.append(Reaped(state.header, swept))
        if say is not None and not state.closed:
            say(reaped_line(state.header, swept, who="this run"))
    return reaped


def live_claims(directory: Path, *, skip: Path | None = None) -> dict[str, LiveClaim]:
    """Claims (``port:5000``, ...) held by runs whose ledger is locked (owner or reaper at work)."""
    claims: dict[str, LiveClaim] = {}
    for path in _ledgers(directory):
        if skip is not None and path == skip:
            continue
        with locked_if_unowned(path) as fd:
            if fd is not None:
                continue  # nobody holds it: a dead run's ledger, not in anyone's way
        state = read_state(path)
        header = state.header
        for entry in state.pending(("claim",)):
            name = str(entry.what.get("name"))
            claims[name] = LiveClaim(name, str(header.get("run_id", "?")), int(header.get("owner_pid", 0)), path,
                                     owner_alive(header))
    return claims
