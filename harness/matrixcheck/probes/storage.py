"""KServe's storage initializer on several storageUris in one process (storage role):
the same ``Storage.download(uri, out_dir=...)`` the init container runs, one destination each.

    python -m harness.matrixcheck.probes.storage --jobs '[{"uri": "s3://b/x/model", "dest": "/tmp/a"}]'

Per job it reports whether the call returned, the error it raised (type and message, as the init
container's log would show), and the files that arrived (relative paths).
"""
import argparse
import json
import os
import sys
import time
import traceback

__all__ = ["main"]


def _files(root):
    out = []
    for base, _dirs, files in os.walk(root):
        for name in files:
            out.append(os.path.relpath(os.path.join(base, name), root))
    return sorted(out)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m harness.matrixcheck.probes.storage")
    parser.add_argument("--jobs", required=True, help='JSON list of {"uri", "dest"}')
    args = parser.parse_args(argv)
    try:
        from kserve_storage import Storage  # KServe >= 0.15: its own package
        module = "kserve_storage"
    except ImportError:
        from kserve.storage import Storage  # KServe <= 0.14
        module = "kserve.storage"
    results = []
    for job in json.loads(args.jobs):
        os.makedirs(job["dest"], exist_ok=True)
        started = time.monotonic()
        entry = {"uri": job["uri"], "dest": job["dest"]}
        try:
            Storage.download(job["uri"], out_dir=job["dest"])
            entry.update(ok=True, error="")
        except BaseException as exc:  # noqa: BLE001 - the initializer's own failure is the evidence
            entry.update(ok=False, error=f"{type(exc).__name__}: {exc}"[:2000],
                         traceback=traceback.format_exc(limit=3)[-2000:])
        entry["files"] = _files(job["dest"])
        entry["seconds"] = round(time.monotonic() - started, 3)
        results.append(entry)
    print("SEAMCHECK_PROBE " + json.dumps({"module": module, "jobs": results}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
