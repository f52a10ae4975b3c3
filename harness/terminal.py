"""Lines that reach the user's terminal while pytest captures output, from any thread."""
from __future__ import annotations

import sys
import threading
from collections.abc import Callable

import pytest

__all__ = ["progress_printer", "terminal_printer"]


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
