"""Host build figures: each component's cold build (wall, CPU, binary size, as its build recorded
them in its cache marker), the warm lookup time, and the size of the Go module and build caches.

    .venv/bin/python benchmarks/host_build.py [--lookups 20] [--cli] [--json]

Cold figures come from the markers of the entries the current [host] table and wrappers select
(`python -m harness.host.build` writes them); a component not built yet is listed as such. Warm
lookup is `harness.host.build.find` (hash the inputs, read the marker) timed `--lookups` times in
this process; `--cli` also times one whole `python -m harness.host.build` that finds everything
cached. Nothing is built here.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from harness.host import build as hbuild
from harness.host.cache import cache_root
from harness.host.recipes import recipes
from harness.host.toolchain import go_binary, go_version
from harness.host.versions import load_host_versions


def tree_bytes(path: Path) -> int:
    total = 0
    for folder, _dirs, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(folder, name)).st_size
            except OSError:
                pass
    return total


def gomodcache() -> Path:
    proc = subprocess.run([go_binary(), "env", "GOMODCACHE"], capture_output=True, text=True, timeout=60, check=False)
    return Path(proc.stdout.strip())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lookups", type=int, default=20)
    parser.add_argument("--cli", action="store_true", help="also time one `python -m harness.host.build` (all cached)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    known = recipes(load_host_versions())
    rows = []
    for name, recipe in known.items():
        found = hbuild.find(recipe)
        row = {"component": name, "version": recipe.version, "built": found is not None}
        if found is not None:
            rec = found.record
            times = []
            for _ in range(args.lookups):
                t0 = time.perf_counter()
                hbuild.find(recipe)
                times.append(time.perf_counter() - t0)
            row.update(wall_s=rec["wall_s"], cpu_s=rec["cpu_s"], bytes=sum(b["bytes"] for b in rec["binaries"].values()),
                       binaries=len(rec["binaries"]), built_at=rec["built_at"],
                       gocache_before_mb=round(rec.get("gocache_bytes_before", 0) / 1e6),
                       lookup_ms=round(statistics.median(times) * 1000, 2), dir=str(found.dir))
        rows.append(row)
    root = cache_root()
    sizes = {"gomodcache": str(gomodcache()), "gomodcache_mb": round(tree_bytes(gomodcache()) / 1e6),
             "gocache": str(hbuild.gocache_dir(root)), "gocache_mb": round(tree_bytes(hbuild.gocache_dir(root)) / 1e6),
             "bin_mb": round(tree_bytes(root / "bin") / 1e6), "go": go_version(go_binary()), "nproc": os.cpu_count()}
    if args.cli:
        t0 = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "harness.host.build"], cwd=REPO, capture_output=True, text=True,
                              timeout=600, check=False)
        sizes["cli_all_cached_s"] = round(time.perf_counter() - t0, 2)
        sizes["cli_exit"] = proc.returncode
    if args.json:
        print(json.dumps({"components": rows, "caches": sizes}, indent=2))
        return 0
    print("| component | version | cold wall | cold CPU | binaries | size | Go build cache before | warm lookup |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        if not r["built"]:
            print(f"| {r['component']} | {r['version']} | not built | | | | | |")
            continue
        print(f"| {r['component']} | {r['version']} | {r['wall_s']:.0f} s | {r['cpu_s']:.0f} s | {r['binaries']} | "
              f"{r['bytes'] / 1e6:.1f} MB | {r['gocache_before_mb']} MB | {r['lookup_ms']:.1f} ms |")
    print()
    print(f"Go module cache {sizes['gomodcache']}: {sizes['gomodcache_mb']} MB; host Go build cache "
          f"{sizes['gocache']}: {sizes['gocache_mb']} MB; binaries {root / 'bin'}: {sizes['bin_mb']} MB "
          f"({sizes['go']}, {sizes['nproc']} CPUs)")
    if "cli_all_cached_s" in sizes:
        print(f"`python -m harness.host.build` with everything cached: {sizes['cli_all_cached_s']} s "
              f"(exit {sizes['cli_exit']})")
    return 0


if __name__ == "__main__":
    from harness.ledger import ledger

    try:
        sys.exit(main())
    finally:
        ledger.reset()  # find() ran `go env GOVERSION` through the ledger: close it cleanly
