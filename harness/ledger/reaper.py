"""``python -m harness.ledger.reaper``: waits for its owner's death, then undoes the owner's ledger.

It holds the read end of a pipe whose only write end is in the owner. ``read`` returns b"" the
moment the owner's last descriptor closes: at a normal close (the ledger file is gone by then:
nothing to do) or at its death, whatever killed it (then the ledger lists what is left). It runs
in a session of its own, so a signal to the owner's process group (Ctrl-C, a CI runner's kill of
the job's group) does not reach it, and it ignores SIGINT, SIGHUP and SIGTERM for the same reason:
its life is bounded by its owner's, it exits as soon as the sweep is done.
"""
from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from pathlib import Path

from harness.ledger.others import locked_if_unowned, owner_alive, reaped_line
from harness.ledger.records import read_state
from harness.ledger.undo import sweep

__all__ = ["main"]

#: After the owner's death its lock is gone; a new run's cleanup may hold it for a while.
LOCK_WAIT_S = 120.0


def _tell(line: str, *places: Path | None) -> None:
    try:
        print(line, file=sys.stderr, flush=True)
    except OSError:  # the terminal went with the owner
        pass
    for place in places:
        if place is None:
            continue
        try:
            place.parent.mkdir(parents=True, exist_ok=True)
            with open(place, "a") as fh:
                fh.write(f"{time.strftime('%Y-%m-%dT%H:%M:%S')} {line}\n")
        except OSError:
            pass


def reap(ledger: Path) -> int:
    """The owner is gone (or closed): sweep what its ledger still lists. Returns the exit status."""
    header = read_state(ledger).header
    # The pipe closed while the owner lives (it closed the descriptor itself): its lock is the
    # word that counts, so wait for it as long as the owner runs.
    wait_s = float("inf") if header and owner_alive(header) else LOCK_WAIT_S
    with locked_if_unowned(ledger, wait_s=wait_s) as fd:
        if fd is None:
            return 0  # gone already (closed normally, or a new run cleaned it)
        state = read_state(ledger)
        if state.closed or not state.header:
            ledger.unlink(missing_ok=True)
            return 0
        swept = sweep(state.pending(), state.token)
        report_dir = state.header.get("report_dir")
        _tell(reaped_line(state.header, swept, who="the reaper"), ledger.parent / "reaper.log",
              Path(report_dir) / "reaper.log" if report_dir else None)
        ledger.unlink(missing_ok=True)
    return 1 if swept.failures else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m harness.ledger.reaper")
    parser.add_argument("--ledger", type=Path, required=True)
    parser.add_argument("--watch-fd", type=int, required=True)
    parser.add_argument("--ready-fd", type=int, required=True)
    args = parser.parse_args(argv)
    for sig in (signal.SIGINT, signal.SIGHUP, signal.SIGTERM, signal.SIGPIPE):
        signal.signal(sig, signal.SIG_IGN)
    os.write(args.ready_fd, b"r")
    os.close(args.ready_fd)
    while True:
        try:
            if os.read(args.watch_fd, 4096) == b"":
                break
        except InterruptedError:
            continue
    return reap(args.ledger)


if __name__ == "__main__":
    sys.exit(main())
