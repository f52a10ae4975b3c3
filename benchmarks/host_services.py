"""The host profile's services (MLflow, the S3 stand-in, Prometheus): image size and write time, cold
and cached, and what the profile's start spends on each step.

    flock /work/stack.lock .venv/bin/python benchmarks/host_services.py [--cold] [--json]

``--cold`` removes the service images' archives first (not the role environments: their cold build
is uv's, measured by the role-environment figures in docs/benchmarks.md), so the write is measured.
Then one `host` profile session's start: the cluster (HostCluster.timings), the images' import into
the node's containerd, the install step (namespaces, the services' Deployments available, the
buckets Job complete) and the port-forwards answering; printed from the profile's timings, and torn
down. Needs root and the host build cache.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from harness.host.cache import cache_root
from harness.host.service_images import service_images
from harness.ledger import ledger
from harness.matrix import load_matrix
from harness.profiles.host import SERVICE_IMAGES, HostProfile
from harness.settings import StackConfig


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cold", action="store_true", help="remove the service images' archives first")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    row = load_matrix().row(None)
    out: dict = {"row": row.name, "images": {}}
    try:
        if args.cold:
            for archive in (cache_root() / "images").glob("service-*.tar"):
                archive.unlink()
        for name in SERVICE_IMAGES:
            started = time.monotonic()
            image = service_images(row, [name])[name]
            out["images"][name] = {"ref": image.ref, "mib": round(image.archive.stat().st_size / 2**20, 1),
                                   "seconds": round(time.monotonic() - started, 2), "fake": image.fake}
        profile = HostProfile(StackConfig(profile="host"), row, progress=lambda m: print(f"  {m}", file=sys.stderr))
        started = time.monotonic()
        try:
            profile.start()
            out["profile_start_s"] = round(time.monotonic() - started, 1)
            out["timings"] = {k: round(v, 2) for k, v in profile.timings().items()}
        finally:
            profile.teardown()
    finally:
        ledger.reset()
    if args.json:
        print(json.dumps(out, indent=1))
        return 0
    print(f"row {out['row']}")
    for name, figures in out["images"].items():
        print(f"  image {name:11} {figures['mib']:7.1f} MiB  {figures['seconds']:6.2f} s  {figures['ref']}"
              + ("  (stand-in)" if figures["fake"] else ""))
    print(f"  profile start {out['profile_start_s']:.1f} s")
    for key, value in out["timings"].items():
        if key.startswith(("images_s", "install_s", "stack_start_s")):
            print(f"    {key:60} {value:7.2f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
