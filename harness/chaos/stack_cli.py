"""`seamcheck-stack`: a local stack for running the chaos experiments by hand with `chaos run`.

It starts the local profile (the matrix row's real programs), runs the pipeline once so a model is
trained, registered and served, serves the stack's control on loopback, prints the lines an
experiment needs, and waits. Ctrl-C (or SIGTERM) lifts every fault and tears everything down.

    seamcheck-stack                     # then, in another shell, paste the printed lines
    chaos run --rollback-strategy always harness/chaos/experiments/storage-uri-without-model.json
"""
from __future__ import annotations

import argparse
import signal
import sys
import tempfile
import time
from pathlib import Path

from harness.chaos.control import ChaosContext, ChaosControl
from harness.chaos.runner import experiment_files
from harness.matrix import DEFAULT_MATRIX_PATH, MatrixError, load_matrix
from harness.pipeline.dataset import holdout_rows, write_dataset
from harness.pipeline.params import ISVC_NAME, MODEL_NAME, pipeline_params, trained_version
from harness.report.summary import new_run_id
from harness.serving.isvc import storage_uri_of
from harness.settings import StackConfig

__all__ = ["main"]


def _say(message: str) -> None:
    print(f"[seamcheck-stack] {message}", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="seamcheck-stack", description=__doc__.split("\n")[0])
    parser.add_argument("--matrix-row", default=None, help="matrix row (default: the file's default_row)")
    parser.add_argument("--matrix-file", default=str(DEFAULT_MATRIX_PATH), help="the version matrix file")
    parser.add_argument("--control-port", type=int, default=0, help="loopback port of the control (0: a free one)")
    parser.add_argument("--env-file", default=None,
                        help="also write the lines to this file (`source` it, or pass it to chaos --var-file)")
    args = parser.parse_args(argv)
    try:
        matrix = load_matrix(args.matrix_file)
        row = matrix.row(args.matrix_row)
    except MatrixError as exc:
        print(f"ERROR: seamcheck-stack: {exc}", file=sys.stderr)
        return 2

    from harness.profiles.local import LocalProfile

    # SIGTERM like Ctrl-C, so the finally below always runs.
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    profile = LocalProfile(StackConfig(), row, progress=_say)
    control = None
    try:
        profile.start()
        data = write_dataset(str(profile.state / "data" / "recommendation.parquet"))
        _say("running the pipeline once (train -> register -> serve) ...")
        run = profile.run_pipeline(pipeline_params(profile, data, run_id=new_run_id()),
                                   name="seamcheck-stack")
        if not run.succeeded:
            print(f"ERROR: seamcheck-stack: the pipeline run failed: {run.error}", file=sys.stderr)
            return 1
        isvc = profile.isvc.wait_ready(ISVC_NAME, deadline_s=profile.config.isvc_deadline_s)
        version = trained_version(run)
        rows = Path(tempfile.mkdtemp(prefix="seamcheck-rows-", dir=profile.state)) / "rows.parquet"
        holdout_rows(200).to_parquet(rows)
        context = ChaosContext(base_storage_uri=storage_uri_of(isvc),
                               model_name=MODEL_NAME, model_version=version, template=isvc,
                               dataset_path=data, rows_path=rows)
        control = ChaosControl(profile, context, profile.state / "chaos")
        control.serve(args.control_port)
        lines = [f"export {key}={value}" for key, value in control.environment().items()]
        if args.env_file:
            Path(args.env_file).write_text("\n".join(lines) + "\n")
        print("\n# the stack is up; in another shell:\n" + "\n".join(lines), flush=True)
        for path in experiment_files():
            print(f"chaos run --rollback-strategy always {path}")
        print("# Ctrl-C here lifts every fault and tears the stack down.", flush=True)
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        _say("stopping ...")
        return 0
    finally:
        # A second Ctrl-C must not cut the teardown short (it would leave processes behind).
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        if control is not None:
            control.close()
        profile.teardown()


if __name__ == "__main__":
    sys.exit(main())
