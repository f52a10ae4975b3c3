"""What loading the seamcheck plugin costs a pytest session: every user session pays it once, and the
tests pay it once per inner session they run (a few hundred in CI).

    .venv/bin/python benchmarks/plugin_import.py [--runs 5]

Printed, best of ``--runs`` fresh interpreters each: ``import harness.plugin``; a one-test pytest
session in an empty folder with the plugin (it is installed, so pytest loads it from its entry
point) and with ``-p no:seamcheck``; and the five top-level packages besides harness's own whose
import (``-X importtime``, cumulative) costs most under the plugin.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TIMEOUT_S = 120


def best_wall(argv: list[str], runs: int, cwd: Path) -> float:
    best = float("inf")
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run(argv, cwd=cwd, capture_output=True, timeout=TIMEOUT_S, check=True)
        best = min(best, time.perf_counter() - started)
    return best


def heaviest_imports(cwd: Path, top: int = 5) -> list[tuple[float, str]]:
    proc = subprocess.run([sys.executable, "-X", "importtime", "-c", "import harness.plugin"], cwd=cwd,
                          capture_output=True, text=True, timeout=TIMEOUT_S, check=True)
    rows = []
    for line in proc.stderr.splitlines():
        parts = line.split("|")
        if len(parts) == 3 and parts[1].strip().isdigit():
            name = parts[2].strip()
            if "." not in name and name != "harness":  # third-party top-level packages only
                rows.append((int(parts[1]) / 1e6, name))
    return sorted(rows, reverse=True)[:top]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    repo = Path(__file__).resolve().parent.parent
    with tempfile.TemporaryDirectory(prefix="seamcheck-bench-") as folder:
        empty = Path(folder)
        (empty / "test_one.py").write_text("def test_one():\n    pass\n")
        session = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_one.py"]
        print(f"import harness.plugin: {best_wall([sys.executable, '-c', 'import harness.plugin'], args.runs, repo):.2f} s")
        print(f"one-test session with the plugin: {best_wall(session, args.runs, empty):.2f} s")
        print(f"one-test session without (-p no:seamcheck): "
              f"{best_wall([*session, '-p', 'no:seamcheck'], args.runs, empty):.2f} s")
        print("heaviest third-party imports under the plugin (cumulative): " +
              ", ".join(f"{name} {s:.2f} s" for s, name in heaviest_imports(repo)))


if __name__ == "__main__":
    main()
