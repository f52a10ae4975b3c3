"""Spine benchmarks: prints time to ready of each component, role-environment build time (cold and
cached), the main job's wall time, and the local stack's peak memory (sum of RSS).

    .venv/bin/python benchmarks/spine.py [--skip-cold] [--skip-main-job]

Cold env builds use a fresh environment cache and an empty uv cache (so packages are downloaded,
as on a fresh machine); cached builds reuse the real cache. The main job is the README's command,
run as a subprocess, while this script samples the RSS of every process it and the stack start.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from harness.envs import default_cache_dir, ensure_envs  # noqa: E402
from harness.matrix import ROLES, load_matrix  # noqa: E402


def env_builds(skip_cold: bool) -> list[tuple[str, float]]:
    row = load_matrix().row(None)
    rows: list[tuple[str, float]] = []
    if not skip_cold:
        with tempfile.TemporaryDirectory(prefix="seamcheck-bench-") as tmp:
            os.environ["UV_CACHE_DIR"] = str(Path(tmp) / "uv-cache")
            started = time.monotonic()
            envs = ensure_envs(row, ROLES, cache=Path(tmp) / "envs")
            rows.append(("env build, cold (all roles in parallel, empty uv cache)", time.monotonic() - started))
            for role, env in envs.items():
                rows.append((f"  env {role}, cold (alone in its thread)", env.build_seconds))
            del os.environ["UV_CACHE_DIR"]
    ensure_envs(row, ROLES, cache=default_cache_dir())  # make sure the real cache is filled
    started = time.monotonic()
    ensure_envs(row, ROLES, cache=default_cache_dir())
    rows.append(("env build, cached (all roles)", time.monotonic() - started))
    return rows


class RssSampler(threading.Thread):
    """Peak of the summed RSS of a process tree (the pytest run and everything it started)."""

    def __init__(self, root: int) -> None:
        super().__init__(daemon=True)
        self.root, self.peak, self.peak_stack = root, 0, 0
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                procs = [psutil.Process(self.root), *psutil.Process(self.root).children(recursive=True)]
            except psutil.NoSuchProcess:
                return
            total = stack = 0
            for proc in procs:
                try:
                    rss = proc.memory_info().rss
                except psutil.NoSuchProcess:
                    continue
                total += rss
                if proc.pid != self.root:
                    stack += rss
            self.peak, self.peak_stack = max(self.peak, total), max(self.peak_stack, stack)
            time.sleep(0.5)


def main_job() -> tuple[float, int, int, dict[str, float]]:
    import json

    reports = Path(tempfile.mkdtemp(prefix="seamcheck-bench-reports-"))
    started = time.monotonic()
    proc = subprocess.Popen([str(REPO / ".venv/bin/python"), "-m", "pytest", "-q", "-p", "no:cacheprovider",
                             "-m", "conformance", "scenarios/conformance", "--reports-dir", str(reports)],
                            cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    sampler = RssSampler(proc.pid)
    sampler.start()
    rc = proc.wait(timeout=1800)
    wall = time.monotonic() - started
    sampler.stop.set()
    summaries = list(reports.glob("*/summary.json"))
    timings = json.loads(summaries[0].read_text())["timings"] if summaries else {}
    if rc != 0:
        print(f"WARNING: the main job exited with {rc}; see {reports}")
    return wall, sampler.peak, sampler.peak_stack, timings


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--skip-cold", action="store_true", help="skip the cold environment build")
    parser.add_argument("--skip-main-job", action="store_true")
    args = parser.parse_args()
    print(f"machine: {os.cpu_count()} cores, {psutil.virtual_memory().total / 2**30:.0f} GiB")
    print(f"{'what':62} {'value':>12}")
    for name, seconds in env_builds(args.skip_cold):
        print(f"{name:62} {seconds:10.1f} s")
    if not args.skip_main_job:
        wall, peak, peak_stack, timings = main_job()
        for key in ("ready_s3_s", "ready_mlflow_s", "ready_haproxy_s", "ready_prometheus_s", "stack_start_s",
                    "pipeline_run_s", "isvc_ready_after_pipeline_s"):
            if key in timings:
                print(f"{'time to ready / step: ' + key:62} {timings[key]:10.1f} s")
        print(f"{'main job wall time (conformance suite, warm envs)':62} {wall:10.1f} s")
        print(f"{'peak RSS, pytest + everything it started':62} {peak / 2**20:10.0f} MiB")
        print(f"{'peak RSS, the stack alone (children of pytest)':62} {peak_stack / 2**20:10.0f} MiB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
