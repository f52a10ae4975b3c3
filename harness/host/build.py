"""Build (or find in the cache) every binary the host cluster needs: ``python -m harness.host.build
[component ...] [--list] [--json]``.

A component is one upstream module at the version in the [host] table of harness/matrix.toml,
built with its recipe (harness/host/recipes.py) in a scratch copy of its wrapper module
(harness/host/gomod/<name>/). The cache entry's hash covers the module and version, the wrapper's
files, the Go (or C compiler) version and every flag, so a change to any of them builds anew and
nothing else does. Cold builds print a progress line every 20 s (packages built of the total).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from filelock import FileLock

from harness.host import cache as hcache
from harness.host.recipes import ALIASES, DEFAULT_COMPONENTS, CcStep, GoStep, Recipe, recipes
from harness.host.toolchain import (
    GO_TIMEOUT_S,
    HostBuildError,
    cc_binary,
    cc_version,
    go_binary,
    go_env,
    go_version,
    module_dir,
    run_build,
)
from harness.host.versions import HostVersions, load_host_versions
from harness.ledger import ledger
from harness.procs import run_command

__all__ = ["GOMOD_DIR", "Built", "HostBuildError", "ensure", "ensure_all", "find", "gocache_dir", "inputs_of", "main",
           "resolve_names", "wrapper_files"]

GOMOD_DIR = Path(__file__).with_name("gomod")
_WRAPPER_FILES = ("go.mod", "go.sum", "tools.go")
_REQUIRE = re.compile(r"^\s*(?:require\s+)?(\S+)\s+(v\S+)\s*(//.*)?$")

Say = Callable[[str], None]


@dataclass(frozen=True)
class Built:
    """One component's cache entry, found or just built."""

    component: str
    dir: Path
    cached: bool
    record: dict[str, Any]
    lookup_s: float

    def binary(self, name: str) -> Path:
        return self.dir / name


def _say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def wrapper_files(recipe: Recipe, gomod: Path = GOMOD_DIR) -> dict[str, str]:
    """{file: sha256} of the wrapper module, checked to require the recipe's module at its version."""
    folder = gomod / recipe.wrapper
    files = {}
    for name in _WRAPPER_FILES:
        path = folder / name
        if not path.is_file():
            raise HostBuildError(f"wrapper {folder} has no {name}; restore it from git or run `go mod tidy` there")
        files[name] = hashlib.sha256(path.read_bytes()).hexdigest()
    required = _required(folder / "go.mod")
    if _module_line(folder / "go.mod") != recipe.module and required.get(recipe.module) != recipe.version:
        raise HostBuildError(
            f"{folder}/go.mod requires {recipe.module} {required.get(recipe.module, '(nothing)')} but the [host] table "
            f"says {recipe.version}: edit the require line to {recipe.version} and run `go mod tidy` in {folder}")
    return files


def _module_line(gomod: Path) -> str:
    for line in gomod.read_text().splitlines():
        if line.startswith("module "):
            return line.split()[1]
    return ""


def _required(gomod: Path) -> dict[str, str]:
    out, block = {}, False
    for line in gomod.read_text().splitlines():
        stripped = line.strip()
        if stripped.startswith("require ("):
            block = True
            continue
        if block and stripped == ")":
            block = False
            continue
        if block or stripped.startswith("require "):
            m = _REQUIRE.match(stripped)
            if m:
                out[m.group(1)] = m.group(2)
    return out


def inputs_of(recipe: Recipe, *, gomod: Path = GOMOD_DIR) -> dict[str, Any]:
    """Everything that decides the component's output: the cache key's input."""
    base: dict[str, Any] = {"module": recipe.module, "version": recipe.version,
                            "steps": [s.key() for s in recipe.steps], "goos": "linux", "goarch": "amd64"}
    if any(isinstance(s, GoStep) for s in recipe.steps):
        base["go"] = go_version(go_binary())
        base["wrapper"] = wrapper_files(recipe, gomod)
        base["env"] = {"GOFLAGS": "-mod=mod", "GOTOOLCHAIN": "local", "trimpath": True}
    if any(isinstance(s, CcStep) for s in recipe.steps):
        base["cc"] = cc_version(cc_binary())
    if any(isinstance(s, GoStep) and s.cgo for s in recipe.steps):
        base["cc"] = cc_version(cc_binary())
    return base


def ensure(recipe: Recipe, *, root: Path | None = None, say: Say = _say, gomod: Path = GOMOD_DIR,
           timeout: float = GO_TIMEOUT_S) -> Built:
    """The component's cache entry: found (a cache hit, no build) or built now under its lock."""
    found = find(recipe, root=root, gomod=gomod)
    if found is not None:
        return found
    entry = hcache.entry_for(recipe.name, inputs_of(recipe, gomod=gomod), root)
    entry.lock_path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(entry.lock_path), timeout=timeout * max(1, len(recipe.steps)) + 120):
        if entry.complete():  # another run built it while we waited for the lock
            return Built(recipe.name, entry.dir, True, hcache.read_marker(entry.marker), 0.0)
        record = _build(recipe, entry, say=say, gomod=gomod, timeout=timeout)
    return Built(recipe.name, entry.dir, False, record, 0.0)


def gocache_dir(root: Path) -> Path:
    """The Go build cache of these builds: ``$SEAMCHECK_HOST_GOCACHE`` or <cache>/go-build."""
    return Path(os.environ.get("SEAMCHECK_HOST_GOCACHE") or root / "go-build")


def find(recipe: Recipe, *, root: Path | None = None, gomod: Path = GOMOD_DIR) -> Built | None:
    """The component's complete cache entry, or None: never builds."""
    started = time.monotonic()
    entry = hcache.entry_for(recipe.name, inputs_of(recipe, gomod=gomod), root)
    if not entry.complete():
        return None
    return Built(recipe.name, entry.dir, True, hcache.read_marker(entry.marker), time.monotonic() - started)


def _build(recipe: Recipe, entry: hcache.Entry, *, say: Say, gomod: Path, timeout: float) -> dict[str, Any]:
    shutil.rmtree(entry.dir, ignore_errors=True)  # no marker: a half-built leftover, or nothing yet
    entry.dir.mkdir(parents=True)
    gocache = gocache_dir(entry.root)
    gocache.mkdir(parents=True, exist_ok=True)
    gocache_before = _tree_bytes(gocache)
    log = entry.dir / "build.log"
    say(f"host build {recipe.name} {recipe.version}: cold build of {', '.join(recipe.binaries)} into {entry.dir}")
    started = time.monotonic()
    steps: list[dict[str, Any]] = []
    work = entry.root / "work" / f"{recipe.name}-{entry.key}"
    try:
        for step in recipe.steps:
            if isinstance(step, GoStep):
                steps.append(_go_step(recipe, step, entry, work, gocache, log, say, gomod, timeout))
            else:
                steps.append(_cc_step(recipe, step, entry, gocache, log, say))
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    shutil.rmtree(work, ignore_errors=True)
    binaries = {}
    for name in recipe.binaries:
        path = entry.dir / name
        if not path.is_file():
            raise HostBuildError(f"{recipe.name}: the build said it succeeded but {path} is missing; log {log}")
        binaries[name] = {"bytes": path.stat().st_size, "sha256": hashlib.sha256(path.read_bytes()).hexdigest()}
    record = {
        "component": recipe.name, "module": recipe.module, "version": recipe.version, "key": entry.key,
        "inputs": inputs_of(recipe, gomod=gomod), "upstream": recipe.upstream, "binaries": binaries,
        "wall_s": round(time.monotonic() - started, 1), "cpu_s": round(sum(s["cpu_s"] for s in steps), 1),
        "steps": steps, "gocache_bytes_before": gocache_before, "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ",
                                                                                           time.gmtime()),
        "nproc": os.cpu_count(),
    }
    hcache.write_marker(entry, record)
    total = sum(b["bytes"] for b in binaries.values())
    say(f"host build {recipe.name}: built in {record['wall_s']:.0f}s wall, {record['cpu_s']:.0f}s CPU, "
        f"{total / 1e6:.1f} MB")
    return record


def _go_step(recipe: Recipe, step: GoStep, entry: hcache.Entry, work: Path, gocache: Path, log: Path, say: Say,
             gomod: Path, timeout: float) -> dict[str, Any]:
    go = go_binary()
    if step.cgo:
        cc_binary()
        for header, package in recipe.needs_headers:
            if not any(Path(d, header).is_file() for d in ("/usr/include", "/usr/local/include")):
                raise HostBuildError(f"{recipe.name} needs {header} (cgo): apt-get install -y {package} pkg-config")
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    for name in _WRAPPER_FILES:
        shutil.copyfile(gomod / recipe.wrapper / name, work / name)
    env = go_env(gocache, {"CGO_ENABLED": "1" if step.cgo else "0"})
    total = _count_deps(go, step, env, work)
    flags = ["-trimpath", "-v", *step.extra]
    if step.tags:
        flags.append("-tags=" + ",".join(step.tags))
    if step.ldflags:
        flags.append("-ldflags=" + step.ldflags)
    # `go build -o DIR/` names each binary after its package's last element; where the recipe
    # wants another name (etcd's package is .../server/v3), build that package alone.
    default_names = all(p.rsplit("/", 1)[-1] == o for p, o in zip(step.packages, step.outputs))
    if default_names:
        invocations = [[go, "build", *flags, "-o", str(entry.dir) + "/", *step.packages]]
    else:
        invocations = [[go, "build", *flags, "-o", str(entry.dir / o), p] for p, o in zip(step.packages, step.outputs)]
    wall = cpu = 0.0
    for argv in invocations:
        m = run_build(argv, what=f"go build {recipe.name}", env=env, cwd=work, log=log, say=say, total=total,
                      timeout=timeout)
        wall, cpu = wall + m.wall_s, cpu + m.cpu_s
    return {"kind": "go", "outputs": list(step.outputs), "wall_s": round(wall, 1), "cpu_s": round(cpu, 1),
            "packages_total": total, "argv": [a if a != go else "go" for a in invocations[0]]}


def _count_deps(go: str, step: GoStep, env: dict[str, str], work: Path) -> int:
    """How many packages the step compiles at most (std included): the denominator of progress."""
    argv = [go, "list", "-deps", *(["-tags=" + ",".join(step.tags)] if step.tags else []), *step.packages]
    proc = run_command(argv, what="go list -deps", timeout=900, env=env, cwd=work)
    if proc.returncode != 0:
        raise HostBuildError(f"`go list -deps {' '.join(step.packages)}` failed in {work} (module download or a "
                             f"wrong package path):\n{proc.stderr.strip()[-1500:]}")
    return len(proc.stdout.split())


def _cc_step(recipe: Recipe, step: CcStep, entry: hcache.Entry, gocache: Path, log: Path,
             say: Say) -> dict[str, Any]:
    cc = cc_binary()
    src = module_dir(go_binary(), step.module, go_env(gocache)) / step.source
    if not src.is_file():
        raise HostBuildError(f"{step.module} has no {step.source}: check the recipe's source path")
    out = entry.dir / step.output
    m = run_build([cc, *step.cflags, "-o", str(out), str(src)], what=f"cc {recipe.name}", env=dict(os.environ),
                  cwd=entry.dir, log=log, say=say, timeout=600)
    strip = shutil.which("strip")
    if strip:
        m2 = run_build([strip, str(out)], what=f"strip {recipe.name}", env=dict(os.environ), cwd=entry.dir, log=log,
                       say=say, timeout=120)
        m.cpu_s += m2.cpu_s
        m.wall_s += m2.wall_s
    return {"kind": "cc", "outputs": [step.output], "wall_s": round(m.wall_s, 2), "cpu_s": round(m.cpu_s, 2),
            "source_sha256": hashlib.sha256(src.read_bytes()).hexdigest()}


def _tree_bytes(path: Path) -> int:
    total = 0
    for dirpath, _dirs, files in os.walk(path):
        for f in files:
            try:
                total += os.lstat(os.path.join(dirpath, f)).st_size
            except OSError:
                pass
    return total


def resolve_names(names: Iterable[str], known: dict[str, Recipe]) -> list[str]:
    """Component names (or binary names) -> components, in build order, each once."""
    wanted = []
    for name in names:
        comp = ALIASES.get(name, name)
        if comp not in known:
            raise HostBuildError(f"unknown component {name!r}; components: {', '.join(known)} "
                                 f"(or a binary name: {', '.join(sorted(ALIASES))})")
        wanted.append(comp)
    order = list(DEFAULT_COMPONENTS) + [c for c in known if c not in DEFAULT_COMPONENTS]
    return sorted(dict.fromkeys(wanted), key=order.index)


def ensure_all(names: Iterable[str] = (), *, versions: HostVersions | None = None, root: Path | None = None,
               say: Say = _say) -> dict[str, Built]:
    """Every named component (default: all default ones), built or found, in build order."""
    known = recipes(versions or load_host_versions())
    chosen = resolve_names(names, known) if names else [c for c in DEFAULT_COMPONENTS if known[c].default]
    return {c: ensure(known[c], root=root, say=say) for c in chosen}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m harness.host.build", description=__doc__.split("\n\n")[0])
    parser.add_argument("components", nargs="*", help="components or binary names (default: all default ones)")
    parser.add_argument("--list", action="store_true", help="list components and their cache state, build nothing")
    parser.add_argument("--json", action="store_true", help="print the result as JSON on stdout")
    args = parser.parse_args(argv)
    try:
        return _main(args)
    finally:
        ledger.reset()  # every build command is gone by now: close the run's ledger cleanly


def _main(args: argparse.Namespace) -> int:
    try:
        versions = load_host_versions()
        known = recipes(versions)
        if args.list:
            for name in resolve_names(args.components or list(known), known):
                r = known[name]
                entry = hcache.entry_for(name, inputs_of(r))
                state = "cached" if entry.complete() else "not built"
                print(f"{name:24} {r.version:10} {state:10} {entry.dir}  ({', '.join(r.binaries)})")
            return 0
        built = ensure_all(args.components, versions=versions)
    except HostBuildError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps({c: {"dir": str(b.dir), "cached": b.cached, "lookup_s": round(b.lookup_s, 4)}
                          for c, b in built.items()}, indent=2))
    else:
        for c, b in built.items():
            state = f"cached ({b.lookup_s * 1000:.0f} ms lookup)" if b.cached else \
                f"built in {b.record['wall_s']:.0f}s"
            print(f"{c:24} {state:28} {b.dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
