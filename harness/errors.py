"""The one root of seamcheck's errors, and the four kinds a user meets.

Each message names what is wrong and how to fix it (``name=value`` and the remedy), so the
plugin can show it as one line. The plugin catches ``SeamcheckError``, never ``Exception``:
anything else is a bug of the harness and keeps its traceback. Each kind also keeps the
standard base its callers catch (``ValueError`` for bad input, ``RuntimeError`` otherwise).
"""
from __future__ import annotations

__all__ = ["ConfigError", "JudgeError", "ProfileError", "SeamcheckError", "StackError"]


class SeamcheckError(Exception):
    """Every error seamcheck raises on purpose."""


class ConfigError(SeamcheckError, ValueError):
    """A user input is invalid: an option, an environment variable, the matrix file."""


class ProfileError(SeamcheckError, RuntimeError):
    """The chosen profile cannot be used as configured (a missing tool, an unreachable cluster)."""


class StackError(SeamcheckError, RuntimeError):
    """A component of the stack did not start, did not become ready, or failed while used."""


class JudgeError(SeamcheckError, ValueError):
    """A canary judge cannot be loaded from its spec, or its configuration is invalid."""
