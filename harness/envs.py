"""One virtualenv per (matrix row, role), built with uv from the row's pins and cached.

The stack's pieces cannot share one environment (kfp<=2.13 needs protobuf<5 while MLServer needs
>=5.27; kfp>=2.14 needs protobuf>=6 while mlflow<=2.21 needs <6), so each role gets its own.
An environment lives at <cache>/<role>-<hash> where the hash covers the interpreter version and
the pins: the same pins reuse the same environment across sessions, rows and pytest-xdist workers.
Builds take a FileLock (the pytest-xdist recipe for shared session resources), happen in a
marker file written only when the build completed, so an interrupted build never leaves a half
environment that looks usable (the next build starts that folder afresh).
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from filelock import FileLock

from harness.errors import StackError
from harness.matrix import Role, Row
from harness.procs import run_command

__all__ = [
    "EnvBuildError",
    "RoleEnv",
    "default_cache_dir",
    "ensure_env",
    "ensure_envs",
    "ensure_role_env",
    "env_dir_for",
]

#: Bumped when the way environments are built changes, so old caches are not reused.
_BUILD_RECIPE = "uv-venv-1"
_MARKER = "seamcheck-env.json"
UV_TIMEOUT_S = 1200

Progress = Callable[[str], None]


class EnvBuildError(StackError):
    """A role environment could not be built; the message carries uv's own error lines."""

    def __init__(self, row: str, role: str, detail: str) -> None:
        self.row, self.role, self.detail = row, role, detail
        super().__init__(f"cannot build the {role!r} environment of matrix row {row!r}:\n{detail}")


@dataclass(frozen=True)
class RoleEnv:
    row: str
    role: str
    path: Path
    pins: tuple[str, ...]
    build_seconds: float  # 0.0 when it came from the cache

    @property
    def python(self) -> Path:
        return self.path / "bin" / "python"

    def bin(self, name: str) -> Path:
        return self.path / "bin" / name

    @property
    def cached(self) -> bool:
        return self.build_seconds == 0.0


def default_cache_dir() -> Path:
    """Where role environments are kept when --env-cache does not say (the XDG cache)."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(Path.home(), ".cache")
    return Path(base) / "seamcheck" / "envs"


def _base_python() -> str:
    # A venv's interpreter would make uv nest environments; the base interpreter is what we mean.
    return getattr(sys, "_base_executable", sys.executable)


def _python_version() -> str:
    return ".".join(map(str, sys.version_info[:3]))


def env_dir_for(cache: Path, role: Role) -> Path:
    key = json.dumps({"recipe": _BUILD_RECIPE, "python": _python_version(), "pins": sorted(role.pins),
                      "exclude_newer": role.exclude_newer})
    return cache / f"{role.name}-{hashlib.sha256(key.encode()).hexdigest()[:16]}"


def _uv() -> list[str]:
    uv = shutil.which("uv")
    if uv:
        return [uv]
    return [sys.executable, "-m", "uv"]


def _last_error_lines(text: str, n: int = 15) -> str:
    lines = [ln for ln in text.splitlines() if ln.strip()]
    # uv's resolver explains itself in "×", "│", "╰" lines and its build failures in "Caused by:"
    # / "cause:" lines: those say which pin to change.
    errors = [ln for ln in lines if "error" in ln.lower() or "cause" in ln.lower()
              or ln.lstrip().startswith(("×", "╰", "│"))]
    return "\n".join((errors or lines)[-n:])


def ensure_env(row: Row, role_name: str, *, cache: Path | None = None,
               progress: Progress | None = None) -> RoleEnv:
    return ensure_role_env(row.role(role_name), row=row.name, cache=cache, progress=progress)


def ensure_role_env(role: Role, *, row: str, cache: Path | None = None, progress: Progress | None = None) -> RoleEnv:
    """``role``'s environment (a row's, or one the harness declares elsewhere, e.g. an image's),
    built once per (python, pins) and found in ``cache`` after that."""
    role_name = role.name
    cache = cache or default_cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    target = env_dir_for(cache, role)
    say = progress or (lambda _msg: None)
    with FileLock(str(target) + ".lock", timeout=UV_TIMEOUT_S + 60):
        if (target / _MARKER).is_file():
            say(f"env {row}/{role_name}: cached at {target}")
            return RoleEnv(row, role_name, target, role.pins, 0.0)
        building = target  # no marker: a half-built leftover, or nothing yet
        shutil.rmtree(building, ignore_errors=True)
        say(f"env {row}/{role_name}: building with uv ({len(role.pins)} pins) ...")
        started = time.monotonic()
        steps = [
            [*_uv(), "venv", "--quiet", "--python", _base_python(), str(building)],
            [*_uv(), "pip", "install", "--python", str(building / "bin" / "python"),
             *(["--exclude-newer", role.exclude_newer] if role.exclude_newer else []), *role.pins],
        ]
        for argv in steps:
            try:
                proc = run_command(argv, what="uv", timeout=UV_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                shutil.rmtree(building, ignore_errors=True)
                raise EnvBuildError(row, role_name, f"uv gave no result in {UV_TIMEOUT_S}s: {argv}")
            if proc.returncode != 0:
                shutil.rmtree(building, ignore_errors=True)
                raise EnvBuildError(row, role_name, _last_error_lines(proc.stderr + proc.stdout))
        seconds = time.monotonic() - started
        (building / _MARKER).write_text(json.dumps(
            {"row": row, "role": role_name, "pins": list(role.pins), "python": _python_version(),
             "built_seconds": round(seconds, 1)}, indent=2))
        say(f"env {row}/{role_name}: built in {seconds:.0f}s at {target}")
        return RoleEnv(row, role_name, target, role.pins, max(seconds, 0.001))


def ensure_envs(row: Row, roles: Iterable[str], *, cache: Path | None = None,
                progress: Progress | None = None, parallel: int = 3) -> dict[str, RoleEnv]:
    """Build (or reuse) several roles' environments at once; uv is mostly network- and IO-bound."""
    roles = list(roles)
    with ThreadPoolExecutor(max_workers=max(1, min(parallel, len(roles)))) as pool:
        futures = {r: pool.submit(ensure_env, row, r, cache=cache, progress=progress) for r in roles}
        return {r: f.result() for r, f in futures.items()}
