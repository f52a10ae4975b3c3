"""Judges by name: the built-ins, a user's Python judge, or a user's command.

Specs:
  "seed" | "sequential"          the built-in judges, and the peers ported from the tools users run:
  "flagger" | "argo" | "kayenta"  Flagger's canary analysis, an Argo Rollouts AnalysisRun, Kayenta's
                                  NetflixACAJudge, each with its project's documented defaults
  "pkg.module:factory"            `factory` is a Judge class (called with the JudgeConfig) or a callable
  "path/to/file.py:factory"       returning a Judge (called with the JudgeConfig if it takes an argument)
  "cmd:<shell command>"           the command runs once per observation (shell, own process group),
                                  gets JSON on stdin and answers JSON on stdout

The command's stdin: the Reading's fields (t_s, canary, stable, source_ok, source_error, and combined
when present; canary/stable are null in the final call when the driver has no reading), plus
"final": true on the deadline call (answer promote/rollback/inconclusive there) and "config": the
JudgeConfig as a dict. Its stdout: {"decision": "promote|rollback|inconclusive|continue",
"reasons": ["..."]}; the last line that parses as JSON counts, so it may log above it.

User code and commands fail closed: an exception, a non-zero exit, a timeout, unparsable output, an
unknown decision or "continue" on the final call all become INCONCLUSIVE with the cause as the
reason, never PROMOTE.
"""
from __future__ import annotations

import dataclasses
import hashlib
import importlib
import importlib.util
import inspect
import json
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.errors import JudgeError
from harness.judges.argo import ArgoJudge
from harness.judges.base import Decision, Judge, JudgeConfig, Reading, Verdict
from harness.judges.flagger import FlaggerJudge
from harness.judges.kayenta import KayentaJudge
from harness.judges.seed import SeedThresholdJudge
from harness.judges.sequential import SequentialJudge
from harness.procs import run_command

__all__ = ["BUILTIN_JUDGES", "CommandJudge", "GuardedJudge", "JudgeSpecError", "load_judge"]

BUILTIN_JUDGES: dict[str, Callable[[JudgeConfig], Judge]] = {"seed": SeedThresholdJudge,
                                                              "sequential": SequentialJudge,
                                                              "flagger": FlaggerJudge, "argo": ArgoJudge,
                                                              "kayenta": KayentaJudge}
_FORMS = (", ".join(repr(name) for name in BUILTIN_JUDGES) + ", 'package.module:callable', "
          "'path/to/file.py:callable' or 'cmd:<shell command>'")


class JudgeSpecError(JudgeError):
    """A judge spec that cannot be turned into a judge; the message says how to fix it."""


def _inconclusive(reason: str, at_s: float, details: dict[str, Any] | None = None) -> Verdict:
    return Verdict(Decision.INCONCLUSIVE, [reason], at_s, details=details or {})


@dataclass
class GuardedJudge:
    """Wraps a user's Python judge so its failures cannot promote: see the module docstring."""

    inner: Any
    spec: str
    name: str = ""

    def __post_init__(self) -> None:
        self.name = self.name or str(getattr(self.inner, "name", "") or self.spec)

    def reset(self) -> None:
        self.inner.reset()

    def _checked(self, call: str, reading: Reading | None, final: bool) -> Verdict:
        at = reading.t_s if reading is not None else 0.0
        try:
            verdict = getattr(self.inner, call)(reading)
        except Exception as exc:  # noqa: BLE001  any failure of user code is a reason, not a crash of the run
            return _inconclusive(f"judge {self.spec!r} raised in {call}(): {type(exc).__name__}: {exc}", at)
        if not isinstance(verdict, Verdict) or not isinstance(verdict.decision, Decision):
            return _inconclusive(f"judge {self.spec!r} returned {type(verdict).__name__} from {call}(), "
                                 "expected a harness.judges.base.Verdict", at)
        if final and verdict.decision is Decision.CONTINUE:
            return _inconclusive(f"judge {self.spec!r} answered 'continue' at the deadline", verdict.at_s,
                                 details={"reasons": verdict.reasons})
        return verdict

    def observe(self, reading: Reading) -> Verdict:
        return self._checked("observe", reading, final=False)

    def finish(self, reading: Reading | None) -> Verdict:
        return self._checked("finish", reading, final=True)


@dataclass
class CommandJudge:
    command: str
    config: JudgeConfig = field(default_factory=JudgeConfig)
    name: str = ""

    def __post_init__(self) -> None:
        self.name = self.name or f"cmd:{self.command}"

    def reset(self) -> None:
        pass  # stateless on our side: the command keeps its own state if it wants any

    def _payload(self, reading: Reading | None, final: bool) -> str:
        body: dict[str, Any] = (reading.to_dict() if reading is not None else
                                {"t_s": None, "canary": None, "stable": None, "source_ok": False,
                                 "source_error": "no reading at the deadline"})
        body["final"] = final
        body["config"] = dataclasses.asdict(self.config)
        return json.dumps(body)

    def _run(self, reading: Reading | None, final: bool) -> Verdict:
        at = reading.t_s if reading is not None else 0.0
        timeout = self.config.external_timeout_s
        # Own session = own process group, so a timeout kills the shell and whatever it started
        # (subprocess.run's timeout kills only the shell, and a grandchild holding stdout open
        # would then block the read forever).
        try:
            proc = run_command(["/bin/sh", "-c", self.command], what=f"judge command {self.command}",
                               input=self._payload(reading, final), timeout=timeout)
        except subprocess.TimeoutExpired:
            return _inconclusive(f"judge command timed out after {timeout:g}s: {self.command}", at)
        out, err = proc.stdout, proc.stderr
        if proc.returncode != 0:
            tail = (err or "").strip().splitlines()[-3:]
            return _inconclusive(f"judge command exited {proc.returncode}: {self.command}"
                                 + (f" (stderr: {' | '.join(tail)})" if tail else ""), at)
        answer = _last_json_object(out)
        if answer is None:
            return _inconclusive(f"judge command printed no JSON object on stdout: {self.command} "
                                 f"(stdout: {out.strip()[-200:]!r})", at)
        raw = str(answer.get("decision", "")).strip().lower()
        try:
            decision = Decision(raw)
        except ValueError:
            return _inconclusive(f"judge command answered decision {raw!r}, expected one of "
                                 f"{[d.value for d in Decision]}", at)
        reasons = answer.get("reasons", [])
        reasons = [str(r) for r in reasons] if isinstance(reasons, list) else [str(reasons)]
        if final and decision is Decision.CONTINUE:
            return _inconclusive(f"judge command answered 'continue' at the deadline: {self.command}", at,
                                 details={"reasons": reasons})
        return Verdict(decision, reasons or [f"judge command said {decision.value}"], at,
                       observations_used=[reading.to_dict()] if reading is not None else [],
                       details={"command": self.command, "answer": answer})

    def observe(self, reading: Reading) -> Verdict:
        return self._run(reading, final=False)

    def finish(self, reading: Reading | None) -> Verdict:
        return self._run(reading, final=True)


def _last_json_object(text: str) -> dict[str, Any] | None:
    candidates = [text] + [line for line in reversed(text.splitlines()) if line.strip()]
    for candidate in candidates:
        try:
            value = json.loads(candidate)
        except ValueError:
            continue
        if isinstance(value, dict):
            return value
    return None


def _import(spec: str, module_part: str) -> Any:
    if module_part.endswith(".py"):
        path = Path(module_part)
        if not path.is_file():
            raise JudgeSpecError(f"judge spec {spec!r}: file {str(path)!r} does not exist "
                                 f"(relative to {os.getcwd()}); fix the path or use 'package.module:callable'")
        digest = hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:10]
        name = f"seamcheck_user_judge_{path.stem}_{digest}"
        mod_spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(mod_spec)  # type: ignore[arg-type]
        sys.modules[name] = module
        try:
            mod_spec.loader.exec_module(module)  # type: ignore[union-attr]
        except Exception as exc:
            sys.modules.pop(name, None)
            raise JudgeSpecError(f"judge spec {spec!r}: executing {str(path)!r} raised "
                                 f"{type(exc).__name__}: {exc}") from exc
        return module
    try:
        return importlib.import_module(module_part)
    except ModuleNotFoundError as exc:
        if exc.name and (module_part == exc.name or module_part.startswith(exc.name + ".")):
            raise JudgeSpecError(f"judge spec {spec!r}: no module named {exc.name!r}; install the package that "
                                 "provides it or add its directory to PYTHONPATH (the harness imports it from "
                                 f"its own sys.path), or use 'path/to/file.py:callable'") from exc
        raise JudgeSpecError(f"judge spec {spec!r}: module {module_part!r} was found but importing it failed: "
                             f"it needs {exc.name!r}, which is not installed in the harness environment") from exc
    except Exception as exc:
        raise JudgeSpecError(f"judge spec {spec!r}: importing {module_part!r} raised {type(exc).__name__}: {exc}") \
            from exc


def _takes_argument(fn: Callable[..., Any]) -> bool:
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return True  # no introspectable signature: try the documented form, with the config
    return any(p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.VAR_POSITIONAL) for p in params)


def load_judge(spec: str, config: JudgeConfig) -> Judge:
    spec = (spec or "").strip()
    if spec in BUILTIN_JUDGES:
        return BUILTIN_JUDGES[spec](config)
    if spec.startswith("cmd:"):
        command = spec[len("cmd:"):].strip()
        if not command:
            raise JudgeSpecError(f"judge spec {spec!r}: empty command; write 'cmd:<shell command>', e.g. "
                                 "'cmd:python my_judge.py'")
        return CommandJudge(command, config)
    module_part, sep, attr = spec.rpartition(":")
    if not sep or not module_part or not attr or attr.endswith(".py"):
        raise JudgeSpecError(f"unknown judge spec {spec!r}; expected {_FORMS}")
    module = _import(spec, module_part)
    obj: Any = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            # Name what the module itself defines (not what it imported): the likely intended targets.
            own = sorted(n for n, v in vars(module).items() if not n.startswith("_") and callable(v)
                         and getattr(v, "__module__", None) == module.__name__)
            listed = ", ".join(own[:12]) + (", ..." if len(own) > 12 else "") if own else "none"
            raise JudgeSpecError(f"judge spec {spec!r}: {module_part!r} has no attribute {attr!r}; "
                                 f"callables defined there: {listed}")
        obj = getattr(obj, part)
    if not callable(obj):
        raise JudgeSpecError(f"judge spec {spec!r}: {attr!r} is a {type(obj).__name__}, not callable; point the "
                             "spec at a Judge class or at a function that returns a Judge")
    try:
        judge = obj(config) if inspect.isclass(obj) or _takes_argument(obj) else obj()
    except Exception as exc:
        raise JudgeSpecError(f"judge spec {spec!r}: calling {attr}(config) raised {type(exc).__name__}: {exc}; "
                             "it must accept a harness.judges.base.JudgeConfig (or no argument) "
                             "and return a Judge") from exc
    missing = [m for m in ("reset", "observe", "finish") if not callable(getattr(judge, m, None))]
    if missing or not isinstance(getattr(judge, "name", None), str):
        missing += [] if isinstance(getattr(judge, "name", None), str) else ["name (str attribute)"]
        raise JudgeSpecError(f"judge spec {spec!r}: {attr} returned a {type(judge).__name__} lacking "
                             f"{', '.join(missing)}; a Judge needs name, reset(), observe(reading) and "
                             "finish(reading)")
    return GuardedJudge(judge, spec)
