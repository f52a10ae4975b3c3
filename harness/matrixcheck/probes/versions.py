"""Installed distributions' versions in this interpreter (stdlib only: runs in every role env).

    python -m harness.matrixcheck.probes.versions mlflow scikit-learn numpy mlserver
"""
import json
import sys
from importlib import metadata

__all__ = ["main"]


def main(argv=None) -> int:
    names = list(argv if argv is not None else sys.argv[1:])
    found = {}
    for name in names:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = None
    print("SEAMCHECK_PROBE " + json.dumps({"versions": found, "python": sys.version.split()[0]}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
