"""Programs the local profile needs from the system (Debian's packages), found or named with the fix."""
from __future__ import annotations

import shutil

from harness.errors import ProfileError

__all__ = ["MissingBinary", "find_binary"]


class MissingBinary(ProfileError):
    pass


def find_binary(name: str, package: str | None = None) -> str:
    found = shutil.which(name)
    if not found:
        raise MissingBinary(
            f"{name} is not installed; install Debian's package (apt-get install -y {package or name}) "
            f"or put a {name} binary on PATH"
        )
    return found
