"""Where the harness's own files are, found from the package itself (an installed seamcheck has no
checkout around it), and the PYTHONPATH a role environment's interpreter gets to import it."""
from __future__ import annotations

import hashlib
from pathlib import Path

__all__ = ["CHAOS_EXPERIMENTS", "KIND_MANIFESTS", "LOCUSTFILES", "PACKAGE_DIR", "role_pythonpath"]

PACKAGE_DIR = Path(__file__).resolve().parent
#: kind's cluster config and the harness's in-cluster stack (Jinja templates).
KIND_MANIFESTS = PACKAGE_DIR / "cluster" / "manifests"
#: The documented failure scenarios as Chaos Toolkit experiment files.
CHAOS_EXPERIMENTS = PACKAGE_DIR / "chaos" / "experiments"
#: Locust files, run only by a Locust subprocess (gevent never enters the harness's process).
LOCUSTFILES = PACKAGE_DIR / "locustfiles"


def role_pythonpath() -> str:
    """A folder in which ``harness`` (and nothing else of the harness's environment) imports.

    A source checkout's root holds only the project; an installed package's parent is the
    harness's site-packages, whose pins (protobuf, mlflow) must never shadow a role
    environment's own, so there the folder is a cached one holding a link to the package."""
    parent = PACKAGE_DIR.parent
    if (parent / "pyproject.toml").is_file():
        return str(parent)
    shim = Path.home() / ".cache" / "seamcheck" / "pythonpath" / hashlib.sha256(str(PACKAGE_DIR).encode()).hexdigest()[:16]
    link = shim / "harness"
    if not link.exists():
        shim.mkdir(parents=True, exist_ok=True)
        link.symlink_to(PACKAGE_DIR, target_is_directory=True)
    return str(shim)
