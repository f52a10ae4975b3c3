"""The errors of cluster operations. Each message says what was attempted and what to do."""
from __future__ import annotations

from harness.errors import ProfileError

__all__ = ["ChaosRefused", "ClusterError", "WaitTimeout"]


class ClusterError(ProfileError):
    """A cluster operation failed (a command, an API call, an install step)."""


class WaitTimeout(ClusterError, TimeoutError):
    """A wait reached its deadline; the message names what it waited for and what it last saw."""


class ChaosRefused(ClusterError):
    """A fault was refused before acting: its namespace is not allowed (flag and label)."""
