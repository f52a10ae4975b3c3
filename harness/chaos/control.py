"""The chaos control of a running local stack: its HTTP server and its fault ledger.

Experiments may run in another process than the one that owns the stack (`chaos run` by hand
against `seamcheck-stack`), so the owner serves the operations of harness/chaos/operations/ on
loopback, behind a random token, and the experiments' actions and probes (actions.py, probes.py)
call them by name. The control keeps what the operations share: the stack, the services the
experiments made, running loads, the pipeline's network namespace, and the faults in place.

Blast radius: every operation acts on the harness's own things only. Processes are signalled
only when the stack's ProcessRegistry owns their pid; network rules live only inside the
harness's own network namespace; services are the ones in the stack's namespace. Every fault that
is put in place is also written down, and `close()` (the owner's teardown) undoes what is still
in place, so a method that fails half-way or an interrupted run leaves nothing behind.
"""
from __future__ import annotations

import contextlib
import functools
import itertools
import json
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from harness.errors import StackError
from harness.load import LoadHandle
from harness.local.netns import PipelineNetns
from harness.ports import LOOPBACK
from harness.profiles.local import LocalProfile
from harness.serving.lint import LintError

__all__ = ["ChaosContext", "ChaosControl", "ControlError", "Fault"]


class ControlError(StackError):
    """An operation was refused or failed; the message says which and why."""


@dataclass
class ChaosContext:
    """What the experiments build on: the model the pipeline trained and the service it deployed."""

    base_storage_uri: str  # the deployed model's storageUri (artifact_uri + "/model")
    model_name: str  # its registered model name
    model_version: str  # its registered version
    template: dict[str, Any]  # the deployed InferenceService, as the pattern for new services
    dataset_path: str  # the training data the pipeline reads
    rows_path: Path  # V2 request rows for Locust (hold-out rows, features only)


@dataclass
class Fault:
    """A fault in place, and how to undo it."""

    kind: str
    target: str
    undo: Callable[[], Any]
    started: float = field(default_factory=time.time)


class ChaosControl:
    def __init__(self, profile: LocalProfile, context: ChaosContext, workdir: Path) -> None:
        from harness.chaos.operations import operations

        self.profile = profile
        self.context = context
        self.workdir = workdir
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.token = secrets.token_urlsafe(24)
        self.faults: list[Fault] = []  # in place now, oldest first
        self.loads: dict[str, LoadHandle] = {}
        self.netns: PipelineNetns | None = None
        self.services: set[str] = set()  # the services experiments made (the only ones they may delete)
        self.rollback_targets: dict[str, str] = {}  # service -> the revision its rollback routes to
        self.lock = threading.RLock()
        self.ids = itertools.count(1)
        self._server: ThreadingHTTPServer | None = None
        # Every operation, by name: the modules of harness/chaos/operations/, and restore_all.
        self.operations: dict[str, Callable[..., Any]] = {
            name: functools.partial(func, self) for name, func in operations().items()}
        self.operations["restore_all"] = self.restore_all

    # ------------------------------------------------------------------ serving
    def serve(self, port: int = 0) -> str:
        control = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *_args: Any) -> None:  # the journal and our log say enough
                pass

            def do_POST(self) -> None:
                if self.headers.get("Authorization") != f"Bearer {control.token}":
                    self._reply(401, {"error": "missing or wrong token (SEAMCHECK_CONTROL_TOKEN)"})
                    return
                name = self.path.strip("/").removeprefix("v1/")
                length = int(self.headers.get("Content-Length") or 0)
                try:
                    kwargs = json.loads(self.rfile.read(length) or b"{}")
                    self._reply(200, {"result": control.call(name, **kwargs)})
                except ControlError as exc:
                    self._reply(409, {"error": str(exc)})
                except (TypeError, ValueError, PermissionError, LintError) as exc:
                    self._reply(400, {"error": f"{type(exc).__name__}: {exc}"})
                except Exception as exc:  # noqa: BLE001  reported to the caller, whatever it was
                    self._reply(500, {"error": f"{type(exc).__name__}: {exc}"})

            def _reply(self, status: int, body: dict[str, Any]) -> None:
                data = json.dumps(body, default=str).encode()
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # the caller gave up
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)

        self._server = ThreadingHTTPServer((LOOPBACK, port), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, name="chaos-control", daemon=True).start()
        return self.url

    @property
    def url(self) -> str:
        assert self._server is not None, "not serving"
        return f"http://{LOOPBACK}:{self._server.server_address[1]}"

    def environment(self) -> dict[str, str]:
        """What an experiment's configuration reads (see harness/chaos/experiments/*.json)."""
        return {"SEAMCHECK_CONTROL_URL": self.url, "SEAMCHECK_CONTROL_TOKEN": self.token}

    def call(self, operation_name: str, /, **kwargs: Any) -> Any:
        operation = self.operations.get(operation_name)
        if operation is None:
            raise ControlError(f"unknown operation {operation_name!r}; known: {', '.join(sorted(self.operations))}")
        return operation(**kwargs)

    def close(self) -> list[str]:
        """Undo every fault still in place, stop loads, delete the services experiments made.
        Idempotent: the fixture's teardown and the atexit fallback may both call it."""
        try:
            undone = self.restore_all()["undone"]
        except ControlError:
            undone = []  # the namespace below goes anyway; the stack's teardown stops the rest
        for handle in self.loads.values():
            handle.kill()
        self.loads.clear()
        for name in list(self.services):
            with contextlib.suppress(Exception):  # already gone is fine
                self.profile.isvc.delete(name)
        self.services.clear()
        if self.netns is not None:
            self.netns.close()
            self.netns = None
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        return undone

    # ------------------------------------------------------------------ the fault ledger
    def faults_in_place(self) -> list[str]:
        with self.lock:
            return [f"{f.kind}:{f.target}" for f in self.faults]

    def record_fault(self, kind: str, target: str, undo: Callable[[], Any]) -> None:
        """A fault just put in place: ``undo`` lifts it (a rollback, the teardown, restore_all)."""
        with self.lock:
            self.faults.append(Fault(kind, target, undo))

    def lift_fault(self, kind: str, target: str | None = None) -> list[str]:
        """Undo the faults of ``kind`` (on ``target``), newest first; returns what was lifted."""
        with self.lock:
            matching = [f for f in self.faults if f.kind == kind and (target is None or f.target == target)]
            for fault in matching:
                self.faults.remove(fault)
        for fault in reversed(matching):
            fault.undo()
        return [f"{f.kind}:{f.target}" for f in matching]

    def pipeline_netns(self) -> PipelineNetns:
        """The pipeline's network namespace (made at the first use, removed by close)."""
        if self.netns is None:
            self.netns = PipelineNetns(self.profile.registry, self.workdir / "netns").open()
        return self.netns

    def restore_all(self) -> dict[str, Any]:
        """Undo every fault in place, newest first; what could not be undone is named."""
        with self.lock:
            faults, self.faults = list(self.faults), []
        undone, errors = [], []
        for fault in reversed(faults):
            try:
                fault.undo()
                undone.append(f"{fault.kind}:{fault.target}")
            except Exception as exc:  # noqa: BLE001  keep undoing the others; report this one
                errors.append(f"{fault.kind}:{fault.target}: {type(exc).__name__}: {exc}")
        if errors:
            raise ControlError("could not undo: " + "; ".join(errors))
        return {"undone": undone}
