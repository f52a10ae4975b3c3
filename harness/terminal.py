"""Lines that reach the user's terminal while pytest captures output, from any thread."""
from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest

__all__ = ["HEARTBEAT_S", "heartbeat", "progress_printer", "terminal_printer"]

#: A test phase still running after this long says so, and again every as long after.
HEARTBEAT_S = 60.0


def terminal_printer(config: pytest.Config) -> Callable[[str], None]:
    """A ``say(line)`` that suspends pytest's capture for the line (environments build, and the
    canary and chaos engines run, in threads of their own)."""
    lock = threading.Lock()

    def say(message: str) -> None:
        capman = config.pluginmanager.get_plugin("capturemanager")
        reporter = config.pluginmanager.get_plugin("terminalreporter")
        with lock:
            if capman is not None and reporter is not None:
                with capman.global_and_fixture_disabled():
                    reporter.ensure_newline()
                    reporter.write_line(message)
            else:
                print(message, file=sys.stderr, flush=True)

    return say


def progress_printer(config: pytest.Config) -> Callable[[str], None]:
    """Progress lines of long steps (environment builds, stack start), prefixed ``[seamcheck]``."""
    say = terminal_printer(config)
    return lambda message: say(f"[seamcheck] {message}")


@contextmanager
def heartbeat(say: Callable[[str], None], what: str, every_s: float = HEARTBEAT_S) -> Iterator[None]:
    """Say ``what`` is still running every ``every_s`` while the block runs (a stack start, a canary
    judgement, a wait for side-by-side chaos runs: minutes with nothing else on the terminal)."""
    done = threading.Event()
    started = time.monotonic()

    def beat() -> None:
        while not done.wait(every_s):
            say(f"{what}: still running after {time.monotonic() - started:.0f} s")

    thread = threading.Thread(target=beat, name="seamcheck-heartbeat", daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join(timeout=5)
