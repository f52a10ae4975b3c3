"""Profiles: how the stack is stood up. Every scenario talks to a ``Profile`` only, so one suite
runs unchanged on local processes, a kind cluster or an existing cluster.

* base: the interface (``Profile``, ``PipelineRun``, ``RevisionModel``);
* local: every component its real program as a local process, KServe's control plane emulated;
* cluster: what the cluster profiles share (install, waits, faults behind the chaos guard);
* kind (kind, kind-gpu), cloud, host: the cluster profiles (host: a real cluster on this machine, harness/host/).

Profiles are registered by name through the ``pytest_seamcheck_profiles`` hook (seamcheck's own
plugin returns ``builtin_profiles()``); each class has a ``preflight(config, row)`` classmethod
that checks, before any process starts, what it needs.
"""
from __future__ import annotations

from typing import Any

from harness.errors import ProfileError
from harness.profiles.base import PipelineRun, Profile, RevisionModel

__all__ = ["PipelineRun", "Profile", "ProfileError", "RevisionModel", "builtin_profiles"]


def builtin_profiles() -> dict[str, type[Any]]:
    from harness.profiles.cloud import CloudProfile
    from harness.profiles.host import HostProfile
    from harness.profiles.kind import KindGpuProfile, KindProfile
    from harness.profiles.local import LocalProfile

    return {"local": LocalProfile, "kind": KindProfile, "kind-gpu": KindGpuProfile, "cloud": CloudProfile,
            "host": HostProfile}
