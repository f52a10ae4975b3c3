"""One MLServer of a serving role environment, with models loaded one at a time through MLServer's
model repository API (``POST /v2/repository/models/<name>/load``).

The runtime code is the one a KServe predictor runs (``mlserver_mlflow.MLflowRuntime.load`` on the
folder the storage initializer filled); loading through the repository API instead of at start-up
lets one server of a row try many models - a model that fails to load answers with the runtime's
own error instead of ending the process (the start-up path, exit status included, is what the
conformance suite's `broken-seam-detected` check covers). The log lines a load wrote (warnings
such as scikit-learn's InconsistentVersionWarning, tracebacks) are kept with its result.
"""
from __future__ import annotations

import json
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import requests

from harness.envs import RoleEnv
from harness.ports import LOOPBACK, free_port
from harness.procs import ComponentFailed, ManagedProcess, ProcessRegistry
from harness.serving.v2 import v2_request

if TYPE_CHECKING:  # pandas takes 0.4 s to import; here it is only a type
    import pandas as pd

__all__ = ["InferResult", "ServerLoadResult", "ModelServer", "runtime_lines"]

MLFLOW_RUNTIME = "mlserver_mlflow.MLflowRuntime"
#: Log lines worth quoting: warnings and errors the runtime (or the libraries it loads) wrote.
_NOTABLE = re.compile(r"(Warning|warning|WARNING|Error|ERROR|Exception|No module named|Traceback|"
                      r"Trying to unpickle|incompatible|version)")


def runtime_lines(text: str, limit: int = 12) -> list[str]:
    """The notable lines of a log excerpt, without MLServer's routine access lines."""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and _NOTABLE.search(ln)]
    lines = [ln for ln in lines if "uvicorn.access" not in ln and not ln.startswith("File ")]
    return list(dict.fromkeys(lines))[-limit:]


@dataclass
class ServerLoadResult:
    model: str
    folder: str
    ok: bool
    http_status: int
    answer: str  # the load call's body: MLServer's error text on failure
    log_lines: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class InferResult:
    ok: bool
    http_status: int
    predictions: list[Any] | None
    error: str = ""

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


class ModelServer:
    def __init__(self, registry: ProcessRegistry, env: RoleEnv, home: Path, *, label: str) -> None:
        self.registry, self.env, self.home, self.label = registry, env, home, label
        self.repo = home / "repository"
        self.http_port, self.grpc_port, self.metrics_port = free_port(), free_port(), free_port()
        self.process: ManagedProcess | None = None
        self.ready_seconds = 0.0

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.http_port}"

    def start(self, *, deadline_s: float = 180.0) -> ModelServer:
        self.repo.mkdir(parents=True, exist_ok=True)
        (self.home / "metrics").mkdir(exist_ok=True)
        env = {**os.environ, "PATH": f"{self.env.path / 'bin'}:{os.environ.get('PATH', '')}",
               "MLSERVER_HOST": LOOPBACK, "MLSERVER_HTTP_PORT": str(self.http_port),
               "MLSERVER_GRPC_PORT": str(self.grpc_port), "MLSERVER_METRICS_PORT": str(self.metrics_port),
               "MLSERVER_METRICS_DIR": str(self.home / "metrics")}
        argv = [str(self.env.bin("mlserver")), "start", str(self.repo)]
        self.process = self.registry.start(ManagedProcess(f"mlserver {self.label}", argv,
                                                          self.home / "mlserver.log", env=env, cwd=self.home))
        self.ready_seconds = self.process.wait_http(f"{self.url}/v2/health/ready", deadline_s=deadline_s)
        return self

    def _log_size(self) -> int:
        try:
            return self.process.log_path.stat().st_size if self.process else 0
        except OSError:
            return 0

    def _log_since(self, offset: int) -> str:
        assert self.process is not None
        with open(self.process.log_path, "rb") as fh:
            fh.seek(offset)
            return fh.read().decode(errors="replace")

    def load(self, model: str, folder: Path, *, deadline_s: float = 240.0) -> ServerLoadResult:
        assert self.process is not None, "server not started"
        settings = self.repo / model / "model-settings.json"
        settings.parent.mkdir(parents=True, exist_ok=True)
        settings.write_text(json.dumps({"name": model, "implementation": MLFLOW_RUNTIME,
                                        "parameters": {"uri": str(folder)}}))
        offset, started = self._log_size(), time.monotonic()
        try:
            resp = requests.post(f"{self.url}/v2/repository/models/{model}/load", timeout=deadline_s)
        except requests.RequestException as exc:
            raise self.process.failure(f"no answer to loading model {model!r} within {deadline_s:.0f}s "
                                       f"({type(exc).__name__})") from None
        time.sleep(0.3)  # let the worker processes' stderr reach the log
        excerpt = self._log_since(offset)
        if not self.process.alive():
            raise self.process.failure(f"the server died while loading model {model!r}")
        ok = resp.status_code == 200
        if ok:  # a 200 must mean the model answers ready: otherwise the evidence contradicts itself
            ready = requests.get(f"{self.url}/v2/models/{model}/ready", timeout=10).status_code
            if ready != 200:
                raise ComponentFailed(f"mlserver {self.label}: load of {model!r} answered 200 but the model's "
                                      f"ready route answers {ready}")
        return ServerLoadResult(model, str(folder), ok, resp.status_code, resp.text[:3000], runtime_lines(excerpt),
                          round(time.monotonic() - started, 3))

    def infer(self, model: str, frame: pd.DataFrame, *, content_type: str | None,
              timeout_s: float = 60.0) -> InferResult:
        try:
            resp = requests.post(f"{self.url}/v2/models/{model}/infer",
                                 json=v2_request(frame, content_type=content_type), timeout=timeout_s)
        except requests.RequestException as exc:
            assert self.process is not None
            raise self.process.failure(f"no answer to inference on {model!r} ({type(exc).__name__})") from None
        if resp.status_code != 200:
            return InferResult(False, resp.status_code, None, resp.text[:1500])
        outputs = resp.json().get("outputs") or []
        if not outputs:
            return InferResult(False, resp.status_code, None, f"no outputs in the answer: {resp.text[:500]}")
        return InferResult(True, resp.status_code, list(outputs[0]["data"]))

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()
            self.registry.forget(self.process)
            self.process = None
