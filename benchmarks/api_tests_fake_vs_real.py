"""The API-level test modules' time against the in-process fake API server (before) and against the
real kube-apiserver (after): the same modules, the same assertions' meaning.

    flock /work/stack.lock .venv/bin/python benchmarks/api_tests_fake_vs_real.py [--before REV] [--runs 1]

"Before" runs each module as it was at ``--before`` (default 46badec, the last commit with
tests/fake_apiserver.py), exported with `git archive` into a scratch folder; "after" runs the
working tree's. Each is one `pytest -q -p no:cacheprovider MODULE` in a fresh interpreter; printed:
pytest's own duration, the wall time of the whole command (interpreter start, collection, and for
"after" the API server's start: etcd and kube-apiserver, about 10 s, once per module here where a
whole test run starts it once for all of them), and the outcome counts. Needs root and the host build
cache for "after".
"""
from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
MODULES = ("tests/test_cluster_api.py", "tests/test_cluster_cloud.py", "tests/test_canary_faults.py",
           "tests/test_capacity.py", "tests/test_cluster_install.py")
_SUMMARY = re.compile(r"^(?:=+ )?(\d+ \w+.*?) in ([\d.]+)s")


def run(tree: Path, module: str) -> dict:
    started = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", module], cwd=tree,
                          capture_output=True, text=True, timeout=1800, check=False,
                          env={"PATH": "/usr/local/go/bin:/usr/sbin:/usr/bin:/sbin:/bin", "PYTHONPATH": str(tree),
                               "HOME": str(Path.home())})
    wall = time.monotonic() - started
    lines = [ln for ln in proc.stdout.splitlines() if " in " in ln and ("passed" in ln or "failed" in ln)]
    match = _SUMMARY.search(lines[-1]) if lines else None
    return {"module": module, "wall_s": round(wall, 1), "pytest_s": float(match.group(2)) if match else None,
            "outcome": match.group(1) if match else (proc.stdout + proc.stderr)[-300:]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--before", default="46badec")
    parser.add_argument("--runs", type=int, default=1)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="seamcheck-before-") as scratch:
        before = Path(scratch)
        archive = subprocess.run(["git", "archive", args.before], cwd=REPO, capture_output=True, check=True, timeout=120)
        subprocess.run(["tar", "-x", "-C", str(before)], input=archive.stdout, check=True, timeout=120)
        print(f"API-level test modules, fake ({args.before}) vs real kube-apiserver (working tree), "
              f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
        print(f"{'module':34} {'fake: pytest / wall':>22} {'real: pytest / wall':>22}  outcomes (fake | real)")
        for module in MODULES:
            for _ in range(args.runs):
                fake, real = run(before, module), run(REPO, module)
                print(f"{module:34} {fake['pytest_s']!s:>10} s / {fake['wall_s']:>6} s {real['pytest_s']!s:>10} s / "
                      f"{real['wall_s']:>6} s  {fake['outcome']} | {real['outcome']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
