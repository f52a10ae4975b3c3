"""Profiles: how the stack is stood up (local processes, kind, kind-gpu, an existing cluster)."""
from __future__ import annotations

from typing import Callable

from harness.config import StackConfig
from harness.matrix import Row
from harness.profiles.base import PipelineRun, Profile, ProfileError

__all__ = ["PipelineRun", "Profile", "ProfileError", "make_profile", "preflight"]


def preflight(config: StackConfig) -> None:
    """Fail fast, before any process starts, on what the chosen profile cannot have."""
    if config.profile == "local":
        from harness.profiles.local import preflight as local_preflight

        local_preflight(config)
    else:
        raise ProfileError(f"profile {config.profile!r} is not available in this build yet; use --profile local")


def make_profile(config: StackConfig, row: Row, progress: Callable[[str], None] | None = None) -> Profile:
    if config.profile == "local":
        from harness.profiles.local import LocalProfile

        return LocalProfile(config, row, progress=progress)
    raise ProfileError(f"profile {config.profile!r} is not available in this build yet; use --profile local")
