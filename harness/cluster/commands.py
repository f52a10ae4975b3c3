"""Subprocesses of the cluster profiles (kind, kubectl, helm, docker): every one with a timeout,
and a failure that says what was attempted, the command, and the tail of its output.

kubectl is driven as a program rather than re-implemented because two install steps need what
only it has: `apply -k <remote kustomization>` (KFP's manifests) and server-side apply of
multi-document release files (KServe's CRDs are too large for client-side apply).
"""
from __future__ import annotations

import os
import shlex
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from harness.cluster.errors import ClusterError
from harness.procs import run_command

__all__ = ["Command", "Kubectl", "run_cmd", "tail"]

TAIL_LINES = 25
FIELD_MANAGER = "seamcheck"


def tail(text: str, lines: int = TAIL_LINES) -> str:
    return "\n".join((text or "").strip().splitlines()[-lines:])


@dataclass(frozen=True)
class Command:
    argv: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str

    @property
    def shell(self) -> str:
        return shlex.join(self.argv)


def run_cmd(argv: Sequence[str], *, what: str, timeout: float, env: Mapping[str, str] | None = None,
            input_text: str | None = None, check: bool = True, cwd: Path | str | None = None) -> Command:
    """Run a command to completion. `what` names the step for the error message; on a non-zero
    exit (with check) or a timeout raise ClusterError with the command and its output's tail."""
    argv = [str(a) for a in argv]
    try:
        proc = run_command(argv, what=what, input=input_text, timeout=timeout,
                           env=dict(env) if env is not None else None, cwd=cwd)
    except FileNotFoundError:
        raise ClusterError(f"{what}: {argv[0]!r} is not installed or not on PATH") from None
    except subprocess.TimeoutExpired as exc:
        out = exc.stdout if isinstance(exc.stdout, str) else (exc.stdout or b"").decode(errors="replace")
        err = exc.stderr if isinstance(exc.stderr, str) else (exc.stderr or b"").decode(errors="replace")
        raise ClusterError(f"{what}: no result after {timeout:.0f}s from `{shlex.join(argv)}`\n"
                           f"{tail(out + err)}") from None
    result = Command(tuple(argv), proc.returncode, proc.stdout, proc.stderr)
    if check and proc.returncode != 0:
        raise ClusterError(f"{what}: `{result.shell}` exited with status {proc.returncode}\n"
                           f"{tail(proc.stderr or proc.stdout)}")
    return result


@dataclass
class Kubectl:
    """kubectl bound to one kubeconfig and context. Every call has a timeout."""

    binary: str = "kubectl"
    kubeconfig: Path | None = None
    context: str | None = None
    env: dict[str, str] = field(default_factory=dict)

    def argv(self, *args: str) -> list[str]:
        base = [self.binary]
        if self.kubeconfig is not None:
            base += ["--kubeconfig", str(self.kubeconfig)]
        if self.context:
            base += ["--context", self.context]
        return base + list(args)

    def run(self, *args: str, what: str, timeout: float, input_text: str | None = None,
            check: bool = True) -> Command:
        return run_cmd(self.argv(*args), what=what, timeout=timeout, input_text=input_text, check=check,
                       env={**os.environ, **self.env})

    def apply_url(self, url: str, *, what: str, timeout: float) -> Command:
        """Server-side apply of a release file (large CRDs do not fit client-side apply's annotation)."""
        return self.run("apply", "--server-side", "--force-conflicts", "-f", url, what=what, timeout=timeout)

    def apply_text(self, text: str, *, what: str, timeout: float) -> Command:
        """The harness's own manifests, under their own field manager: applying one of them (a
        Knative ConfigMap, say) must not drop fields that the release file's apply owns."""
        return self.run("apply", "--server-side", "--force-conflicts", f"--field-manager={FIELD_MANAGER}", "-f", "-",
                        what=what, timeout=timeout, input_text=text)

    def apply_kustomize(self, target: str, *, what: str, timeout: float) -> Command:
        """`kubectl apply -k` (remote kustomizations need git on PATH). Client-side, as KFP documents."""
        return self.run("apply", "-k", target, what=what, timeout=timeout)

    def port_forward_argv(self, namespace: str, target: str, local_port: int, remote_port: int) -> list[str]:
        return self.argv("port-forward", "--address", "127.0.0.1", "-n", namespace, target,
                         f"{local_port}:{remote_port}")
