"""Profiles: how the stack is stood up (local processes, kind, kind-gpu, an existing cluster)."""
from __future__ import annotations

from collections.abc import Callable

from harness.config import StackConfig
from harness.matrix import Row
from harness.profiles.base import PipelineRun, Profile, ProfileError

__all__ = ["PipelineRun", "Profile", "ProfileError", "make_profile", "preflight"]


def preflight(config: StackConfig, row: Row | None = None) -> None:
    """Fail fast, before any process starts, on what the chosen profile cannot have."""
    if config.profile == "local":
        from harness.profiles.local import preflight as local_preflight

        local_preflight(config)
        return
    if row is None:  # the plugin passes the row; callers that do not get the matrix's
        from harness.matrix import load_matrix

        matrix = load_matrix(config.matrix_file) if config.matrix_file else load_matrix()
        row = matrix.row(config.matrix_row)
    if config.profile in ("kind", "kind-gpu"):
        from harness.profiles.kind import preflight as kind_preflight

        kind_preflight(config, row)
    elif config.profile == "cloud":
        from harness.profiles.cloud import preflight as cloud_preflight

        cloud_preflight(config, row)
    else:
        raise ProfileError(f"unknown profile {config.profile!r}; choose local, kind, kind-gpu or cloud")


def make_profile(config: StackConfig, row: Row, progress: Callable[[str], None] | None = None) -> Profile:
    if config.profile == "local":
        from harness.profiles.local import LocalProfile

        return LocalProfile(config, row, progress=progress)
    if config.profile == "kind":
        from harness.profiles.kind import KindProfile

        return KindProfile(config, row, progress=progress)
    if config.profile == "kind-gpu":
        from harness.profiles.kind import KindGpuProfile

        return KindGpuProfile(config, row, progress=progress)
    if config.profile == "cloud":
        from harness.profiles.cloud import CloudProfile

        return CloudProfile(config, row, progress=progress)
    raise ProfileError(f"unknown profile {config.profile!r}; choose local, kind, kind-gpu or cloud")
