"""Matrix suite wall times: `pytest -m matrix` over all rows and over the default row alone, cold
(a fresh, empty environment cache: every role environment is built) and warm (the same cache again).

    .venv/bin/python benchmarks/matrix_suite.py [--scope all|default|both] [--skip-cold] [--empty-uv-cache]
                                          [--table-out matrix.md]

Cold uses a new --env-cache folder; uv's own package cache is kept unless --empty-uv-cache (then
packages are downloaded again, as on a fresh machine). Each run is the user's command, as a
subprocess, with its report in a temporary folder; the script prints one line per run (wall
seconds, exit status, tests passed) and the matrix gate's verdict from matrix.json.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
RUN_TIMEOUT_S = 3600


def run(scope: str, cache: Path, reports: Path, env: dict[str, str]) -> dict:
    marker = "matrix" if scope == "all" else "matrix and not slow"
    argv = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-m", marker, "scenarios/matrix",
            "--env-cache", str(cache), "--reports-dir", str(reports)]
    started = time.monotonic()
    proc = subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True, timeout=RUN_TIMEOUT_S,
                          check=False)
    seconds = time.monotonic() - started
    tail = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else proc.stderr[-300:]
    passed = re.search(r"(\d+) passed", tail)
    summaries = sorted(reports.glob("*/matrix.json"), key=lambda p: p.stat().st_mtime)
    gate = json.loads(summaries[-1].read_text())["gate"] if summaries else {}
    table = summaries[-1].with_name("matrix.md").read_text() if summaries else ""
    return {"table": table, "seconds": seconds, "exit": proc.returncode, "passed": int(passed.group(1)) if passed else 0,
            "tail": tail, "not_accepted": len(gate.get("failures", []))}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scope", choices=("all", "default", "both"), default="both")
    parser.add_argument("--skip-cold", action="store_true")
    parser.add_argument("--empty-uv-cache", action="store_true")
    parser.add_argument("--table-out", type=Path, help="copy the last run's matrix.md here")
    args = parser.parse_args()
    scopes = ("all", "default") if args.scope == "both" else (args.scope,)
    lines = []
    with tempfile.TemporaryDirectory(prefix="seamcheck-matrix-bench-") as tmp:
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        env.pop("SEAMCHECK_MATRIX_ROW", None)
        if args.empty_uv_cache:
            env["UV_CACHE_DIR"] = str(Path(tmp) / "uv-cache")
        for scope in scopes:
            cache = Path(tmp) / f"envs-{scope}" if not args.skip_cold else None
            if cache is None:
                from harness.envs import default_cache_dir

                cache = default_cache_dir()
            kinds = ("warm",) if args.skip_cold else ("cold", "warm")
            for kind in kinds:
                result = run(scope, cache, Path(tmp) / f"reports-{scope}-{kind}", env)
                lines.append((scope, kind, result))
                if args.table_out and result["table"]:
                    args.table_out.write_text(result["table"])
                command = "-m matrix" if scope == "all" else '-m "matrix and not slow"'
                print(f"pytest {command} ({scope} rows, {kind}): "
                      f"{result['seconds']:.0f} s, exit {result['exit']}, {result['passed']} passed, "
                      f"{result['not_accepted']} incompatibilities not accepted | {result['tail']}", flush=True)
    print("\n| scope | cache | wall s | exit | tests passed |\n|---|---|---|---|---|")
    for scope, kind, r in lines:
        print(f"| {scope} rows | {kind} | {r['seconds']:.0f} | {r['exit']} | {r['passed']} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
